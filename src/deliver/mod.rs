//! Deliver: one rendered request → one HTTP attempt → a classified [`Attempt`].
//!
//! Sits between `render` (which produced the exact request) and `outcome` (which decides what an
//! attempt means for the delivery). [`Client`] is the single pooled, shared HTTP client; it never
//! fails, it reports. Under it `pool` keeps idle connections per origin, `connect` resolves,
//! applies the SSRF [`guard`] to every resolved address and dials only what passed, and
//! `retry_after` reads the wait a `429`/`503` asks for.
//! Per-endpoint concurrency is not enforced by the client: `dispatch` (the per-endpoint queues,
//! lanes and retry timers) bounds it (PERF-NOTES), and with `origin` the requests in flight to
//! one receiver across subscriptions.

mod client;
mod connect;
pub mod dispatch;
pub mod guard;
mod origin;
mod pool;
mod retry_after;

pub use client::{Attempt, Client, ClientError, SendLimits};
pub use retry_after::parse_retry_after;

#[cfg(test)]
mod tests;
