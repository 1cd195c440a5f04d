//! Devices: the id a phone names itself by, and `POST /register-device`.
//!
//! - [`id`]: the device id;
//! - [`register`]: the route that issues device secrets
//!   ([`crate::credentials::DeviceSecret`]).

pub mod id;
pub mod register;

pub use id::{DeviceId, MAX_DEVICE_ID_CHARS};
pub use register::{handle, RegisterApp};
