//! Herald: a webhook dispatch daemon for content-management events.
//!
//! The folders follow the data flow (DESIGN §1); read them in this order:
//!
//! ```text
//! ingest ──▶ decode ──▶ journal ──▶ route ──▶ render ──▶ deliver ──▶ outcome
//! (HTTP,     (bytes →   (durable,   (topic    (bodies,   (pooled    (retry policy,
//!  unix       Event,     group       index)    headers,   hyper      dead letters,
//!  socket)    simd-json) commit)               signing)   client)    delivery log)
//!                ▲                      ▲
//!   api (native + CMS dialects) ──▶ subscriptions ──┘
//! ```
//!
//! `model` holds the plain data every stage shares, `config` the validated configuration,
//! `telemetry` metric names and logging, `alloc` the allocator, `fds` the file-descriptor
//! budget, and `daemon` wires the stages together.

pub mod alloc;
pub mod api;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod deliver;
pub mod fds;
pub mod ingest;
pub mod journal;
pub mod model;
pub mod outcome;
pub mod render;
pub mod route;
pub mod telemetry;
