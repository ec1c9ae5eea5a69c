//! The connection pool: idle keep-alive connections per origin, over hyper's `conn` API.
//!
//! Why not hyper-util's legacy pooled `Client`: PERF-NOTES measured it opening more connections
//! than requests in flight (on a pool miss it dials while it waits for an idle connection and
//! keeps both), and here it did so even for *sequential* requests on a multi-threaded runtime,
//! because a connection goes back to its pool only once its own task has caught up after the
//! response body ended. This pool never dials while it holds a connection that is merely
//! catching up: it hands that connection out and waits for it to be ready. It also costs less
//! CPU per request (PERF-NOTES: 15–25 % for `conn::http1`), and a connect timeout is a property
//! of the dial, not of the pool, so one pool serves every subscription's timeout.
//!
//! HTTP/1.1 connections are checked out exclusively and returned by the client after their
//! response body ended (most recently used first, at most `pool_max_idle_per_origin` kept, each
//! for at most `pool_idle_timeout`). An HTTP/2 connection is shared by every request to its
//! origin; a burst that dials several before the first is known to speak h2 keeps up to
//! [`MAX_H2_PER_ORIGIN`] of them and spreads requests over them (one h2 connection is capped by
//! one task on one core). A background task drops expired and closed connections and forgets
//! origins with none left.
//!
//! Connections are file descriptors, so their number is bounded (`crate::fds`): every
//! connection holds a permit of [`Pool::sockets`] (`[delivery] max_connections`) from before its
//! socket is opened until its connection task has ended. The dispatcher lets at most that many
//! attempts run at once, so when a dial finds every permit taken, at least one is held by an idle
//! connection or one that is closing: the dial closes the coldest idle connection of any origin
//! and waits for a permit, which is then moments away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::connect::{self, ConnectError, ConnectorShared};
use crate::telemetry::metrics as m;

/// HTTP/2 connections kept per origin (PERF-NOTES: 2–4 connections beat one by ~40 %).
pub const MAX_H2_PER_ORIGIN: usize = 4;

pub(super) type ReqBody = Full<Bytes>;

/// Where connections can be shared: scheme and authority.
///
/// Hashed and compared as the authority's bytes, case and all: `Authority`'s own `Hash` feeds
/// the hasher one lowercased byte at a time, and with its case-insensitive `Eq` that was ~5 %
/// of Herald's instructions per delivery (two lookups per attempt). Differently cased
/// spellings of one host only get separate idle lists.
#[derive(Debug, Clone)]
pub(super) struct OriginKey {
    pub https: bool,
    pub authority: Authority,
}

impl OriginKey {
    /// The origin of an absolute `http` or `https` URL; `None` for anything else, which the
    /// client refuses before it looks for a connection.
    pub(super) fn of(uri: &Uri) -> Option<OriginKey> {
        Some(OriginKey {
            https: connect::is_https(uri).ok()?,
            authority: uri.authority()?.clone(),
        })
    }

    /// Whether `uri` has this origin ([`OriginKey::of`] without building one).
    pub(super) fn is_of(&self, uri: &Uri) -> bool {
        connect::is_https(uri).is_ok_and(|https| https == self.https)
            && uri
                .authority()
                .is_some_and(|a| a.as_str() == self.authority.as_str())
    }
}

impl PartialEq for OriginKey {
    fn eq(&self, other: &Self) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for OriginKey {}

impl std::hash::Hash for OriginKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.authority.as_str().hash(state);
    }
}

/// A connection ready for one request.
pub(super) enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

pub(super) struct Checkout {
    pub sender: Sender,
    /// It served a request before: a request it fails before writing may be retried elsewhere
    /// (the server may have closed it while idle). A fresh connection's failure is final.
    pub reused: bool,
    /// The `Host` value for HTTP/1.1 requests, computed once per origin.
    pub host: HeaderValue,
}

pub(super) struct Pool {
    connector: ConnectorShared,
    idle_timeout: Duration,
    max_idle_per_origin: usize,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    origins: Mutex<Origins>,
    sweeper_started: AtomicBool,
    /// One permit per connection allowed; held by each connection's task (see the module docs).
    sockets: Arc<Semaphore>,
    limit: usize,
    open: metrics::Gauge,
}

type Origins = HashMap<OriginKey, Origin, foldhash::fast::RandomState>;

struct Origin {
    host: HeaderValue,
    /// Idle HTTP/1.1 connections with the time each became idle; the last is the warmest.
    h1: Vec<(http1::SendRequest<ReqBody>, Instant)>,
    /// Shared HTTP/2 connections with the time each was last handed out.
    h2: Vec<(http2::SendRequest<ReqBody>, Instant)>,
}

impl Pool {
    pub(super) fn new(
        connector: ConnectorShared,
        idle_timeout: Duration,
        max_idle_per_origin: usize,
        max_connections: usize,
    ) -> Pool {
        let limit = max_connections.max(1);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        let mut h1 = http1::Builder::new();
        // One buffer per request: hyper copies the body behind the head and sends both with one
        // `send`, where its default over a socket is a `writev` of the two. A webhook body is
        // small next to what that saves: on the load bench this made Herald's deliveries at
        // fan-out 10 ~7–10 % cheaper and the bare hyper client ~20 % faster (the bench's
        // clients write the same way, so the ceiling stays the best hyper does). TLS streams
        // are written flat anyway (hyper's docs recommend it for them).
        h1.writev(false);
        Pool {
            connector,
            idle_timeout,
            max_idle_per_origin,
            h1,
            h2,
            origins: Mutex::new(HashMap::default()),
            sweeper_started: AtomicBool::new(false),
            sockets: Arc::new(Semaphore::new(limit)),
            limit,
            open: metrics::gauge!(m::DELIVERY_CONNECTIONS),
        }
    }

    /// A connection to `key`'s origin: an idle or shared one if there is one, else a new one
    /// dialed within `connect_timeout`.
    pub(super) async fn checkout(
        self: &Arc<Self>,
        key: &OriginKey,
        uri: &Uri,
        connect_timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        self.start_sweeper();
        while let Some((sender, host)) = self.take_idle(key) {
            match sender {
                Sender::H2(tx) => {
                    return Ok(Checkout {
                        sender: Sender::H2(tx),
                        reused: true,
                        host,
                    });
                }
                Sender::H1(mut tx) => {
                    // Returned as soon as its response body ended, its connection task may
                    // still be finishing that response: wait for it rather than dial. An error
                    // means the connection closed; try the next.
                    if tx.ready().await.is_ok() {
                        return Ok(Checkout {
                            sender: Sender::H1(tx),
                            reused: true,
                            host,
                        });
                    }
                }
            }
        }
        // Boxed: dialing (resolve, TCP, TLS) is most of an exchange's state, and it is needed
        // once per connection; every attempt would otherwise carry (and copy) it.
        Box::pin(self.dial(key, uri, connect_timeout)).await
    }

    /// Returns an HTTP/1.1 connection whose response body was read to its end.
    pub(super) fn put_back(
        &self,
        key: &OriginKey,
        host: HeaderValue,
        tx: http1::SendRequest<ReqBody>,
    ) {
        if self.max_idle_per_origin == 0 || tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut origins = self.lock();
        if let Some(origin) = origins.get_mut(key) {
            if origin.h1.len() < self.max_idle_per_origin {
                origin.h1.push((tx, now));
            }
            return;
        }
        origins.insert(
            key.clone(),
            Origin {
                host,
                h1: vec![(tx, now)],
                h2: Vec::new(),
            },
        );
    }

    fn take_idle(&self, key: &OriginKey) -> Option<(Sender, HeaderValue)> {
        let now = Instant::now();
        let mut origins = self.lock();
        let origin = origins.get_mut(key)?;
        origin.h2.retain(|(tx, _)| !tx.is_closed());
        if !origin.h2.is_empty() {
            // Round-robin: hand out the first, move it to the back.
            origin.h2.rotate_left(1);
            let (tx, used) = origin.h2.last_mut()?;
            *used = now;
            return Some((Sender::H2(tx.clone()), origin.host.clone()));
        }
        while let Some((tx, since)) = origin.h1.pop() {
            if !tx.is_closed() && now.saturating_duration_since(since) < self.idle_timeout {
                return Some((Sender::H1(tx), origin.host.clone()));
            }
        }
        None
    }

    async fn dial(
        &self,
        key: &OriginKey,
        uri: &Uri,
        connect_timeout: Duration,
    ) -> Result<Checkout, ConnectError> {
        let started = Instant::now();
        let socket = self.socket_permit().await;
        let stream = connect::connect(&self.connector, uri, connect_timeout).await?;
        let host = crate::render::host_header(uri).map_err(ConnectError::BadTarget)?;
        if !stream.is_h2() {
            // An HTTP/1.1 handshake does no I/O; it only sets the connection up.
            let (tx, conn) = self
                .h1
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|source| handshake_error(uri, source))?;
            self.spawn_conn(conn, socket);
            return Ok(Checkout {
                sender: Sender::H1(tx),
                reused: false,
                host,
            });
        }
        let left = connect_timeout.saturating_sub(started.elapsed());
        let (tx, conn) = tokio::time::timeout(left, self.h2.handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| ConnectError::Timeout(connect_timeout))?
            .map_err(|source| handshake_error(uri, source))?;
        self.spawn_conn(conn, socket);
        if self.max_idle_per_origin > 0 {
            let now = Instant::now();
            let mut origins = self.lock();
            let origin = origins.entry(key.clone()).or_insert_with(|| Origin {
                host: host.clone(),
                h1: Vec::new(),
                h2: Vec::new(),
            });
            if origin.h2.len() < MAX_H2_PER_ORIGIN {
                origin.h2.push((tx.clone(), now));
            }
        }
        Ok(Checkout {
            sender: Sender::H2(tx),
            reused: false,
            host,
        })
    }

    /// A connection permit: at once if one is free; else after closing the coldest idle
    /// connection (any origin), whose task gives its permit back as it ends.
    async fn socket_permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = match self.sockets.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                drop(self.close_coldest());
                self.sockets.clone().acquire_owned().await.ok()
            }
        };
        self.open
            .set((self.limit - self.sockets.available_permits()) as f64);
        permit
    }

    /// Takes the idle HTTP/1.1 connection that has been idle longest out of the pool (an HTTP/2
    /// one, least recently used, if there is none) and returns it, to be dropped outside the
    /// lock: dropping it ends its connection task, which gives its permit back.
    fn close_coldest(&self) -> Option<Sender> {
        let mut origins = self.lock();
        // Closed ones gave their permits back already; closing them frees nothing.
        for o in origins.values_mut() {
            o.h1.retain(|(tx, _)| !tx.is_closed());
            o.h2.retain(|(tx, _)| !tx.is_closed());
        }
        let coldest_h1 = origins
            .iter()
            .filter_map(|(k, o)| o.h1.first().map(|(_, since)| (*since, k.clone())))
            .min_by_key(|(since, _)| *since);
        if let Some((_, key)) = coldest_h1 {
            let origin = origins.get_mut(&key)?;
            let (tx, _) = origin.h1.remove(0);
            return Some(Sender::H1(tx));
        }
        let coldest_h2 = origins
            .iter()
            .filter_map(|(k, o)| {
                o.h2.iter()
                    .map(|(_, used)| *used)
                    .min()
                    .map(|used| (used, k.clone()))
            })
            .min_by_key(|(used, _)| *used);
        let (used, key) = coldest_h2?;
        let origin = origins.get_mut(&key)?;
        let at = origin.h2.iter().position(|(_, u)| *u == used)?;
        let (tx, _) = origin.h2.remove(at);
        Some(Sender::H2(tx))
    }

    /// Runs a connection until it closes, holding its permit until then.
    fn spawn_conn<F>(&self, conn: F, socket: Option<OwnedSemaphorePermit>)
    where
        F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let sockets = self.sockets.clone();
        let (open, limit) = (self.open.clone(), self.limit);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "delivery connection ended");
            }
            drop(socket);
            open.set((limit - sockets.available_permits()) as f64);
        });
    }

    /// Drops expired and closed connections and forgets origins with none left.
    fn sweep(&self, now: Instant) {
        let idle = self.idle_timeout;
        let fresh = |since: Instant| now.saturating_duration_since(since) < idle;
        self.lock().retain(|_, origin| {
            origin
                .h1
                .retain(|(tx, since)| !tx.is_closed() && fresh(*since));
            origin
                .h2
                .retain(|(tx, used)| !tx.is_closed() && fresh(*used));
            !origin.h1.is_empty() || !origin.h2.is_empty()
        });
    }

    /// Starts the sweeper on the runtime of the first checkout; it ends with the pool.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.load(Ordering::Relaxed)
            || self.sweeper_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let period = (self.idle_timeout / 2).max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep(Instant::now());
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Origins> {
        // Nothing panics while holding the lock; if something did, the map is still whole.
        self.origins.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(super) fn idle_counts(&self) -> (usize, usize) {
        let origins = self.lock();
        origins
            .values()
            .fold((0, 0), |(h1, h2), o| (h1 + o.h1.len(), h2 + o.h2.len()))
    }
}

fn handshake_error(uri: &Uri, source: hyper::Error) -> ConnectError {
    ConnectError::Handshake {
        host: uri.host().unwrap_or_default().into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keys_are_scheme_and_authority() {
        let key = |https: bool, a: &str| OriginKey {
            https,
            authority: Authority::from_maybe_shared(Bytes::copy_from_slice(a.as_bytes())).unwrap(),
        };
        let hash = |k: &OriginKey| {
            std::hash::BuildHasher::hash_one(&foldhash::fast::FixedState::with_seed(7), k)
        };
        let a = key(false, "hooks.example:8080");
        assert_eq!(a, key(false, "hooks.example:8080"));
        assert_eq!(hash(&a), hash(&key(false, "hooks.example:8080")));
        assert_ne!(a, key(true, "hooks.example:8080"));
        assert_ne!(a, key(false, "hooks.example:8081"));
        assert_ne!(a, key(false, "hooks.example"));
        // One pool lookup per spelling: equal keys hash alike, whatever the hasher.
        let mut pool: Origins = HashMap::default();
        pool.insert(
            a.clone(),
            Origin {
                host: HeaderValue::from_static("x"),
                h1: Vec::new(),
                h2: Vec::new(),
            },
        );
        assert!(pool.contains_key(&key(false, "hooks.example:8080")));
        assert!(!pool.contains_key(&key(true, "hooks.example:8080")));
    }
}
