//! Render: one event + one subscription → the exact HTTP request to send.
//!
//! Sits between route and deliver. Everything that can be decided once per subscription (header
//! values, auth header, signing key, body template) is compiled when the subscription is saved;
//! per delivery only the body, the Standard Webhooks headers and the signature are produced.
//!
//! `plan` holds the compiled subscription and the render step, `body` the body shapes, `sign`
//! Standard Webhooks signing and `json` the byte-level JSON writing and scanning they share.

mod body;
mod datocms;
#[cfg(test)]
mod fixtures;
mod json;
mod mustache;
mod plan;
mod sign;
mod syntax;

pub use body::{MAX_BODY_BYTES, PayloadError};
pub use datocms::webhook_id as datocms_webhook_id;
pub use json::ScanError;
pub use plan::{
    AttemptCtx, FieldError, FieldProblem, Plan, RESERVED_HEADERS, RenderDefaults, RenderError,
    WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
pub use sign::SecretProblem;
pub use syntax::{SyntaxError, SyntaxProblem};

/// A fully rendered outbound request: what `crate::deliver` sends, byte for byte.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    /// Absolute `http`/`https` URI of the target.
    pub uri: http::Uri,
    /// Every header to send, including `content-type`, `user-agent`, the Standard Webhooks
    /// headers and auth. `content-length` and `host` are set by the client.
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}
