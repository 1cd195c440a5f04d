//! The daily-pot routes on a test database: an app on a fresh database trusting a
//! local key server, and pots inserted in a given state.

use shared::daily_pot::PotApp;
use shared::db::Database;

use crate::keys::KeyServer;
use crate::TestDb;

pub struct Setup {
    pub db: TestDb,
    pub keys: KeyServer,
    pub app: PotApp,
}

pub async fn setup() -> Setup {
    setup_with(&[]).await
}

/// `db_env`: extra database variables (e.g. a low statement timeout).
pub async fn setup_with(db_env: &[(&str, &str)]) -> Setup {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(Database::new(&db.config(db_env)).unwrap(), keys.verifier());
    Setup { db, keys, app }
}

/// A pot for `user`: uploads counted `uploads_days_ago` days ago, last claimed
/// `claimed_days_ago` days ago (or never).
pub async fn insert_pot(
    db: &TestDb,
    user: &str,
    credits: i32,
    uploads: i32,
    uploads_days_ago: i32,
    claimed_days_ago: Option<i32>,
) {
    db.client()
        .await
        .execute(
            "INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_day, last_claim_date)
             VALUES ($1, $2, $3, (now() AT TIME ZONE 'UTC')::date - $4::int4,
                     (now() AT TIME ZONE 'UTC')::date - $5::int4)",
            &[&user, &credits, &uploads, &uploads_days_ago, &claimed_days_ago],
        )
        .await
        .unwrap();
}
