//! The schema and what runs on it: migrations, their progress reports, rollback,
//! the cut-over, the old server's statements beside ours, the database roles, and
//! the statements each request sends. One test binary, to link once.
//!
//! Safe together: every test works on a database of its own (testkit::TestDb);
//! the roles they create are named at random, and a wait on `pg_stat_activity`
//! looks at its own database only. `migrate_progress` captures logs for its own
//! thread (testkit::logs), nothing process-wide.

mod both_sides;

mod coexistence;
mod cutover;
mod database_roles;
mod db_statements;
mod migrate_progress;
mod migrations;
mod rollback;
