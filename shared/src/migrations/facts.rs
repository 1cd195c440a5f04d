//! A schema as a set of facts, and how two such sets differ: what the shape check
//! ([`super::shape`]) reads and what the old server's schema ([`super::legacy_shape`])
//! is written in, kept apart so neither of the two has to import the other.

use std::collections::BTreeMap;
use std::fmt;

/// Every fact of the `public` schema (objects of extensions left out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape(pub BTreeMap<String, String>);

impl Shape {
    /// The facts as `key = value` lines, sorted: what a test prints on a mismatch.
    pub fn render(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }

    /// The differences from `expected`, one per key.
    pub fn diff(&self, expected: &Shape) -> Vec<Difference> {
        let mut out = Vec::new();
        for (key, want) in &expected.0 {
            match self.0.get(key) {
                None => out.push(Difference::Missing {
                    key: key.clone(),
                    expected: want.clone(),
                }),
                Some(found) if found != want => out.push(Difference::Changed {
                    key: key.clone(),
                    expected: want.clone(),
                    found: found.clone(),
                }),
                Some(_) => {}
            }
        }
        for (key, found) in &self.0 {
            if !expected.0.contains_key(key) {
                out.push(Difference::Unexpected {
                    key: key.clone(),
                    found: found.clone(),
                });
            }
        }
        out
    }
}

/// One way a database differs from the shape expected of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    Missing {
        key: String,
        expected: String,
    },
    Changed {
        key: String,
        expected: String,
        found: String,
    },
    Unexpected {
        key: String,
        found: String,
    },
}

impl Difference {
    pub fn key(&self) -> &str {
        match self {
            Self::Missing { key, .. }
            | Self::Changed { key, .. }
            | Self::Unexpected { key, .. } => key,
        }
    }
}

/// One line in words: `index t.i: expected CREATE INDEX …, found nothing`.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (expected, found) = match self {
            Self::Missing { expected, .. } => (expected.as_str(), "nothing"),
            Self::Changed {
                expected, found, ..
            } => (expected.as_str(), found.as_str()),
            Self::Unexpected { found, .. } => ("nothing", found.as_str()),
        };
        write!(f, "{}: expected {expected}, found {found}", self.key())
    }
}
