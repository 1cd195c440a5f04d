//! Signed tokens already verified, kept until their `exp`: the app sends the same
//! token with every request for up to an hour, and checking its RS256 signature
//! again each time was most of a warm GET's own CPU (BENCHMARKS.md, "Function CPU").
//! Only tokens that passed every check are kept, keyed by the whole token text (a
//! token differing in any byte is verified fully). A hit is re-checked for what can
//! change with time: its `exp` against the clock, and its key still the one the
//! key cache holds (a key rotated out is refused as before, once the key cache has
//! refetched without it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::DecodingKey;

use super::UserId;

/// Tokens kept at most: ~1 KB each. Past it, the expired ones go; if none has
/// expired, all go (a full verification is only a cost, never a wrong answer).
const CAPACITY: usize = 256;

/// What a full verification established about one token.
pub(crate) struct Verified {
    pub(crate) user: UserId,
    pub(crate) exp: i64,
    pub(crate) kid: String,
    pub(crate) key: Arc<DecodingKey>,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Arc<Verified>>>,
}

impl TokenCache {
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Verified>> {
        self.lock().get(token).cloned()
    }

    pub(crate) fn insert(&self, token: &str, verified: Verified, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, v| v.exp > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token.into(), Arc::new(verified));
    }

    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Verified>>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
