//! Metric names (one place, STYLE "Observability as data") and logging set-up.
//!
//! Label values always come from small fixed sets (`InputKind::as_str`, `AttemptClass::as_str`,
//! the reject reasons below); never a URL, an id or a user string.

pub mod logging;
pub mod metrics;
