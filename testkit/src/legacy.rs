//! The old Node server's statements S1–S9, verbatim (docs/coexistence.md,
//! "The old server's statements": captured from node-postgres while its routes ran), and its
//! routes as it runs them: each statement on its own (autocommit, no transaction),
//! its parameters typed by the server's inference, as node-postgres sends them
//! untyped. Tests run them against our migrated (or rolled-back) database to prove
//! the old server keeps working beside us.

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row};

/// One statement of the old server, with the parameter types PostgreSQL infers for it
/// on the old server's schema (`pg_prepared_statements`, as recorded).
pub struct Statement {
    pub name: &'static str,
    pub sql: &'static str,
    pub params: &'static [Type],
}

/// S1, register: create the device secret or move it to the caller with a new one (plain text).
pub const S1: Statement = Statement {
    name: "S1",
    sql: r#"INSERT INTO device_secrets (device_id, user_id, secret)
           VALUES ($1, $2, $3)
           ON CONFLICT (device_id)
           DO UPDATE SET
             user_id = EXCLUDED.user_id,
             secret = EXCLUDED.secret,
             last_used_at = NOW()"#,
    params: &[Type::VARCHAR, Type::VARCHAR, Type::VARCHAR],
};

/// S2, upload: the secret's owner (plain text comparison).
pub const S2: Statement = Statement {
    name: "S2",
    sql: r#"SELECT user_id FROM device_secrets WHERE secret = $1"#,
    params: &[Type::TEXT],
};

/// S3, upload: the secret's last use.
pub const S3: Statement = Statement {
    name: "S3",
    sql: r#"UPDATE device_secrets SET last_used_at = NOW() WHERE secret = $1"#,
    params: &[Type::TEXT],
};

/// S4, upload: the batch, a plain INSERT with no conflict handling.
pub const S4: Statement = Statement {
    name: "S4",
    sql: r#"INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id) VALUES ($1, $2, $3::jsonb, $4)"#,
    params: &[Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB, Type::TEXT],
};

/// S5, upload: the device's stats.
pub const S5: Statement = Statement {
    name: "S5",
    sql: r#"INSERT INTO user_stats (
      device_hash, samples_count, valid_samples, pocket_samples, uptime_seconds, last_upload_at, user_id
    ) VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (device_hash)
    DO UPDATE SET
      samples_count = user_stats.samples_count + EXCLUDED.samples_count,
      valid_samples = user_stats.valid_samples + EXCLUDED.valid_samples,
      pocket_samples = user_stats.pocket_samples + EXCLUDED.pocket_samples,
      uptime_seconds = user_stats.uptime_seconds + EXCLUDED.uptime_seconds,
      last_upload_at = GREATEST(user_stats.last_upload_at, EXCLUDED.last_upload_at),
      user_id = COALESCE(EXCLUDED.user_id, user_stats.user_id), -- Update user_id if provided
      updated_at = NOW()"#,
    params: &[
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
    ],
};

/// S6, GET /daily-pot: the pot, created on first sight.
pub const S6: Statement = Statement {
    name: "S6",
    sql: r#"INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_required, last_claim_date)
VALUES ($1, 0, 0, 5, NULL)
ON CONFLICT (user_id) DO UPDATE SET user_id = $1
RETURNING
  user_id,
  total_credits,
  uploads_today,
  uploads_required,
  CASE
    WHEN uploads_today >= uploads_required THEN true
    ELSE false
  END as is_unlocked,
  CASE
    WHEN last_claim_date = CURRENT_DATE THEN true
    ELSE false
  END as has_claimed_today,
  CASE
    WHEN last_claim_date IS NOT NULL THEN TO_CHAR(last_claim_date, 'YYYY-MM-DD')
    ELSE NULL
  END as last_claim_date"#,
    params: &[Type::TEXT],
};

/// S7, POST /daily-pot/upload: one more upload counted.
pub const S7: Statement = Statement {
    name: "S7",
    sql: r#"INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_required, last_claim_date)
VALUES ($1, 0, 1, 5, NULL)
ON CONFLICT (user_id) DO UPDATE SET
  uploads_today = CASE
    -- New day since last claim: reset to 1
    WHEN daily_pots.last_claim_date < CURRENT_DATE
    THEN 1
    -- Same day as claim, increment if not yet at required amount
    WHEN daily_pots.last_claim_date = CURRENT_DATE AND daily_pots.uploads_today < daily_pots.uploads_required
    THEN daily_pots.uploads_today + 1
    -- Never claimed before: check if new day since last update
    WHEN daily_pots.last_claim_date IS NULL AND DATE(daily_pots.updated_at) < CURRENT_DATE
    THEN 1
    -- Never claimed and same day: increment
    WHEN daily_pots.last_claim_date IS NULL
    THEN daily_pots.uploads_today + 1
    -- Default: keep current value (shouldn't happen)
    ELSE daily_pots.uploads_today
  END
RETURNING
  user_id,
  total_credits,
  uploads_today,
  uploads_required,
  CASE
    WHEN uploads_today >= uploads_required THEN true
    ELSE false
  END as is_unlocked,
  CASE
    WHEN last_claim_date = CURRENT_DATE THEN true
    ELSE false
  END as has_claimed_today,
  CASE
    WHEN last_claim_date IS NOT NULL THEN TO_CHAR(last_claim_date, 'YYYY-MM-DD')
    ELSE NULL
  END as last_claim_date"#,
    params: &[Type::TEXT],
};

/// S8, claim: the pot, read.
pub const S8: Statement = Statement {
    name: "S8",
    sql: r#"SELECT
  user_id,
  total_credits,
  uploads_today,
  uploads_required,
  CASE
    WHEN uploads_today >= uploads_required THEN true
    ELSE false
  END as is_unlocked,
  CASE
    WHEN last_claim_date = CURRENT_DATE THEN true
    ELSE false
  END as has_claimed_today,
  CASE
    WHEN last_claim_date IS NOT NULL THEN TO_CHAR(last_claim_date, 'YYYY-MM-DD')
    ELSE NULL
  END as last_claim_date
FROM daily_pots
WHERE user_id = $1"#,
    params: &[Type::TEXT],
};

/// S9, claim: the pot, paid (no lock since S8).
pub const S9: Statement = Statement {
    name: "S9",
    sql: r#"UPDATE daily_pots
SET
  total_credits = total_credits + $2,
  last_claim_date = CURRENT_DATE,
  uploads_today = 0
WHERE user_id = $1
RETURNING
  user_id,
  total_credits,
  uploads_today,
  uploads_required,
  CASE
    WHEN uploads_today >= uploads_required THEN true
    ELSE false
  END as is_unlocked,
  CASE
    WHEN last_claim_date = CURRENT_DATE THEN true
    ELSE false
  END as has_claimed_today,
  CASE
    WHEN last_claim_date IS NOT NULL THEN TO_CHAR(last_claim_date, 'YYYY-MM-DD')
    ELSE NULL
  END as last_claim_date,
  $2::integer as claimed_amount"#,
    params: &[Type::TEXT, Type::INT4],
};

/// Runs `statement` as node-postgres does: the server infers the parameter types
/// (an unnamed statement, prepared without types). Panics when it now infers other
/// types than on the old schema: a migration would have changed the statement's
/// meaning for the old server.
pub async fn run(
    client: &Client,
    statement: &Statement,
    values: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    let prepared = client.prepare(statement.sql).await?;
    assert_eq!(
        prepared.params(),
        statement.params,
        "{}: the server infers other parameter types than on the old schema",
        statement.name
    );
    client.query(&prepared, values).await
}

/// The seed's own first step, `backend/db/20260113_remove_redundant_index.sql`
/// (file name, content verbatim), which the old server's runner applies at start-up.
pub const REMOVE_REDUNDANT_INDEX: (&str, &str) = (
    shared::migrations::legacy_shape::SEED_FILE,
    "-- Remove redundant index (user_id is already PRIMARY KEY)
DROP INDEX IF EXISTS idx_daily_pots_user_id;

-- Verify remaining indexes are optimal
COMMENT ON INDEX idx_daily_pots_last_claim IS 'Index for daily reset queries and claim eligibility checks';
",
);

/// The shapes the old server's schema may come to us in (docs/coexistence.md, "The live
/// database"): the fixture's, with the seed's first step applied by the old server's
/// runner, or with the redundant index dropped by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Fixture,
    SeedApplied,
    IndexDroppedByHand,
}

impl Variant {
    pub const ALL: [Self; 3] = [Self::Fixture, Self::SeedApplied, Self::IndexDroppedByHand];

    /// Turns the fixture's database at `url` into this variant.
    pub async fn make(self, url: &str) {
        let old = OldServer::connect(url).await;
        match self {
            Self::Fixture => {}
            Self::SeedApplied => {
                let (file, sql) = REMOVE_REDUNDANT_INDEX;
                old.apply_file(file, sql)
                    .await
                    .expect("the seed's file applies");
            }
            Self::IndexDroppedByHand => old
                .client
                .batch_execute("DROP INDEX idx_daily_pots_user_id")
                .await
                .expect("the index drops"),
        }
    }
}

/// A pot as the old server answers it (S6–S9's RETURNING columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldPot {
    pub user_id: String,
    pub total_credits: i32,
    pub uploads_today: i32,
    pub uploads_required: i32,
    pub is_unlocked: bool,
    pub has_claimed_today: bool,
    pub last_claim_date: Option<String>,
}

impl OldPot {
    fn from_row(row: &Row) -> Self {
        Self {
            user_id: row.get("user_id"),
            total_credits: row.get("total_credits"),
            uploads_today: row.get("uploads_today"),
            uploads_required: row.get("uploads_required"),
            is_unlocked: row.get("is_unlocked"),
            has_claimed_today: row.get("has_claimed_today"),
            last_claim_date: row.get("last_claim_date"),
        }
    }
}

/// What the old claim route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldClaim {
    /// 400 "Daily pot not initialized".
    NotInitialized,
    /// 400 "Daily pot not unlocked yet".
    NotUnlocked,
    /// 409 "Already claimed today".
    AlreadyClaimed,
    /// 200, with the amount.
    Claimed(OldPot, i32),
}

/// A batch as the old upload route stores it (S4 and S5's values).
#[derive(Debug, Clone)]
pub struct OldBatch {
    pub device_hash: String,
    pub timestamp: DateTime<Utc>,
    pub batch_json: serde_json::Value,
    pub samples: i64,
    pub valid: i64,
    pub pocket: i64,
    pub uptime_seconds: i64,
}

/// What the old upload route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldUpload {
    /// 401 "Invalid Device Secret": S2 found nothing.
    InvalidSecret,
    /// 202, stored for this user (or anonymously).
    Stored { user: Option<String> },
}

/// Who the old upload route stores a batch for.
pub enum OldSender<'a> {
    /// `X-Device-Secret`, matched as plain text (S2, then S3).
    Secret(&'a str),
    /// A verified bearer token's user.
    User(&'a str),
    Anonymous,
}

/// The old server's routes, statement by statement, on a connection of its own.
pub struct OldServer {
    pub client: Client,
}

impl OldServer {
    pub async fn connect(url: &str) -> Self {
        Self {
            client: crate::db::connect(url).await,
        }
    }

    /// The start-up runner applying a `backend/db` file it has not recorded yet: the
    /// file as one simple query and its record, in one transaction.
    pub async fn apply_file(&self, filename: &str, sql: &str) -> Result<(), Error> {
        self.client.batch_execute("BEGIN").await?;
        let applied = async {
            self.client.batch_execute(sql).await?;
            self.client
                .execute(
                    "INSERT INTO schema_migrations (filename) VALUES ($1)",
                    &[&filename],
                )
                .await
        }
        .await;
        match applied {
            Ok(_) => self.client.batch_execute("COMMIT").await,
            Err(e) => {
                self.client.batch_execute("ROLLBACK").await?;
                Err(e)
            }
        }
    }

    /// POST /register-device after its token check: S1.
    pub async fn register(&self, device_id: &str, user: &str, secret: &str) -> Result<(), Error> {
        run(&self.client, &S1, &[&device_id, &user, &secret]).await?;
        Ok(())
    }

    /// S2: the user a plain secret belongs to, if any (the first row, as the route).
    pub async fn owner_of(&self, secret: &str) -> Result<Option<String>, Error> {
        let rows = run(&self.client, &S2, &[&secret]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// POST /upload: S2 and S3 for a secret, then S4 and S5.
    pub async fn upload(
        &self,
        sender: OldSender<'_>,
        batch: &OldBatch,
    ) -> Result<OldUpload, Error> {
        let user = match sender {
            OldSender::Secret(secret) => match self.owner_of(secret).await? {
                None => return Ok(OldUpload::InvalidSecret),
                Some(user) => {
                    run(&self.client, &S3, &[&secret]).await?;
                    Some(user)
                }
            },
            OldSender::User(user) => Some(user.to_string()),
            OldSender::Anonymous => None,
        };
        run(
            &self.client,
            &S4,
            &[
                &batch.device_hash,
                &batch.timestamp,
                &batch.batch_json,
                &user,
            ],
        )
        .await?;
        run(
            &self.client,
            &S5,
            &[
                &batch.device_hash,
                &batch.samples,
                &batch.valid,
                &batch.pocket,
                &batch.uptime_seconds,
                &batch.timestamp,
                &user,
            ],
        )
        .await?;
        Ok(OldUpload::Stored { user })
    }

    /// GET /daily-pot: S6.
    pub async fn get_pot(&self, user: &str) -> Result<OldPot, Error> {
        let rows = run(&self.client, &S6, &[&user]).await?;
        Ok(OldPot::from_row(&rows[0]))
    }

    /// POST /daily-pot/upload: S7.
    pub async fn count_upload(&self, user: &str) -> Result<OldPot, Error> {
        let rows = run(&self.client, &S7, &[&user]).await?;
        Ok(OldPot::from_row(&rows[0]))
    }

    /// POST /daily-pot/claim: S8, then S9 when S8 allows it.
    pub async fn claim(&self, user: &str, amount: i32) -> Result<OldClaim, Error> {
        let rows = run(&self.client, &S8, &[&user]).await?;
        let Some(row) = rows.first() else {
            return Ok(OldClaim::NotInitialized);
        };
        let pot = OldPot::from_row(row);
        if !pot.is_unlocked {
            return Ok(OldClaim::NotUnlocked);
        }
        if pot.has_claimed_today {
            return Ok(OldClaim::AlreadyClaimed);
        }
        let rows = run(&self.client, &S9, &[&user, &amount]).await?;
        let claimed: i32 = rows[0].get("claimed_amount");
        Ok(OldClaim::Claimed(OldPot::from_row(&rows[0]), claimed))
    }
}

/// Every row of the old server's tables, its own columns only (what our migrations
/// add is left out), as text, sorted: two equal results mean no row of the old
/// server's was lost, added or changed. Duplicate rows count twice.
pub async fn rows(client: &Client) -> std::collections::BTreeMap<String, Vec<String>> {
    use shared::migrations::legacy_shape::{LEGACY, LEGACY_TABLES};
    let mut out = std::collections::BTreeMap::new();
    for table in LEGACY_TABLES {
        let prefix = format!("column {table}.");
        let mut columns: Vec<(u32, &str)> = LEGACY
            .iter()
            .filter_map(|(key, value)| {
                let column = key.strip_prefix(&prefix)?;
                let position = value.strip_prefix('#')?.split(' ').next()?.parse().ok()?;
                Some((position, column))
            })
            .collect();
        columns.sort();
        let list: Vec<&str> = columns.iter().map(|(_, c)| *c).collect();
        let sql = format!(
            "SELECT jsonb_build_array({})::text AS r FROM {table} ORDER BY r",
            list.join(", ")
        );
        let found = client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.insert(table.to_string(), found);
    }
    out
}

/// Every row of every table of the `public` schema, all columns, as text, sorted by
/// table: for databases whose schema may not be the old server's.
pub async fn every_row(client: &Client) -> Vec<String> {
    let tables: Vec<String> = client
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let rows = client
            .query(
                &format!("SELECT to_jsonb(t)::text AS r FROM {table} t ORDER BY r"),
                &[],
            )
            .await
            .expect("read rows");
        out.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<_, String>(0))),
        );
    }
    out
}
