//! A failure as an operator reads it, in the Lambda console or on a terminal: its
//! kind (Lambda's `errorType`: `ShapeRefused`, `InvalidConfiguration`, …) and its
//! message in words with every cause, never a Rust type name or a Debug dump.
//! lambda_runtime would name the error's type, and logs a handler's error with
//! `{:?}`: both are this kind and message here.

use std::fmt;

use lambda_runtime::Diagnostic;

pub struct Failure {
    /// One word in CamelCase naming what went wrong.
    pub kind: &'static str,
    /// The error and its causes (`error_chain::chain`), lines as the error has them.
    pub message: String,
}

impl Failure {
    pub fn new(kind: &'static str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            kind,
            message: crate::error_chain::chain(error),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What lambda_runtime logs of a handler's error: the same words.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        Diagnostic {
            error_type: failure.kind.to_string(),
            error_message: failure.message,
        }
    }
}
