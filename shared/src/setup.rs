//! How every function's state is built, one way for all: the secrets named by ARN
//! are read first, then the database's configuration and connection, then what the
//! function itself needs ([`Setup`]); the first thing missing or malformed stops
//! the start-up, named ([`crate::init::started`]). A function's `main` is then
//! `let app = &setup::start::<T>().await;` and its serve loop.
//!
//! The impls live here, together, rather than beside each type: the list reads as
//! what each function holds across invocations. They are the only way a state is
//! read from an environment (tests and benches too: [`build`], or `T::setup` with a
//! database of their own); each type's `new` takes its parts, the database first.

use crate::aggregate::{AggregateConfig, Aggregation};
use crate::analytics::AnalyticsApp;
use crate::config::{optional, secrets, Env, ProcessEnv};
use crate::credentials::token::Verifier;
use crate::credentials::{AnalyticsKeys, AppKey};
use crate::daily_pot::PotApp;
use crate::db::{Database, DbConfig};
use crate::device::RegisterApp;
use crate::health::HealthApp;
use crate::init::{started, InitError};
use crate::reset::{DailyReset, ResetConfig};
use crate::tiles::TilesApp;
use crate::upload::{UploadApp, UploadConfig};

/// A function's state, from the environment (secrets resolved) and the container's
/// database.
pub trait Setup: Sized {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError>;
}

/// The function's state built from the process environment, or the start-up ended
/// with the reason (see [`started`]).
pub async fn start<T: Setup>() -> T {
    started(async {
        let env = secrets::resolve(&ProcessEnv).await?;
        build(&env)
    })
    .await
}

/// The function's state from an environment whose secrets are resolved already
/// (what [`start`] does after reading them): the database, then [`Setup`].
pub fn build<T: Setup>(env: &dyn Env) -> Result<T, InitError> {
    let db = Database::new(&DbConfig::from_env(env)?)?;
    T::setup(env, db)
}

impl Setup for PotApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(db, Verifier::from_env(env)?))
    }
}

impl Setup for TilesApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(db, Verifier::from_env(env)?))
    }
}

impl Setup for UploadApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(
            db,
            UploadConfig::from_env(env)?,
            AppKey::from_env(env)?,
            Verifier::from_env(env)?,
        ))
    }
}

impl Setup for RegisterApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(
            db,
            AppKey::from_env(env)?,
            Verifier::from_env(env)?,
        ))
    }
}

impl Setup for HealthApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(
            db,
            optional(env, "FIREBASE_PROJECT_ID").is_some(),
        ))
    }
}

impl Setup for AnalyticsApp {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(db, AnalyticsKeys::from_env(env)?))
    }
}

impl Setup for DailyReset {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(db, ResetConfig::from_env(env)?))
    }
}

impl Setup for Aggregation {
    fn setup(env: &dyn Env, db: Database) -> Result<Self, InitError> {
        Ok(Self::new(db, AggregateConfig::from_env(env)?))
    }
}
