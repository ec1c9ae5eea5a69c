//! The load bench: Herald against the hardware ceiling, in one run.
//!
//! `cargo bench --bench e2e` (flags after `--`, `--help` lists them) runs, in one process tree:
//!
//! - a **sink** (`e2e/sink.rs`): a minimal hyper HTTP/1.1 server that reads each body, counts it,
//!   takes the latency from the send time the body carries, and answers `200`;
//! - the **ceiling** (`e2e/load.rs`): a bare hyper `conn::http1` client, `--in-flight` keep-alive
//!   connections posting the same ~600-byte event to the same sink back to back — what this
//!   machine does with HTTP, measured right before and right after Herald's peak (A B A, since
//!   the machine changes speed by itself; PERF-NOTES) and averaged;
//! - **Herald**, the release binary (`e2e/daemon.rs`), a child process on a fresh data directory
//!   with `fsync = "batch"`, its subscriptions pointing at the sink, fed CloudEvents as NDJSON
//!   batches over its unix socket and TCP by closed-loop feeders (its peak), then by open-loop
//!   feeders paced at half of that peak (where the latency target is set).
//!
//! Scenarios: `fanout-1`, `fanout-10`, `million-subs` (1,000,000 stored, 3 match each event;
//! its peak compared A B A B with the same traffic against 10 stored), `slow-endpoint` (ten
//! endpoints, one answers after 2 s; the nine's rate compared A B A B with ten fast ones),
//! `ingest-batch` / `ingest-never` (no subscriptions, interleaved A B A B), `startup-1m`
//! (1,000,000 pending deliveries, `kill -9`, time to READY). Output: a table, the targets of the
//! issue with pass/fail, and one JSON file (default `target/bench/e2e.json`).
//!
//! Peaks are closed loops *through the sink*: feeders hold their next batch while more than
//! `--max-backlog` accepted events are undelivered, so the peak is what Herald sustains end to
//! end (`--max-backlog 0` lets ingest outrun delivery instead). The latency targets are read at
//! half of that peak, from open-loop feeders whose events carry their *scheduled* send time.
//! Each sink endpoint is its own listener (its own origin, as ten subscribers would be);
//! `--one-origin` puts them all on one. `--perf` records Herald with `perf record` during the
//! peaks and the big start-ups. Every data directory lives in a temp dir removed at the end,
//! except million-subs' seeded population, kept in `target/bench/e2e-cache` (keyed by the herald
//! build) because writing a million subscriptions takes longer than the rest of the run.
//!
//! Each process's share of the two cores is a flag (`--herald-workers`, `--sink-workers`,
//! `--load-workers`): two runtimes with default workers on 2 cores cost a lot (PERF-NOTES).
//! The Herald binary is cargo's own build of the `herald` target for this bench
//! (`CARGO_BIN_EXE_herald`, built with the bench profile, which inherits `release`), so a
//! `cargo bench` never runs a stale daemon; `--herald-bin` points elsewhere.

#[path = "e2e/daemon.rs"]
mod daemon;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/sink.rs"]
mod sink;
#[path = "e2e/subs.rs"]
mod subs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value, json};

use daemon::{Herald, Settings};
use load::{Feed, FeedPlan, FeedStats, Payload};
use sink::{CEILING_SLOT, Clock, FILLER_SLOT, Sink};

const SCENARIOS: &[&str] = &[
    "fanout-1",
    "fanout-10",
    "million-subs",
    "slow-endpoint",
    "ingest-batch",
    "ingest-never",
    "startup-1m",
    "callgrind-fanout-1",
    "callgrind-fanout-10",
];

/// Scenarios that run only when `--only` names them: they need valgrind and take minutes.
const ON_REQUEST: &[&str] = &["callgrind-fanout-1", "callgrind-fanout-10"];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "e2e",
    about = "Herald against the hardware ceiling, in one run (cargo bench --bench e2e -- FLAGS)"
)]
struct Args {
    /// Seconds each measured phase lasts (D). Ceilings run D/2 before and D/2 after Herald's peak.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Seconds of traffic before each measurement window opens.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Subscriptions of the fan-out scenario (K); also the endpoints of slow-endpoint (≤ 14).
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// Ceiling client: keep-alive connections, one request in flight on each (N).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Bytes of one event (a CloudEvent; at least ~420).
    #[arg(long, default_value_t = 600)]
    payload_bytes: usize,
    /// Events per NDJSON batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Closed-loop feeder connections (alternating unix socket and TCP).
    #[arg(long, default_value_t = 4)]
    feeders: usize,
    /// Closed-loop feeder connections of ingest-batch / ingest-never: many senders, as a
    /// group commit expects (with few, each waits out an fsync per batch and the ratio
    /// measures the disk's latency, not the cost of durability).
    #[arg(long, default_value_t = 16)]
    ingest_feeders: usize,
    /// Events per batch of the half-rate (latency) phase (default: `--batch` ÷ the fan-out,
    /// at least 1). An event's latency includes draining its batch's burst of deliveries, so
    /// every scenario's latency phase posts bursts of the same number of deliveries (64 events
    /// × fan-out 10 at once would measure 640 deliveries in a row, not Herald's latency).
    #[arg(long)]
    paced_batch: Option<usize>,
    /// Open-loop feeder connections for the half-rate phase (they share one schedule). Enough
    /// that a batch never waits for a free connection while Herald syncs (that would be the
    /// feeder's latency, not Herald's; `half_rate_late_batches` counts the ones that did).
    #[arg(long, default_value_t = 64)]
    paced_feeders: usize,
    /// Feeder transport: both, unix or tcp.
    #[arg(long, default_value = "both")]
    transport: String,
    /// Stored subscriptions of million-subs.
    #[arg(long, default_value_t = 1_000_000)]
    subs: usize,
    /// Seconds spent measuring POST /v1/subscriptions before the rest of million-subs is
    /// written through the journal library.
    #[arg(long, default_value_t = 2.0)]
    create_probe: f64,
    /// Create all of million-subs through the API (slow: see the report's create rate).
    #[arg(long)]
    subs_via_api: bool,
    /// Pending deliveries of startup-1m.
    #[arg(long, default_value_t = 1_000_000)]
    pending: u64,
    /// Delay of the slow endpoint, ms.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// Herald's [server] worker_threads.
    #[arg(long, default_value_t = 2)]
    herald_workers: usize,
    /// Herald's [delivery] max_in_flight_per_endpoint (default: Herald's own).
    #[arg(long)]
    herald_in_flight: Option<usize>,
    /// Herald's [delivery] pool_max_idle_per_origin (default: Herald's own).
    #[arg(long)]
    pool_idle: Option<usize>,
    /// Put every sink endpoint on one listener (one origin, so Herald's subscriptions share one
    /// connection pool) instead of one listener per endpoint.
    #[arg(long)]
    one_origin: bool,
    /// Worker threads of the sink's runtime.
    #[arg(long, default_value_t = 1)]
    sink_workers: usize,
    /// Worker threads of the load runtime (ceiling client and feeders).
    #[arg(long, default_value_t = 1)]
    load_workers: usize,
    /// Peak phases: accepted events not yet delivered everywhere, at most (0: no cap, ingest
    /// may outrun delivery).
    #[arg(long, default_value_t = 512)]
    max_backlog: u64,
    /// Seconds to wait for a phase's deliveries to arrive after its feeders stop.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Events of a `callgrind-*` scenario's measured run (after as many again of warm-up).
    #[arg(long, default_value_t = 2000)]
    callgrind_events: u64,
    /// `[storage] queue_write_after` of a `callgrind-*` scenario's Herald (see `callgrind`);
    /// empty leaves the key out (for builds before it existed).
    #[arg(long, default_value = "1m")]
    callgrind_queue_write_after: String,
    /// Comma-separated scenarios to run (default: all but the `callgrind-*` ones).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the JSON goes.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed million-subs afresh instead of copying the data directory kept from an earlier run
    /// (target/bench/e2e-cache, keyed by the population and the herald build).
    #[arg(long)]
    no_cache: bool,
    /// Record Herald with `perf record` (DWARF call graphs) during every peak window and the
    /// million-subs and startup-1m start-ups, into target/bench/perf/*.data.
    #[arg(long)]
    perf: bool,
    /// The herald binary (default: cargo's build for this bench).
    #[arg(long)]
    herald_bin: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One scenario's figures; the fields first, everything else in `extra`.
#[derive(Serialize, Default, Clone)]
struct Scenario {
    name: String,
    ceiling_rps: Option<f64>,
    herald_events_per_s: Option<f64>,
    herald_deliveries_per_s: Option<f64>,
    /// Herald deliveries/s ÷ ceiling requests/s, same run.
    ratio: Option<f64>,
    /// Ingest-to-arrival latency at half of Herald's peak rate.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    peak_rss_bytes: Option<u64>,
    cpu_s_per_1k_deliveries: Option<f64>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl Scenario {
    fn new(name: &str) -> Scenario {
        Scenario {
            name: name.into(),
            ..Default::default()
        }
    }

    fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.extra.insert(key.into(), v.into());
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(Value::as_f64)
    }
}

/// One target of the issue, checked against this run.
#[derive(Serialize, Clone)]
struct Target {
    target: String,
    value: Option<f64>,
    pass: Option<bool>,
}

/// What every scenario shares.
struct Ctx {
    args: Args,
    bin: PathBuf,
    clock: Arc<Clock>,
    sink: Sink,
    sink_rt: tokio::runtime::Handle,
    payload: Arc<Payload>,
    ticks: f64,
    /// Base URL of each endpoint slot.
    bases: Vec<String>,
    tmp: PathBuf,
}

impl Ctx {
    fn secs(&self) -> Duration {
        Duration::from_secs_f64(self.args.duration)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.args.warmup)
    }

    fn settings(&self, fsync: &'static str) -> Settings<'static> {
        Settings {
            fsync,
            workers: self.args.herald_workers,
            in_flight: self.args.herald_in_flight,
            timeout: "10s",
            retry_schedule: "[\"1s\", \"5s\", \"30s\"]",
            pool_idle: self.args.pool_idle,
            queue_write_after: None,
        }
    }

    /// Where `perf record` writes for `what`, when `--perf` asked for it.
    fn perf_path(&self, what: &str) -> Option<PathBuf> {
        self.args.perf.then(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench/perf/{what}.data"))
        })
    }

    /// A fresh directory for one Herald.
    fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.tmp.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    async fn launch(&self, dir: &Path, s: &Settings<'_>) -> anyhow::Result<Herald> {
        let config = daemon::config_text(dir, s);
        Herald::launch(&self.bin, dir, &config, Duration::from_secs(600), None).await
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// The ceiling for `secs` after a warm-up: requests/s and the latency histogram.
async fn ceiling(ctx: &Ctx, secs: Duration) -> anyhow::Result<(f64, Histogram<u64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load::ceiling(
        ctx.sink.addrs[CEILING_SLOT],
        ctx.args.in_flight,
        ctx.payload.clone(),
        ctx.clock.clone(),
        stop.clone(),
    );
    tokio::time::sleep(ctx.warmup()).await;
    let stats = &ctx.sink.stats;
    stats.open_window();
    let (c0, t0) = (stats.counts()[CEILING_SLOT], Instant::now());
    tokio::time::sleep(secs).await;
    let (c1, dt) = (stats.counts()[CEILING_SLOT], t0.elapsed());
    stats.close_window();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.context("ceiling task")??;
    }
    Ok(((c1 - c0) as f64 / dt.as_secs_f64(), stats.latency()))
}

/// One Herald phase: what the window saw.
struct Phase {
    events_per_s: f64,
    /// Acknowledgements received during the window, events/s.
    acked_per_s: f64,
    /// Deliveries of the events sent in the window, per second of window.
    deliveries_per_s: f64,
    /// Per endpoint slot, deliveries/s in the window.
    per_endpoint: [f64; sink::ENDPOINTS],
    /// Requests that arrived at the counted endpoints during the window, whatever their send
    /// time (differs from `deliveries_per_s` by the backlog's change over the window).
    arrivals_per_s: f64,
    /// The same for slow endpoints (arrivals in the window).
    slow_per_endpoint: [f64; sink::ENDPOINTS],
    cpu_s_per_1k: Option<f64>,
    latency: Histogram<u64>,
    ack: Histogram<u64>,
    drain_s: Option<f64>,
    drained: bool,
    accepted: u64,
    refused: u64,
    errors: u64,
    late: u64,
    /// Seconds the window lasted.
    window_s: f64,
    cpu_s: f64,
    /// Of `cpu_s`, the store's background threads' (flushes, compactions, memtable frees).
    store_bg_cpu_s: f64,
    /// CPU seconds of this process (sink and feeders) in the window.
    bench_cpu_s: f64,
    /// CPU seconds the hypervisor took from the box in the window (all CPUs).
    steal_s: f64,
    /// The worst latency stalls of the window, in time order.
    stalls: Vec<Stall>,
}

/// A run of the window's latency timeline at or over [`STALL_MS`]: when its events were sent
/// (ms since the window opened), the worst latency among them, and what Herald's threads ran
/// from [`STALL_LEAD_MS`] before it until its last event arrived.
struct Stall {
    from_ms: u64,
    to_ms: u64,
    worst_ms: f64,
    threads: daemon::SpanThreads,
}

/// A latency at or over this is a stall (the half-rate target).
const STALL_MS: u64 = 10;
/// How far before a stall its threads' run time is counted.
const STALL_LEAD_MS: u64 = 100;
/// Stalls reported per phase, the worst ones.
const STALLS_KEPT: usize = 8;

/// Feeds `h` with `plan` for `secs` after a warm-up, then waits for the phase's deliveries to
/// the `counted` endpoint slots (`fanout` per accepted event) to arrive.
async fn phase(
    ctx: &Ctx,
    h: &Herald,
    plan: FeedPlan,
    counted: &[usize],
    secs: Duration,
    perf: Option<PathBuf>,
) -> anyhow::Result<Phase> {
    let stats = &ctx.sink.stats;
    let sum = |c: &[u64; sink::ENDPOINTS]| counted.iter().map(|&i| c[i]).sum::<u64>();
    let before = stats.counts();
    // The paced (half-rate) phases are the latency ones: what Herald's threads did around a
    // stall is sampled there only (reading `/proc` costs the bench ~1 % of a core).
    let paced = plan.rate.is_some();
    let feed = Feed::start(plan, ctx.payload.clone(), ctx.clock.clone()).await?;
    tokio::time::sleep(ctx.warmup()).await;
    let from = stats.open_window();
    let sampler = paced
        .then(|| daemon::ThreadSampler::start(h.pid(), Instant::now(), Duration::from_millis(25)));
    feed.stats.open_window(from);
    feed.stats.reset_ack();
    let me = std::process::id();
    let slow0 = stats.slow_counts();
    let (c0, a0, p0, b0, t0) = (
        stats.counts(),
        feed.stats.accepted(),
        h.stats(ctx.ticks),
        daemon::proc_stats(me, ctx.ticks),
        Instant::now(),
    );
    let steal0 = daemon::steal_s(ctx.ticks);
    let recording = perf.and_then(|out| daemon::Perf::start(h.pid(), &out));
    tokio::time::sleep(secs).await;
    let (c1, a1, p1, b1, dt) = (
        stats.counts(),
        feed.stats.accepted(),
        h.stats(ctx.ticks),
        daemon::proc_stats(me, ctx.ticks),
        t0.elapsed().as_secs_f64(),
    );
    let steal_s = daemon::steal_s(ctx.ticks) - steal0;
    let until = stats.close_window();
    feed.stats.close_window(until);
    if let Some(p) = recording {
        p.stop();
    }
    let slow1 = stats.slow_counts();
    let ack = feed.stats.ack_latency();
    let stopped = Instant::now();
    let fs: Arc<FeedStats> = feed.stop().await;
    let accepted = fs.accepted();
    let want = accepted * counted.len() as u64;
    let deadline = stopped + Duration::from_secs_f64(ctx.args.drain_timeout);
    let mut drained = counted.is_empty();
    while !drained && Instant::now() < deadline {
        drained = sum(&stats.counts()) - sum(&before) >= want;
        if !drained {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let drain_s = (!counted.is_empty()).then(|| stopped.elapsed().as_secs_f64());
    let stalls = match sampler {
        None => Vec::new(),
        Some(sampler) => {
            let mut runs = stats.stalls(STALL_MS * 1000);
            runs.sort_by_key(|r| std::cmp::Reverse(r.2));
            runs.truncate(STALLS_KEPT);
            runs.sort_by_key(|r| r.0);
            // Until the last of the stall's events arrived.
            let spans: Vec<(u64, u64)> = runs.iter().map(|r| (r.0, r.1 + r.2 / 1000)).collect();
            let cpu = sampler.finish(&spans, STALL_LEAD_MS);
            runs.into_iter()
                .zip(cpu)
                .map(|((from_ms, to_ms, worst_us), threads)| Stall {
                    from_ms,
                    to_ms,
                    worst_ms: worst_us as f64 / 1000.0,
                    threads,
                })
                .collect()
        }
    };
    // Deliveries of the events sent inside the window, whenever they arrived (the drain above
    // waited for them): a backlog carried across the window's edges neither adds nor takes.
    let w = stats.window_counts();
    let deliveries = sum(&w);
    let cpu = p1.cpu_s - p0.cpu_s;
    let units = if counted.is_empty() {
        a1 - a0
    } else {
        deliveries
    };
    Ok(Phase {
        // Events sent in the window and acknowledged (the same events whose deliveries are
        // counted); `acked_per_s` is what was acknowledged during the window.
        events_per_s: fs.win_accepted.load(Ordering::Relaxed) as f64 / dt,
        acked_per_s: (a1 - a0) as f64 / dt,
        deliveries_per_s: deliveries as f64 / dt,
        per_endpoint: std::array::from_fn(|i| w[i] as f64 / dt),
        arrivals_per_s: (sum(&c1) - sum(&c0)) as f64 / dt,
        slow_per_endpoint: std::array::from_fn(|i| (slow1[i] - slow0[i]) as f64 / dt),
        cpu_s_per_1k: (units > 0).then(|| cpu / units as f64 * 1000.0),
        latency: stats.latency(),
        ack,
        drain_s,
        drained,
        accepted,
        refused: fs.refused.load(Ordering::Relaxed),
        errors: fs.errors.load(Ordering::Relaxed),
        late: fs.late.load(Ordering::Relaxed),
        window_s: dt,
        cpu_s: cpu,
        store_bg_cpu_s: p1.store_bg_cpu_s - p0.store_bg_cpu_s,
        bench_cpu_s: b1.cpu_s - b0.cpu_s,
        steal_s,
        stalls,
    })
}

/// Closed-loop feeders. With `counted` endpoints and `--max-backlog`, the loop closes through
/// the sink: no more than that many accepted events wait for delivery, so the peak is a rate
/// Herald sustains end to end rather than ingest outrunning delivery into a growing backlog.
fn closed(ctx: &Ctx, h: &Herald, counted: &[usize]) -> FeedPlan {
    let backlog = (ctx.args.max_backlog > 0 && !counted.is_empty()).then(|| {
        let stats = ctx.sink.stats.clone();
        let counted = counted.to_vec();
        let base = stats.count_of(&counted);
        let fanout = counted.len() as u64;
        load::Backlog {
            cap: ctx.args.max_backlog,
            delivered: Arc::new(move || (stats.count_of(&counted) - base) / fanout),
        }
    });
    FeedPlan {
        targets: h.targets(ctx.args.feeders, &ctx.args.transport),
        batch: ctx.args.batch,
        rate: None,
        limit: None,
        backlog,
    }
}

fn paced(ctx: &Ctx, h: &Herald, rate: f64, fanout: usize) -> FeedPlan {
    FeedPlan {
        targets: h.targets(ctx.args.paced_feeders, &ctx.args.transport),
        batch: ctx
            .args
            .paced_batch
            .unwrap_or((ctx.args.batch / fanout.max(1)).max(1)),
        rate: Some(rate),
        limit: None,
        backlog: None,
    }
}

/// How many journal commits and fsyncs of the whole scenario took over 16 ms and over 64 ms,
/// and the waits for room on the writer's channels (from Herald's histograms): where
/// ingest-to-arrival outliers come from, if it is the store.
async fn journal_stalls(s: &mut Scenario, h: &Herald) {
    for (metric, key) in [
        ("herald_journal_commit_seconds", "journal_commits"),
        ("herald_journal_sync_seconds", "journal_syncs"),
    ] {
        let Ok(buckets) = h.series(&format!("{metric}_bucket")).await else {
            continue;
        };
        let bucket = |le: &str| {
            buckets
                .iter()
                .find(|(l, _)| l == &format!("le=\"{le}\""))
                .map(|(_, v)| *v)
        };
        if let (Some(all), Some(b16), Some(b64)) =
            (bucket("+Inf"), bucket("0.016"), bucket("0.064"))
        {
            s.set(&format!("{key}_measured"), all);
            s.set(&format!("{key}_over_16ms"), all - b16);
            s.set(&format!("{key}_over_64ms"), all - b64);
        }
    }
    // How often, and how long in all, ingest (`commands`) and the dispatcher (`transitions`)
    // waited for the writer: the journal setting the pace.
    for (part, key) in [("count", "waits"), ("sum", "wait_s")] {
        let metric = format!("herald_journal_backpressure_seconds_{part}");
        for (labels, v) in h.series(&metric).await.unwrap_or_default() {
            for channel in ["commands", "transitions"] {
                if labels == format!("channel=\"{channel}\"") {
                    s.set(&format!("journal_backpressure_{channel}_{key}"), v);
                }
            }
        }
    }
}

/// Puts a phase's problems (refusals, errors, an undrained backlog) where a reader sees them.
fn check_phase(s: &mut Scenario, label: &str, p: &Phase) {
    let mut notes = Vec::new();
    if p.refused > 0 {
        notes.push(format!("{} batches refused", p.refused));
    }
    if p.errors > 0 {
        notes.push(format!("{} connection errors", p.errors));
    }
    if !p.drained {
        notes.push(format!(
            "not drained within the drain timeout (accepted {})",
            p.accepted
        ));
    }
    if !notes.is_empty() {
        s.set(&format!("{label}_problems"), notes.join("; "));
    }
}

/// The common part of the delivery scenarios, on a Herald whose subscriptions exist: ceiling A,
/// Herald's peak, ceiling B, Herald at half its peak.
async fn deliveries(
    ctx: &Ctx,
    s: &mut Scenario,
    h: &Herald,
    counted: &[usize],
) -> anyhow::Result<Phase> {
    let half_secs = ctx.secs() / 2;
    let (ca, ha) = ceiling(ctx, half_secs).await?;
    let perf = ctx.perf_path(&format!("{}-peak", s.name));
    let peak = phase(ctx, h, closed(ctx, h, counted), counted, ctx.secs(), perf).await?;
    let (cb, hb) = ceiling(ctx, half_secs).await?;
    let ceiling_rps = (ca + cb) / 2.0;
    let mut ch = ha;
    let _ = ch.add(&hb);

    // The sustainable event rate: what was accepted, unless delivery fell behind it.
    let fanout = counted.len().max(1) as f64;
    let sustained = peak.events_per_s.min(peak.deliveries_per_s / fanout);
    let plan = paced(ctx, h, sustained / 2.0, counted.len());
    s.set("half_rate_batch_events", plan.batch);
    let perf = ctx.perf_path(&format!("{}-half", s.name));
    let half = phase(ctx, h, plan, counted, ctx.secs(), perf).await?;

    s.ceiling_rps = Some(round(ceiling_rps, 0));
    s.herald_events_per_s = Some(round(peak.events_per_s, 0));
    s.herald_deliveries_per_s = Some(round(peak.deliveries_per_s, 0));
    s.ratio = Some(round(peak.deliveries_per_s / ceiling_rps, 3));
    s.p50_ms = ms(&half.latency, 0.5);
    s.p99_ms = ms(&half.latency, 0.99);
    s.p999_ms = ms(&half.latency, 0.999);
    s.cpu_s_per_1k_deliveries = peak.cpu_s_per_1k.map(|v| round(v, 4));
    s.set("ceiling_a_rps", round(ca, 0));
    s.set("ceiling_b_rps", round(cb, 0));
    if let Some(v) = ms(&ch, 0.99) {
        s.set("ceiling_p99_ms", v);
    }
    if let Some(v) = ms(&peak.latency, 0.5) {
        s.set("peak_p50_ms", v);
    }
    if let Some(v) = ms(&peak.latency, 0.99) {
        s.set("peak_p99_ms", v);
    }
    if let Some(v) = ms(&peak.latency, 0.999) {
        s.set("peak_p999_ms", v);
    }
    if let Some(v) = ms(&peak.ack, 0.99) {
        s.set("peak_ack_p99_ms", v);
    }
    s.set("peak_arrivals_per_s", round(peak.arrivals_per_s, 0));
    s.set("peak_acked_per_s", round(peak.acked_per_s, 0));
    s.set("half_rate_target_events_per_s", round(sustained / 2.0, 0));
    s.set("half_rate_events_per_s", round(half.events_per_s, 0));
    s.set(
        "half_rate_deliveries_per_s",
        round(half.deliveries_per_s, 0),
    );
    if let Some(v) = half.cpu_s_per_1k {
        s.set("half_rate_cpu_s_per_1k_deliveries", round(v, 4));
    }
    if let Some(v) = ms(&half.ack, 0.5) {
        s.set("half_rate_ack_p50_ms", v);
    }
    if let Some(v) = ms(&half.ack, 0.99) {
        s.set("half_rate_ack_p99_ms", v);
    }
    s.set("half_rate_late_batches", half.late);
    // When the half-rate p99 fails, whether it is a tail or a few stalls, and what ran then.
    let stalls: Vec<Value> = half
        .stalls
        .iter()
        .map(|st| {
            let t = &st.threads;
            let map = |v: Vec<(&str, Value)>| {
                Value::Object(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            };
            json!({
                "from_ms": st.from_ms,
                "to_ms": st.to_ms,
                "worst_ms": round(st.worst_ms, 1),
                "herald_ms": round(t.herald_ms, 1),
                "bench_ms": round(t.bench_ms, 1),
                "others_ms": round(t.others_ms, 1),
                "steal_ms": round(t.steal_ms, 1),
                "run_ms": map(t.run_ms.iter().map(|(k, ms)| (*k, json!(round(*ms, 1)))).collect()),
                "blocked_samples": map(t.blocked.iter().map(|(k, n)| (*k, json!(n))).collect()),
                "runnable_samples": map(t.runnable.iter().map(|(k, n)| (*k, json!(n))).collect()),
            })
        })
        .collect();
    s.set("half_rate_stalls", Value::Array(stalls));
    if let Some(d) = peak.drain_s {
        s.set("peak_drain_s", round(d, 2));
    }
    // Cores in use in each window: Herald's, the sink's plus the feeders', and of Herald's the
    // store's background work (a flush or compaction landing in a window, often of the peak's
    // writes during the half rate, takes one of the two cores).
    for (key, cpu_s, p) in [
        ("peak_herald_cores", peak.cpu_s, &peak),
        ("peak_bench_cores", peak.bench_cpu_s, &peak),
        ("peak_store_bg_cores", peak.store_bg_cpu_s, &peak),
        ("half_rate_herald_cores", half.cpu_s, &half),
        ("half_rate_store_bg_cores", half.store_bg_cpu_s, &half),
        // A virtual machine's neighbours: CPU time the box did not get.
        ("peak_steal_cores", peak.steal_s, &peak),
        ("half_rate_steal_cores", half.steal_s, &half),
    ] {
        s.set(key, round(cpu_s / p.window_s, 2));
    }
    if let Ok(c) = h.metric("herald_journal_commits_total").await {
        s.set("journal_commits", c);
    }
    // Queue rows read back from the store: an endpoint's backlog outgrew `memory_window`
    // (a spill), which costs more per delivery than the in-memory path.
    if let Ok(r) = h.metric("herald_delivery_refill_rows_total").await {
        s.set("refill_rows", r);
    }
    journal_stalls(s, h).await;
    if let (Ok(created), Ok(received)) = (
        h.metric("herald_deliveries_created_total").await,
        h.metric("herald_events_received_total").await,
    ) && received > 0.0
    {
        // Routing check: exactly the matching subscriptions, per event.
        s.set("deliveries_created_per_event", round(created / received, 4));
        // Fresh deliveries whose queue entry was written after all (still open a second after
        // their event, or before a refill): each costs an insert and a delete in the store.
        if let Ok(late) = h.metric("herald_journal_deferred_written_total").await
            && created > 0.0
        {
            s.set(
                "queue_entries_written_per_delivery",
                round(late / created, 4),
            );
        }
    }
    if let Ok(series) = h.series("herald_delivery_attempts_total").await {
        let by_class: Map<String, Value> = series
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(labels, v)| (labels.replace("class=", "").replace('"', ""), json!(v)))
            .collect();
        s.set("attempts_by_class", Value::Object(by_class));
    }
    check_phase(s, "peak", &peak);
    check_phase(s, "half_rate", &half);
    let filler = ctx.sink.stats.counts()[FILLER_SLOT];
    if filler > 0 {
        s.set("misrouted_deliveries", filler);
    }
    Ok(peak)
}

/// Instructions per delivery, counted by callgrind: Herald under `valgrind --tool=callgrind`
/// (instrumentation off until the measured run), fan-out `k`, fed `--callgrind-events` events
/// in batches of `--batch` by the peaks' closed-loop feeders after as many again of warm-up,
/// counted from the first measured event until every delivery has arrived and been recorded. Unlike the CPU
/// seconds of the peaks, the count hardly moves between runs on a shared machine (user-space
/// instructions only: the kernel's TCP is not in it), so changes worth a few per cent show. The
/// profile stays in `target/bench/callgrind/<name>.out` for `callgrind_annotate`.
async fn callgrind(ctx: &Ctx, name: &str, k: usize) -> anyhow::Result<Scenario> {
    let mut s = Scenario::new(name);
    let dir = ctx.dir(name)?;
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("{name}.out"));
    let _ = std::fs::remove_file(&out);
    let wrapper: Vec<String> = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    // Valgrind runs Herald ~50 times slower, its clock not: with the default second, most
    // deliveries at fan-out 10 would outlast it and have their queue entries written, which at
    // full speed none does (`queue_entries_written_per_delivery` in the other scenarios). A
    // minute (the most Herald allows) keeps the work per delivery the one full speed does.
    let write_after = &ctx.args.callgrind_queue_write_after;
    let settings = daemon::Settings {
        queue_write_after: (!write_after.is_empty()).then_some(write_after.as_str()),
        ..ctx.settings("batch")
    };
    let config = daemon::config_text(&dir, &settings);
    let h = Herald::launch_wrapped(
        &ctx.bin,
        &dir,
        &config,
        Duration::from_secs(600),
        None,
        &wrapper,
    )
    .await
    .context("starting herald under valgrind (is valgrind installed?)")?;
    let tcp = load::Target::Tcp(h.tcp);
    subs::create_all(&tcp, &subs::fanout(&ctx.bases, k, &[])).await?;
    let counted: Vec<usize> = (0..k).collect();
    let n = ctx.args.callgrind_events;
    let control = |arg: &str| -> anyhow::Result<()> {
        let st = std::process::Command::new("callgrind_control")
            .arg(arg)
            .arg(h.pid().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running callgrind_control")?;
        anyhow::ensure!(st.success(), "callgrind_control {arg} failed: {st}");
        Ok(())
    };
    for measured in [false, true] {
        if measured {
            control("--instr=on")?;
        }
        let base = ctx.sink.stats.count_of(&counted);
        let attempts_before = h
            .metric("herald_delivery_attempts_total")
            .await
            .unwrap_or(0.0);
        let late_before = h
            .metric("herald_journal_deferred_written_total")
            .await
            .unwrap_or(0.0);
        // The peaks' closed loop (at most `--max-backlog` events undelivered), so Herald
        // runs the same code as at its peak: without it ingest outruns the slowed-down
        // deliveries and the backlog spills to disk.
        let plan = FeedPlan {
            limit: Some(n),
            ..closed(ctx, &h, &counted)
        };
        let stats = Feed::start(plan, ctx.payload.clone(), ctx.clock.clone())
            .await?
            .join()
            .await;
        // Feeders may overshoot the limit by a batch each: wait for what was accepted, first
        // at the sink (no cost to Herald), then in Herald's metrics (each scrape is counted,
        // so only a few, once everything has arrived) for the last outcomes to be recorded.
        let want = stats.accepted() * k as u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let arrived = ctx.sink.stats.count_of(&counted) - base;
            if arrived >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name}: {arrived} of {want} deliveries arrived within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while h.metric("herald_delivery_attempts_total").await? - attempts_before < want as f64 {
            if Instant::now() > deadline {
                bail!("{name}: Herald did not record {want} attempts within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if measured {
            control("--instr=off")?;
            s.set("events", stats.accepted());
            s.set("deliveries", want);
            // Zero unless a delivery outlasted `queue_write_after` under valgrind (above).
            let late = h
                .metric("herald_journal_deferred_written_total")
                .await
                .unwrap_or(0.0)
                - late_before;
            s.set(
                "queue_entries_written_per_delivery",
                round(late / (want.max(1) as f64), 4),
            );
        }
    }
    h.stop(Duration::from_secs(60)).await;
    // callgrind writes its totals when the process exits.
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let ir: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no totals in the callgrind output")?;
    let deliveries = s.get("deliveries").unwrap_or(0.0).max(1.0);
    let events = s.get("events").unwrap_or(0.0).max(1.0);
    s.set("instructions_per_delivery", round(ir / deliveries, 0));
    s.set("instructions_per_event", round(ir / events, 0));
    s.set("callgrind_out", out.display().to_string());
    Ok(s)
}

/// Starts Herald on a big data directory (up to ten minutes to READY, recorded with `--perf`
/// as `perf_name`) and notes how long start-up and its recovery took.
async fn timed_start(
    ctx: &Ctx,
    s: &mut Scenario,
    dir: &std::path::Path,
    config: &str,
    perf_name: &str,
) -> anyhow::Result<Herald> {
    let perf = ctx.perf_path(perf_name);
    let h = Herald::launch(
        &ctx.bin,
        dir,
        config,
        Duration::from_secs(600),
        perf.as_deref(),
    )
    .await?;
    s.set("startup_s", round(h.started_in.as_secs_f64(), 3));
    if let Some(r) = h.recovered_ms() {
        s.set("recover_ms", r);
    }
    Ok(h)
}

async fn finish(ctx: &Ctx, s: &mut Scenario, h: Herald) {
    let p = h.stats(ctx.ticks);
    s.peak_rss_bytes = Some(p.hwm);
    h.stop(Duration::from_secs(5)).await;
}

async fn fanout(ctx: &Ctx, name: &str, k: usize) -> anyhow::Result<Scenario> {
    let mut s = Scenario::new(name);
    let dir = ctx.dir(name)?;
    let h = ctx.launch(&dir, &ctx.settings("batch")).await?;
    let tcp = load::Target::Tcp(h.tcp);
    subs::create_all(&tcp, &subs::fanout(&ctx.bases, k, &[])).await?;
    s.set("subscriptions", k as u64);
    s.set("idle_rss_bytes", h.stats(ctx.ticks).rss);
    let counted: Vec<usize> = (0..k).collect();
    deliveries(ctx, &mut s, &h, &counted).await?;
    finish(ctx, &mut s, h).await;
    Ok(s)
}

async fn slow_endpoint(ctx: &Ctx, k: usize) -> anyhow::Result<Scenario> {
    let mut s = Scenario::new("slow-endpoint");
    let slow = k - 1;
    // The control: the same ten endpoints, all fast, measured right before and right after the
    // slow case's peak (A B A), so the comparison does not straddle minutes of drift.
    let hc = ctx
        .launch(&ctx.dir("slow-endpoint-control")?, &ctx.settings("batch"))
        .await?;
    subs::create_all(
        &load::Target::Tcp(hc.tcp),
        &subs::fanout(&ctx.bases, k, &[]),
    )
    .await?;
    let h = ctx
        .launch(&ctx.dir("slow-endpoint")?, &ctx.settings("batch"))
        .await?;
    subs::create_all(
        &load::Target::Tcp(h.tcp),
        &subs::fanout(&ctx.bases, k, &[slow]),
    )
    .await?;
    let all: Vec<usize> = (0..k).collect();
    // The nine fast endpoints are what is counted and timed; the slow one is reported apart.
    let fast: Vec<usize> = (0..slow).collect();
    let nine = |p: &Phase| fast.iter().map(|&i| p.per_endpoint[i]).sum::<f64>();
    // The nine's rate with and without the slow tenth, A B A B; then the slow case's own run.
    let mut control = 0.0;
    let mut with_slow = 0.0;
    let mut slices = Vec::new();
    for r in 0..2 {
        let c = phase(ctx, &hc, closed(ctx, &hc, &all), &all, ctx.secs() / 2, None).await?;
        control += nine(&c) / 2.0;
        check_phase(&mut s, &format!("control_{r}"), &c);
        let w = phase(ctx, &h, closed(ctx, &h, &fast), &fast, ctx.secs() / 2, None).await?;
        with_slow += nine(&w) / 2.0;
        check_phase(&mut s, &format!("with_slow_{r}"), &w);
        slices.push(json!({
            "control_nine": round(nine(&c), 0),
            "control_events": round(c.events_per_s, 0),
            "with_slow_nine": round(nine(&w), 0),
            "with_slow_events": round(w.events_per_s, 0),
        }));
    }
    s.set("interleaved_slices", Value::Array(slices));
    hc.stop(Duration::from_secs(5)).await;
    let peak = deliveries(ctx, &mut s, &h, &fast).await?;
    s.set("endpoints", k as u64);
    s.set(
        "slow_endpoint_deliveries_per_s",
        round(peak.slow_per_endpoint[slow], 1),
    );
    s.set("others_deliveries_per_s", round(with_slow, 0));
    s.set("control_others_deliveries_per_s", round(control, 0));
    s.set("others_vs_control", round(with_slow / control, 3));
    s.set(
        "backlog_pending",
        h.metric("herald_pending_deliveries")
            .await
            .unwrap_or(f64::NAN),
    );
    finish(ctx, &mut s, h).await;
    Ok(s)
}

async fn million_subs(ctx: &Ctx) -> anyhow::Result<Scenario> {
    let mut s = Scenario::new("million-subs");
    let matching = subs::matching(&ctx.bases);
    // Fillers point at a port nothing listens on: one delivered by mistake shows as a refused
    // attempt (and in `deliveries_created_per_event`), whichever run seeded it.
    let mut filler = subs::Filler::new(&ctx.payload, subs::FILLER_BASE, 7)?;
    for b in &matching {
        anyhow::ensure!(
            filler.wants(b)?,
            "a million-subs subscription meant to match does not: {b}"
        );
    }

    // The control: the same three matching subscriptions among 10 stored.
    let dir10 = ctx.dir("ten-subs")?;
    let h10 = ctx.launch(&dir10, &ctx.settings("batch")).await?;
    let tcp10 = load::Target::Tcp(h10.tcp);
    subs::create_all(&tcp10, &matching).await?;
    let ten: Vec<Value> = (0..7)
        .map(|_| filler.next().map(|(b, _)| b))
        .collect::<Result<_, _>>()?;
    subs::create_all(&tcp10, &ten).await?;
    let rss10 = h10.stats(ctx.ticks).rss;

    // The million: the matching three and the probe through the API, the rest written with the
    // journal library before Herald starts (see subs.rs for why).
    let dir = ctx.dir("million-subs")?;
    let settings = ctx.settings("batch");
    let config = daemon::config_text(&dir, &settings);
    let total = ctx.args.subs.max(matching.len());
    let fill = total - matching.len();
    let probe = Duration::from_secs_f64(ctx.args.create_probe);
    if !ctx.args.subs_via_api && fill > 0 {
        let cache = (!ctx.args.no_cache)
            .then(|| seed_cache(ctx, fill))
            .transpose()?;
        match &cache {
            Some((path, key)) if cache_valid(path, key) => {
                let t = Instant::now();
                copy_dir(&path.join("data"), &dir.join("data"))?;
                s.set("seed_from_cache", true);
                s.set("seed_copy_s", round(t.elapsed().as_secs_f64(), 2));
            }
            _ => {
                // Its own generator and seed: no filler is written twice.
                let mut seeder = subs::Filler::new(&ctx.payload, subs::FILLER_BASE, 11)?;
                let cfg = config.clone();
                let took = tokio::task::spawn_blocking(move || subs::seed(&cfg, &mut seeder, fill))
                    .await??;
                s.set("seed_from_cache", false);
                s.set("seed_s", round(took.as_secs_f64(), 2));
                s.set("seed_per_s", round(fill as f64 / took.as_secs_f64(), 0));
                if let Some((path, key)) = &cache {
                    let _ = std::fs::remove_dir_all(path);
                    copy_dir(&dir.join("data"), &path.join("data"))?;
                    std::fs::write(path.join("key"), key)?;
                }
            }
        }
        s.set("seeded_subscriptions", fill as u64);
        // The seed and its copy leave hundreds of MB dirty in the page cache; written back
        // during the phases, they would queue Herald's fsyncs behind the bench's own I/O.
        let t = Instant::now();
        tokio::task::spawn_blocking(rustix::fs::sync).await?;
        s.set("seed_sync_s", round(t.elapsed().as_secs_f64(), 2));
    }
    let h = timed_start(ctx, &mut s, &dir, &config, "million-subs-startup").await?;
    let tcp = load::Target::Tcp(h.tcp);
    subs::create_all(&tcp, &matching).await?;
    // Creates through the API: all the rest with --subs-via-api, else a timed probe.
    let bodies: Box<dyn Iterator<Item = Value> + Send> = Box::new(
        std::iter::repeat_with(move || filler.next().map(|(b, _)| b).ok()).map_while(|b| b),
    );
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let (count, within) = if ctx.args.subs_via_api {
        (fill as u64, Duration::from_secs(24 * 3600))
    } else {
        (u64::MAX, probe)
    };
    let (created, took) = subs::create_via_api(tcp.clone(), bodies, 8, count, within).await?;
    let per_s = created as f64 / took.as_secs_f64();
    s.set("api_creates", created);
    s.set("api_create_per_s", round(per_s, 0));
    s.set(
        "api_create_ms_each",
        round(took.as_secs_f64() * 1000.0 / created.max(1) as f64, 3),
    );
    if per_s > 0.0 {
        s.set("api_projected_s_for_subs", round(total as f64 / per_s, 0));
    }
    let stored = h.metric("herald_subscriptions").await?;
    s.set("subscriptions", stored);
    let idle = h.stats(ctx.ticks);
    s.set("idle_rss_bytes", idle.rss);
    s.set("ten_subs_idle_rss_bytes", rss10);
    if stored > 10.0 {
        s.set(
            "rss_per_subscription_bytes",
            round((idle.rss as f64 - rss10 as f64) / (stored - 10.0), 1),
        );
    }
    s.set("data_dir_bytes", subs::dir_bytes(&dir.join("data")));

    // The same traffic against 10 stored and against the million, A B A B in slices of D/2
    // (the machine drifts); then the million's own run.
    let counted = [0usize, 1, 2];
    let (mut ten, mut million, mut ten_events) = (0.0, 0.0, 0.0);
    let mut slices = Vec::new();
    for r in 0..2 {
        // What the idle daemon of the pair does meanwhile (its store's flushes, compactions)
        // takes CPU from the measured one.
        let idle0 = h.stats(ctx.ticks).cpu_s;
        let c = phase(
            ctx,
            &h10,
            closed(ctx, &h10, &counted),
            &counted,
            ctx.secs() / 2,
            ctx.perf_path(&format!("million-subs-slice-ten-{r}")),
        )
        .await?;
        let idle1 = h10.stats(ctx.ticks).cpu_s;
        let million_idle_cores = (h.stats(ctx.ticks).cpu_s - idle0) / c.window_s;
        ten += c.deliveries_per_s / 2.0;
        ten_events += c.events_per_s / 2.0;
        check_phase(&mut s, &format!("ten_subs_{r}"), &c);
        let m = phase(
            ctx,
            &h,
            closed(ctx, &h, &counted),
            &counted,
            ctx.secs() / 2,
            ctx.perf_path(&format!("million-subs-slice-million-{r}")),
        )
        .await?;
        million += m.deliveries_per_s / 2.0;
        check_phase(&mut s, &format!("million_{r}"), &m);
        let ten_idle_cores = (h10.stats(ctx.ticks).cpu_s - idle1) / m.window_s;
        slices.push(json!({
            "ten": round(c.deliveries_per_s, 0),
            "million": round(m.deliveries_per_s, 0),
            "ten_store_bg_cores": round(c.store_bg_cpu_s / c.window_s, 2),
            "million_store_bg_cores": round(m.store_bg_cpu_s / m.window_s, 2),
            // The other daemon's CPU during each slice (roughly: from before the slice's
            // warm-up to after its drain).
            "million_idle_cores": round(million_idle_cores, 2),
            "ten_idle_cores": round(ten_idle_cores, 2),
            "ten_steal_cores": round(c.steal_s / c.window_s, 2),
            "million_steal_cores": round(m.steal_s / m.window_s, 2),
        }));
    }
    s.set("interleaved_slices", Value::Array(slices));
    h10.stop(Duration::from_secs(5)).await;
    s.set("ten_subs_events_per_s", round(ten_events, 0));
    s.set("ten_subs_deliveries_per_s", round(ten, 0));
    s.set("million_interleaved_deliveries_per_s", round(million, 0));
    s.set("vs_ten_subs", round(million / ten, 3));
    deliveries(ctx, &mut s, &h, &counted).await?;
    finish(ctx, &mut s, h).await;
    Ok(s)
}

/// Where the seeded million-subs data directory is kept between runs, and the key that says
/// whether it fits this run: the population and the herald build that wrote it (any rebuild
/// of the daemon or library invalidates it).
fn seed_cache(ctx: &Ctx, fill: usize) -> anyhow::Result<(PathBuf, String)> {
    let meta = std::fs::metadata(&ctx.bin)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let key = format!(
        "fillers={fill} seed=11 compacted payload={} herald_size={} herald_mtime={mtime}\n",
        ctx.args.payload_bytes,
        meta.len()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench/e2e-cache/million-subs-{fill}"));
    Ok((path, key))
}

fn cache_valid(path: &Path, key: &str) -> bool {
    std::fs::read_to_string(path.join("key")).is_ok_and(|k| k == key) && path.join("data").is_dir()
}

/// Copies a directory tree (the store's files are plain files and directories).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The disk's own sync latency where the data directories live: `fdatasync` after a 4 KiB
/// write, `n` times. Every durable acknowledgement waits for at least one of these, so this
/// is the floor under the ingest-to-arrival latency with `fsync = "batch"`.
fn fsync_probe(dir: &Path, n: usize) -> anyhow::Result<Histogram<u64>> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut h = sink::histogram();
    for _ in 0..n {
        let t = Instant::now();
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&block)?;
        f.sync_data()?;
        h.saturating_record((t.elapsed().as_micros() as u64).max(1));
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(h)
}

/// Loopback TCP trouble counters from `/proc/net/netstat` (machine-wide): accept-queue
/// overflows at a listener, and SYNs sent again (each costs a 1 s retransmission timeout).
fn tcp_counters() -> [u64; 2] {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return [0; 2];
    };
    let pairs: Vec<(&str, u64)> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .map(|(n, v)| (n, v.parse().unwrap_or(0)))
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map_or(0, |(_, v)| *v);
    [get("ListenOverflows"), get("TCPSynRetrans")]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn ingest(ctx: &Ctx) -> anyhow::Result<(Scenario, Scenario)> {
    let mut batch = Scenario::new("ingest-batch");
    let mut never = Scenario::new("ingest-never");
    let hb = ctx
        .launch(&ctx.dir("ingest-batch")?, &ctx.settings("batch"))
        .await?;
    let hn = ctx
        .launch(&ctx.dir("ingest-never")?, &ctx.settings("never"))
        .await?;
    // Interleaved A B A B: the machine's speed drifts over minutes (PERF-NOTES).
    let mut acc: [(f64, f64, f64, Histogram<u64>); 2] = [
        (0.0, 0.0, 0.0, sink::histogram()),
        (0.0, 0.0, 0.0, sink::histogram()),
    ];
    let mut problems = [Vec::new(), Vec::new()];
    for r in 0..2 {
        for (i, h) in [&hb, &hn].into_iter().enumerate() {
            let perf = ctx.perf_path(&format!("ingest-{}-{r}", ["batch", "never"][i]));
            let mut plan = closed(ctx, h, &[]);
            plan.targets = h.targets(ctx.args.ingest_feeders, &ctx.args.transport);
            let p = phase(ctx, h, plan, &[], ctx.secs() / 2, perf).await?;
            acc[i].0 += p.events_per_s * p.window_s;
            acc[i].1 += p.window_s;
            acc[i].2 += p.cpu_s;
            let _ = acc[i].3.add(&p.ack);
            if p.refused + p.errors > 0 {
                problems[i].push(format!("{} refused, {} errors", p.refused, p.errors));
            }
        }
    }
    for (i, s) in [&mut batch, &mut never].into_iter().enumerate() {
        let (events, secs, cpu, ack) = &acc[i];
        s.herald_events_per_s = Some(round(events / secs, 0));
        s.set("cpu_s_per_1k_events", round(cpu / events * 1000.0, 4));
        s.set("ack_p50_ms", ms(ack, 0.5).unwrap_or(f64::NAN));
        s.set("ack_p99_ms", ms(ack, 0.99).unwrap_or(f64::NAN));
        s.set("ack_p999_ms", ms(ack, 0.999).unwrap_or(f64::NAN));
        if !problems[i].is_empty() {
            s.set("problems", problems[i].join("; "));
        }
    }
    batch.set(
        "commits",
        hb.metric("herald_journal_commits_total")
            .await
            .unwrap_or(f64::NAN),
    );
    never.set(
        "commits",
        hn.metric("herald_journal_commits_total")
            .await
            .unwrap_or(f64::NAN),
    );
    journal_stalls(&mut batch, &hb).await;
    journal_stalls(&mut never, &hn).await;
    let (b, n) = (acc[0].0 / acc[0].1, acc[1].0 / acc[1].1);
    batch.set("batch_vs_never", round(b / n, 3));
    finish(ctx, &mut batch, hb).await;
    finish(ctx, &mut never, hn).await;
    Ok((batch, never))
}

async fn startup(ctx: &Ctx) -> anyhow::Result<Scenario> {
    let mut s = Scenario::new("startup-1m");
    // Deliveries to a black hole stay in flight until the (long) timeout; the rest of each
    // endpoint's queue stays pending on disk.
    let hole = ctx.sink_rt.spawn(sink::black_hole()).await??;
    let dir = ctx.dir("startup-1m")?;
    let mut settings = ctx.settings("batch");
    settings.timeout = "1h";
    settings.retry_schedule = "[\"1h\"]";
    let config = daemon::config_text(&dir, &settings);
    let h = Herald::launch(&ctx.bin, &dir, &config, Duration::from_secs(600), None).await?;
    let k = ctx.args.fanout.max(1);
    subs::create_all(
        &load::Target::Tcp(h.tcp),
        &subs::fanout(&vec![format!("http://{hole}"); k], k, &[]),
    )
    .await?;
    let events = ctx.args.pending.div_ceil(k as u64);
    let mut plan = closed(ctx, &h, &[]);
    plan.limit = Some(events);
    let t0 = Instant::now();
    let fs = Feed::start(plan, ctx.payload.clone(), ctx.clock.clone())
        .await?
        .join()
        .await;
    let fill = t0.elapsed().as_secs_f64();
    s.set("fill_events", fs.accepted());
    s.set("fill_s", round(fill, 2));
    s.set("fill_events_per_s", round(fs.accepted() as f64 / fill, 0));
    s.set(
        "fill_deliveries_per_s_created",
        round(fs.accepted() as f64 * k as f64 / fill, 0),
    );
    let pending = h.metric("herald_pending_deliveries").await?;
    s.set("pending_before_kill", pending);
    s.set("fill_peak_rss_bytes", h.stats(ctx.ticks).hwm);
    let mut h = h;
    h.kill9();
    drop(h);
    s.set("data_dir_bytes", subs::dir_bytes(&dir.join("data")));
    let h = timed_start(ctx, &mut s, &dir, &config, "startup-1m-restart").await?;
    s.set(
        "pending_after_restart",
        h.metric("herald_pending_deliveries").await?,
    );
    s.peak_rss_bytes = Some(h.stats(ctx.ticks).hwm);
    h.stop(Duration::from_secs(5)).await;
    Ok(s)
}

fn targets(all: &[Scenario]) -> Vec<Target> {
    let find = |n: &str| all.iter().find(|s| s.name == n);
    let mut out = Vec::new();
    let mut check = |target: &str, value: Option<f64>, ok: &dyn Fn(f64) -> bool| {
        out.push(Target {
            target: target.into(),
            value,
            pass: value.map(ok),
        });
    };
    if let Some(s) = find("fanout-10") {
        check("fanout-10: deliveries/s >= 0.6 x ceiling", s.ratio, &|v| {
            v >= 0.6
        });
    }
    if let Some(s) = find("fanout-1") {
        check("fanout-1: deliveries/s >= 0.4 x ceiling", s.ratio, &|v| {
            v >= 0.4
        });
    }
    for n in ["fanout-1", "fanout-10", "million-subs", "slow-endpoint"] {
        if let Some(s) = find(n) {
            check(&format!("{n}: p99 at half peak < 10 ms"), s.p99_ms, &|v| {
                v < 10.0
            });
        }
    }
    if let Some(s) = find("million-subs") {
        check(
            "million-subs: deliveries/s within 10% of 10 stored",
            s.get("vs_ten_subs"),
            &|v| v >= 0.9,
        );
        check(
            "million-subs: memory < 1 KiB per subscription (bytes)",
            s.get("rss_per_subscription_bytes"),
            &|v| v < 1024.0,
        );
    }
    if let Some(s) = find("slow-endpoint") {
        check(
            "slow-endpoint: the nine keep >= 0.9 of their rate without it",
            s.get("others_vs_control"),
            &|v| v >= 0.9,
        );
    }
    if let Some(s) = find("ingest-batch") {
        check(
            "ingest: fsync=batch >= 0.8 x fsync=never",
            s.get("batch_vs_never"),
            &|v| v >= 0.8,
        );
    }
    out
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "-".into(),
    }
}

fn fmt_k(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1}k", v / 1000.0),
        _ => "-".into(),
    }
}

/// The one-line extra a person wants per scenario.
fn note(s: &Scenario) -> String {
    let g = |k: &str| s.get(k);
    let note = match s.name.as_str() {
        "million-subs" => format!(
            "{} subs; vs 10 stored {}; {} B/sub; start {} s; API {}/s",
            fmt(g("subscriptions"), 0),
            fmt(g("vs_ten_subs"), 2),
            fmt(g("rss_per_subscription_bytes"), 0),
            fmt(g("startup_s"), 1),
            fmt(g("api_create_per_s"), 0),
        ),
        "slow-endpoint" => format!(
            "nine vs all-fast {}; slow one {}/s",
            fmt(g("others_vs_control"), 2),
            fmt(g("slow_endpoint_deliveries_per_s"), 1)
        ),
        "ingest-batch" => format!(
            "batch/never {}; ack p99 {} ms",
            fmt(g("batch_vs_never"), 2),
            fmt(g("ack_p99_ms"), 2)
        ),
        "ingest-never" => format!("ack p99 {} ms", fmt(g("ack_p99_ms"), 2)),
        "startup-1m" => format!(
            "startup {} s (recover {} ms), {} pending; fill {} ev/s",
            fmt(g("startup_s"), 2),
            fmt(g("recover_ms"), 0),
            fmt(g("pending_before_kill"), 0),
            fmt(g("fill_events_per_s"), 0),
        ),
        n if n.starts_with("callgrind-") => format!(
            "{} instructions per delivery ({} deliveries)",
            fmt(g("instructions_per_delivery"), 0),
            fmt(g("deliveries"), 0),
        ),
        _ => format!(
            "peak p99 {} ms; ceiling p99 {} ms",
            fmt(g("peak_p99_ms"), 1),
            fmt(g("ceiling_p99_ms"), 2)
        ),
    };
    // The hypervisor's share, when it took enough to matter: a figure to read with care.
    let (peak, half) = (g("peak_steal_cores"), g("half_rate_steal_cores"));
    if peak.into_iter().chain(half).any(|c| c >= 0.02) {
        format!(
            "{note}; steal {}/{} cores (peak/half)",
            fmt(peak, 2),
            fmt(half, 2)
        )
    } else {
        note
    }
}

fn table(all: &[Scenario], targets: &[Target]) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "{:<14} {:>9} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8}  {}\n",
        "scenario",
        "ceiling/s",
        "events/s",
        "deliv/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "RSS MiB",
        "CPU s/1k",
        "notes"
    ));
    for s in all {
        let cpu = s.cpu_s_per_1k_deliveries.or(s.get("cpu_s_per_1k_events"));
        t.push_str(&format!(
            "{:<14} {:>9} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8}  {}\n",
            s.name,
            fmt_k(s.ceiling_rps),
            fmt_k(s.herald_events_per_s),
            fmt_k(s.herald_deliveries_per_s),
            fmt(s.ratio, 2),
            fmt(s.p50_ms, 2),
            fmt(s.p99_ms, 2),
            fmt(s.p999_ms, 2),
            fmt(s.peak_rss_bytes.map(|b| b as f64 / 1048576.0), 0),
            fmt(cpu, 3),
            note(s),
        ));
    }
    t.push_str("\nlatencies: ingest-to-arrival at half of Herald's peak rate (peak figures in the JSON);\n");
    t.push_str("CPU: Herald's user+sys seconds per 1000 deliveries at peak (per 1000 events for ingest-*)\n\n");
    for tg in targets {
        let verdict = match tg.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        t.push_str(&format!(
            "{verdict}  {:<58} {}\n",
            tg.target,
            fmt(tg.value, 3)
        ));
    }
    t
}

async fn run(ctx: Ctx) -> anyhow::Result<(Vec<Scenario>, Vec<Target>, Value)> {
    let want = |n: &str| {
        if ctx.args.only.is_empty() {
            !ON_REQUEST.contains(&n)
        } else {
            ctx.args.only.iter().any(|o| o == n)
        }
    };
    let mut all: Vec<Scenario> = Vec::new();
    let started = Instant::now();
    let disk_before = fsync_probe(&ctx.tmp, 200)?;
    let done = |mut s: Scenario, all: &mut Vec<Scenario>| {
        s.set("loadavg_after", loadavg());
        eprintln!(
            "[{:>5.1} s] {} done: {}",
            started.elapsed().as_secs_f64(),
            s.name,
            serde_json::to_string(&s).unwrap_or_default()
        );
        all.push(s);
    };
    // Every scenario reports the machine's TCP trouble counters over its own run.
    let mut tcp = tcp_counters();
    let done = |s: Scenario, all: &mut Vec<Scenario>| {
        let now = tcp_counters();
        let mut s = s;
        s.set("tcp_listen_overflows", now[0] - tcp[0]);
        s.set("tcp_syn_retransmits", now[1] - tcp[1]);
        tcp = now;
        done(s, all)
    };
    let mut done = done;
    if want("fanout-1") {
        let s = fanout(&ctx, "fanout-1", 1).await?;
        done(s, &mut all);
    }
    if want("fanout-10") {
        let s = fanout(&ctx, "fanout-10", ctx.args.fanout).await?;
        done(s, &mut all);
    }
    if want("slow-endpoint") {
        let s = slow_endpoint(&ctx, ctx.args.fanout.max(2)).await?;
        done(s, &mut all);
    }
    if want("million-subs") {
        let s = million_subs(&ctx).await?;
        done(s, &mut all);
    }
    if want("ingest-batch") || want("ingest-never") {
        let (b, n) = ingest(&ctx).await?;
        done(b, &mut all);
        done(n, &mut all);
    }
    if want("startup-1m") {
        let s = startup(&ctx).await?;
        done(s, &mut all);
    }
    for (name, k) in [
        ("callgrind-fanout-1", 1),
        ("callgrind-fanout-10", ctx.args.fanout),
    ] {
        if want(name) {
            let s = callgrind(&ctx, name, k).await?;
            done(s, &mut all);
        }
    }
    let t = targets(&all);
    let disk_after = fsync_probe(&ctx.tmp, 200)?;
    // An online-discard mount makes fsyncs wait for TRIMs (`journal/embedded/mount.rs`).
    let mount = herald::journal::embedded::mount::mount_holding(&ctx.tmp);
    let disk = json!({
        "mount_point": mount.as_ref().map(|m| m.point.display().to_string()),
        "fs_type": mount.as_ref().map(|m| m.fs_type.clone()),
        "online_discard": mount.as_ref().map(|m| m.online_discard),
        "fdatasync_4k_p50_ms_before": ms(&disk_before, 0.5),
        "fdatasync_4k_p99_ms_before": ms(&disk_before, 0.99),
        "fdatasync_4k_p50_ms_after": ms(&disk_after, 0.5),
        "fdatasync_4k_p99_ms_after": ms(&disk_after, 0.99),
    });
    Ok((all, t, disk))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for o in &args.only {
        if !SCENARIOS.contains(&o.as_str()) {
            bail!(
                "--only: unknown scenario {o:?}; known: {}",
                SCENARIOS.join(", ")
            );
        }
    }
    if !(1..=sink::FILLER_SLOT).contains(&args.fanout) {
        bail!("--fanout must be 1 to {}", sink::FILLER_SLOT);
    }
    let bin = args
        .herald_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_herald")));
    if !bin.exists() {
        bail!("no herald binary at {}", bin.display());
    }
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/e2e.json"));
    let payload = Arc::new(Payload::new(args.payload_bytes));
    // Self-checks: the sink reads back what the feeder writes, and Herald accepts the event.
    let mut probe = Vec::new();
    payload.write(&mut probe, 42, 1_234_567_890);
    anyhow::ensure!(
        sink::sent_ns(&probe) == Some(1_234_567_890),
        "payload send time does not read back"
    );
    subs::decoded_event(&payload)?;

    let sink_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.sink_workers.max(1))
        .thread_name("e2e-sink")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_workers.max(1))
        .thread_name("e2e-load")
        .enable_all()
        .build()?;
    let clock = Arc::new(Clock::new());
    let sink = sink_rt.block_on(Sink::start(
        clock.clone(),
        Duration::from_millis(args.slow_ms),
        args.one_origin,
    ))?;
    let tmp = tempfile::Builder::new().prefix("herald-e2e-").tempdir()?;
    eprintln!(
        "e2e: herald {}; sink {} ({} workers); load {} workers; herald {} workers; D = {} s; data in {}",
        bin.display(),
        sink.addrs[CEILING_SLOT].ip(),
        args.sink_workers,
        args.load_workers,
        args.herald_workers,
        args.duration,
        tmp.path().display()
    );
    let ctx = Ctx {
        bases: sink.addrs.iter().map(|a| format!("http://{a}")).collect(),
        args: args.clone(),
        bin,
        clock,
        sink,
        sink_rt: sink_rt.handle().clone(),
        payload,
        ticks: daemon::clock_ticks(),
        tmp: tmp.path().to_path_buf(),
    };
    let started = Instant::now();
    let loadavg_before = loadavg();
    let (all, targets, disk) = load_rt.block_on(run(ctx))?;
    let elapsed = started.elapsed().as_secs_f64();

    println!("\n{}", table(&all, &targets));
    println!(
        "disk {}{}, fdatasync 4 KiB p50/p99: {}/{} ms before, {}/{} ms after; load average {} before, {} after; total {elapsed:.0} s",
        disk["fs_type"].as_str().unwrap_or("?"),
        match disk["online_discard"].as_bool() {
            Some(true) => " with online discard",
            _ => "",
        },
        fmt(disk["fdatasync_4k_p50_ms_before"].as_f64(), 2),
        fmt(disk["fdatasync_4k_p99_ms_before"].as_f64(), 2),
        fmt(disk["fdatasync_4k_p50_ms_after"].as_f64(), 2),
        fmt(disk["fdatasync_4k_p99_ms_after"].as_f64(), 2),
        loadavg_before,
        loadavg(),
    );
    let out = json!({
        "scenarios": all,
        "targets": targets,
        "params": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "fanout": args.fanout,
            "in_flight": args.in_flight,
            "payload_bytes": args.payload_bytes,
            "batch": args.batch,
            "feeders": args.feeders,
            "paced_feeders": args.paced_feeders,
            "paced_batch": args.paced_batch,
            "ingest_feeders": args.ingest_feeders,
            "transport": args.transport,
            "subs": args.subs,
            "pending": args.pending,
            "slow_ms": args.slow_ms,
            "herald_workers": args.herald_workers,
            "herald_in_flight": args.herald_in_flight,
            "pool_idle": args.pool_idle,
            "one_origin": args.one_origin,
            "max_backlog": args.max_backlog,
            "sink_workers": args.sink_workers,
            "load_workers": args.load_workers,
        },
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_before": loadavg_before,
            "loadavg_after": loadavg(),
            "disk": disk,
        },
        "total_s": round(elapsed, 1),
    });
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&out)? + "\n")?;
    println!("JSON: {}", json_path.display());
    // Herald children are stopped by now; the runtimes' tasks (sink, idle connections) end here.
    drop(load_rt);
    drop(sink_rt);
    Ok(())
}
