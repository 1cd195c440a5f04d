//! The nightly reset at scale (`--reset-scale`, not in CI): a million pots whose
//! counts are yesterday's, reset by the seed's single UPDATE (as the old backend
//! did) and, once `shared::reset` is on main, by our batched reset, same run.

use std::time::Instant;

use serde_json::{json, Value};

use crate::stats::round1;

const POTS: i64 = 1_000_000;

/// The old backend's reset, verbatim: skips pots never claimed (`NULL < date`).
const LEGACY_RESET: &str =
    "UPDATE daily_pots SET uploads_today = 0 WHERE last_claim_date < CURRENT_DATE";

pub async fn run(admin_url: &str) -> Result<Value, String> {
    let name = format!("dailypot_bench_{}_reset", std::process::id());
    let admin = testkit::db::connect(admin_url).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).await.map_err(|e| e.to_string())?;
    }
    let url = testkit::db::url_for(admin_url, &name);
    let result = measure(&url).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    result
}

async fn measure(url: &str) -> Result<Value, String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let config =
        shared::config::DbConfig::from_env(&[("DATABASE_URL", url)]).map_err(|e| e.to_string())?;
    let db = shared::db::Database::new(&config).map_err(|e| e.to_string())?;
    shared::migrations::run(&db, &config)
        .await
        .map_err(|e| e.to_string())?;
    drop(db);
    let client = testkit::db::connect(url).await;
    let t = Instant::now();
    // Yesterday's counts on every pot; claims spread as in the workload's seed.
    client
        .batch_execute(&format!(
            "INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_day, last_claim_date)
             SELECT 'user-' || lpad(i::text, 7, '0'), (i * 37) % 500, 1 + i % 7,
                    (now() AT TIME ZONE 'UTC')::date - 1,
                    CASE i % 4 WHEN 0 THEN NULL
                               WHEN 1 THEN (now() AT TIME ZONE 'UTC')::date - 1
                               ELSE (now() AT TIME ZONE 'UTC')::date - 2 END
             FROM generate_series(0, {POTS} - 1) AS i;
             VACUUM (ANALYZE) daily_pots"
        ))
        .await
        .map_err(e)?;
    let seeded_s = t.elapsed().as_secs_f64();

    // The seed's reset: one statement over the whole table.
    let t = Instant::now();
    let rows = client.execute(LEGACY_RESET, &[]).await.map_err(e)?;
    let legacy_ms = t.elapsed().as_secs_f64() * 1000.0;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM daily_pots WHERE uploads_today > 0",
            &[],
        )
        .await
        .map_err(e)?
        .get(0);

    Ok(json!({
        "pots": POTS,
        "seed_s": round1(seeded_s),
        "legacy_single_update": {
            "sql": LEGACY_RESET,
            "time_ms": round1(legacy_ms),
            "statements": 1,
            "rows_per_statement": rows,
            "longest_statement_ms": round1(legacy_ms),
            "pots_left_with_counts": left,
            "note": "pots never claimed (last_claim_date NULL) keep yesterday's count: the bug api.md fixes",
        },
        // SEAM: shared::reset (branch deploy) is not on main yet.
        "batched_reset": "n/a: shared::reset is not on main yet (branch deploy)",
    }))
}
