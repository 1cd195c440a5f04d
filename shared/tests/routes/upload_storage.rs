//! What an upload stores, atomically, once, in one round trip.

use serde_json::{json, Value};
use testkit::proxy::CountingProxy;
use testkit::upload::*;
use testkit::TestDb;

/// A realistic batch: every sensor, every quality mix, ISO and epoch times, out of
/// order.
fn realistic() -> Value {
    json!({
        "device_id": "android-realistic",
        "timestamp": "2026-03-01T12:00:00+01:00",
        "batch": [
            {"t": "2026-03-01T10:59:10.250Z", "light": 120.5, "accel": [0.1, 9.8, 0.2],
             "gyro": [0, 0, 0.01], "magnet": [20, -5, 40], "pressure": 1013.2,
             "quality": {"orientation": "face_up", "tilt_deg": 3.5, "motion_state": "stationary",
                         "motion_confidence": 0.9, "pocket": "unlikely", "location_quality": "high"}},
            {"t": 1772362740000u64, "light": 0, "accel": [3, 4, 0],
             "quality": {"pocket": "likely", "location_quality": "high"}},
            {"t": "2026-03-01T11:59:59.999+01:00", "light": 33.3, "gyro": [1, 2, 2],
             "quality": {"motion_state": "light", "motion_confidence": 0.2}},
            {"t": "2026-03-01T10:59:30Z", "light": 7,
             "quality": {"motion_state": "active", "motion_confidence": 0.1, "location_quality": "poor"}},
            {"t": "2026-03-01T10:59:40Z", "light": 8.25, "magnet": [1, 1, 1]}
        ],
        "location": {"lat": 48.85, "lon": 2.35, "altitude": 35, "accuracy_m": 12, "speed_mps": 0.4, "bearing_deg": 90},
        "geohash": "u09tvw", "battery_level": 76, "is_charging": false
    })
}

#[tokio::test]
async fn the_stored_payload_and_stats_equal_values_computed_independently() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let (status, answer) = upload(&app, &realistic(), &[]).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 5})));

    let row = client
        .query_one(
            "SELECT device_hash, timestamp_utc = '2026-03-01T11:00:00Z', batch_json, user_id
             FROM sensor_batches",
            &[],
        )
        .await
        .unwrap();
    let hash: String = row.get(0);
    assert_eq!(hash, device_hash("android-realistic"));
    assert!(row.get::<_, bool>(1));
    let stored: Value = row.get(2);
    assert_eq!(row.get::<_, Option<String>>(3), None, "anonymous");

    // Computed by hand from the batch above.
    let accel_rms = ((0.1f64 * 0.1 + 9.8 * 9.8 + 0.2 * 0.2).sqrt() + 5.0) / 2.0;
    let gyro_rms = ((0.0f64 + 0.0 + 0.01 * 0.01).sqrt() + 3.0) / 2.0;
    let light_avg = (120.5 + 0.0 + 33.3 + 7.0 + 8.25) / 5.0;
    let expected = json!({
        "timestamp": "2026-03-01T11:00:00.000Z",
        "summary": {
            "count": 5,
            "period_start": "2026-03-01T10:59:00.000Z",
            "period_end": "2026-03-01T10:59:59.999Z",
            "light": {"avg": light_avg, "min": 0, "max": 120.5},
            "accel_rms": accel_rms,
            "gyro_rms": gyro_rms,
            "pressure": {"avg": 1013.2, "min": 1013.2, "max": 1013.2}
        },
        "batch": [
            {"t": "2026-03-01T10:59:10.250Z", "light": 120.5, "accel": [0.1, 9.8, 0.2],
             "gyro": [0, 0, 0.01], "magnet": [20, -5, 40], "pressure": 1013.2,
             "quality": {"orientation": "face_up", "tilt_deg": 3.5, "motion_state": "stationary",
                         "motion_confidence": 0.9, "pocket": "unlikely", "location_quality": "high"}},
            {"t": "2026-03-01T10:59:00.000Z", "light": 0, "accel": [3, 4, 0],
             "quality": {"pocket": "likely", "location_quality": "high"}},
            {"t": "2026-03-01T10:59:59.999Z", "light": 33.3, "gyro": [1, 2, 2],
             "quality": {"motion_state": "light", "motion_confidence": 0.2}},
            {"t": "2026-03-01T10:59:30.000Z", "light": 7,
             "quality": {"motion_state": "active", "motion_confidence": 0.1, "location_quality": "poor"}},
            {"t": "2026-03-01T10:59:40.000Z", "light": 8.25, "magnet": [1, 1, 1]}
        ],
        "location": {"lat": 48.85, "lon": 2.35, "altitude": 35, "accuracy_m": 12, "speed_mps": 0.4, "bearing_deg": 90},
        "geohash": "u09tvw", "battery_level": 76, "is_charging": false
    });
    // Compared by PostgreSQL, whose numerics are exact (serde_json's default float
    // parsing may be one ulp off when reading the stored value back).
    let same: bool = client
        .query_one(
            "SELECT batch_json = $1::text::jsonb FROM sensor_batches",
            &[&expected.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same, "stored {stored}\nexpected {expected}");

    let stats = client
        .query_one(
            "SELECT samples_count, valid_samples, pocket_samples, uptime_seconds,
                    last_upload_at = '2026-03-01T11:00:00Z', user_id
             FROM user_stats WHERE device_hash = $1",
            &[&hash],
        )
        .await
        .unwrap();
    // valid: reading 0 (pocket unlikely / high location), reading 2 (light, 0.2);
    // pocket: reading 1; reading 3 counted but not valid; reading 4 has no quality.
    // uptime: 10:59:00.000 -> 10:59:59.999 is 59 whole seconds.
    assert_eq!(
        (
            stats.get::<_, i64>(0),
            stats.get::<_, i64>(1),
            stats.get::<_, i64>(2),
            stats.get::<_, i64>(3),
            stats.get::<_, bool>(4),
            stats.get::<_, Option<String>>(5)
        ),
        (5, 2, 1, 59, true, None)
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM daily_pots").await,
        0,
        "anonymous: no pot"
    );
}

#[tokio::test]
async fn a_retried_batch_is_a_duplicate_and_counts_nothing_again() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    let headers = [("x-device-secret", Some(secret.as_str()))];
    assert_eq!(upload(&app, &realistic(), &headers).await.0, 202);
    let before = snapshot(&client).await;
    let (status, answer) = upload(&app, &realistic(), &headers).await;
    assert_eq!(
        (status, answer),
        (202, json!({"accepted_records": 0, "duplicate": true}))
    );
    assert_eq!(
        before,
        snapshot(&client).await,
        "nothing written for a duplicate"
    );
}

/// A duplicate's answer.
fn duplicate() -> Value {
    json!({"accepted_records": 0, "duplicate": true})
}

/// Batches stored for `device_id` at the realistic batch's timestamp, by user
/// (NULL first), and each user's uploads counted today.
async fn stored_per_sender(client: &tokio_postgres::Client) -> (Vec<Option<String>>, Vec<i32>) {
    let batches = client
        .query(
            "SELECT user_id FROM sensor_batches
             WHERE device_hash = $1 AND timestamp_utc = '2026-03-01T11:00:00Z'
             ORDER BY user_id NULLS FIRST",
            &[&device_hash("android-realistic")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pots = client
        .query("SELECT uploads_today FROM daily_pots ORDER BY user_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (batches, pots)
}

#[tokio::test]
async fn an_anonymous_upload_naming_the_owners_device_first_leaves_the_owners_batch_stored_and_counted(
) {
    // Duplicate squatting: the retry key was (device, timestamp), so an anonymous
    // upload that named someone's device_id and timestamp first turned the
    // owner's real batch into a silent duplicate (readings dropped, pot not
    // counted). docs/api.md ("What is stored"): retries are recognised per sender.
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "owner").await;
    let owner = [("x-device-secret", Some(secret.as_str()))];
    let (status, answer) = upload(&app, &realistic(), &[]).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 5})));

    let (status, answer) = upload(&app, &realistic(), &owner).await;
    assert_eq!(
        (status, answer),
        (202, json!({"accepted_records": 5})),
        "the owner's batch is stored"
    );
    assert_eq!(
        stored_per_sender(&client).await,
        (vec![None, Some("owner".to_string())], vec![1]),
        "both stored, the owner's upload counted"
    );
    assert_eq!(
        count(&client, "SELECT samples_count FROM user_stats").await,
        10
    );
    // Each side's retry is still its own duplicate.
    assert_eq!(upload(&app, &realistic(), &owner).await, (202, duplicate()));
    assert_eq!(upload(&app, &realistic(), &[]).await, (202, duplicate()));
    assert_eq!(
        stored_per_sender(&client).await,
        (vec![None, Some("owner".to_string())], vec![1])
    );
}

#[tokio::test]
async fn a_retry_is_a_duplicate_for_the_same_user_however_it_authenticates_and_for_anonymous_twice()
{
    let test = TestDb::migrated().await;
    let keys = testkit::keys::KeyServer::start(300).await;
    let env = key_env(&keys);
    let app = upload_app(&test, &as_pairs(&env));
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    let by_secret = [("x-device-secret", Some(secret.as_str()))];
    let bearer = |user: &str| format!("Bearer {}", testkit::keys::token(user));
    let (user_1, user_2) = (bearer("user-1"), bearer("user-2"));

    // The same user: by token first, then by the device's secret (a retry after
    // the app registered), then by token again.
    let accepted = (202, json!({"accepted_records": 5}));
    assert_eq!(
        upload(&app, &realistic(), &[("authorization", Some(&user_1))]).await,
        accepted
    );
    assert_eq!(
        upload(&app, &realistic(), &by_secret).await,
        (202, duplicate())
    );
    assert_eq!(
        upload(&app, &realistic(), &[("authorization", Some(&user_1))]).await,
        (202, duplicate())
    );
    // Another user, and anonymous: other senders, each stored once.
    for expected in [accepted, (202, duplicate())] {
        let by_user_2 = [("authorization", Some(user_2.as_str()))];
        assert_eq!(upload(&app, &realistic(), &by_user_2).await, expected);
        assert_eq!(upload(&app, &realistic(), &[]).await, expected);
    }
    assert_eq!(
        stored_per_sender(&client).await,
        (
            vec![None, Some("user-1".to_string()), Some("user-2".to_string())],
            vec![1, 1]
        )
    );
}

#[tokio::test]
async fn counters_at_their_maximum_saturate_and_the_upload_is_still_stored_and_counted() {
    // docs/api.md ("What is stored"): the counters saturate at their column's
    // maximum, never overflow into a refused upload (an overflow used to be a 500
    // for every later upload of the device).
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    let headers = [("x-device-secret", Some(secret.as_str()))];
    let at = |timestamp: &str| {
        let mut b = realistic();
        b["timestamp"] = json!(timestamp);
        b
    };
    assert_eq!(
        upload(&app, &at("2026-03-01T10:00:00Z"), &headers).await.0,
        202
    );
    // The counters where the next batch (5 readings, 2 valid, 1 pocket, 59 s)
    // would overflow each of them.
    client
        .execute(
            "UPDATE user_stats SET samples_count = 9223372036854775807,
                 valid_samples = 9223372036854775806, pocket_samples = 9223372036854775807,
                 uptime_seconds = 9223372036854775800",
            &[],
        )
        .await
        .unwrap();
    let (status, answer) = upload(&app, &at("2026-03-01T11:00:00Z"), &headers).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 5})));
    let stats = |sql: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[]).await.unwrap();
            (0..row.len())
                .map(|i| row.get::<_, i64>(i))
                .collect::<Vec<_>>()
        }
    };
    let counters = "SELECT samples_count, valid_samples, pocket_samples, uptime_seconds
                    FROM user_stats";
    assert_eq!(stats(counters).await, vec![i64::MAX; 4]);
    assert_eq!(
        stats(
            "SELECT count(*), (SELECT uploads_today::bigint FROM daily_pots) FROM sensor_batches"
        )
        .await,
        [2, 2],
        "stored and counted"
    );

    // The largest uptime one batch can add (its readings span 1970 to 9999)
    // onto a counter that holds less than that below the maximum.
    client
        .execute(
            "UPDATE user_stats SET uptime_seconds = 9223372036854775807 - 253402300798",
            &[],
        )
        .await
        .unwrap();
    let mut span = at("2026-03-01T12:00:00Z");
    span["batch"] = json!([{"t": 0}, {"t": "9999-12-31T23:59:59.999Z"}]);
    assert_eq!(upload(&app, &span, &headers).await.0, 202);
    assert_eq!(
        stats("SELECT uptime_seconds FROM user_stats").await,
        [i64::MAX]
    );
}

#[tokio::test]
async fn an_older_batch_arriving_late_never_moves_last_upload_at_back() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let at = |ts: &str| {
        let mut b = realistic();
        b["timestamp"] = json!(ts);
        b
    };
    assert_eq!(upload(&app, &at("2026-03-02T10:00:00Z"), &[]).await.0, 202);
    assert_eq!(upload(&app, &at("2026-03-01T10:00:00Z"), &[]).await.0, 202);
    let row = client
        .query_one(
            "SELECT last_upload_at = '2026-03-02T10:00:00Z', samples_count FROM user_stats",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "still the newer batch's time");
    assert_eq!(row.get::<_, i64>(1), 10, "yet both were counted");
}

#[tokio::test]
async fn a_failure_in_any_step_is_a_5xx_and_no_table_changes() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    // The last step of the statement (the pot) fails.
    client
        .batch_execute(
            "CREATE FUNCTION fail_pot() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'test-only failure'; END $$;
             CREATE TRIGGER fail_pot BEFORE INSERT OR UPDATE ON daily_pots
               FOR EACH ROW EXECUTE FUNCTION fail_pot();",
        )
        .await
        .unwrap();
    let before = snapshot(&client).await;
    let (status, answer) = upload(
        &app,
        &realistic(),
        &[("x-device-secret", Some(secret.as_str()))],
    )
    .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer, json!({"error": "Internal server error"}));
    assert_eq!(before, snapshot(&client).await, "all or nothing");
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_with_retry_after() {
    let test = TestDb::migrated().await;
    let mut url = url::Url::parse(&test.url).unwrap();
    url.set_port(Some(1)).unwrap();
    let config = shared::db::DbConfig::from_env(&[("DATABASE_URL", url.as_str())]).unwrap();
    let app = upload_app_on(shared::db::Database::new(&config).unwrap(), &[]);
    let response = shared::upload::handle(&app, upload_request(&realistic(), &[])).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        answer(response),
        (503, json!({"error": "Service unavailable"}))
    );
}

#[tokio::test]
async fn twenty_concurrent_uploads_from_one_device_add_up_exactly() {
    let test = TestDb::migrated().await;
    let client = test.client().await;
    let secret = insert_secret(&client, "android-1", "user-1").await;
    // 5 connections carrying 4 requests each.
    let apps: Vec<_> = (0..5).map(|_| upload_app(&test, &[])).collect();
    let uploads = (0..20).map(|i| {
        let app = &apps[i % 5];
        let secret = secret.clone();
        async move {
            let mut body = realistic();
            body["device_id"] = json!("android-1");
            body["timestamp"] = json!(format!("2026-03-01T12:00:{i:02}Z"));
            upload(app, &body, &[("x-device-secret", Some(secret.as_str()))]).await
        }
    });
    for (status, answer) in futures_util::future::join_all(uploads).await {
        assert_eq!((status, answer), (202, json!({"accepted_records": 5})));
    }
    let row = client
        .query_one(
            "SELECT samples_count, valid_samples, pocket_samples, uptime_seconds, user_id
             FROM user_stats",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3),
            row.get::<_, String>(4)
        ),
        (100, 40, 20, 20 * 59, "user-1".to_string())
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM sensor_batches").await,
        20
    );
    assert_eq!(
        count(
            &client,
            "SELECT uploads_today::bigint FROM daily_pots WHERE user_id = 'user-1'
             AND uploads_day = (now() AT TIME ZONE 'UTC')::date"
        )
        .await,
        20
    );
}

#[tokio::test]
async fn twenty_concurrent_retries_of_one_batch_store_one_row_counted_once() {
    let test = TestDb::migrated().await;
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    let apps: Vec<_> = (0..5).map(|_| upload_app(&test, &[])).collect();
    let retries = (0..20).map(|i| {
        let app = &apps[i % 5];
        let secret = secret.clone();
        async move {
            upload(
                app,
                &realistic(),
                &[("x-device-secret", Some(secret.as_str()))],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(retries).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 202),
        "{answers:?}"
    );
    let accepted = answers
        .iter()
        .filter(|(_, a)| a == &json!({"accepted_records": 5}))
        .count();
    let duplicates = answers
        .iter()
        .filter(|(_, a)| a == &json!({"accepted_records": 0, "duplicate": true}))
        .count();
    assert_eq!((accepted, duplicates), (1, 19));
    assert_eq!(
        count(&client, "SELECT count(*) FROM sensor_batches").await,
        1
    );
    assert_eq!(
        count(&client, "SELECT samples_count FROM user_stats").await,
        5
    );
    assert_eq!(
        count(&client, "SELECT uploads_today::bigint FROM daily_pots").await,
        1
    );
}

#[tokio::test]
async fn an_upload_is_one_round_trip_on_the_wire() {
    let test = TestDb::migrated().await;
    let client = test.client().await;
    let secret = insert_secret(&client, "android-realistic", "user-1").await;
    let proxy = CountingProxy::start(&test.url).await;
    let url = proxy.url_for(&test.url);
    let config = shared::db::DbConfig::from_env(&[("DATABASE_URL", url.as_str())]).unwrap();
    let app = upload_app_on(shared::db::Database::new(&config).unwrap(), &[]);
    // Connect first, so only the upload itself is counted.
    app.db.client().await.unwrap();
    let before = proxy.messages();
    let (status, _) = upload(
        &app,
        &realistic(),
        &[("x-device-secret", Some(secret.as_str()))],
    )
    .await;
    assert_eq!(status, 202);
    // The first use also prepares the statement, in the same flight (a second Sync).
    assert_eq!(
        proxy.messages().since(&before).flights,
        1,
        "secret lookup and all writes in one"
    );
    assert_eq!(
        count(&client, "SELECT uploads_today::bigint FROM daily_pots").await,
        1
    );
}
