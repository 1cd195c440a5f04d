//! What a function reads and opens at start-up: its database connection (timeouts,
//! typed errors, recovery, bounded waits) and the secrets read from Secrets
//! Manager at init. One test binary, to link once.
//!
//! Safe together: each test has its own database, proxies and stand-in Secrets
//! Manager, and passes its environment as a map (no `std::env::set_var`);
//! `secrets_at_init` captures logs for its own thread only (testkit::logs).
//! `secrets_hygiene` is not here: it installs the process's global subscriber,
//! so it stays a test binary of its own (shared/tests/secrets_hygiene.rs).

mod database_connection;
mod secrets_at_init;
