//! Why a function cannot start: one error type for every function's state, each
//! variant naming what is wrong (a missing variable, an unreadable CA file, …).

use crate::auth;
use crate::config::ConfigError;
use crate::db::ConnectorError;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] ConnectorError),
    #[error(transparent)]
    Auth(#[from] auth::InitError),
}
