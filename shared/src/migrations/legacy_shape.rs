//! The old server's schema as facts (what `testkit/fixtures/legacy-database.sql`,
//! the live system's copy, creates; a test keeps the two equal), and what each of
//! our migrations changes in it.

use super::facts::Difference;

/// The old server's tables: all of them are judged by the shape check.
pub const LEGACY_TABLES: &[&str] = &[
    "daily_pots",
    "device_secrets",
    "schema_migrations",
    "sensor_aggregates_5m",
    "sensor_aggregates_daily",
    "sensor_batches",
    "user_stats",
];

/// Every fact of the old server's schema (see [`super::shape::dump`]), in its order.
#[rustfmt::skip]
pub const LEGACY: &[(&str, &str)] = &[
    ("column daily_pots.created_at", "#6 timestamp without time zone NOT NULL DEFAULT now()"),
    ("column daily_pots.last_claim_date", "#5 date"),
    ("column daily_pots.total_credits", "#2 integer NOT NULL DEFAULT 0"),
    ("column daily_pots.updated_at", "#7 timestamp without time zone NOT NULL DEFAULT now()"),
    ("column daily_pots.uploads_required", "#4 integer NOT NULL DEFAULT 5"),
    ("column daily_pots.uploads_today", "#3 integer NOT NULL DEFAULT 0"),
    ("column daily_pots.user_id", "#1 text NOT NULL"),
    ("column device_secrets.created_at", "#4 timestamp with time zone DEFAULT now()"),
    ("column device_secrets.device_id", "#1 character varying(128) NOT NULL"),
    ("column device_secrets.last_used_at", "#5 timestamp with time zone DEFAULT now()"),
    ("column device_secrets.secret", "#3 character varying(64) NOT NULL"),
    ("column device_secrets.user_id", "#2 character varying(128) NOT NULL"),
    ("column schema_migrations.applied_at", "#2 timestamp without time zone NOT NULL DEFAULT now()"),
    ("column schema_migrations.filename", "#1 text NOT NULL"),
    ("column sensor_aggregates_5m.avg_accel_rms", "#9 double precision"),
    ("column sensor_aggregates_5m.avg_gyro_rms", "#10 double precision"),
    ("column sensor_aggregates_5m.avg_light", "#6 double precision"),
    ("column sensor_aggregates_5m.avg_light_max", "#8 double precision"),
    ("column sensor_aggregates_5m.avg_light_min", "#7 double precision"),
    ("column sensor_aggregates_5m.battery_avg", "#12 double precision"),
    ("column sensor_aggregates_5m.created_at", "#14 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column sensor_aggregates_5m.device_count", "#5 integer NOT NULL"),
    ("column sensor_aggregates_5m.geohash", "#3 text NOT NULL"),
    ("column sensor_aggregates_5m.location_share", "#13 double precision"),
    ("column sensor_aggregates_5m.movement_score", "#11 double precision"),
    ("column sensor_aggregates_5m.quality_pocket_ratio", "#18 double precision"),
    ("column sensor_aggregates_5m.quality_samples", "#16 bigint NOT NULL DEFAULT 0"),
    ("column sensor_aggregates_5m.quality_valid_ratio", "#17 double precision"),
    ("column sensor_aggregates_5m.samples_count", "#4 integer NOT NULL"),
    ("column sensor_aggregates_5m.updated_at", "#15 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column sensor_aggregates_5m.window_end", "#2 timestamp with time zone NOT NULL"),
    ("column sensor_aggregates_5m.window_start", "#1 timestamp with time zone NOT NULL"),
    ("column sensor_aggregates_daily.avg_accel_rms", "#8 double precision"),
    ("column sensor_aggregates_daily.avg_gyro_rms", "#9 double precision"),
    ("column sensor_aggregates_daily.avg_light", "#5 double precision"),
    ("column sensor_aggregates_daily.avg_light_max", "#7 double precision"),
    ("column sensor_aggregates_daily.avg_light_min", "#6 double precision"),
    ("column sensor_aggregates_daily.battery_avg", "#11 double precision"),
    ("column sensor_aggregates_daily.created_at", "#14 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column sensor_aggregates_daily.day", "#1 date NOT NULL"),
    ("column sensor_aggregates_daily.device_count", "#4 integer NOT NULL"),
    ("column sensor_aggregates_daily.device_hours", "#13 double precision"),
    ("column sensor_aggregates_daily.geohash", "#2 text NOT NULL"),
    ("column sensor_aggregates_daily.location_share", "#12 double precision"),
    ("column sensor_aggregates_daily.movement_score", "#10 double precision"),
    ("column sensor_aggregates_daily.quality_pocket_ratio", "#18 double precision"),
    ("column sensor_aggregates_daily.quality_samples", "#16 bigint NOT NULL DEFAULT 0"),
    ("column sensor_aggregates_daily.quality_valid_ratio", "#17 double precision"),
    ("column sensor_aggregates_daily.samples_count", "#3 bigint NOT NULL"),
    ("column sensor_aggregates_daily.updated_at", "#15 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column sensor_batches.batch_json", "#3 jsonb NOT NULL"),
    ("column sensor_batches.device_hash", "#1 text NOT NULL"),
    ("column sensor_batches.timestamp_utc", "#2 timestamp with time zone NOT NULL"),
    ("column sensor_batches.user_id", "#4 text"),
    ("column user_stats.created_at", "#7 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column user_stats.device_hash", "#1 text NOT NULL"),
    ("column user_stats.last_upload_at", "#6 timestamp with time zone"),
    ("column user_stats.pocket_samples", "#4 bigint NOT NULL DEFAULT 0"),
    ("column user_stats.samples_count", "#2 bigint NOT NULL DEFAULT 0"),
    ("column user_stats.updated_at", "#8 timestamp with time zone NOT NULL DEFAULT now()"),
    ("column user_stats.uptime_seconds", "#5 bigint NOT NULL DEFAULT 0"),
    ("column user_stats.user_id", "#9 text"),
    ("column user_stats.valid_samples", "#3 bigint NOT NULL DEFAULT 0"),
    ("constraint daily_pots.daily_pots_pkey", "PRIMARY KEY (user_id)"),
    ("constraint device_secrets.device_secrets_pkey", "PRIMARY KEY (device_id)"),
    ("constraint schema_migrations.schema_migrations_pkey", "PRIMARY KEY (filename)"),
    ("constraint sensor_aggregates_5m.sensor_aggregates_5m_pkey", "PRIMARY KEY (window_start, geohash)"),
    ("constraint sensor_aggregates_daily.sensor_aggregates_daily_pkey", "PRIMARY KEY (day, geohash)"),
    ("constraint user_stats.user_stats_pkey", "PRIMARY KEY (device_hash)"),
    ("function update_daily_pots_timestamp()", "plpgsql returns trigger: BEGIN NEW.updated_at = NOW(); RETURN NEW; END;"),
    ("index daily_pots.daily_pots_pkey", "CREATE UNIQUE INDEX daily_pots_pkey ON public.daily_pots USING btree (user_id)"),
    ("index daily_pots.idx_daily_pots_last_claim", "CREATE INDEX idx_daily_pots_last_claim ON public.daily_pots USING btree (last_claim_date)"),
    ("index daily_pots.idx_daily_pots_user_id", "CREATE INDEX idx_daily_pots_user_id ON public.daily_pots USING btree (user_id)"),
    ("index device_secrets.device_secrets_pkey", "CREATE UNIQUE INDEX device_secrets_pkey ON public.device_secrets USING btree (device_id)"),
    ("index device_secrets.idx_device_secrets_secret", "CREATE INDEX idx_device_secrets_secret ON public.device_secrets USING btree (secret)"),
    ("index schema_migrations.schema_migrations_pkey", "CREATE UNIQUE INDEX schema_migrations_pkey ON public.schema_migrations USING btree (filename)"),
    ("index sensor_aggregates_5m.idx_sensor_aggregates_5m_geohash", "CREATE INDEX idx_sensor_aggregates_5m_geohash ON public.sensor_aggregates_5m USING btree (geohash)"),
    ("index sensor_aggregates_5m.idx_sensor_aggregates_5m_window", "CREATE INDEX idx_sensor_aggregates_5m_window ON public.sensor_aggregates_5m USING btree (window_start)"),
    ("index sensor_aggregates_5m.sensor_aggregates_5m_pkey", "CREATE UNIQUE INDEX sensor_aggregates_5m_pkey ON public.sensor_aggregates_5m USING btree (window_start, geohash)"),
    ("index sensor_aggregates_daily.idx_sensor_aggregates_daily_geohash", "CREATE INDEX idx_sensor_aggregates_daily_geohash ON public.sensor_aggregates_daily USING btree (geohash)"),
    ("index sensor_aggregates_daily.sensor_aggregates_daily_pkey", "CREATE UNIQUE INDEX sensor_aggregates_daily_pkey ON public.sensor_aggregates_daily USING btree (day, geohash)"),
    ("index sensor_batches.idx_sensor_batches_device", "CREATE INDEX idx_sensor_batches_device ON public.sensor_batches USING btree (device_hash, timestamp_utc DESC)"),
    ("index sensor_batches.idx_sensor_batches_json_geohash", "CREATE INDEX idx_sensor_batches_json_geohash ON public.sensor_batches USING gin (((batch_json -> 'geohash'::text)))"),
    ("index sensor_batches.idx_sensor_batches_json_paths", "CREATE INDEX idx_sensor_batches_json_paths ON public.sensor_batches USING gin (batch_json jsonb_path_ops)"),
    ("index sensor_batches.idx_sensor_batches_location", "CREATE INDEX idx_sensor_batches_location ON public.sensor_batches USING gin (((batch_json -> 'location'::text)))"),
    ("index sensor_batches.idx_sensor_batches_timestamp", "CREATE INDEX idx_sensor_batches_timestamp ON public.sensor_batches USING btree (timestamp_utc DESC)"),
    ("index sensor_batches.idx_sensor_batches_user_id", "CREATE INDEX idx_sensor_batches_user_id ON public.sensor_batches USING btree (user_id)"),
    ("index sensor_batches.idx_sensor_batches_user_time", "CREATE INDEX idx_sensor_batches_user_time ON public.sensor_batches USING btree (user_id, timestamp_utc DESC)"),
    ("index user_stats.idx_user_stats_user_id", "CREATE INDEX idx_user_stats_user_id ON public.user_stats USING btree (user_id)"),
    ("index user_stats.user_stats_last_upload_idx", "CREATE INDEX user_stats_last_upload_idx ON public.user_stats USING btree (last_upload_at DESC)"),
    ("index user_stats.user_stats_pkey", "CREATE UNIQUE INDEX user_stats_pkey ON public.user_stats USING btree (device_hash)"),
    ("table daily_pots", "table"),
    ("table device_secrets", "table"),
    ("table schema_migrations", "table"),
    ("table sensor_aggregates_5m", "table"),
    ("table sensor_aggregates_daily", "table"),
    ("table sensor_batches", "table"),
    ("table user_stats", "table"),
    ("trigger daily_pots.daily_pots_updated_at", "CREATE TRIGGER daily_pots_updated_at BEFORE UPDATE ON public.daily_pots FOR EACH ROW EXECUTE FUNCTION update_daily_pots_timestamp()"),
];

/// Facts a migration of ours adds to the old server's tables (present once it ran).
const ADDED: &[(u32, &str)] = &[
    (2, "comment on index daily_pots.idx_daily_pots_last_claim"),
    (3, "column daily_pots.uploads_day"),
    (3, "trigger daily_pots.daily_pots_stamp_uploads_day"),
    (6, "column sensor_batches.received_xid"),
    (7, "index sensor_batches.idx_sensor_batches_received_xid"),
    (
        8,
        "index sensor_aggregates_5m.sensor_aggregates_5m_geohash_prefix",
    ),
    (12, "trigger sensor_batches.user_tiles_on_change"),
    (12, "trigger sensor_batches.user_tiles_on_insert"),
    (12, "trigger sensor_batches.user_tiles_on_truncate"),
];

/// Facts of the old server's schema a migration of ours drops (absent once it ran).
const DROPPED: &[(u32, &str)] = &[
    (2, "index daily_pots.idx_daily_pots_user_id"),
    (5, "index sensor_batches.idx_sensor_batches_json_geohash"),
    (5, "index sensor_batches.idx_sensor_batches_json_paths"),
    (5, "index sensor_batches.idx_sensor_batches_location"),
];

/// The seed's own first step, which V2 repeats. The old server's runner applies it at
/// start-up (and lists it in `schema_migrations`), or an operator dropped the index by
/// hand: the old server's schema with any of its changes made is adopted too (docs/coexistence.md,
/// "The live database"), and the rollback gives back what was found (`found`).
pub const SEED_FILE: &str = "20260113_remove_redundant_index.sql";

/// What [`SEED_FILE`] changes: the fact it drops, and the one it adds with its value.
const SEED_DROPS: &str = "index daily_pots.idx_daily_pots_user_id";
const SEED_ADDS: (&str, &str) = (
    "comment on index daily_pots.idx_daily_pots_last_claim",
    "Index for daily reset queries and claim eligibility checks",
);

/// Whether `difference` is a change of the seed's file (made before V2, or by it).
pub fn made_by_the_seed(difference: &Difference) -> bool {
    match difference {
        Difference::Missing { key, .. } => key == SEED_DROPS,
        Difference::Unexpected { key, found } => (key.as_str(), found.as_str()) == SEED_ADDS,
        Difference::Changed { .. } => false,
    }
}

/// Whether a fact of the catalog is the old server's (a fact of its tables, or one of
/// its functions): the shape check judges these, and `found` records them.
pub fn is_old_servers(key: &str) -> bool {
    table_of(key).is_some_and(|t| LEGACY_TABLES.contains(&t))
        || LEGACY.iter().any(|(k, _)| *k == key)
}

/// Whether `difference` is what our migrations up to `applied_version` made. Before
/// a migration ran, what it would add or drop is a real difference.
///
/// A migration that runs outside a transaction (a concurrent index build) can stop
/// half-way, leaving what it adds (an INVALID index, or a valid one not yet
/// recorded): that is expected of the next one too, which `migrate` resumes.
pub fn ours(difference: &Difference, applied_version: u32) -> bool {
    let resumable = |v: u32| v == applied_version + 1 && super::files::runs_without_transaction(v);
    let made_by = |list: &[(u32, &str)]| {
        list.iter()
            .any(|(v, key)| (*v <= applied_version || resumable(*v)) && *key == difference.key())
    };
    match difference {
        Difference::Unexpected { .. } => made_by(ADDED),
        Difference::Missing { .. } => made_by(DROPPED),
        Difference::Changed { .. } => false,
    }
}

/// The table a fact is about (`None` for functions).
pub fn table_of(key: &str) -> Option<&str> {
    let object = key.strip_prefix("comment on ").unwrap_or(key);
    let (kind, name) = object.split_once(' ')?;
    match kind {
        "table" => Some(name),
        "column" | "index" | "constraint" | "trigger" => name.split_once('.').map(|(t, _)| t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_names_its_table() {
        assert_eq!(table_of("table daily_pots"), Some("daily_pots"));
        assert_eq!(table_of("column daily_pots.user_id"), Some("daily_pots"));
        assert_eq!(
            table_of("comment on index daily_pots.idx_daily_pots_last_claim"),
            Some("daily_pots")
        );
        assert_eq!(table_of("function update_daily_pots_timestamp()"), None);
    }

    #[test]
    fn what_a_migration_adds_is_expected_only_once_it_ran() {
        let column = Difference::Unexpected {
            key: "column daily_pots.uploads_day".into(),
            found: "#8 date".into(),
        };
        assert!(!ours(&column, 2));
        assert!(ours(&column, 3));
        let index = Difference::Missing {
            key: "index daily_pots.idx_daily_pots_user_id".into(),
            expected: "CREATE INDEX …".into(),
        };
        assert!(!ours(&index, 1));
        assert!(ours(&index, 2));
    }

    #[test]
    fn the_seeds_changes_are_its_own_and_its_comment_only_with_its_text() {
        let index = Difference::Missing {
            key: "index daily_pots.idx_daily_pots_user_id".into(),
            expected: "CREATE INDEX …".into(),
        };
        let comment = |found: &str| Difference::Unexpected {
            key: "comment on index daily_pots.idx_daily_pots_last_claim".into(),
            found: found.into(),
        };
        assert!(made_by_the_seed(&index));
        assert!(made_by_the_seed(&comment(
            "Index for daily reset queries and claim eligibility checks"
        )));
        assert!(!made_by_the_seed(&comment("something else")));
        assert!(!made_by_the_seed(&Difference::Missing {
            key: "index daily_pots.idx_daily_pots_last_claim".into(),
            expected: "CREATE INDEX …".into(),
        }));
    }

    #[test]
    fn what_a_migration_outside_a_transaction_changes_is_expected_while_it_is_next() {
        // V5 drops its indexes one statement at a time: one that stopped half-way
        // leaves some dropped, and the next `migrate` resumes it.
        let index = Difference::Missing {
            key: "index sensor_batches.idx_sensor_batches_json_paths".into(),
            expected: "CREATE INDEX …".into(),
        };
        assert!(!ours(&index, 3));
        assert!(ours(&index, 4));
        assert!(ours(&index, 5));
    }
}
