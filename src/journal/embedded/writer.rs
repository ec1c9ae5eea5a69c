//! The single writer thread: group commit.
//!
//! Every write reaches this thread through one bounded crossbeam channel. The thread takes the
//! first command, drains whatever else is already queued (and, with a batch window, waits that
//! long for more), applies all of it as one atomic write batch, then syncs once and answers
//! every waiting request. Under load, everything that arrives during one fsync goes into the
//! next: many events, one fsync. Dedup is decided here too, because this thread is the one
//! place where "was `(source, id)` seen before?" cannot race with another writer, except for
//! the events an append calls *sure* (`admit.rs` decided them as it was sent, knowing every
//! append before it): those are accepted without a second look. So are the retention
//! sweep's deletes decided here, re-checked against the current state right before they
//! are written (a delivery replayed since the sweep read it is left alone).
//!
//! A sure event's deliveries may have started before this thread takes its append. Their
//! transitions wait in the append's [`Gate`] until then, and are applied right after the
//! append, in its commit: applied before it, a delivery's end would be undone by the queue
//! entry the append writes.
//!
//! Within one batch a later write of a key wins over an earlier one (fjall applies a batch in
//! order under one sequence number), so two transitions of one delivery in the same commit
//! leave the second.
//!
//! Transitions (a delivery's state change, one per attempt) come on a channel of their own
//! and do not wake this thread one by one: nobody waits for them, and at half the peak rate
//! of the load bench they woke it ~2,600 times a second, for commits of ~5 transitions each,
//! on a 2-core machine where every wake-up is a context switch some event waits behind. The
//! first transition after the thread last looked sends a [`Command::Nudge`]; the thread then
//! lingers up to [`RECORD_LINGER`] for more, unless a command with a waiter (an append, a
//! barrier) arrives first, which is never delayed. Every commit takes the transitions waiting,
//! and so does anything that orders after them (a barrier, a flush, a sweep, closing): a
//! transition sent before a barrier is committed by the time the barrier is answered.
//!
//! An append's implicit deliveries get no queue entry with it: the writer keeps those in
//! [`Deferred`] and writes one only for a delivery still open `[storage] queue_write_after`
//! later, or in a commit that answers a queue barrier, since its waiter (a refill) reads the
//! queue next. A transition that ends a delivery whose entry was never written has nothing to
//! delete.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use fjall::{PersistMode, Readable as _};
use tokio::sync::oneshot;

use super::admit::{Decided, within_window};
use super::deferred::Deferred;
use super::retention::{SweepChunk, SweepStats};
use super::{Keyspaces, Shared};
use crate::config::FsyncMode;
use crate::journal::codec;
use crate::journal::{AppendStatus, DeadOp, Gate, JournalError, NewEvent, QueuePos, Transition};
use crate::model::{Delivery, DeliveryId, DeliveryStatus, SubscriptionId, now_ms};
use crate::telemetry::metrics as m;

/// Upper bound on the operations of one commit, whatever the commands: a steady stream of
/// transitions must still be committed in bounded pieces.
const MAX_COMMIT_OPS: usize = 200_000;

/// How long the writer, woken for transitions alone, waits for more before committing them.
/// A transition's commit only frees its queue entry and updates the delivery log; delaying it
/// this much delays nothing anyone waits for.
pub(super) const RECORD_LINGER: Duration = Duration::from_millis(1);

/// The transition channel's receiving end (its senders' flag is `Shared::records_nudged`).
pub(super) type Records = Receiver<Box<Transition>>;

pub(super) type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

pub(super) enum Command {
    Append {
        events: Vec<NewEvent>,
        /// Which events are sure to be accepted, and the claims to give back (`admit.rs`).
        decided: Decided,
        /// The transitions of the sure events' deliveries that started before this append
        /// was taken: applied right after it.
        gate: Option<Arc<Gate>>,
        /// Answered once the batch is committed (readable, dedup decided), before it is
        /// synced; `None` when the caller only waits for `ack`.
        written: Option<Reply<Vec<AppendStatus>>>,
        /// Answered once the batch is durable per `[storage] fsync`.
        ack: Reply<Vec<AppendStatus>>,
    },
    /// Transitions are waiting on the writer's transition channel (sent once per look).
    Nudge,
    SaveSubscription {
        key: [u8; 16],
        value: Vec<u8>,
        ack: Reply<()>,
    },
    DeleteSubscription {
        key: [u8; 16],
        ack: Reply<()>,
    },
    /// Answered once everything before it is durable (always fsyncs).
    Flush(Reply<()>),
    /// Answered once everything before it is committed and readable (never fsyncs by itself).
    Barrier(Reply<()>),
    /// A [`Command::Barrier`] that also writes every queue entry kept back (`deferred.rs`):
    /// its waiter reads the queue next.
    QueueBarrier(Reply<()>),
    /// Retention deletes; committed on their own, after everything sent before them. The
    /// reply is a plain channel: the sweep thread blocks on it, it is not async.
    Sweep(
        SweepChunk,
        crossbeam_channel::Sender<Result<SweepStats, JournalError>>,
    ),
    /// Commit what is pending, sync, stop.
    Close,
}

/// Answers both waiters of an append that is not written.
fn refuse_append(
    written: Option<Reply<Vec<AppendStatus>>>,
    ack: Reply<Vec<AppendStatus>>,
    err: JournalError,
) {
    if let Some(w) = written {
        let _ = w.send(Err(err.clone()));
    }
    let _ = ack.send(Err(err));
}

impl Command {
    /// Answers the command's waiter (if any) with `err`.
    pub(super) fn fail(self, err: JournalError) {
        match self {
            Command::Append {
                written, ack, gate, ..
            } => {
                // Not written: neither are the transitions that waited for it (the journal is
                // closed, which is when this happens).
                if let Some(g) = gate {
                    g.open();
                }
                refuse_append(written, ack, err)
            }
            Command::SaveSubscription { ack, .. }
            | Command::DeleteSubscription { ack, .. }
            | Command::Flush(ack)
            | Command::Barrier(ack)
            | Command::QueueBarrier(ack) => {
                let _ = ack.send(Err(err));
            }
            Command::Sweep(_, ack) => {
                let _ = ack.send(Err(err));
            }
            Command::Nudge | Command::Close => {}
        }
    }

    /// Commands that must not share a commit with what came before them.
    fn is_boundary(&self) -> bool {
        matches!(self, Command::Sweep(..) | Command::Close)
    }
}

pub(super) struct WriterOptions {
    pub fsync: FsyncMode,
    pub batch_window: Duration,
    pub batch_max_events: usize,
    pub dedup_window_ms: i64,
    /// The data directory (fjall's journals are there; the syncer syncs the active one).
    pub dir: std::path::PathBuf,
    /// Memtable size at which the writer rotates it (see `MEMTABLE_ROTATE_BYTES`).
    pub rotate_at: u64,
    /// `[storage] queue_write_after`, ms (see `deferred.rs`).
    pub queue_write_after_ms: i64,
}

/// Whether the commit being assembled may take another command.
fn room_for_more(
    fsync: FsyncMode,
    appends: usize,
    events: usize,
    ops: usize,
    max_events: usize,
) -> bool {
    // "always" means one fsync per ingest request: an append closes its commit.
    events < max_events && ops < MAX_COMMIT_OPS && !(fsync == FsyncMode::Always && appends > 0)
}

/// Whether to wait (up to the batch window) for more commands once the channel is empty.
/// Only an ingest request is worth delaying for: it amortizes the fsync; transitions alone
/// never wait.
fn wait_for_more(fsync: FsyncMode, window: Duration, appends: usize) -> bool {
    fsync == FsyncMode::Batch && !window.is_zero() && appends > 0
}

/// Whether a commit's waiters wait for an fsync. A flush always does; appends and
/// subscription changes follow `[storage] fsync`; transitions, barriers and sweeps never
/// sync on their own. A commit alone already hands the batch to the OS (fjall's batches
/// flush its journal buffer unless `manual_journal_persist` is set, which Herald never
/// does), so it survives a crash of Herald; the fsync is what survives a power loss.
fn needs_sync(fsync: FsyncMode, appends: usize, sub_writes: usize, flushes: usize) -> bool {
    flushes > 0 || (fsync != FsyncMode::Never && appends + sub_writes > 0)
}

/// A waiter for durability, answered by whoever syncs its commit (this thread or the syncer).
pub(super) enum Durable {
    Append(Reply<Vec<AppendStatus>>, Vec<AppendStatus>),
    Unit(Reply<()>),
}

impl Durable {
    pub(super) fn answer(self, result: &Result<(), JournalError>) {
        match self {
            Durable::Append(tx, statuses) => {
                let _ = tx.send(result.clone().map(|()| statuses));
            }
            Durable::Unit(tx) => {
                let _ = tx.send(result.clone());
            }
        }
    }
}

/// How many appended events' implicit blocks the writer remembers (see [`Grouping`]): at
/// 20,000 events a second, the last ~3 s. A delivery first attempted later than that gets a
/// record of its own, as every delivery did before groups.
const RECENT_BLOCKS: usize = 1 << 16;

/// What the writer keeps across commits to write first transitions in `delivered` groups
/// ("Delivered groups" in the module docs), and the buffers of the commit being assembled.
#[derive(Default)]
struct Grouping {
    /// Recently appended events with implicit deliveries: sequence number → how many.
    blocks: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Their sequence numbers, oldest first, to forget them in order.
    order: VecDeque<u64>,
    /// This commit's grouped records: ids and where their encodings lie in `buf`.
    entries: Vec<codec::DeliveredEntry>,
    buf: Vec<u8>,
    /// A group's value while it is built.
    value: Vec<u8>,
    /// Where the hot keyspaces' keys and values go.
    arenas: Arenas,
    /// The queue entries of implicit deliveries not written yet (`deferred.rs`).
    deferred: Deferred,
    /// The deferred floor the last commit wrote (`None`: none written since the start).
    floor_written: Option<Option<u64>>,
}

/// The size of an [`Arena`]'s chunks.
const ARENA_CHUNK: usize = 64 * 1024;
/// A key or value larger than this gets an allocation of its own: a chunk would hold little
/// else, and the rest of its room would wait for the next item.
const ARENA_MAX_ITEM: usize = ARENA_CHUNK / 8;

/// Keys and values copied into shared chunks for the memtables ("Arenas" in
/// `journal::embedded`'s docs):
/// each slice handed to fjall is a reference into a chunk, not an allocation of its own.
#[derive(Default)]
struct Arena {
    /// The unused rest of the current chunk (`split` hands out what was written).
    chunk: BytesMut,
}

impl Arena {
    /// `b`, copied into the current chunk (a new one when it does not fit).
    fn copy(&mut self, b: &[u8]) -> Bytes {
        if b.is_empty() {
            return Bytes::new();
        }
        if b.len() > ARENA_MAX_ITEM {
            return Bytes::copy_from_slice(b);
        }
        if self.chunk.capacity() < b.len() {
            self.chunk = BytesMut::with_capacity(ARENA_CHUNK);
        }
        self.chunk.extend_from_slice(b);
        self.chunk.split().freeze()
    }
}

/// One [`Arena`] per keyspace written for every event or delivery: a chunk then holds one
/// keyspace's entries and is freed with the memtables they went into, not kept by another
/// keyspace's, which flushes at another time.
#[derive(Default)]
struct Arenas {
    events: Arena,
    queue: Arena,
    dedup: Arena,
    by_sub: Arena,
    delivered: Arena,
    /// An event's encoding before it is copied into `events`.
    scratch: Vec<u8>,
}

impl Grouping {
    fn note_block(&mut self, seq: u64, deliveries: usize) {
        let n = u32::try_from(deliveries).unwrap_or(u32::MAX);
        if self.blocks.insert(seq, n).is_none() {
            self.order.push_back(seq);
        }
        if self.order.len() > RECENT_BLOCKS
            && let Some(old) = self.order.pop_front()
        {
            self.blocks.remove(&old);
        }
    }

    /// Whether `d` is an implicit delivery of a recently appended event, still as ingest queued
    /// it: then no record of it has been written (the first transition writes it).
    fn untouched(&self, d: &Delivery) -> bool {
        as_ingest_queued(d)
            && self
                .blocks
                .get(&d.event_seq)
                .is_some_and(|&n| d.id.0 > d.event_seq && d.id.0 - d.event_seq <= u64::from(n))
    }
}

/// Whether `d` has the shape of a queue entry ingest wrote: never attempted, in its first
/// cycle, due when it was created. A re-queued delivery never has it: `outcome::fresh_due`
/// gives it a due time other than the one it had.
fn as_ingest_queued(d: &Delivery) -> bool {
    *d == Delivery::fresh(d.id, d.subscription, d.event_seq, d.created_at_ms)
}

/// The queue entry a transition takes away, if the transition is a first attempt that
/// delivered (no retry, no dead letter, nothing else queued): the one kind of record a
/// `delivered` group holds.
fn delivered_at_once(t: &Transition) -> Option<&Delivery> {
    match t {
        Transition {
            dequeue: Some(d),
            enqueue: None,
            attempt: None,
            dead: DeadOp::None,
            record,
        } if record.status == DeliveryStatus::Delivered && record.id == d.id => Some(d),
        _ => None,
    }
}

/// One commit being assembled.
struct Commit<'a> {
    ks: &'a Keyspaces,
    grouping: &'a mut Grouping,
    batch: fjall::OwnedWriteBatch,
    /// Answered once the batch is committed.
    written: Vec<(Reply<Vec<AppendStatus>>, Vec<AppendStatus>)>,
    barriers: Vec<Reply<()>>,
    /// One of `barriers` reads the queue next: every deferred entry is written.
    queue_barrier: bool,
    /// Answered once the batch is synced as far as its [`SyncLevel`] says.
    durable: Vec<Durable>,
    events: usize,
    appends: usize,
    sub_writes: usize,
    flushes: usize,
    /// Dedup keys written in this commit (not yet visible to `get`). foldhash, not SipHash:
    /// the map lives for one commit, which bounds what anyone could aim at one bucket.
    seen: HashMap<Vec<u8>, u64, foldhash::fast::RandomState>,
    /// Dead-letter presence changed in this commit (not yet visible to `get`).
    dead: HashMap<u64, bool, foldhash::fast::RandomState>,
    /// The implicit deliveries of the event being appended (reused buffer).
    implicit: Vec<SubscriptionId>,
    /// `by_sub` index entries of this commit, written as one group per subscription when it
    /// commits ("The per-subscription index" in the module docs).
    by_sub: Vec<(SubscriptionId, u64)>,
    /// Change in the number of dead letters, applied if the commit succeeds.
    dead_delta: i64,
    /// The appends' dedup claims (`admit.rs`), given back once the commit is through.
    claims: Vec<u64>,
    /// The events whose queue entries this commit's appends left to `grouping.deferred`.
    kept: Vec<u64>,
}

pub(super) fn run(
    rx: Receiver<Command>,
    records: Records,
    shared: Arc<Shared>,
    opts: WriterOptions,
) {
    if opts.fsync != FsyncMode::Batch {
        return write(rx, &records, &shared, &opts, None);
    }
    // Batch mode syncs on its own thread, pipelined with the next commit (see `sync`).
    let (sync_tx, sync_rx) = crossbeam_channel::bounded(SYNC_CHANNEL_CAPACITY);
    std::thread::scope(|scope| {
        let syncer = std::thread::Builder::new()
            .name("herald-sync".into())
            .spawn_scoped(scope, {
                let shared = Arc::clone(&shared);
                let dir = opts.dir.clone();
                move || super::sync::run(sync_rx, shared, dir)
            });
        match syncer {
            Ok(_) => write(rx, &records, &shared, &opts, Some(sync_tx)),
            Err(e) => {
                tracing::warn!(error = %e, "journal: cannot start the sync thread; syncing inline");
                write(rx, &records, &shared, &opts, None)
            }
        }
    });
    // The scope has joined the syncer: everything it was handed is answered.
    if let Err(e) = shared.db.persist(PersistMode::SyncAll) {
        tracing::error!(error = %e, "journal: final sync failed");
    }
}

/// Woken for transitions alone: waits up to [`RECORD_LINGER`] for more of them, or for a
/// command, which ends the wait at once and joins the commit.
fn linger(rx: &Receiver<Command>) -> Option<Command> {
    match rx.recv_timeout(RECORD_LINGER) {
        Ok(Command::Nudge) | Err(_) => None,
        Ok(cmd) => Some(cmd),
    }
}

/// The most batch entries preallocated for a commit (a burst's size is not kept for ever).
const MAX_BATCH_HINT: usize = 64 * 1024;

/// How many entries the next commit's batch starts with: the largest recent commit, decaying
/// by an eighth per commit. Sizing it by the last commit alone still grew most batches, since
/// commit sizes jitter around their mean and every commit above the last one reallocated.
fn next_batch_hint(previous_hint: usize, last_len: usize) -> usize {
    last_len
        .max(previous_hint - previous_hint / 8)
        .min(MAX_BATCH_HINT)
}

/// Commits awaiting the syncer at most; past that the writer waits (backpressure).
const SYNC_CHANNEL_CAPACITY: usize = 1024;

/// The writer loop. With `syncer`, full syncs are handed to it; without, done here.
fn write(
    rx: Receiver<Command>,
    records: &Records,
    shared: &Arc<Shared>,
    opts: &WriterOptions,
    syncer: Option<crossbeam_channel::Sender<super::sync::Group>>,
) {
    let shared = &**shared;
    let commits = metrics::counter!(m::JOURNAL_COMMITS);
    let batch_events = metrics::histogram!(m::JOURNAL_BATCH_EVENTS);
    let commit_seconds = metrics::histogram!(m::JOURNAL_COMMIT_SECONDS);
    let mut carry: Option<Command> = None;
    // The last commit's size: the next batch starts at it rather than growing by doubling
    // (its reallocations, on fresh pages, showed in profiles at a few % of Herald's CPU).
    let mut batch_hint = 0;
    // A boundary put back while the transitions sent before it are committed.
    let mut deferred = false;
    let mut grouping = Grouping::default();
    loop {
        let first = match carry.take() {
            Some(cmd) => Some(cmd),
            // Left over from a commit that filled up: no need to wait.
            None if !records.is_empty() => None,
            None => match rx.recv() {
                Ok(Command::Nudge) => linger(&rx),
                Ok(cmd) => Some(cmd),
                Err(_) => break,
            },
        };
        let first = match first {
            // Transitions sent before a boundary are committed before it, on their own (once:
            // those sent since are after it).
            Some(cmd) if cmd.is_boundary() && !deferred && !records.is_empty() => {
                carry = Some(cmd);
                deferred = true;
                None
            }
            Some(Command::Close) => break,
            Some(Command::Sweep(chunk, ack)) => {
                deferred = false;
                let floor = grouping.deferred.floor().unwrap_or(u64::MAX);
                let _ = ack.send(sweep(shared, chunk, floor));
                continue;
            }
            other => other,
        };
        // Committing what came before a boundary: nothing sent after it joins. The channel
        // holds fewer transitions than one commit has room for, so this takes them all.
        let records_only = carry.is_some();
        let mut c = Commit::new(shared, &mut grouping, batch_hint);
        let deadline = Instant::now() + opts.batch_window;
        c.take_records(records, shared);
        if let Some(first) = first {
            c.apply(first, shared, opts);
        }
        while !records_only
            && room_for_more(
                opts.fsync,
                c.appends,
                c.events,
                c.ops(),
                opts.batch_max_events,
            )
        {
            let next = match rx.try_recv() {
                Ok(cmd) => cmd,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if !wait_for_more(opts.fsync, opts.batch_window, c.appends) {
                        break;
                    }
                    match rx.recv_deadline(deadline) {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if next.is_boundary() {
                carry = Some(next);
                break;
            }
            c.apply(next, shared, opts);
        }
        // What arrived while the commit was assembled, so a barrier in it covers every
        // transition sent before the barrier.
        c.take_records(records, shared);
        let wrote = !c.batch.is_empty();
        batch_hint = next_batch_hint(batch_hint, c.ops());
        let started = Instant::now();
        let committed = c.commit(shared, opts);
        // Committed, the appends' keys are readable; failed, they never will be. Either way
        // the store answers for them now, not the claims.
        shared.admission.release(&c.claims);
        if wrote {
            commit_seconds.record(started.elapsed().as_secs_f64());
            commits.increment(1);
            batch_events.record(c.events as f64);
            if committed.is_ok()
                && let Err(e) = shared.ks.rotate_full(opts.rotate_at)
            {
                // The commit stands; fjall rotates on its own at twice the size.
                tracing::warn!(error = %e, "journal: could not rotate a full memtable");
            }
        }
        let sync = match committed {
            Ok(sync) => sync,
            Err(e) => {
                // Its appends are not stored: neither are their deliveries to be queued.
                c.forget_kept();
                let err = Err(e);
                for (tx, _) in c.written {
                    let _ = tx.send(err.clone().map(|()| Vec::new()));
                }
                for tx in c.barriers {
                    let _ = tx.send(err.clone());
                }
                for d in c.durable {
                    d.answer(&err);
                }
                continue;
            }
        };
        // Committed: readable, dedup decided. Ingest may hand deliveries over now.
        for (tx, statuses) in c.written {
            let _ = tx.send(Ok(statuses));
        }
        for tx in c.barriers {
            let _ = tx.send(Ok(()));
        }
        if c.durable.is_empty() {
            continue;
        }
        let result = match (sync, &syncer) {
            (false, _) => Ok(()),
            (true, Some(tx)) => match tx.send(c.durable) {
                Ok(()) => continue,
                // The syncer is gone (it cannot be while this loop runs): sync here.
                Err(crossbeam_channel::SendError(durable)) => {
                    c.durable = durable;
                    sync_here(shared)
                }
            },
            (true, None) => sync_here(shared),
        };
        for d in c.durable {
            d.answer(&result);
        }
    }
    // Stopping: whatever is still queued was sent after `close`; it is not written.
    while let Ok(cmd) = rx.try_recv() {
        cmd.fail(JournalError::Closed);
    }
    while records.try_recv().is_ok() {}
    if syncer.is_none()
        && let Err(e) = shared.db.persist(PersistMode::SyncAll)
    {
        tracing::error!(error = %e, "journal: final sync failed");
    }
}

impl<'a> Commit<'a> {
    fn new(shared: &'a Shared, grouping: &'a mut Grouping, capacity: usize) -> Self {
        Commit {
            ks: &shared.ks,
            grouping,
            // As `Database::batch` does: a commit writes through fjall's buffer to the OS, so a
            // crash of Herald (not of the machine) keeps it.
            batch: fjall::OwnedWriteBatch::with_capacity(shared.db.clone(), capacity)
                .durability(Some(PersistMode::Buffer)),
            written: Vec::new(),
            barriers: Vec::new(),
            queue_barrier: false,
            durable: Vec::new(),
            events: 0,
            appends: 0,
            sub_writes: 0,
            flushes: 0,
            seen: HashMap::default(),
            dead: HashMap::default(),
            implicit: Vec::new(),
            by_sub: Vec::new(),
            dead_delta: 0,
            claims: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// Adds the waiting transitions (as many as the commit has room for). The flag is cleared
    /// first: a transition sent after that nudges again, so none is left waiting unseen; one
    /// whose sender found the flag still set was sent before the clear (the swap acquires
    /// the sender's), so the drain below sees it.
    /// Operations so far, counting each pending `by_sub` entry and grouped record as one (at
    /// most that many groups are written).
    fn ops(&self) -> usize {
        self.batch.len() + self.by_sub.len() + self.grouping.entries.len()
    }

    fn take_records(&mut self, records: &Records, shared: &Shared) {
        shared.records_nudged.swap(false, Ordering::AcqRel);
        while self.ops() < MAX_COMMIT_OPS {
            match records.try_recv() {
                Ok(t) => self.record(&t),
                Err(_) => break,
            }
        }
    }

    fn apply(&mut self, cmd: Command, shared: &Shared, opts: &WriterOptions) {
        match cmd {
            Command::Append {
                events,
                decided,
                gate,
                written,
                ack,
            } => {
                // Given back once this commit is through, whatever becomes of it.
                self.claims.extend_from_slice(&decided.claims);
                // Checked before anything of the request is added: a refused append leaves
                // no trace (but for the transitions of deliveries that started early: they
                // happened).
                if let Err(e) = shared
                    .sync_failure()
                    .map_or_else(|| shared.check_space(), Err)
                {
                    super::count_error(&e);
                    self.open(gate);
                    refuse_append(written, ack, e);
                    return;
                }
                self.appends += 1;
                let statuses = self.append(events, &decided.sure, opts);
                self.open(gate);
                if let Some(w) = written {
                    self.written.push((w, statuses.clone()));
                }
                self.durable.push(Durable::Append(ack, statuses));
            }
            // Its transitions are taken with the commit's (`take_records`).
            Command::Nudge => {}
            Command::SaveSubscription { key, value, ack } => {
                self.batch.insert(&self.ks.subs, key, value);
                self.sub_writes += 1;
                self.durable.push(Durable::Unit(ack));
            }
            Command::DeleteSubscription { key, ack } => {
                self.batch.remove(&self.ks.subs, key);
                self.sub_writes += 1;
                self.durable.push(Durable::Unit(ack));
            }
            Command::Flush(ack) => {
                self.flushes += 1;
                self.durable.push(Durable::Unit(ack));
            }
            Command::Barrier(ack) => self.barriers.push(ack),
            Command::QueueBarrier(ack) => {
                self.queue_barrier = true;
                self.barriers.push(ack);
            }
            // The run loop keeps boundaries out of a commit.
            cmd @ (Command::Sweep(..) | Command::Close) => cmd.fail(JournalError::Closed),
        }
    }

    /// Applies an append's gate: its parked transitions go into this commit, after the
    /// append; later ones reach the writer on their own.
    fn open(&mut self, gate: Option<Arc<Gate>>) {
        if let Some(g) = gate {
            for t in g.open() {
                self.record(&t);
            }
        }
    }

    fn append(
        &mut self,
        events: Vec<NewEvent>,
        sure: &[bool],
        opts: &WriterOptions,
    ) -> Vec<AppendStatus> {
        let now = now_ms();
        let mut statuses = Vec::with_capacity(events.len());
        for (i, ne) in events.into_iter().enumerate() {
            let e = &ne.event;
            if opts.dedup_window_ms > 0 {
                let key = codec::dedup_key(&e.source, &e.id);
                // A sure event was looked up already, with every append before it known.
                let sure = sure.get(i).copied().unwrap_or(false);
                if !sure
                    && let Some(original_seq) = self.duplicate_of(&key, now, opts.dedup_window_ms)
                {
                    statuses.push(AppendStatus::Duplicate { original_seq });
                    continue;
                }
                let a = &mut self.grouping.arenas.dedup;
                self.batch.insert(
                    &self.ks.dedup,
                    a.copy(&key),
                    a.copy(&codec::dedup_value(e.seq, now)),
                );
                self.seen.insert(key, e.seq);
            }
            self.events += 1;
            // Deliveries exactly as ingest creates them get no pending record: the event
            // lists their subscriptions and the log derives it ("Implicit pending records").
            let implicit = codec::implicit_fits(e, &ne.deliveries);
            self.implicit.clear();
            if implicit {
                self.implicit
                    .extend(ne.deliveries.iter().map(|d| d.subscription));
                self.grouping.note_block(e.seq, ne.deliveries.len());
            }
            let a = &mut self.grouping.arenas;
            codec::encode_event_into(e, &self.implicit, &mut a.scratch);
            self.batch.insert(
                &self.ks.events,
                a.events.copy(&codec::u64_key(e.seq)),
                a.events.copy(&a.scratch),
            );
            if implicit {
                // Their queue entries are written only if they are still needed later
                // (`deferred.rs`); the event lists them meanwhile.
                self.grouping
                    .deferred
                    .keep(e.seq, e.received_at_ms, &self.implicit);
                self.kept.push(e.seq);
            }
            for d in &ne.deliveries {
                self.by_sub.push((d.subscription, d.id.0));
                if implicit {
                    continue;
                }
                let q = &mut self.grouping.arenas.queue;
                self.batch.insert(
                    &self.ks.queue,
                    q.copy(&codec::queue_key(d.subscription, QueuePos::of(d))),
                    q.copy(&codec::encode_delivery(d)),
                );
                let record = codec::RecordRef {
                    id: d.id,
                    subscription: d.subscription,
                    event_seq: e.seq,
                    event_id: &e.id,
                    event_type: &e.event_type,
                    status: if d.attempts > 0 {
                        DeliveryStatus::Retrying
                    } else {
                        DeliveryStatus::Pending
                    },
                    attempts: d.attempts,
                    created_at_ms: d.created_at_ms,
                    next_attempt_at_ms: Some(d.due_at_ms),
                    last_attempt: None,
                };
                self.batch.insert(
                    &self.ks.deliveries,
                    codec::u64_key(d.id.0),
                    codec::encode_record_ref(&record),
                );
            }
            statuses.push(AppendStatus::Accepted);
        }
        statuses
    }

    fn duplicate_of(&self, key: &[u8], now: i64, window_ms: i64) -> Option<u64> {
        if let Some(&seq) = self.seen.get(key) {
            return Some(seq);
        }
        // A read error here is treated as "not seen": delivering twice is allowed by
        // at-least-once, refusing the event is not.
        let v = self.ks.dedup.get(key).ok().flatten()?;
        let (seq, accepted_at) = codec::parse_dedup_value(&v)?;
        within_window(now, accepted_at, window_ms).then_some(seq)
    }

    /// Whether a dead letter for `id` exists, counting this commit's own changes.
    fn dead_exists(&self, id: u64) -> bool {
        match self.dead.get(&id) {
            Some(&present) => present,
            // A read error counts as "absent": the gauge may drift by one, the data does not.
            None => self
                .ks
                .dead
                .contains_key(codec::u64_key(id))
                .unwrap_or(false),
        }
    }

    fn record(&mut self, t: &Transition) {
        let r = &t.record;
        if delivered_at_once(t).is_some_and(|d| self.grouping.untouched(d)) {
            // Delivered at its first attempt, with no record of its own yet: into the commit's
            // delivered groups ("Delivered groups" in the module docs). Such a transition has
            // nothing else to write but its queue delete, below.
            let g = &mut *self.grouping;
            let at = g.buf.len();
            codec::encode_record_into(&codec::RecordRef::from(r), &mut g.buf);
            g.entries.push((r.id.0, at, g.buf.len() - at));
        } else {
            self.batch.insert(
                &self.ks.deliveries,
                codec::u64_key(r.id.0),
                codec::encode_record(r),
            );
        }
        if let Some(a) = &t.attempt {
            self.batch.insert(
                &self.ks.attempts,
                codec::attempt_key(r.id, a.attempt),
                codec::encode_attempt(a),
            );
        }
        // An entry never written has nothing to delete.
        if let Some(d) = &t.dequeue
            && !self.grouping.deferred.take(d)
        {
            // Weak: see "Queue deletes" in the module docs.
            let q = &mut self.grouping.arenas.queue;
            self.batch.remove_weak(
                &self.ks.queue,
                q.copy(&codec::queue_key(d.subscription, QueuePos::of(d))),
            );
        }
        if let Some(d) = &t.enqueue {
            let q = &mut self.grouping.arenas.queue;
            self.batch.insert(
                &self.ks.queue,
                q.copy(&codec::queue_key(d.subscription, QueuePos::of(d))),
                q.copy(&codec::encode_delivery(d)),
            );
            // A queue entry that replaces none is a delivery created after ingest (a
            // subscription replay: never attempted, pending, no dead letter) or one queued again
            // (a dead letter, or a delivered one), which ingest indexed already. Indexing that
            // one again would write a group keyed by its id, and if a group is keyed so already
            // (the id was its first), replace it and drop its other ids.
            let created = t.record.attempts == 0
                && t.record.status == DeliveryStatus::Pending
                && t.dead == DeadOp::None;
            if t.dequeue.is_none() && (created || !self.indexed(d.subscription, d.id.0)) {
                self.by_sub.push((d.subscription, d.id.0));
            }
        }
        match t.dead {
            DeadOp::None => {}
            DeadOp::Insert => {
                // The dead letter keeps the delivery as it was last queued, for replay.
                if let Some(d) = t.dequeue.as_ref().or(t.enqueue.as_ref()) {
                    if !self.dead_exists(r.id.0) {
                        self.dead_delta += 1;
                    }
                    self.dead.insert(r.id.0, true);
                    self.batch.insert(
                        &self.ks.dead,
                        codec::u64_key(r.id.0),
                        codec::encode_delivery(d),
                    );
                }
            }
            DeadOp::Remove => {
                if self.dead_exists(r.id.0) {
                    self.dead_delta -= 1;
                }
                self.dead.insert(r.id.0, false);
                self.batch.remove(&self.ks.dead, codec::u64_key(r.id.0));
            }
        }
    }

    /// Whether an earlier commit indexed `id` under `sub` (a read, but only for deliveries
    /// queued without leaving the queue: replays, not the hot path). A read error counts as
    /// "not indexed": the index then holds the id once more, or loses a group's other ids in
    /// the rare case described above; the log itself is unaffected.
    fn indexed(&self, sub: SubscriptionId, id: u64) -> bool {
        let lo = codec::by_sub_key_reaching(sub, id);
        let hi = codec::by_sub_key(sub, DeliveryId(id));
        let mut ids = Vec::new();
        self.ks.by_sub.range(lo..=hi).any(|g| {
            g.into_inner().is_ok_and(|(k, v)| {
                codec::by_sub_first(&k).is_some_and(|first| {
                    codec::decode_by_sub_group(first, &v, &mut ids).is_ok() && ids.contains(&id)
                })
            })
        })
    }

    /// Adds the commit's `by_sub` index entries to the batch, one group per subscription.
    fn write_by_sub(&mut self) {
        let (batch, ks) = (&mut self.batch, self.ks);
        let Grouping { value, arenas, .. } = &mut *self.grouping;
        codec::by_sub_groups(&mut self.by_sub, |sub, run| {
            let key = arenas
                .by_sub
                .copy(&codec::by_sub_key(sub, DeliveryId(run[0].1)));
            value.clear();
            if run.len() > 1 {
                codec::encode_by_sub_group(run.iter().map(|&(_, id)| id), value);
            }
            batch.insert(&ks.by_sub, key, arenas.by_sub.copy(value));
        });
        self.by_sub.clear();
    }

    /// Adds the deferred queue entries now due (all of them, with `all`) to the batch, and the
    /// deferred floor if it changed (`deferred.rs`).
    fn write_deferred(&mut self, all: bool, after_ms: i64) {
        let (batch, ks) = (&mut self.batch, self.ks);
        let Grouping {
            deferred,
            floor_written,
            arenas,
            ..
        } = &mut *self.grouping;
        let q = &mut arenas.queue;
        let written = deferred.write_due(now_ms(), all, after_ms, |d| {
            batch.insert(
                &ks.queue,
                q.copy(&codec::queue_key(d.subscription, QueuePos::of(d))),
                q.copy(&codec::encode_delivery(d)),
            );
        });
        if written > 0 {
            metrics::counter!(m::JOURNAL_DEFERRED_WRITTEN).increment(written as u64);
        }
        let floor = deferred.floor();
        if *floor_written != Some(floor) {
            match floor {
                Some(f) => batch.insert(&ks.meta, super::DEFERRED_FLOOR_KEY, codec::u64_key(f)),
                None => batch.remove(&ks.meta, super::DEFERRED_FLOOR_KEY),
            }
            *floor_written = Some(floor);
        }
    }

    /// After a failed commit: its appends' entries are no one's to write, and the floor stored
    /// is the one before it. (A failed commit poisons fjall: no later commit succeeds, and the
    /// restart writes the entries at or above that floor, transitions this commit lost
    /// included, so those deliveries are made again rather than lost.)
    fn forget_kept(&mut self) {
        for &seq in &self.kept {
            self.grouping.deferred.forget(seq);
        }
        self.grouping.floor_written = None;
    }

    /// Adds the commit's delivered records to the batch, in groups (`codec::delivered_groups`).
    fn write_delivered(&mut self) {
        let (batch, ks) = (&mut self.batch, self.ks);
        let Grouping {
            entries,
            buf,
            value,
            arenas,
            ..
        } = &mut *self.grouping;
        let a = &mut arenas.delivered;
        codec::delivered_groups(entries, |group| {
            codec::encode_delivered_group(group, buf, value);
            batch.insert(
                &ks.delivered,
                a.copy(&codec::u64_key(group[0].0)),
                a.copy(value),
            );
        });
        entries.clear();
        buf.clear();
    }

    /// Applies the batch (journal write, handed to the OS, and memtables: readable from here
    /// on) and says whether its waiters still wait for an fsync.
    fn commit(&mut self, shared: &Shared, opts: &WriterOptions) -> Result<bool, JournalError> {
        let fsync = opts.fsync;
        // A queue barrier's waiter reads the queue next (a refill): every entry is written.
        self.write_deferred(self.queue_barrier, opts.queue_write_after_ms);
        self.write_by_sub();
        self.write_delivered();
        let batch = std::mem::replace(&mut self.batch, shared.db.batch());
        let sync = needs_sync(fsync, self.appends, self.sub_writes, self.flushes);
        if batch.is_empty() {
            // Only barriers, flushes or refused appends: nothing to write, and no evidence
            // that writes work again.
            return Ok(sync);
        }
        match batch.commit() {
            Ok(()) => {
                if !sync {
                    shared.mark_write_ok();
                }
                shared.dead_changed(self.dead_delta);
                Ok(sync)
            }
            Err(e) => Err(shared.commit_failed(&e)),
        }
    }
}

/// Syncs on the writer thread (no syncer) and records the outcome.
fn sync_here(shared: &Shared) -> Result<(), JournalError> {
    let started = Instant::now();
    let result = shared.db.persist(PersistMode::SyncAll);
    metrics::histogram!(m::JOURNAL_SYNC_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            shared.mark_write_ok();
            Ok(())
        }
        Err(e) => {
            let err = JournalError::Io(format!("sync: {e}"));
            shared.mark_failing(&err);
            Err(err)
        }
    }
}

/// Applies one chunk of retention deletes after re-checking each against the current state.
///
/// A record at or above `deferred` (the lowest id whose queue entry the writer still keeps)
/// stays whatever its age: without it, the log would derive its delivery as pending again.
/// Only a retention shorter than a delivery in flight gets there.
fn sweep(shared: &Shared, chunk: SweepChunk, deferred: u64) -> Result<SweepStats, JournalError> {
    let ks = &shared.ks;
    let io = |e: fjall::Error| JournalError::Io(e.to_string());
    let mut batch = shared.db.batch();
    let mut stats = SweepStats::default();
    match chunk {
        SweepChunk::Deliveries(ids) => {
            let mut gone = HashSet::with_capacity_and_hasher(ids.len(), Default::default());
            let mut indexed = Vec::new();
            for id in ids {
                if id.0 >= deferred {
                    continue;
                }
                let key = codec::u64_key(id.0);
                let Some(v) = ks.deliveries.get(key).map_err(io)? else {
                    continue;
                };
                let record = match codec::decode_record(&v) {
                    Ok(r) => r,
                    Err(_) => {
                        // Unreadable and old: nothing can use it.
                        batch.remove(&ks.deliveries, key);
                        gone.insert(id.0);
                        stats.deliveries += 1;
                        continue;
                    }
                };
                if !super::retention::removable(record.status) {
                    continue; // Replayed or retried since the sweep read it.
                }
                if ks.dead.contains_key(key).map_err(io)? {
                    batch.remove(&ks.dead, key);
                    stats.dead_letters += 1;
                }
                batch.remove(&ks.deliveries, key);
                gone.insert(id.0);
                indexed.push((record.subscription, id.0));
                // By prefix rather than `1..=attempts`: every stored attempt goes, whatever
                // the record says.
                for g in ks.attempts.prefix(key) {
                    batch.remove(&ks.attempts, g.key().map_err(io)?);
                }
                stats.deliveries += 1;
            }
            remove_unlisted_groups(shared, &mut batch, &gone, &mut indexed)?;
        }
        SweepChunk::Delivered(keys) => {
            let mut gone = HashSet::with_capacity_and_hasher(keys.len(), Default::default());
            let mut indexed = Vec::new();
            for first in keys {
                // A group holds ids less than its span above its key.
                if first.saturating_add(codec::GROUP_SPAN) > deferred {
                    continue;
                }
                let key = codec::u64_key(first);
                let Some(v) = ks.delivered.get(key).map_err(io)? else {
                    continue;
                };
                for entry in codec::delivered_records(first, &v) {
                    // Unreadable and old: nothing can use the rest.
                    let Ok((id, bytes)) = entry else { break };
                    // A record written on its own since stands for the delivery (and goes with
                    // its own sweep, if finished).
                    if ks.deliveries.contains_key(codec::u64_key(id)).map_err(io)? {
                        continue;
                    }
                    if let Ok(r) = codec::decode_record(bytes) {
                        indexed.push((r.subscription, id));
                    }
                    gone.insert(id);
                    stats.deliveries += 1;
                }
                batch.remove(&ks.delivered, key);
            }
            remove_unlisted_groups(shared, &mut batch, &gone, &mut indexed)?;
        }
        SweepChunk::Events(events) => {
            for (seq, dedup_key) in events {
                batch.remove(&ks.events, codec::u64_key(seq));
                // The key may belong to a newer event with the same (source, id) by now.
                if let Some(v) = ks.dedup.get(&dedup_key).map_err(io)?
                    && codec::parse_dedup_value(&v).is_some_and(|(s, _)| s == seq)
                {
                    batch.remove(&ks.dedup, dedup_key);
                }
                stats.events += 1;
            }
        }
    }
    match batch.commit() {
        Ok(()) => {
            shared.dead_removed(stats.dead_letters);
            Ok(stats)
        }
        Err(e) => Err(shared.commit_failed(&e)),
    }
}

/// Removes the `by_sub` groups that could hold one of `indexed` (the subscriptions and ids of
/// the records this sweep removes) once none of their ids is listed any more: each is gone
/// (`gone`, or removed before) and a group goes with its last. A member that cannot be read
/// keeps its group: an index entry too many only costs a lookup. Each subscription's groups
/// are read in one pass over the span of its ids in the chunk.
fn remove_unlisted_groups(
    shared: &Shared,
    batch: &mut fjall::OwnedWriteBatch,
    gone: &HashSet<u64, foldhash::fast::RandomState>,
    indexed: &mut [(SubscriptionId, u64)],
) -> Result<(), JournalError> {
    let ks = &shared.ks;
    let snap = shared.db.snapshot();
    let mut members = Vec::new();
    indexed.sort_unstable();
    for run in indexed.chunk_by(|a, b| a.0 == b.0) {
        let sub = run[0].0;
        let (min, max) = (run[0].1, run[run.len() - 1].1);
        let lo = codec::by_sub_key_reaching(sub, min);
        let hi = codec::by_sub_key(sub, DeliveryId(max));
        for g in snap.range(&ks.by_sub, lo..=hi) {
            let (k, v) = g
                .into_inner()
                .map_err(|e| JournalError::Io(e.to_string()))?;
            let Some(first) = codec::by_sub_first(&k) else {
                continue;
            };
            // Only a group whose span holds one of this chunk's ids can have lost its last.
            let at = run.partition_point(|&(_, id)| id < first);
            if run
                .get(at)
                .is_none_or(|&(_, id)| id - first >= codec::GROUP_SPAN)
            {
                continue;
            }
            if codec::decode_by_sub_group(first, &v, &mut members).is_err() {
                continue;
            }
            let listed = members.iter().any(|&m| {
                !gone.contains(&m)
                    && !matches!(super::record_of(&snap, ks, DeliveryId(m)), Ok(None))
            });
            if !listed {
                batch.remove(&ks.by_sub, k);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use FsyncMode::{Always, Batch, Never};

    #[test]
    fn an_arena_hands_out_copies_side_by_side_in_one_chunk() {
        let mut a = Arena::default();
        let (k, v) = (a.copy(b"key-1"), a.copy(b"value"));
        assert_eq!((&k[..], &v[..]), (&b"key-1"[..], &b"value"[..]));
        // Adjacent in one chunk: not an allocation each.
        assert_eq!(k.as_ptr().wrapping_add(k.len()), v.as_ptr());
        // A slice outlives the arena and its neighbours (the chunk is reference-counted).
        drop((a, k));
        assert_eq!(&v[..], b"value");

        let mut a = Arena::default();
        let first = a.copy(&[1; 100]);
        // What does not fit in the rest of the chunk starts a new one.
        let mut last = first.clone();
        let mut chunks = 1;
        for _ in 0..ARENA_CHUNK / 100 + 1 {
            let next = a.copy(&[2; 100]);
            if last.as_ptr().wrapping_add(100) != next.as_ptr() {
                chunks += 1;
            }
            last = next;
        }
        assert_eq!(chunks, 2);
        assert_eq!(&first[..], &[1; 100][..]);
        assert_eq!(&last[..], &[2; 100][..]);
    }

    #[test]
    fn an_arena_gives_large_items_their_own_allocation() {
        let mut a = Arena::default();
        let small = a.copy(b"s");
        let big = a.copy(&vec![7; ARENA_MAX_ITEM + 1]);
        assert_eq!(big.len(), ARENA_MAX_ITEM + 1);
        assert!(big.iter().all(|&b| b == 7));
        // The chunk's room was not spent on it: the next small item follows the first.
        let next = a.copy(b"t");
        assert_eq!(small.as_ptr().wrapping_add(1), next.as_ptr());
        assert!(a.copy(b"").is_empty());
    }

    #[test]
    fn commit_sizing_policy() {
        // (fsync, appends, events, ops, max_events) → room for more
        let cases = [
            (Batch, 0, 0, 0, 10, true),
            (Batch, 3, 9, 100, 10, true),
            (Batch, 3, 10, 100, 10, false),
            (Batch, 0, 0, MAX_COMMIT_OPS, 10, false),
            (Always, 0, 0, 5, 10, true),
            (Always, 1, 1, 5, 10, false),
            (Never, 1, 1, 5, 10, true),
        ];
        for (fsync, appends, events, ops, max, want) in cases {
            assert_eq!(
                room_for_more(fsync, appends, events, ops, max),
                want,
                "{fsync:?} {appends} {events} {ops} {max}"
            );
        }
    }

    #[test]
    fn only_a_first_attempt_that_delivered_an_untouched_implicit_delivery_is_grouped() {
        use crate::model::{DeliveryRecord, DeliveryStatus::*};
        let sub = SubscriptionId::generate();
        // Event 1_000 took ids 1_001 and 1_002 for its implicit deliveries.
        let mut g = Grouping::default();
        g.note_block(1_000, 2);
        let ingest = |id: u64| Delivery {
            id: DeliveryId(id),
            subscription: sub,
            event_seq: 1_000,
            attempts: 0,
            cycle_start: 0,
            due_at_ms: 1,
            created_at_ms: 1,
        };
        let t = |d: Delivery, status, enqueue: Option<Delivery>, dead| Transition {
            record: DeliveryRecord {
                id: d.id,
                subscription: sub,
                event_seq: d.event_seq,
                event_id: "e".into(),
                event_type: "t".into(),
                status,
                attempts: d.attempts + 1,
                created_at_ms: 1,
                next_attempt_at_ms: None,
                last_attempt: None,
            },
            attempt: None,
            dequeue: Some(d),
            enqueue,
            dead,
        };
        let grouped = |t: &Transition| delivered_at_once(t).is_some_and(|d| g.untouched(d));
        let d = ingest(1_001);
        let cases = [
            (t(d, Delivered, None, DeadOp::None), true),
            (t(ingest(1_002), Delivered, None, DeadOp::None), true),
            // Not of the block: the event itself, past its end (a replay's delivery).
            (t(ingest(1_000), Delivered, None, DeadOp::None), false),
            (t(ingest(1_003), Delivered, None, DeadOp::None), false),
            // An event the writer does not know (before a restart, or long ago).
            (
                t(
                    Delivery {
                        event_seq: 2_000,
                        ..ingest(2_001)
                    },
                    Delivered,
                    None,
                    DeadOp::None,
                ),
                false,
            ),
            // Moved on from its ingest entry: attempted, in a new cycle, re-queued.
            (
                t(Delivery { attempts: 1, ..d }, Delivered, None, DeadOp::None),
                false,
            ),
            (
                t(
                    Delivery {
                        cycle_start: 1,
                        ..d
                    },
                    Delivered,
                    None,
                    DeadOp::None,
                ),
                false,
            ),
            (
                t(
                    Delivery { due_at_ms: 2, ..d },
                    Delivered,
                    None,
                    DeadOp::None,
                ),
                false,
            ),
            // Anything but delivered at once.
            (t(d, Dead, None, DeadOp::Insert), false),
            (t(d, Retrying, Some(d), DeadOp::None), false),
            (t(d, Delivered, None, DeadOp::Remove), false),
        ];
        for (i, (t, want)) in cases.iter().enumerate() {
            assert_eq!(grouped(t), *want, "case {i}");
        }
        let mut with_attempt = t(d, Delivered, None, DeadOp::None);
        with_attempt.attempt =
            with_attempt
                .record
                .last_attempt
                .clone()
                .or(Some(crate::model::AttemptRecord {
                    attempt: 1,
                    started_at_ms: 1,
                    duration_us: 1,
                    class: crate::model::AttemptClass::Success,
                    status_code: Some(200),
                    error: None,
                    response_body: None,
                }));
        assert!(!grouped(&with_attempt));
        // The oldest blocks are forgotten first.
        for seq in 0..RECENT_BLOCKS as u64 {
            g.note_block(10_000 + seq * 10, 1);
        }
        assert!(!g.untouched(&d));
        assert!(g.untouched(&Delivery {
            event_seq: 10_000,
            ..ingest(10_001)
        }));
        assert_eq!(g.blocks.len(), RECENT_BLOCKS);
    }

    #[test]
    fn batch_hint_keeps_recent_peaks_and_forgets_slowly() {
        // (previous hint, last commit's entries) → next hint
        let cases = [
            (0, 0, 0),
            (0, 40, 40),
            (40, 10, 35),
            (35, 50, 50),
            (8, 0, 7),
            (1, 0, 1),
            (MAX_BATCH_HINT, MAX_BATCH_HINT * 4, MAX_BATCH_HINT),
        ];
        for (previous, len, want) in cases {
            assert_eq!(next_batch_hint(previous, len), want, "{previous} {len}");
        }
    }

    #[test]
    fn waits_only_to_amortize_an_fsync() {
        let ms = Duration::from_millis;
        let cases = [
            (Batch, ms(2), 1, true),
            (Batch, ms(2), 0, false),
            (Batch, ms(0), 1, false),
            (Always, ms(2), 1, false),
            (Never, ms(2), 1, false),
        ];
        for (fsync, window, appends, want) in cases {
            assert_eq!(
                wait_for_more(fsync, window, appends),
                want,
                "{fsync:?} {window:?}"
            );
        }
    }

    #[test]
    fn sync_policy() {
        // (fsync, appends, sub_writes, flushes) → sync
        let cases = [
            (Batch, 1, 0, 0, true),
            (Batch, 0, 1, 0, true),
            (Batch, 0, 0, 0, false),
            (Always, 1, 0, 0, true),
            (Never, 1, 1, 0, false),
            (Never, 0, 0, 1, true),
            (Batch, 0, 0, 1, true),
        ];
        for (fsync, appends, subs, flushes, want) in cases {
            assert_eq!(
                needs_sync(fsync, appends, subs, flushes),
                want,
                "{fsync:?} {appends} {subs} {flushes}"
            );
        }
    }

    #[test]
    fn dedup_window_edges() {
        let cases = [
            (1_000, 1_000, 0, true),
            (1_001, 1_000, 0, false),
            (2_000, 1_000, 1_000, true),
            (2_001, 1_000, 1_000, false),
            (i64::MAX, i64::MIN, 10, false),
        ];
        for (now, at, window, want) in cases {
            assert_eq!(within_window(now, at, window), want, "{now} {at} {window}");
        }
    }
}
