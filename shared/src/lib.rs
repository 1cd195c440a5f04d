//! What every daily-pot Lambda function shares.
//!
//! - [`config`]: the environment, read once at start-up, and [`config::secrets`], the
//!   secret variables, from Secrets Manager at start-up when deployed;
//! - [`db`]: the container's PostgreSQL connection ([`db::DbConfig`]) and named queries;
//! - [`migrations`], [`audit`]: the schema and its health reports;
//! - [`credentials`]: every credential a request can carry (app key, device
//!   secret, analytics keys, Firebase ID tokens) and how each is checked;
//! - [`daily_pot`]: the daily-pot routes' handlers;
//! - [`http`]: typed failures and their HTTP answers; [`init`]: start-up errors;
//! - [`error_chain`]: an error and its causes on one line;
//! - [`failure`]: a failure as an operator reads it (`errorType` and words);
//! - [`reset`]: the nightly reset of daily upload counts;
//! - [`runtime`]: where every function meets the Lambda runtime;
//! - [`setup`]: every function's state, built one way;
//! - [`aggregate`]: the aggregation job (5-minute and daily sensor aggregates);
//! - [`analytics`]: the analytics API over them, behind keys of its own;
//! - [`health`]: `GET /health`, whether the database answers;
//! - [`job`]: what the scheduled jobs share;
//! - [`json`]: request bodies read strictly (a key named twice is refused), and
//!   numbers written as JavaScript writes them;
//! - [`telemetry`]: logs and metrics;
//! - [`text`]: checks every free-text field shares;
//! - [`tiles`]: `GET /api/user/tiles`, the app's coverage map;
//! - [`upload`], [`device`]: `POST /upload` and `POST /register-device`.

pub mod aggregate;
pub mod analytics;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod daily_pot;
pub mod db;
pub mod device;
pub mod error_chain;
pub mod failure;
pub mod health;
pub mod http;
pub mod init;
pub mod job;
pub mod json;
pub mod migrations;
pub mod reset;
pub mod runtime;
pub mod setup;
pub mod telemetry;
pub mod text;
pub mod tiles;
pub mod upload;
