//! Device secrets: issued as 32 random bytes in hex, stored only as a SHA-256 hash.
//!
//! The stored form is `sha256:` + the base64 digest (51 characters: it fits the live
//! `varchar(64)` column, and its prefix tells a hash from the old server's 64-hex
//! plain-text secrets). Migration V21 hashes the plain-text rows into exactly this
//! form, and its trigger hashes any plain text the old server still writes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix that marks a stored hash (the same in V21's SQL).
pub const STORED_PREFIX: &str = "sha256:";

/// A secret as the device holds it. Never logged: `Debug` hides it.
pub struct DeviceSecret(String);

impl DeviceSecret {
    /// A new secret: 32 bytes from the thread's CSPRNG (seeded by the OS), in hex.
    pub fn generate() -> Self {
        Self(hex::encode(rand::random::<[u8; 32]>()))
    }

    /// A secret as sent in `X-Device-Secret`.
    pub fn from_header(value: &str) -> Self {
        Self(value.to_string())
    }

    /// What the device is given (once).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database holds and is searched by.
    pub fn stored_form(&self) -> String {
        format!(
            "{STORED_PREFIX}{}",
            STANDARD.encode(Sha256::digest(self.0.as_bytes()))
        )
    }
}

impl std::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_64_hex_chars_and_differ() {
        let a = DeviceSecret::generate();
        let b = DeviceSecret::generate();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn the_stored_form_is_the_prefixed_base64_sha256_and_fits_the_column() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1, in base64.
        let stored = DeviceSecret::from_header("abc").stored_form();
        assert_eq!(
            stored,
            "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        assert!(stored.len() <= 64);
        assert!(!stored.contains("abc"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = DeviceSecret::from_header("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
