//! Test support: the real daemon as a child process and a capture receiver.

pub mod capture;
pub mod daemon;

pub use capture::{Capture, Reply};
pub use daemon::{ADMIN_TOKEN, Herald, Options, SyscallFilter, eventually};
