//! The outbound client: one rendered [`Request`] → one classified [`Attempt`].
//!
//! Sits at the end of the hot path: the dispatcher hands it a request `render` produced and gets
//! back a value saying what happened, which `outcome` turns into "delivered", "retry at" or
//! "dead". Every outcome is a value, never an `Err`: a 500, a timeout or a refused address are
//! ordinary results of delivering webhooks (STYLE "Errors are typed per stage").
//!
//! It is hyper-util's legacy pooled client (keep-alive, HTTP/2 by ALPN over https, HTTP/1.1
//! otherwise) over `super::connect`'s guarded connector. PERF-NOTES: that pool has no per-host
//! cap and may dial more connections than requests in flight, so the dispatcher must bound
//! concurrency per endpoint itself; this client only keeps the pool's idle settings from config.
//!
//! A connect timeout lives in the connector, which the pool calls without knowing the request,
//! so each distinct connect timeout gets its own pool (DatoCMS subscriptions want 2 s, the
//! default is 10 s). Those pools are few and bounded ([`MAX_POOLS`]); past the bound a request
//! shares the pool with the nearest shorter timeout.
//!
//! Redirects are never followed (the legacy client does not follow them), the response body is
//! read up to a cap and no further, and one timer bounds the whole attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::connect::{self, ConnectError, ConnectorShared, GuardedConnector};
use super::retry_after::parse_retry_after;
use crate::config::DeliveryConfig;
use crate::model::AttemptClass;
use crate::render::Request;

/// Distinct connect timeouts that get a pool of their own (the default's included). A handful
/// covers every dialect; the bound keeps a subscription API that accepts arbitrary values from
/// growing pools without limit.
pub const MAX_POOLS: usize = 8;

type Pool = legacy::Client<GuardedConnector, Full<Bytes>>;

/// The per-attempt limits, usually the subscription's values over the `[delivery]` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// The whole attempt: connect, send, response head and the capped body.
    pub timeout: Duration,
    /// DNS + TCP + TLS for a new connection (a pooled one skips it).
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
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<ConnectorShared>,
    /// Kept to build pools for other connect timeouts with the same settings.
    builder: legacy::Builder,
    default_connect_timeout: Duration,
    default_pool: Pool,
    /// Pools for other connect timeouts, read lock-free on every send that asks for one.
    others: ArcSwap<Vec<(Duration, Pool)>>,
    /// Serialises adding a pool, so two first uses of a timeout do not build two pools.
    adding: Mutex<()>,
}

impl Client {
    /// Builds the client: TLS trust (webpki roots plus `extra_roots_pem`), the SSRF allow list and
    /// the pool settings. Needs no runtime; the first `send` must run inside a tokio runtime.
    pub fn new(cfg: &DeliveryConfig) -> Result<Client, ClientError> {
        let tls = tls_config(cfg)?;
        let shared = Arc::new(ConnectorShared {
            tls: TlsConnector::from(Arc::new(tls)),
            allow: cfg.allow_networks.clone(),
        });
        let mut builder = legacy::Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_origin)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let default_pool = builder.build(GuardedConnector {
            shared: Arc::clone(&shared),
            connect_timeout: cfg.connect_timeout,
        });
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                builder,
                default_connect_timeout: cfg.connect_timeout,
                default_pool,
                others: ArcSwap::from_pointee(Vec::new()),
                adding: Mutex::new(()),
            }),
        })
    }

    /// One attempt. Never fails: every outcome, a refused address included, is an [`Attempt`].
    pub async fn send(&self, req: Request, limits: &SendLimits) -> Attempt {
        let started = Instant::now();
        // One timer for the whole attempt, shared by the head and the body.
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
        mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Attempt {
        // The pool would reject these too, but only with an error kind it does not expose.
        if let Err(e) = connect::target(&req.uri) {
            return Attempt::failed(AttemptClass::Refused, e.to_string());
        }
        let mut http_req = http::Request::new(Full::new(req.body));
        *http_req.method_mut() = req.method;
        *http_req.uri_mut() = req.uri;
        *http_req.headers_mut() = req.headers;
        let response = self.pool_request(limits.connect_timeout, http_req);

        let response = tokio::select! {
            biased;
            r = response => r,
            () = &mut deadline => {
                return Attempt::failed(
                    AttemptClass::Timeout,
                    format!("no response within {}", humantime::format_duration(limits.timeout)),
                );
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return classify_error(&e),
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
            Some(Ok(())) => (AttemptClass::from_status(status), None),
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

    /// Starts the request on the pool for `connect_timeout`, creating that pool on first use.
    fn pool_request(
        &self,
        connect_timeout: Duration,
        req: http::Request<Full<Bytes>>,
    ) -> legacy::ResponseFuture {
        let inner = &*self.inner;
        if connect_timeout == inner.default_connect_timeout {
            return inner.default_pool.request(req);
        }
        let others = inner.others.load();
        if let Some((_, pool)) = others.iter().find(|(t, _)| *t == connect_timeout) {
            return pool.request(req);
        }
        drop(others);
        inner.pool_for_new_timeout(connect_timeout).request(req)
    }

    #[cfg(test)]
    pub(super) fn pool_count(&self) -> usize {
        1 + self.inner.others.load().len()
    }
}

impl Inner {
    /// The slow path of `pool_request`: add a pool for `connect_timeout`, or, past [`MAX_POOLS`],
    /// pick the nearest existing one.
    fn pool_for_new_timeout(&self, connect_timeout: Duration) -> Pool {
        // A poisoned lock only means another thread panicked while adding; the list it guards
        // lives in the ArcSwap and is always whole.
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let others = self.others.load_full();
        if let Some((_, pool)) = others.iter().find(|(t, _)| *t == connect_timeout) {
            return pool.clone();
        }
        if others.len() + 1 >= MAX_POOLS {
            let timeouts =
                std::iter::once(self.default_connect_timeout).chain(others.iter().map(|(t, _)| *t));
            return match nearest_timeout(timeouts, connect_timeout) {
                0 => self.default_pool.clone(),
                i => others[i - 1].1.clone(),
            };
        }
        let pool = self.builder.build(GuardedConnector {
            shared: Arc::clone(&self.shared),
            connect_timeout,
        });
        let mut grown = Vec::with_capacity(others.len() + 1);
        grown.extend(others.iter().cloned());
        grown.push((connect_timeout, pool.clone()));
        self.others.store(Arc::new(grown));
        pool
    }
}

/// Which of `timeouts` stands in for `want` when it has no pool of its own: the longest one not
/// above `want` (never wait longer than asked), or the shortest if all are above. Returns the
/// index; `timeouts` is non-empty in use (index 0 otherwise).
fn nearest_timeout(timeouts: impl Iterator<Item = Duration>, want: Duration) -> usize {
    let mut below: Option<(usize, Duration)> = None;
    let mut shortest: Option<(usize, Duration)> = None;
    for (i, t) in timeouts.enumerate() {
        if t <= want && below.is_none_or(|(_, b)| t > b) {
            below = Some((i, t));
        }
        if shortest.is_none_or(|(_, s)| t < s) {
            shortest = Some((i, t));
        }
    }
    below.or(shortest).map_or(0, |(i, _)| i)
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

/// A pool error → its class, found by type: the connector's own error says `Refused` or
/// `Connect`; anything else failed after a connection existed (`Io`).
fn classify_error(e: &legacy::Error) -> Attempt {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(ce) = err.downcast_ref::<ConnectError>() {
            let class = match ce {
                ConnectError::Refused(_) | ConnectError::BadTarget(_) => AttemptClass::Refused,
                _ => AttemptClass::Connect,
            };
            return Attempt::failed(class, ce.to_string());
        }
        source = err.source();
    }
    let class = if e.is_connect() {
        AttemptClass::Connect
    } else {
        AttemptClass::Io
    };
    Attempt::failed(class, error_chain(e))
}

/// An error's causes joined with ": ", without the pool's own uninformative top line ("client
/// error (SendRequest)") when it has a cause. A few levels at most.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = e.source().or(Some(e));
    for _ in 0..4 {
        let Some(err) = next else { break };
        if !text.is_empty() {
            text.push_str(": ");
        }
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

/// Reads frames until the body ends or the cap is reached with more still to come.
async fn read_capped(
    body: &mut Incoming,
    cap: usize,
    kept: &mut CappedBody,
) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        // Trailers carry nothing a delivery needs.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if kept.push(data, cap) && !hyper::body::Body::is_end_stream(body) {
            break;
        }
    }
    Ok(())
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
    fn picks_a_stand_in_timeout() {
        let secs = Duration::from_secs;
        let table: &[(&[u64], u64, usize)] = &[
            (&[10, 2, 5], 3, 1),
            (&[10, 2, 5], 7, 2),
            (&[10, 2, 5], 60, 0),
            (&[10, 2, 5], 1, 1),
            (&[10], 1, 0),
            (&[], 1, 0),
        ];
        for (have, want, pick) in table {
            let got = nearest_timeout(have.iter().map(|s| secs(*s)), secs(*want));
            assert_eq!(got, *pick, "{have:?} for {want}");
        }
    }

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
