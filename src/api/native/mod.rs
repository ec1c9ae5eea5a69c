//! Herald's own management API (`/v1/...`).

pub mod body;
