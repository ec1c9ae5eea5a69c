//! The sink: a minimal hyper HTTP/1.1 server that reads each body, counts it and answers `200`,
//! and a black hole that accepts connections and never answers.
//!
//! Where it sits: every request of the run lands here, the ceiling client's and Herald's alike,
//! so both are counted by the same code on the same runtime. It is kept as cheap as a receiver
//! can be (keep-alive, `TCP_NODELAY`, no allocation beyond hyper's own body buffer, one relaxed
//! atomic per counter), because whatever it costs is taken from both sides of the ratio.
//!
//! The path says which endpoint a request is for: `/s/{i}` (answered at once) or `/slow/{i}`
//! (answered after the configured delay), `i < ENDPOINTS`. Latency is read from the body: the
//! feeder writes its send time (nanoseconds since the bench's epoch) as `"sentns":"<digits>"`;
//! arrival minus that goes into a histogram when the send time falls inside the window the
//! orchestrator opened, so events sent during warm-up or a previous phase never pollute a
//! phase's percentiles. Slow endpoints are counted but left out of the histogram: their latency
//! is the delay they were told to add.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Endpoint slots counted separately (`/s/0` … `/s/15`).
pub const ENDPOINTS: usize = 16;
/// The slot the ceiling client posts to; no subscription points here.
pub const CEILING_SLOT: usize = ENDPOINTS - 1;
/// The slot filler subscriptions point to; no event should ever reach it.
pub const FILLER_SLOT: usize = ENDPOINTS - 2;
/// Histogram shards (connections pick one by their index): no lock is shared by two busy
/// connections unless there are more connections than shards.
const SHARDS: usize = 16;
/// Largest latency recorded, µs (one hour); anything above is clamped to it.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// The latency timeline's resolution: the worst latency of the events sent in each slice of
/// this many ms of the window.
pub const TIMELINE_SLICE_MS: u64 = 10;
/// Slices of the timeline (a window longer than this many slices folds its end into the last).
const TIMELINE_SLICES: usize = 8192;

/// The bench's clock: every send and arrival time is nanoseconds since this instant, so the
/// feeder and the sink (both in this process) compare readings of one monotonic clock.
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    /// The clock reading of `at`.
    pub fn ns_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.0).as_nanos() as u64
    }
}

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// What the sink has seen. Counters only grow; the orchestrator takes deltas between snapshots.
pub struct SinkStats {
    /// Requests answered per endpoint slot (`/s/{i}`).
    per_endpoint: [AtomicU64; ENDPOINTS],
    /// Requests per slow endpoint slot (`/slow/{i}`), apart: a slow endpoint's stragglers never
    /// count as another scenario's fast deliveries.
    per_slow_endpoint: [AtomicU64; ENDPOINTS],
    /// Body bytes received.
    pub bytes: AtomicU64,
    /// Requests whose body carried no readable send time (should stay 0).
    pub unstamped: AtomicU64,
    /// Per `/s/` slot: requests whose event was sent inside the window (counted whenever they
    /// arrive), so a window's throughput is not blurred by a backlog carried across its edges.
    window_per_endpoint: [AtomicU64; ENDPOINTS],
    /// Send times in `[window_from, window_until)` are recorded in the histogram.
    window_from: AtomicU64,
    window_until: AtomicU64,
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Per slice of send time since the window opened: the worst latency, µs (0: none sent).
    timeline: Vec<AtomicU64>,
    next_conn: AtomicUsize,
    /// Delay of `/slow/` endpoints.
    slow: Duration,
    clock: Arc<Clock>,
}

impl SinkStats {
    fn shard(&self, i: usize) -> MutexGuard<'_, Histogram<u64>> {
        // A panic while recording leaves a usable histogram; keep going.
        self.shards[i % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Requests per `/s/` slot so far.
    pub fn counts(&self) -> [u64; ENDPOINTS] {
        std::array::from_fn(|i| self.per_endpoint[i].load(Ordering::Relaxed))
    }

    /// Requests to these `/s/` slots so far, together.
    pub fn count_of(&self, slots: &[usize]) -> u64 {
        slots
            .iter()
            .map(|&i| self.per_endpoint[i].load(Ordering::Relaxed))
            .sum()
    }

    /// Requests per `/slow/` slot so far.
    pub fn slow_counts(&self) -> [u64; ENDPOINTS] {
        std::array::from_fn(|i| self.per_slow_endpoint[i].load(Ordering::Relaxed))
    }

    /// Starts a latency window: clears the histogram and records events sent from now until
    /// [`SinkStats::close_window`]. Returns the window's start (clock ns).
    pub fn open_window(&self) -> u64 {
        for i in 0..SHARDS {
            self.shard(i).reset();
        }
        for c in self.window_per_endpoint.iter().chain(&self.timeline) {
            c.store(0, Ordering::Relaxed);
        }
        self.window_until.store(u64::MAX, Ordering::Relaxed);
        let now = self.clock.ns();
        self.window_from.store(now, Ordering::Relaxed);
        now
    }

    /// Events sent from now on are no longer recorded (those sent before still are, when they
    /// arrive, so a phase's tail is counted after its feeders stop).
    pub fn close_window(&self) -> u64 {
        let now = self.clock.ns();
        self.window_until.store(now, Ordering::Relaxed);
        now
    }

    /// Per `/s/` slot: requests for events sent inside the current (or last) window.
    pub fn window_counts(&self) -> [u64; ENDPOINTS] {
        std::array::from_fn(|i| self.window_per_endpoint[i].load(Ordering::Relaxed))
    }

    /// The histogram of everything recorded since [`SinkStats::open_window`].
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for i in 0..SHARDS {
            // Same bounds on both sides: `add` cannot fail.
            let _ = all.add(&*self.shard(i));
        }
        all
    }

    /// The stalls of the current (or last) window: runs of consecutive timeline slices whose
    /// worst latency is at least `over_us`, as (start ms, end ms, worst µs) from the window's
    /// start, in time order.
    pub fn stalls(&self, over_us: u64) -> Vec<(u64, u64, u64)> {
        let worst: Vec<u64> = self
            .timeline
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect();
        stall_runs(&worst, over_us)
    }

    fn record(&self, shard: usize, slot: usize, slow: bool, body: &[u8]) {
        let arrived = self.clock.ns();
        let counter = if slow {
            &self.per_slow_endpoint[slot]
        } else {
            &self.per_endpoint[slot]
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        let Some(sent) = sent_ns(body) else {
            self.unstamped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slow
            || sent < self.window_from.load(Ordering::Relaxed)
            || sent >= self.window_until.load(Ordering::Relaxed)
        {
            return;
        }
        self.window_per_endpoint[slot].fetch_add(1, Ordering::Relaxed);
        let us = (arrived.saturating_sub(sent) / 1000).clamp(1, MAX_LATENCY_US);
        self.shard(shard).saturating_record(us);
        // Saturating: a window opened since the check above moves its start past `sent`.
        let slice = sent.saturating_sub(self.window_from.load(Ordering::Relaxed))
            / 1_000_000
            / TIMELINE_SLICE_MS;
        self.timeline[(slice as usize).min(TIMELINE_SLICES - 1)].fetch_max(us, Ordering::Relaxed);
    }
}

/// Runs of consecutive slices whose worst latency is at least `over_us`: (start ms, end ms,
/// worst µs of the run).
fn stall_runs(worst: &[u64], over_us: u64) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    let mut open = false;
    for (i, &us) in worst.iter().enumerate() {
        let at = i as u64 * TIMELINE_SLICE_MS;
        match (us >= over_us, open, runs.last_mut()) {
            (true, true, Some(run)) => {
                run.1 = at + TIMELINE_SLICE_MS;
                run.2 = run.2.max(us);
            }
            (true, _, _) => runs.push((at, at + TIMELINE_SLICE_MS, us)),
            (false, _, _) => {}
        }
        open = us >= over_us;
    }
    runs
}

/// The send time in a body: the digits after the first `"sentns":"`.
pub fn sent_ns(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sentns\":\"";
    let at = memchr::memmem::find(body, KEY)? + KEY.len();
    let digits = &body[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || end > 19 {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The slot and slowness of a request path: `/s/{i}` or `/slow/{i}`; anything else counts
/// as the ceiling slot's neighbour [`FILLER_SLOT`] (it should not happen).
pub fn route(path: &str) -> (usize, bool) {
    let (rest, slow) = if let Some(r) = path.strip_prefix("/slow/") {
        (r, true)
    } else if let Some(r) = path.strip_prefix("/s/") {
        (r, false)
    } else {
        return (FILLER_SLOT, false);
    };
    match rest.parse::<usize>() {
        Ok(i) if i < ENDPOINTS => (i, slow),
        _ => (FILLER_SLOT, slow),
    }
}

/// A running sink.
pub struct Sink {
    /// One listener per endpoint slot, so each subscription is its own origin (its own
    /// connection pool in Herald), as ten subscribers would be; `addrs[CEILING_SLOT]` is the
    /// ceiling's. With `one_origin`, every entry is the same listener.
    pub addrs: Vec<SocketAddr>,
    pub stats: Arc<SinkStats>,
}

impl Sink {
    /// Binds `127.0.0.1:0` (once per slot, or once for all with `one_origin`) and serves on the
    /// current runtime until the runtime is dropped.
    pub async fn start(
        clock: Arc<Clock>,
        slow: Duration,
        one_origin: bool,
    ) -> std::io::Result<Sink> {
        let stats = Arc::new(SinkStats {
            per_endpoint: std::array::from_fn(|_| AtomicU64::new(0)),
            per_slow_endpoint: std::array::from_fn(|_| AtomicU64::new(0)),
            window_per_endpoint: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            window_from: AtomicU64::new(u64::MAX),
            window_until: AtomicU64::new(u64::MAX),
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            timeline: (0..TIMELINE_SLICES).map(|_| AtomicU64::new(0)).collect(),
            next_conn: AtomicUsize::new(0),
            slow,
            clock,
        });
        let mut addrs = Vec::with_capacity(ENDPOINTS);
        for _ in 0..ENDPOINTS {
            if one_origin && let Some(&first) = addrs.first() {
                addrs.push(first);
                continue;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            serve(listener, stats.clone());
        }
        Ok(Sink { addrs, stats })
    }
}

/// Accepts and serves connections on `listener` (spawned on the current runtime).
fn serve(listener: TcpListener, s: Arc<SinkStats>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // EMFILE and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let stats = s.clone();
            let shard = stats.next_conn.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let stats = stats.clone();
                    async move {
                        let (slot, slow) = route(req.uri().path());
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        stats.record(shard, slot, slow, &body);
                        if slow {
                            tokio::time::sleep(stats.slow).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A listener that accepts connections, reads whatever arrives and never answers: deliveries
/// to it stay in flight until Herald's timeout, and the rest of their queue stays pending.
pub async fn black_hole() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    Ok(addr)
}
