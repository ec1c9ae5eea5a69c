//! The outbound client: one rendered [`Request`] → one classified [`Attempt`].
//!
//! Sits at the end of the hot path: the dispatcher hands it a request `render` produced and gets
//! back a value saying what happened, which `outcome` turns into "delivered", "retry at" or
//! "dead". Every outcome is a value, never an `Err`: a 500, a timeout or a refused address are
//! ordinary results of delivering webhooks (STYLE "Errors are typed per stage").
//!
//! It sends over `super::pool` (keep-alive, HTTP/2 by ALPN over https, HTTP/1.1 otherwise), which
//! dials through `super::connect` (SSRF guard, connect timeout, TLS). The pool does not cap
//! connections per host: the dispatcher bounds attempts in flight per endpoint (PERF-NOTES).
//! Redirects are never followed, the response body is read up to a cap and no further, and one
//! timer bounds the whole attempt. A request that an idle connection fails before writing it
//! (the server closed it meanwhile) is retried once on another, as nothing was sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Uri;
use http::header::HOST;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

use super::connect::{self, ConnectError, ConnectorShared};
use super::pool::{OriginKey, Pool, Sender};
use super::retry_after::parse_retry_after;
use crate::config::DeliveryConfig;
use crate::model::AttemptClass;
use crate::render::Request;

/// The per-attempt limits, usually the subscription's values over the `[delivery]` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// The whole attempt: connect, send, response head and the capped body.
    pub timeout: Duration,
    /// DNS + TCP + TLS (+ the HTTP/2 preface) for a new connection; a pooled one skips it.
    pub connect_timeout: Duration,
    /// Response body bytes kept; reading stops there.
    pub max_response_body: usize,
}

impl SendLimits {
    /// The `[delivery]` defaults.
    pub fn from_config(cfg: &DeliveryConfig) -> SendLimits {
        SendLimits {
            timeout: cfg.timeout,
            connect_timeout: cfg.connect_timeout,
            max_response_body: cfg.max_response_body_bytes,
        }
    }
}

/// What one attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The metric label and what `outcome` decides on.
    pub class: AttemptClass,
    /// The response status, when a response head arrived (also for a body that then timed out
    /// or broke, whose class is `Timeout` or `Io`).
    pub status: Option<u16>,
    /// From `Retry-After` on a `429` or `503` (delta-seconds or HTTP-date), unclamped: the retry
    /// policy bounds it.
    pub retry_after: Option<Duration>,
    /// From the start of `send` to the end of the attempt.
    pub duration: Duration,
    /// A short reason for failures without a usable response (timeout, connect, refused, I/O).
    /// Names the host at most, never the path, query or headers, which can carry secrets.
    pub error: Option<String>,
    /// The response body up to the cap (`None` when empty or when no response arrived). On a
    /// body that timed out or broke, what had arrived by then.
    pub response_body: Option<Bytes>,
}

/// Why the client could not be built: the TLS trust set-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An extra CA file (named by its `ca_files` path) is not PEM.
    #[error("{file}: not valid PEM: {source}")]
    Pem {
        file: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// An extra CA file has PEM sections, but no `CERTIFICATE` among them.
    #[error("{file}: holds no certificate")]
    NoCertificate { file: String },
    /// A certificate (0-based within its file) that rustls cannot use as a root.
    #[error("{file}: certificate {index} is not a usable trust anchor: {source}")]
    Certificate {
        file: String,
        index: usize,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration itself.
    #[error("TLS set-up failed: {0}")]
    Tls(#[source] rustls::Error),
}

/// The shared delivery client. Cloning is cheap (one `Arc`); every endpoint uses the same one so
/// connections to a host are pooled across subscriptions.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
}

impl Client {
    /// Builds the client: TLS trust (webpki roots plus `extra_roots_pem`), the SSRF allow list and
    /// the pool settings. Needs no runtime; `send` must run inside a tokio runtime, and the pool's
    /// idle sweeper runs on the runtime of the first `send`.
    pub fn new(cfg: &DeliveryConfig) -> Result<Client, ClientError> {
        let tls = tls_config(cfg)?;
        let connector = ConnectorShared {
            tls: TlsConnector::from(Arc::new(tls)),
            allow: cfg.allow_networks.clone(),
        };
        Ok(Client {
            pool: Arc::new(Pool::new(
                connector,
                cfg.pool_idle_timeout,
                cfg.pool_max_idle_per_origin,
                cfg.max_connections,
            )),
        })
    }

    /// One attempt. Never fails: every outcome, a refused address included, is an [`Attempt`].
    pub async fn send(&self, req: Request, limits: &SendLimits) -> Attempt {
        let started = Instant::now();
        // One timer for the whole attempt: connect, request, response head and body.
        let deadline = tokio::time::sleep_until(started + limits.timeout);
        tokio::pin!(deadline);
        let mut attempt = self.exchange(req, limits, deadline).await;
        attempt.duration = started.elapsed();
        attempt
    }

    async fn exchange(
        &self,
        req: Request,
        limits: &SendLimits,
        mut deadline: std::pin::Pin<&mut Sleep>,
    ) -> Attempt {
        let timed_out = |what: &str| {
            Attempt::failed(
                AttemptClass::Timeout,
                format!(
                    "{what} within {}",
                    humantime::format_duration(limits.timeout)
                ),
            )
        };
        // The scheme decides the pool; the host is checked when a connection is dialed (and
        // parsing it and its port here, per attempt, showed in profiles).
        let Some(key) = OriginKey::of(&req.uri) else {
            let why = match connect::is_https(&req.uri) {
                Err(e) => e.to_string(),
                Ok(_) => "bad target URL".into(),
            };
            return Attempt::failed(AttemptClass::Refused, why);
        };
        let uri = req.uri;
        let mut http_req = http::Request::new(Full::new(req.body));
        *http_req.method_mut() = req.method;
        *http_req.headers_mut() = req.headers;

        // At most one retry, and only for a request an idle connection gave back unsent.
        let mut retried = false;
        let (response, sender, host) = loop {
            let checkout = tokio::select! {
                biased;
                c = self.pool.checkout(&key, &uri, limits.connect_timeout) => c,
                () = &mut deadline => return timed_out("no connection"),
            };
            let checkout = match checkout {
                Ok(c) => c,
                Err(e) => return connect_failure(&e),
            };
            let (sent, sender) = match checkout.sender {
                Sender::H1(mut tx) => {
                    // HTTP/1.1 wants origin-form and a Host header; HTTP/2 takes the absolute
                    // URI and sends the authority as `:authority`.
                    *http_req.uri_mut() = origin_form(&uri);
                    // Not `entry`: it reserves room first, and may grow the map for nothing.
                    if !http_req.headers().contains_key(HOST) {
                        http_req.headers_mut().insert(HOST, checkout.host.clone());
                    }
                    let sent = tokio::select! {
                        biased;
                        r = tx.try_send_request(http_req) => r,
                        () = &mut deadline => return timed_out("no response"),
                    };
                    (sent, Some(tx))
                }
                Sender::H2(mut tx) => {
                    *http_req.uri_mut() = uri.clone();
                    // A fixed URL's plan carries `Host` for HTTP/1.1; HTTP/2 has `:authority`.
                    http_req.headers_mut().remove(HOST);
                    let sent = tokio::select! {
                        biased;
                        r = tx.try_send_request(http_req) => r,
                        () = &mut deadline => return timed_out("no response"),
                    };
                    (sent, None)
                }
            };
            match sent {
                Ok(response) => break (response, sender, checkout.host),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if checkout.reused && !retried => {
                        retried = true;
                        http_req = unsent;
                    }
                    _ => {
                        return Attempt::failed(AttemptClass::Io, error_chain(e.error()));
                    }
                },
            }
        };

        let status = response.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(v.as_bytes(), jiff::Timestamp::now()))
        } else {
            None
        };
        let mut body = response.into_body();
        let mut kept = CappedBody::default();
        let read = tokio::select! {
            biased;
            r = read_capped(&mut body, limits.max_response_body, &mut kept) => Some(r),
            () = &mut deadline => None,
        };
        // Dropping an unfinished body closes an HTTP/1.1 connection (or resets an HTTP/2
        // stream): a body past the cap is never read, whatever its size.
        drop(body);
        let (class, error) = match read {
            Some(Ok(ended)) => {
                if let (true, Some(tx)) = (ended, sender) {
                    self.pool.put_back(&key, host, tx);
                }
                (AttemptClass::from_status(status), None)
            }
            Some(Err(e)) => (
                AttemptClass::Io,
                Some(format!("reading the response body: {}", error_chain(&e))),
            ),
            None => (
                AttemptClass::Timeout,
                Some(format!(
                    "response body not complete within {}",
                    humantime::format_duration(limits.timeout)
                )),
            ),
        };
        Attempt {
            class,
            status: Some(status),
            retry_after,
            duration: Duration::ZERO,
            error,
            response_body: kept.into_bytes(),
        }
    }

    #[cfg(test)]
    pub(super) fn idle_counts(&self) -> (usize, usize) {
        self.pool.idle_counts()
    }
}

impl Attempt {
    fn failed(class: AttemptClass, error: String) -> Attempt {
        Attempt {
            class,
            status: None,
            retry_after: None,
            duration: Duration::ZERO,
            error: Some(error),
            response_body: None,
        }
    }
}

/// A connection that could not be had: refused by the guard (or a bad URL), or a failed connect.
fn connect_failure(e: &ConnectError) -> Attempt {
    let class = match e {
        ConnectError::Refused(_) | ConnectError::BadTarget(_) => AttemptClass::Refused,
        _ => AttemptClass::Connect,
    };
    Attempt::failed(class, e.to_string())
}

/// `/path?query` of an absolute URI, sharing its bytes.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// An error and its causes joined with ": ", a few levels at most.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    for _ in 0..3 {
        let Some(err) = next else { break };
        text.push_str(": ");
        text.push_str(&err.to_string());
        next = err.source();
    }
    text
}

/// The response body as far as it was read, at most the cap. A single frame (the usual case for
/// a small body) is kept as the `Bytes` hyper produced, without a copy.
#[derive(Default)]
struct CappedBody {
    first: Option<Bytes>,
    more: Option<BytesMut>,
}

impl CappedBody {
    fn len(&self) -> usize {
        match (&self.more, &self.first) {
            (Some(m), _) => m.len(),
            (None, Some(f)) => f.len(),
            (None, None) => 0,
        }
    }

    /// Keeps what fits under `cap`; says whether the cap is reached.
    fn push(&mut self, mut data: Bytes, cap: usize) -> bool {
        let room = cap.saturating_sub(self.len());
        data.truncate(room);
        if !data.is_empty() {
            match (&mut self.more, self.first.take()) {
                (Some(m), _) => m.extend_from_slice(&data),
                (None, None) => self.first = Some(data),
                (None, Some(first)) => {
                    let mut m = BytesMut::with_capacity(cap.min(first.len() + 2 * data.len()));
                    m.extend_from_slice(&first);
                    m.extend_from_slice(&data);
                    self.more = Some(m);
                }
            }
        }
        self.len() >= cap
    }

    fn into_bytes(self) -> Option<Bytes> {
        match (self.more, self.first) {
            (Some(m), _) => Some(m.freeze()),
            (None, first) => first,
        }
    }
}

/// Reads frames until the body ends (`true`) or the cap is reached with more still to come
/// (`false`).
async fn read_capped(
    body: &mut Incoming,
    cap: usize,
    kept: &mut CappedBody,
) -> Result<bool, hyper::Error> {
    while let Some(frame) = body.frame().await {
        // Trailers carry nothing a delivery needs.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if kept.push(data, cap) && !hyper::body::Body::is_end_stream(body) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// rustls with ring only: webpki's roots plus the configured extra CAs, ALPN `h2` then
/// `http/1.1`.
fn tls_config(cfg: &DeliveryConfig) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
    for (i, pem) in cfg.extra_roots_pem.iter().enumerate() {
        let file = || {
            cfg.ca_files
                .get(i)
                .map_or_else(|| format!("extra CA #{i}"), |p| p.display().to_string())
        };
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|source| ClientError::Pem {
                file: file(),
                source,
            })?;
            roots.add(cert).map_err(|source| ClientError::Certificate {
                file: file(),
                index: found,
                source,
            })?;
            found += 1;
        }
        if found == 0 {
            return Err(ClientError::NoCertificate { file: file() });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_body() {
        let table: &[(&[&str], usize, &str, bool)] = &[
            (&["hello"], 64, "hello", false),
            (&["hel", "lo"], 64, "hello", false),
            (&["hello", " world"], 8, "hello wo", true),
            (&["hello"], 5, "hello", true),
            (&["hello"], 0, "", true),
            (&[], 10, "", false),
        ];
        for (frames, cap, want, full) in table {
            let mut kept = CappedBody::default();
            let mut reached = false;
            for f in *frames {
                reached = kept.push(Bytes::from_static(f.as_bytes()), *cap);
            }
            assert_eq!(reached, *full, "{frames:?} cap {cap}");
            let got = kept.into_bytes().unwrap_or_default();
            assert_eq!(&got[..], want.as_bytes(), "{frames:?} cap {cap}");
        }
    }
}
