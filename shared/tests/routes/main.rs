//! The routes through their real handlers on a real database: the daily pot (get
//! and claim), register-device, upload, the user's tiles, health and analytics,
//! and the request ids on every log line of an invocation. One test binary, to
//! link once.
//!
//! Safe together: each test works on a database of its own (testkit::TestDb) and
//! its own local key server. `telemetry_request_ids` is the one file that sets
//! something process-wide: the `log` -> `tracing` bridge (as production does) and
//! the open invocation of shared::telemetry, which only its own spans set. Log
//! records then reach the subscriber of the thread that wrote them, so the only
//! other capture here, `health`'s (testkit::logs, its own thread), sees its own
//! lines as before and asserts only that its line is there.

mod analytics;
mod daily_pot_claim;
mod daily_pot_get;
mod health;
mod register_device;
mod telemetry_request_ids;
mod upload_auth;
mod upload_replay;
mod upload_storage;
mod upload_validation;
mod user_tiles;
