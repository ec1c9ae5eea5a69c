//! The management API: Herald's native dialect, later the CMS dialects, plus auth and error
//! bodies.

pub mod auth;
pub mod error;
pub mod native;
