//! Every credential a request can carry, and how each is checked: how a caller is
//! authenticated is read here and nowhere else.
//!
//! - [`AppKey`]: `X-API-Key`, the key every APK carries, required by `/upload` and
//!   `/register-device`;
//! - [`DeviceSecret`]: `X-Device-Secret`, issued by `/register-device` in hex and
//!   stored only as a hash;
//! - [`AnalyticsKeys`]: `X-API-Key` of the analytics API, keys of its own;
//! - [`token`]: Firebase ID tokens (`Authorization: Bearer`, or a token in a body),
//!   the user they name.

mod analytics_key;
mod app_key;
mod device_secret;
pub mod token;

pub use analytics_key::AnalyticsKeys;
pub use app_key::AppKey;
pub use device_secret::DeviceSecret;
