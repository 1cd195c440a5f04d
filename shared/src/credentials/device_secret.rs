//! Device secrets: issued as 32 random bytes in hex, stored only as a SHA-256 hash.
//!
//! The stored form is `sha256:` + the base64 digest (51 characters: it fits the live
//! `varchar(64)` column, and its prefix tells a hash from the old server's 64-hex
//! plain-text secrets). The old server, while it runs beside us, keeps writing plain
//! text (it can match nothing else); those rows stay plain, even once our uploads use
//! them (a rollback must leave them working there), until the cut-over converts
//! them all (`migrate cutover`, whose SQL computes exactly this form).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix that marks a stored hash (the same in the cut-over's SQL).
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

    /// The secret as the old server stored it (plain text), to match a row it wrote
    /// and our cut-over has not converted yet: only a value of the form it issues
    /// (exactly 64 lowercase hex characters). Anything else, a stored hash sent back
    /// as the header in particular, is never compared with plain-text rows.
    pub fn legacy_plain_form(&self) -> Option<&str> {
        let s = self.0.as_str();
        (s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))).then_some(s)
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
    fn only_a_secret_of_the_old_servers_form_is_matched_against_plain_text() {
        let issued = DeviceSecret::generate();
        assert_eq!(issued.legacy_plain_form(), Some(issued.expose()));
        for other in [
            "abc".to_string(),
            issued.expose().to_uppercase(),
            format!("{}0", issued.expose()),
            issued.expose()[1..].to_string(),
            // A stored hash sent back as the header.
            issued.stored_form(),
        ] {
            assert_eq!(
                DeviceSecret::from_header(&other).legacy_plain_form(),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = DeviceSecret::from_header("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
