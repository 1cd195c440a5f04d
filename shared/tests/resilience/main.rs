//! What the handlers must survive: hostile input at every route, the fuzz targets
//! replayed on stable, faults of the database and of the key server, and load.
//! One test binary, to link once.
//!
//! Safe together: each test has its own database (only its own backends are
//! terminated), its own key servers and forwarders; nothing here sets
//! process-wide state (`hostile_fuzz_replay` only reads FUZZ_REPLAY_ITERATIONS).
//! A longer fuzz replay:
//! `FUZZ_REPLAY_ITERATIONS=1000000 cargo test -p shared --test resilience hostile_fuzz_replay`.

mod hostile_fuzz_replay;
mod hostile_input;
mod reliability_faults;
mod reliability_load;
