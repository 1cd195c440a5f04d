//! The scheduled jobs on a real database: the aggregation job and the nightly
//! reset. One test binary, to link once.
//!
//! Safe together: each test works on a database of its own (testkit::TestDb) and
//! nothing here sets process-wide state. The million-pot reset is `#[ignore]`d
//! (bench-sized); it runs alone with
//! `scripts/test -p shared --test jobs -- --ignored --nocapture daily_reset`.

mod aggregation;
mod daily_reset;
