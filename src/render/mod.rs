//! Render: one event + one subscription → the exact HTTP request to send.
//!
//! Sits between route and deliver. Everything that can be decided once per subscription (header
//! values, auth header, signing key, body template) is compiled when the subscription is saved;
//! per delivery only the body, the Standard Webhooks headers and the signature are produced.

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
