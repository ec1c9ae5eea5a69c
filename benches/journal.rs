//! Journal store bench: fjall 3 against redb 4 on Herald's own workload, and the start-up
//! recovery of the embedded journal with a large backlog.
//!
//! Why this exists: the journal is append-then-delete. Every accepted event writes the event,
//! its dedup key and, per matching subscription, a queue entry, a delivery-log record and a
//! by-subscription index key, in group commits of ~64 events with one fsync each. Every
//! finished delivery then deletes its queue entry and rewrites its log record (no fsync: a
//! lost transition means one more attempt, which at-least-once allows). Start-up scans the
//! whole queue. The bench runs exactly those three phases against both stores through the
//! same codec the journal uses, interleaved (A B A B, order swapped every round) because this
//! machine changes speed by itself for minutes at a time: quote the ratios, not the absolutes.
//!
//! Run: `cargo bench --bench journal -- [--rounds N] [--batches N] [--scan N] [--recover N]`
//! (`--only stores` or `--only recover` runs one part; `--reopen DIR` times start-up on an
//! existing data directory). Defaults take two to three minutes on the 2-core box, most of
//! it loading the 1,000,000-entry fixtures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::config::Config;
use herald::journal::codec;
use herald::journal::embedded::EmbeddedJournal;
use herald::journal::{Journal, NewEvent, QueuePos};
use herald::model::{
    Delivery, DeliveryId, DeliveryRecord, DeliveryStatus, Event, InputKind, SubscriptionId,
};

const EVENTS_PER_BATCH: usize = 64;
const PAYLOAD_BYTES: usize = 700;
const SUBSCRIPTIONS: usize = 100;
/// Transitions per commit in the delete phase (the writer drains whatever is queued).
const TRANSITIONS_PER_COMMIT: usize = 256;
/// Queue entries per commit while bulk-loading the scan fixture.
const LOAD_CHUNK: usize = 50_000;

struct Args {
    rounds: usize,
    batches: usize,
    scan: usize,
    recover: usize,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 3,
        batches: 200,
        scan: 1_000_000,
        recover: 1_000_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |d: usize| it.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match flag.as_str() {
            "--rounds" => a.rounds = num(a.rounds),
            "--batches" => a.batches = num(a.batches),
            "--scan" => a.scan = num(a.scan),
            "--recover" => a.recover = num(a.recover),
            "--only" => a.only = it.next(),
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    a
}

// ---- the workload ---------------------------------------------------------------------------

/// One generated event with its deliveries, already encoded as the journal stores them.
struct Gen {
    seq: u64,
    event: Vec<u8>,
    dedup_key: Vec<u8>,
    deliveries: Vec<(Delivery, DeliveryRecord)>,
}

struct Workload {
    rng: fastrand::Rng,
    subs: Vec<SubscriptionId>,
    next_id: u64,
    payload: Bytes,
}

impl Workload {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let subs = (0..SUBSCRIPTIONS)
            .map(|_| SubscriptionId::from_bytes(std::array::from_fn(|_| rng.u8(..))))
            .collect();
        let payload: Vec<u8> = (0..PAYLOAD_BYTES)
            .map(|_| rng.alphanumeric() as u8)
            .collect();
        Workload {
            rng,
            subs,
            next_id: 1_700_000_000_000_000,
            payload: Bytes::from(payload),
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn event(&mut self) -> Event {
        let seq = self.id();
        Event {
            seq,
            id: format!("evt-{seq}").into(),
            source: "sitecore".into(),
            kind: InputKind::Sitecore,
            event_type: "item:saved".into(),
            time: None,
            received_at_ms: (seq / 1000) as i64,
            attributes: [("language".into(), "en".into())].into_iter().collect(),
            payload: self.payload.clone(),
        }
    }

    fn delivery(&mut self, seq: u64, sub: SubscriptionId) -> Delivery {
        let id = DeliveryId(self.id());
        Delivery {
            id,
            subscription: sub,
            event_seq: seq,
            attempts: 0,
            cycle_start: 0,
            due_at_ms: (id.0 / 1000) as i64,
            created_at_ms: (id.0 / 1000) as i64,
        }
    }

    fn next_event(&mut self) -> Gen {
        let e = self.event();
        let n = self.rng.usize(1..=10);
        let first = self.rng.usize(..SUBSCRIPTIONS);
        let deliveries = (0..n)
            .map(|i| {
                let sub = self.subs[(first + i) % SUBSCRIPTIONS];
                let d = self.delivery(e.seq, sub);
                let r = record(&e, &d, DeliveryStatus::Pending);
                (d, r)
            })
            .collect();
        Gen {
            seq: e.seq,
            event: codec::encode_event(&e),
            dedup_key: codec::dedup_key(&e.source, &e.id),
            deliveries,
        }
    }
}

fn record(e: &Event, d: &Delivery, status: DeliveryStatus) -> DeliveryRecord {
    DeliveryRecord {
        id: d.id,
        subscription: d.subscription,
        event_seq: e.seq,
        event_id: e.id.to_string(),
        event_type: e.event_type.to_string(),
        status,
        attempts: d.attempts,
        created_at_ms: d.created_at_ms,
        next_attempt_at_ms: Some(d.due_at_ms),
        last_attempt: None,
    }
}

// ---- the stores -----------------------------------------------------------------------------

/// The operations the journal's writer and recovery perform, in each store's own idiom.
trait Store {
    /// One group commit of appended events, then one fsync.
    fn append(&mut self, batch: &[Gen]);
    /// One commit of delivered transitions (dequeue + log rewrite), no fsync.
    fn complete(&mut self, done: &[(Delivery, DeliveryRecord)]);
    /// Queue entries only, one commit, no fsync (fixture loading).
    fn load_queue(&mut self, entries: &[Delivery]);
    fn sync(&mut self);
    /// Full queue scan as recovery does it: per-subscription counts and retrying count.
    fn scan(&self) -> (usize, HashMap<SubscriptionId, u64>);
}

struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    dedup: fjall::Keyspace,
    queue: fjall::Keyspace,
    deliveries: fjall::Keyspace,
    by_sub: fjall::Keyspace,
}

impl Fjall {
    fn open(path: &Path) -> Self {
        let db = fjall::Database::builder(path)
            .cache_size(64 * 1024 * 1024)
            .max_journaling_size(herald::journal::embedded::MAX_JOURNAL_BYTES)
            .open()
            .expect("open fjall");
        let ks = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
        };
        Fjall {
            events: ks("events"),
            dedup: ks("dedup"),
            queue: ks("queue"),
            deliveries: ks("deliveries"),
            by_sub: ks("by_sub"),
            db,
        }
    }
}

impl Store for Fjall {
    fn append(&mut self, batch: &[Gen]) {
        let mut b = self.db.batch();
        for g in batch {
            b.insert(
                &self.dedup,
                g.dedup_key.as_slice(),
                codec::dedup_value(g.seq, 0),
            );
            b.insert(&self.events, codec::u64_key(g.seq), g.event.as_slice());
            for (d, r) in &g.deliveries {
                b.insert(
                    &self.queue,
                    codec::queue_key(d.subscription, QueuePos::of(d)),
                    codec::encode_delivery(d),
                );
                b.insert(
                    &self.deliveries,
                    codec::u64_key(d.id.0),
                    codec::encode_record(r),
                );
                b.insert(&self.by_sub, codec::by_sub_key(d.subscription, d.id), []);
            }
        }
        b.commit().expect("commit");
        self.db.persist(fjall::PersistMode::SyncAll).expect("fsync");
    }

    fn complete(&mut self, done: &[(Delivery, DeliveryRecord)]) {
        let mut b = self.db.batch();
        for (d, r) in done {
            b.remove(
                &self.queue,
                codec::queue_key(d.subscription, QueuePos::of(d)),
            );
            b.insert(
                &self.deliveries,
                codec::u64_key(d.id.0),
                codec::encode_record(r),
            );
        }
        b.commit().expect("commit");
    }

    fn load_queue(&mut self, entries: &[Delivery]) {
        let mut b = self.db.batch();
        for d in entries {
            b.insert(
                &self.queue,
                codec::queue_key(d.subscription, QueuePos::of(d)),
                codec::encode_delivery(d),
            );
        }
        b.commit().expect("commit");
    }

    fn sync(&mut self) {
        self.db.persist(fjall::PersistMode::SyncAll).expect("fsync");
    }

    fn scan(&self) -> (usize, HashMap<SubscriptionId, u64>) {
        let mut counts = HashMap::new();
        let mut retrying = 0;
        for kv in self.queue.iter() {
            let (k, v) = kv.into_inner().expect("read");
            let (sub, _) = codec::parse_queue_key(&k).expect("queue key");
            *counts.entry(sub).or_insert(0) += 1;
            if codec::decode_delivery(&v).expect("delivery").attempts > 0 {
                retrying += 1;
            }
        }
        (retrying, counts)
    }
}

type Table = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
const R_EVENTS: Table = redb::TableDefinition::new("events");
const R_DEDUP: Table = redb::TableDefinition::new("dedup");
const R_QUEUE: Table = redb::TableDefinition::new("queue");
const R_DELIVERIES: Table = redb::TableDefinition::new("deliveries");
const R_BY_SUB: Table = redb::TableDefinition::new("by_sub");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(path: &Path) -> Self {
        let db = redb::Database::builder()
            .set_cache_size(64 * 1024 * 1024)
            .create(path.join("herald.redb"))
            .expect("open redb");
        let tx = db.begin_write().expect("tx");
        for t in [R_EVENTS, R_DEDUP, R_QUEUE, R_DELIVERIES, R_BY_SUB] {
            tx.open_table(t).expect("table");
        }
        tx.commit().expect("commit");
        Redb { db }
    }

    fn write(&self, durable: bool, f: impl FnOnce(&redb::WriteTransaction)) {
        let mut tx = self.db.begin_write().expect("tx");
        if !durable {
            tx.set_durability(redb::Durability::None)
                .expect("durability");
        }
        f(&tx);
        tx.commit().expect("commit");
    }
}

impl Store for Redb {
    fn append(&mut self, batch: &[Gen]) {
        self.write(true, |tx| {
            let mut events = tx.open_table(R_EVENTS).expect("table");
            let mut dedup = tx.open_table(R_DEDUP).expect("table");
            let mut queue = tx.open_table(R_QUEUE).expect("table");
            let mut deliveries = tx.open_table(R_DELIVERIES).expect("table");
            let mut by_sub = tx.open_table(R_BY_SUB).expect("table");
            for g in batch {
                dedup
                    .insert(g.dedup_key.as_slice(), &codec::dedup_value(g.seq, 0)[..])
                    .expect("insert");
                events
                    .insert(&codec::u64_key(g.seq)[..], g.event.as_slice())
                    .expect("insert");
                for (d, r) in &g.deliveries {
                    queue
                        .insert(
                            &codec::queue_key(d.subscription, QueuePos::of(d))[..],
                            &codec::encode_delivery(d)[..],
                        )
                        .expect("insert");
                    deliveries
                        .insert(
                            &codec::u64_key(d.id.0)[..],
                            codec::encode_record(r).as_slice(),
                        )
                        .expect("insert");
                    by_sub
                        .insert(&codec::by_sub_key(d.subscription, d.id)[..], &[][..])
                        .expect("insert");
                }
            }
        });
    }

    fn complete(&mut self, done: &[(Delivery, DeliveryRecord)]) {
        self.write(false, |tx| {
            let mut queue = tx.open_table(R_QUEUE).expect("table");
            let mut deliveries = tx.open_table(R_DELIVERIES).expect("table");
            for (d, r) in done {
                queue
                    .remove(&codec::queue_key(d.subscription, QueuePos::of(d))[..])
                    .expect("remove");
                deliveries
                    .insert(
                        &codec::u64_key(d.id.0)[..],
                        codec::encode_record(r).as_slice(),
                    )
                    .expect("insert");
            }
        });
    }

    fn load_queue(&mut self, entries: &[Delivery]) {
        self.write(false, |tx| {
            let mut queue = tx.open_table(R_QUEUE).expect("table");
            for d in entries {
                queue
                    .insert(
                        &codec::queue_key(d.subscription, QueuePos::of(d))[..],
                        &codec::encode_delivery(d)[..],
                    )
                    .expect("insert");
            }
        });
    }

    fn sync(&mut self) {
        // An empty durable commit makes every earlier non-durable one durable.
        self.write(true, |_| {});
    }

    fn scan(&self) -> (usize, HashMap<SubscriptionId, u64>) {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read().expect("read tx");
        let queue = tx.open_table(R_QUEUE).expect("table");
        let mut counts = HashMap::new();
        let mut retrying = 0;
        for kv in queue.iter().expect("iter") {
            let (k, v) = kv.expect("read");
            let (sub, _) = codec::parse_queue_key(k.value()).expect("queue key");
            *counts.entry(sub).or_insert(0) += 1;
            if codec::decode_delivery(v.value())
                .expect("delivery")
                .attempts
                > 0
            {
                retrying += 1;
            }
        }
        (retrying, counts)
    }
}

// ---- phases ---------------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Timing {
    append: Duration,
    complete: Duration,
    events: usize,
    deliveries: usize,
}

fn open(name: &str, dir: &Path) -> Box<dyn Store> {
    match name {
        "fjall" => Box::new(Fjall::open(dir)),
        _ => Box::new(Redb::open(dir)),
    }
}

fn run_workload(name: &str, batches: usize, seed: u64) -> Timing {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(name, dir.path());
    let mut w = Workload::new(seed);
    let mut t = Timing::default();
    let mut pending = Vec::new();
    for _ in 0..batches {
        let batch: Vec<Gen> = (0..EVENTS_PER_BATCH).map(|_| w.next_event()).collect();
        let start = Instant::now();
        store.append(&batch);
        t.append += start.elapsed();
        t.events += batch.len();
        for g in batch {
            pending.extend(g.deliveries);
        }
    }
    t.deliveries = pending.len();
    for (_, r) in &mut pending {
        r.status = DeliveryStatus::Delivered;
        r.attempts = 1;
        r.next_attempt_at_ms = None;
    }
    let start = Instant::now();
    for chunk in pending.chunks(TRANSITIONS_PER_COMMIT) {
        store.complete(chunk);
    }
    store.sync();
    t.complete = start.elapsed();
    t
}

/// Loads `n` queue entries, closes the store, then times open + full scan (what start-up does).
fn run_scan(name: &str, n: usize) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = Workload::new(7);
    let subs = w.subs.clone();
    let load_start = Instant::now();
    {
        let mut store = open(name, dir.path());
        let mut buf = Vec::with_capacity(LOAD_CHUNK);
        for i in 0..n {
            let mut d = w.delivery(1, subs[i % SUBSCRIPTIONS]);
            d.attempts = (i % 4 == 0) as u32;
            buf.push(d);
            if buf.len() == LOAD_CHUNK {
                store.load_queue(&buf);
                buf.clear();
            }
        }
        store.load_queue(&buf);
        store.sync();
    }
    let load = load_start.elapsed();
    let start = Instant::now();
    let store = open(name, dir.path());
    let opened = start.elapsed();
    let (retrying, counts) = store.scan();
    let total = start.elapsed();
    assert_eq!(counts.values().sum::<u64>() as usize, n);
    assert_eq!(retrying, n.div_ceil(4));
    (load, opened, total)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stores(a: &Args) {
    println!(
        "== stores: {} rounds × {} batches × {EVENTS_PER_BATCH} events of {PAYLOAD_BYTES} B, 1–10 deliveries each",
        a.rounds, a.batches
    );
    let mut totals: HashMap<&str, (Timing, Duration)> = HashMap::new();
    for round in 0..a.rounds {
        let order = if round % 2 == 0 {
            ["fjall", "redb"]
        } else {
            ["redb", "fjall"]
        };
        for name in order {
            let t = run_workload(name, a.batches, round as u64);
            println!(
                "round {round} {name:>5}: append {:8.1} ms ({:7.0} events/s, {:5.2} ms/commit)  complete {:8.1} ms ({:8.0} deliveries/s)",
                ms(t.append),
                t.events as f64 / t.append.as_secs_f64(),
                ms(t.append) / a.batches as f64,
                ms(t.complete),
                t.deliveries as f64 / t.complete.as_secs_f64(),
            );
            let e = totals.entry(name).or_default();
            e.0.append += t.append;
            e.0.complete += t.complete;
            e.0.events += t.events;
            e.0.deliveries += t.deliveries;
        }
    }
    if a.scan > 0 {
        for name in ["fjall", "redb", "fjall", "redb"] {
            let (load, opened, total) = run_scan(name, a.scan);
            println!(
                "scan {name:>5}: {} queued: load {:8.1} ms, reopen {:7.1} ms, reopen+scan {:7.1} ms",
                a.scan,
                ms(load),
                ms(opened),
                ms(total)
            );
            totals.entry(name).or_default().1 += total;
        }
    }
    if let (Some(f), Some(r)) = (totals.get("fjall"), totals.get("redb")) {
        println!(
            "ratios redb/fjall (>1: fjall faster): append {:.2}, complete {:.2}, reopen+scan {:.2}",
            r.0.append.as_secs_f64() / f.0.append.as_secs_f64(),
            r.0.complete.as_secs_f64() / f.0.complete.as_secs_f64(),
            r.1.as_secs_f64() / f.1.as_secs_f64().max(1e-9),
        );
    }
}

fn journal_config(dir: &Path) -> herald::config::StorageConfig {
    let mut cfg = Config::defaults().storage;
    cfg.path = dir.to_path_buf();
    cfg.fsync = herald::config::FsyncMode::Never;
    cfg.min_free_bytes = 0;
    cfg
}

/// Child process: loads `n` queued deliveries into the journal in `dir`, makes them durable,
/// says so on stdout, then waits to be killed with SIGKILL.
fn child_load(dir: &Path, n: usize) {
    let cfg = journal_config(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut w = Workload::new(11);
    let subs = w.subs.clone();
    let start = Instant::now();
    let j = EmbeddedJournal::open(&cfg, Duration::from_secs(3600)).expect("open");
    let per_event = 10;
    let mut acks = Vec::new();
    let mut made = 0;
    while made < n {
        let batch: Vec<NewEvent> = (0..EVENTS_PER_BATCH)
            .map(|_| {
                let e = w.event();
                let k = per_event.min(n - made);
                let deliveries = (0..k)
                    .map(|i| w.delivery(e.seq, subs[(made + i) % SUBSCRIPTIONS]))
                    .collect();
                made += k;
                NewEvent {
                    event: Arc::new(e),
                    deliveries,
                }
            })
            .collect();
        acks.push(j.append(batch));
        if acks.len() >= 64 {
            for a in acks.drain(..) {
                rt.block_on(a).expect("ack").expect("append");
            }
        }
    }
    for a in acks {
        rt.block_on(a).expect("ack").expect("append");
    }
    rt.block_on(j.flush()).expect("ack").expect("flush");
    println!("loaded {made} in {:.1} s", start.elapsed().as_secs_f64());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Start-up of the real journal with `n` queued deliveries: open + `recover()`, first right
/// after the process that wrote them was killed with SIGKILL (fjall replays its journal),
/// then after a clean close.
fn recover(n: usize) {
    use std::io::BufRead;
    println!("== recover: EmbeddedJournal with {n} queued deliveries (10 per event)");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .arg("--child-load")
        .arg(dir.path())
        .arg(n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn loader");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("loader output");
    print!("loader: {line}");
    child.kill().expect("kill -9 the loader");
    let _ = child.wait();
    let cfg = journal_config(dir.path());
    for when in ["after kill -9", "after clean close"] {
        let start = Instant::now();
        let j = EmbeddedJournal::open(&cfg, Duration::ZERO).expect("open");
        let opened = start.elapsed();
        let r = j.recover().expect("recover");
        let total = start.elapsed();
        let queued: u64 = r.queued.iter().map(|(_, c)| c).sum();
        assert_eq!(queued as usize, n);
        println!(
            "{when:>17}: open {:7.1} ms, open+recover {:7.1} ms ({} subscriptions, {queued} queued)",
            ms(opened),
            ms(total),
            r.queued.len()
        );
        let start = Instant::now();
        j.close();
        println!("{:>17}  close {:7.1} ms", "", ms(start.elapsed()));
    }
}

/// Times open + `recover()` of an existing data directory (a copy: the journal must not be
/// open elsewhere).
fn reopen(dir: &Path) {
    let cfg = journal_config(dir);
    let start = Instant::now();
    let j = EmbeddedJournal::open(&cfg, Duration::ZERO).expect("open");
    let opened = start.elapsed();
    let r = j.recover().expect("recover");
    let total = start.elapsed();
    let queued: u64 = r.queued.iter().map(|(_, c)| c).sum();
    println!(
        "open {:7.1} ms, open+recover {:7.1} ms ({queued} queued)",
        ms(opened),
        ms(total)
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--child-load") {
        let dir = argv.get(i + 1).expect("--child-load DIR N");
        let n = argv
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .expect("--child-load DIR N");
        child_load(Path::new(dir), n);
        return;
    }
    if let Some(i) = argv.iter().position(|a| a == "--reopen") {
        let dir = argv.get(i + 1).expect("--reopen DIR");
        reopen(Path::new(dir));
        return;
    }
    let a = args();
    if a.only.as_deref() != Some("recover") {
        stores(&a);
    }
    if a.only.as_deref() != Some("stores") && a.recover > 0 {
        recover(a.recover);
    }
}
