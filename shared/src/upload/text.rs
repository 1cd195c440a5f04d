//! The limits of the upload's own text fields, read by both the streaming reader
//! ([`super::raw`]) and the rules ([`super::request`]); the device id's is
//! [`crate::device::MAX_DEVICE_ID_CHARS`], shared with `register-device`.

pub const MAX_GEOHASH_CHARS: usize = 12;
