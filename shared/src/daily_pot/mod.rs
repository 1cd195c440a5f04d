//! The daily pot: users who upload enough in a UTC day unlock credits they can
//! claim once that day (docs/api.md, "GET /daily-pot", "POST /daily-pot/claim").
//!
//! [`get::handle`] answers `GET /daily-pot` and the compatibility route `POST
//! /daily-pot/upload`; [`claim::handle`] answers `POST /daily-pot/claim`. Both use
//! one [`PotApp`], built once per container.

pub mod claim;
pub mod get;
mod pot;
pub mod queries;

pub use pot::DailyPot;

use crate::credentials::token::Verifier;
use crate::db::Database;

/// What the daily-pot functions (get-daily-pot, claim-daily-pot) hold across
/// invocations.
pub struct PotApp {
    pub db: Database,
    pub verifier: Verifier,
}

impl PotApp {
    pub fn new(db: Database, verifier: Verifier) -> Self {
        Self { db, verifier }
    }
}
