//! What the scheduled jobs (`daily-reset`, `aggregate-sensors`) share: the error
//! an invocation fails with when the database failed it.

use lambda_runtime::Diagnostic;

use crate::db::DbError;

/// The invocation's error: its type tells a retry that may succeed (the database
/// was unreachable or the statement timed out) from a broken statement; its
/// message is `err` with its causes.
pub fn diagnostic(cause: &DbError, err: &(dyn std::error::Error + 'static)) -> Diagnostic {
    let error_type = if cause.is_unavailable() {
        "DatabaseUnavailable"
    } else {
        "DatabaseError"
    };
    Diagnostic {
        error_type: error_type.into(),
        error_message: crate::error_chain::chain(err),
    }
}
