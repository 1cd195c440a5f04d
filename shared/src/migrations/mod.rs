//! Schema migrations (`migrations/`, embedded at build time), their undo, the
//! cut-over of device secrets, and the role defaults that RDS Proxy needs. Run by the
//! `migrate` function (docs/coexistence.md, "migrate").
//!
//! - [`action`]: what `migrate` is asked to do (event or command line);
//! - [`shape`], [`legacy_shape`]: the catalog's shape, and the check that a database
//!   is empty or the old server's before anything is changed;
//! - [`found`]: what the first `migrate` found of the old server's schema, which the
//!   rollback gives back;
//! - [`rollback`]: the undo files (`undo/<n>__<name>.sql`), newest first;
//! - `no_transaction`: files (migration or undo) whose statements run one by one,
//!   outside a transaction (concurrent index builds);
//! - [`cutover`]: the remaining plain-text device secrets converted;
//! - [`progress`]: what long work is doing, logged at intervals.
//!
//! - [`runner`](run): applying, undoing, converting and checking, each under the
//!   one advisory lock (`lock`) so two runs at once never interleave; `roles`: what
//!   the application's role is granted;
//! - `dispatch` ([`handle`], [`perform`]): the `migrate` function's answer to an action;
//! - `files`: the embedded migration and undo files; `error`: [`MigrateError`].

pub mod action;
pub mod cutover;
mod dispatch;
mod error;
pub mod facts;
mod files;
pub mod found;
pub mod legacy_shape;
mod lock;
mod no_transaction;
pub mod progress;
mod roles;
pub mod rollback;
mod runner;
pub mod shape;

pub use action::{Action, ActionError};
pub use cutover::CutoverReport;
pub use dispatch::{handle, perform};
pub use error::MigrateError;
pub use files::{migrations, undo_files, Undo};
pub use rollback::RollbackReport;
pub use runner::{
    check_shape, cutover, rollback, rollback_reporting, run, run_reporting, run_to, MigrationReport,
};
pub use shape::{Difference, Shape, ShapeCheck};
