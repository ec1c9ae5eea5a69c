//! The load: the event payload, the ceiling client and the feeders that post NDJSON batches to
//! Herald.
//!
//! Where it sits: the orchestrator (`e2e.rs`) starts these on the load runtime and reads their
//! counters; the sink counts what arrives. Everything speaks plain hyper `conn::http1` over its
//! own keep-alive connection (PERF-NOTES: the cheapest client here), each request written as one
//! buffer ([`handshake`]), so the ceiling is what the machine does with HTTP, not what a heavier
//! client library does.
//!
//! The payload is one CloudEvent of a fixed size with two fixed-width digit fields, its id and
//! its send time, written into a copy of a template: building an event costs a `memcpy`, and
//! every event of a run has the same length. Herald passes a CloudEvent through to
//! `format = "cloudevents"` subscribers byte for byte, so the send time arrives at the sink
//! where it was written.
//!
//! Feeders run closed-loop (send a batch, wait for its `202`, send the next: Herald's peak) or
//! open-loop on a shared schedule (batch `k` is due at `start + k × interval`, whichever
//! connection is free takes it, and its events carry the *due* time, so a Herald that falls
//! behind shows it in the latency instead of silently slowing the feeder down).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use crate::sink::{CEILING_SLOT, Clock, histogram};

/// Digits of the id and send-time fields (16 digits of nanoseconds: 115 days).
const DIGITS: usize = 16;

/// The attributes every bench event carries; `subs.rs` builds the three million-subs matches
/// and the non-matching filler around them.
pub const EVENT_TYPE: &str = "item:saved";
pub const SPACE: &str = "acme";
pub const LANGUAGE: &str = "en";
pub const CONTENT_TYPE: &str = "blog";
pub const ENTITY: &str = "6f1c0a2e9b7d4c3a8e5f1b2d3c4a5e6f";
pub const OWNER: &str = "alice";

/// One event as bytes, with the offsets of its two variable fields.
#[derive(Clone)]
pub struct Payload {
    template: Vec<u8>,
    id_at: usize,
    sent_at: usize,
}

fn put_digits(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl Payload {
    /// A CloudEvent of `size` bytes (at least the fixed part, ~420 bytes).
    pub fn new(size: usize) -> Payload {
        let zeros = "0".repeat(DIGITS);
        let head = format!(
            "{{\"specversion\":\"1.0\",\"type\":\"{EVENT_TYPE}\",\"source\":\"/bench/e2e\",\
             \"id\":\"b{zeros}\",\"time\":\"2024-08-26T14:30:00Z\",\
             \"datacontenttype\":\"application/json\",\"space\":\"{SPACE}\",\
             \"language\":\"{LANGUAGE}\",\"contenttype\":\"{CONTENT_TYPE}\",\
             \"entityid\":\"{ENTITY}\",\"owner\":\"{OWNER}\",\"data\":{{\"sentns\":\"{zeros}\",\
             \"item\":{{\"name\":\"Bench item\",\"path\":\"/sitecore/content/Home/bench\",\
             \"version\":1,\"text\":\""
        );
        let tail = "\"}}}";
        let pad = size.saturating_sub(head.len() + tail.len());
        let mut template = head.into_bytes();
        template.extend(std::iter::repeat_n(b'x', pad));
        template.extend_from_slice(tail.as_bytes());
        let find = |key: &[u8]| {
            memchr::memmem::find(&template, key).expect("the template holds its own keys")
                + key.len()
        };
        let id_at = find(b"\"id\":\"b");
        let sent_at = find(b"\"sentns\":\"");
        Payload {
            template,
            id_at,
            sent_at,
        }
    }

    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Appends one event with this id and send time.
    pub fn write(&self, out: &mut Vec<u8>, id: u64, sent_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.template);
        put_digits(
            &mut out[start + self.id_at..start + self.id_at + DIGITS],
            id,
        );
        put_digits(
            &mut out[start + self.sent_at..start + self.sent_at + DIGITS],
            sent_ns,
        );
    }
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

pub type Sender = http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection; its driver runs on the current runtime.
pub async fn connect(target: &Target) -> anyhow::Result<Sender> {
    match target {
        Target::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            s.set_nodelay(true)?;
            handshake(s).await
        }
        Target::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("connecting to {}", path.display()))?;
            handshake(s).await
        }
    }
}

/// hyper's HTTP/1.1 client on `io`, writing each request as one buffer, as Herald does: over a
/// socket hyper's default is a `writev` of head and body, and one `send` of both measured ~20 %
/// more requests/s for this bare client (the ceiling would otherwise not be the best it does).
async fn handshake<T>(io: T) -> anyhow::Result<Sender>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one request and reads the whole answer.
pub async fn send(
    sender: &mut Sender,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "bench");
    if let Some(ct) = content_type {
        req = req.header(http::header::CONTENT_TYPE, ct);
    }
    let resp = sender.send_request(req.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The ceiling: `conns` keep-alive connections, each posting the payload to the sink's
/// ceiling slot back to back until `stop`. Returns the tasks; the sink counts what arrives.
pub fn ceiling(
    sink: std::net::SocketAddr,
    conns: usize,
    payload: Arc<Payload>,
    clock: Arc<Clock>,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<anyhow::Result<u64>>> {
    let path = format!("/s/{CEILING_SLOT}");
    (0..conns)
        .map(|_| {
            let (payload, clock, stop, path) =
                (payload.clone(), clock.clone(), stop.clone(), path.clone());
            tokio::spawn(async move {
                let mut sender = connect(&Target::Tcp(sink)).await?;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut buf = Vec::with_capacity(payload.len());
                    payload.write(&mut buf, sent, clock.ns());
                    let (status, _) = send(
                        &mut sender,
                        "POST",
                        &path,
                        Some("application/json"),
                        buf.into(),
                    )
                    .await?;
                    anyhow::ensure!(status == 200, "sink answered {status}");
                    sent += 1;
                }
                Ok(sent)
            })
        })
        .collect()
}

/// How feeders send.
#[derive(Debug, Clone)]
pub struct FeedPlan {
    /// One connection per entry.
    pub targets: Vec<Target>,
    /// Events per NDJSON batch.
    pub batch: usize,
    /// `None`: closed loop. `Some(r)`: open loop at `r` events/s in total.
    pub rate: Option<f64>,
    /// Stop once this many events were accepted (closed loop fill-ups).
    pub limit: Option<u64>,
    /// Closed loop through the sink: hold the next batch while more than this many accepted
    /// events are not yet delivered everywhere.
    pub backlog: Option<Backlog>,
}

/// How many events have been delivered to every matching endpoint so far, and how many may be
/// accepted but not yet delivered.
#[derive(Clone)]
pub struct Backlog {
    pub cap: u64,
    pub delivered: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").field("cap", &self.cap).finish()
    }
}

/// Counters shared by a feed's connections.
pub struct FeedStats {
    /// Events acknowledged with `202`.
    pub accepted: AtomicU64,
    /// Batches answered with anything else (the last status is kept in `last_status`).
    pub refused: AtomicU64,
    pub last_status: AtomicU64,
    /// Connection or protocol errors.
    pub errors: AtomicU64,
    /// Open loop: batches sent more than 5 ms after they were due (no connection was free).
    pub late: AtomicU64,
    /// Closed loop with a backlog cap: 1 ms waits for deliveries to catch up.
    pub held: AtomicU64,
    /// Events acknowledged whose batch was sent inside `[win_from, win_until)` (clock ns): the
    /// same set of events whose deliveries the sink counts for that window.
    pub win_accepted: AtomicU64,
    win_from: AtomicU64,
    win_until: AtomicU64,
    /// Time from sending a batch to its `202`, µs (durable acknowledgement).
    pub ack: std::sync::Mutex<Histogram<u64>>,
}

impl FeedStats {
    pub fn new() -> Arc<FeedStats> {
        Arc::new(FeedStats {
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_status: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            late: AtomicU64::new(0),
            held: AtomicU64::new(0),
            win_accepted: AtomicU64::new(0),
            win_from: AtomicU64::new(u64::MAX),
            win_until: AtomicU64::new(u64::MAX),
            ack: std::sync::Mutex::new(histogram()),
        })
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Counts accepted events sent from `from` (clock ns) on.
    pub fn open_window(&self, from: u64) {
        self.win_accepted.store(0, Ordering::Relaxed);
        self.win_until.store(u64::MAX, Ordering::Relaxed);
        self.win_from.store(from, Ordering::Relaxed);
    }

    /// Events sent from `until` on no longer count.
    pub fn close_window(&self, until: u64) {
        self.win_until.store(until, Ordering::Relaxed);
    }

    fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.win_from.load(Ordering::Relaxed)
            && sent_ns < self.win_until.load(Ordering::Relaxed)
    }

    pub fn reset_ack(&self) {
        self.ack.lock().unwrap_or_else(|p| p.into_inner()).reset();
    }

    pub fn ack_latency(&self) -> Histogram<u64> {
        self.ack.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Event ids unique for the whole bench process (Herald deduplicates on `(source, id)`).
pub static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A running feed.
pub struct Feed {
    pub stats: Arc<FeedStats>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Feed {
    /// Connects every target, then starts sending.
    pub async fn start(
        plan: FeedPlan,
        payload: Arc<Payload>,
        clock: Arc<Clock>,
    ) -> anyhow::Result<Feed> {
        let stats = FeedStats::new();
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(plan.targets.len());
        for t in &plan.targets {
            senders.push((connect(t).await?, t.clone()));
        }
        let start = Instant::now() + Duration::from_millis(5);
        let next_batch = Arc::new(AtomicU64::new(0));
        let interval = plan
            .rate
            .map(|r| Duration::from_secs_f64(plan.batch as f64 / r.max(1.0)));
        let tasks = senders
            .into_iter()
            .map(|(mut sender, target)| {
                let (stats, stop, payload, clock, next_batch) = (
                    stats.clone(),
                    stop.clone(),
                    payload.clone(),
                    clock.clone(),
                    next_batch.clone(),
                );
                let (batch, limit, backlog) = (plan.batch, plan.limit, plan.backlog.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed)
                        && limit.is_none_or(|l| stats.accepted() < l)
                    {
                        if let Some(b) = &backlog {
                            // Connections may pass this check together: the overshoot is at
                            // most one batch per connection.
                            while stats.accepted().saturating_sub((b.delivered)()) > b.cap
                                && !stop.load(Ordering::Relaxed)
                            {
                                stats.held.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        let sent_ns = match interval {
                            None => clock.ns(),
                            Some(every) => {
                                let k = next_batch.fetch_add(1, Ordering::Relaxed);
                                let due = start + every.mul_f64(k as f64);
                                let now = Instant::now();
                                if due > now {
                                    tokio::time::sleep_until(due.into()).await;
                                } else if now - due > Duration::from_millis(5) {
                                    stats.late.fetch_add(1, Ordering::Relaxed);
                                }
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                clock.ns_at(due)
                            }
                        };
                        let mut body = Vec::with_capacity(batch * (payload.len() + 1));
                        for _ in 0..batch {
                            payload.write(
                                &mut body,
                                NEXT_ID.fetch_add(1, Ordering::Relaxed),
                                sent_ns,
                            );
                            body.push(b'\n');
                        }
                        let asked = Instant::now();
                        match send(
                            &mut sender,
                            "POST",
                            "/v1/events",
                            Some("application/x-ndjson"),
                            body.into(),
                        )
                        .await
                        {
                            Ok((202, _)) => {
                                let us = asked.elapsed().as_micros() as u64;
                                stats
                                    .ack
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .saturating_record(us.max(1));
                                stats.accepted.fetch_add(batch as u64, Ordering::Relaxed);
                                if stats.in_window(sent_ns) {
                                    stats
                                        .win_accepted
                                        .fetch_add(batch as u64, Ordering::Relaxed);
                                }
                            }
                            Ok((status, _)) => {
                                stats.refused.fetch_add(1, Ordering::Relaxed);
                                stats
                                    .last_status
                                    .store(u64::from(status), Ordering::Relaxed);
                            }
                            Err(_) => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                // The connection is gone: dial again (bounded by the loop's
                                // own stop conditions), pausing so a dead Herald is not hammered.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                match connect(&target).await {
                                    Ok(s) => sender = s,
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Feed { stats, stop, tasks })
    }

    /// Stops sending and waits for the batches in flight to be answered.
    pub async fn stop(self) -> Arc<FeedStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.stats
    }

    /// Waits until every connection has stopped by itself (a `limit` feed).
    pub async fn join(self) -> Arc<FeedStats> {
        for t in self.tasks {
            let _ = t.await;
        }
        self.stats
    }
}
