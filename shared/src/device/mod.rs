//! The device-facing credentials and `POST /register-device`.
//!
//! - [`id`]: the device id a phone names itself by;
//! - [`app_key`]: `X-API-Key`, required by `/upload` and `/register-device`;
//! - [`secret`]: device secrets, issued in hex and stored only as hashes;
//! - [`register`]: the route that issues secrets.

pub mod app_key;
pub mod id;
pub mod register;
pub mod secret;

pub use app_key::AppKey;
pub use id::{DeviceId, MAX_DEVICE_ID_CHARS};
pub use register::{handle, RegisterApp};
pub use secret::DeviceSecret;
