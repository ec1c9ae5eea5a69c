//! Render: one event + one subscription → the exact HTTP request to send.
//!
//! Sits between route and deliver. Everything that can be decided once per subscription (header
//! values, auth header, signing key, body, URL and header templates) is compiled when the
//! subscription is saved — a template that does not parse is a compile error naming its field
//! and position, so the management API answers 4xx and no delivery ever fails on it. Per
//! delivery only the body, templated URL and header values, the Standard Webhooks headers and
//! the signature are produced, from the compiled forms, without parsing any template again.
//!
//! `plan` holds the compiled subscription and the render step; `body` the body shapes and the
//! per-render `Scope` the templates share; `datocms` and `contensis` the dialect default
//! bodies (DatoCMS §1.8, Contensis §2.5) and the data their templates see; `mustache` (DatoCMS
//! `custom_payload` and URLs) and `pointer` (Contensis `{/pointer}` bodies, URLs and headers)
//! the two template languages; `syntax` their compile errors; `sign` Standard Webhooks signing;
//! `json` the byte-level JSON writing and scanning they share.

mod body;
mod contensis;
mod datocms;
#[cfg(test)]
pub(crate) mod fixtures;
mod json;
mod mustache;
mod plan;
mod pointer;
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
    /// headers, `content-length` and auth, and `host` for a fixed URL (the client adds a
    /// templated URL's, and hyper `content-length` to a request made without one).
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// The `Host` header of a request to `uri`: `host[:port]`, the port only when it is not the
/// scheme's default (as browsers send it).
pub fn host_header(uri: &http::Uri) -> Result<http::HeaderValue, &'static str> {
    let host = uri.host().ok_or("the URL has no host")?;
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => {
            http::HeaderValue::from_str(&format!("{host}:{port}"))
        }
        _ => http::HeaderValue::from_str(host),
    };
    value.map_err(|_| "the host is not a valid Host header")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;

    #[test]
    fn host_headers() {
        let table = [
            ("http://example.com/x", "example.com"),
            ("http://example.com:80/x", "example.com"),
            ("http://example.com:8080/x", "example.com:8080"),
            ("https://example.com:443/", "example.com"),
            ("https://example.com:80/", "example.com:80"),
            ("http://user:pw@example.com/", "example.com"),
            ("http://[::1]:8080/", "[::1]:8080"),
        ];
        for (uri, want) in table {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(host_header(&uri).unwrap(), want, "{uri}");
        }
    }
}
