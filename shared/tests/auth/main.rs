//! Firebase ID tokens and their signing keys: the key cache against a local key
//! server, tokens at the door of a real route, the cache of verified tokens, and
//! token attacks. One test binary, to link once.
//!
//! Safe together: each test has its own key servers and verifiers (the token and
//! key caches belong to a verifier, not to the process) and, where it needs one,
//! its own database. `auth_keys` captures logs for its own thread only
//! (testkit::logs).

mod auth_keys;
mod auth_token_cache;
mod auth_tokens;
mod hostile_tokens;
