//! The device id a phone names itself by, in an upload and in a registration.

use crate::text::has_control_chars;

pub const MAX_DEVICE_ID_CHARS: usize = 128;

/// 1 to 128 characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(text: &str) -> Option<Self> {
        let n = text.chars().count();
        ((1..=MAX_DEVICE_ID_CHARS).contains(&n) && !has_control_chars(text))
            .then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_counted_in_characters() {
        assert!(DeviceId::parse(&"é".repeat(128)).is_some());
        assert!(DeviceId::parse(&"a".repeat(129)).is_none());
        assert!(DeviceId::parse("").is_none());
        assert!(DeviceId::parse("android\u{0}").is_none());
        assert!(DeviceId::parse("a\u{1b}[2J").is_none());
    }
}
