//! The embedded journal: one fjall database in `[storage] path`, written by one thread.
//!
//! Where it sits: this is the default [`Journal`] backend (DESIGN §5). Ingest's appends,
//! the dispatcher's transitions, subscription changes and the retention sweep's deletes all
//! become [`writer::Command`]s on one bounded crossbeam channel; the writer thread
//! group-commits them and answers who waited for the commit, and with `fsync = "batch"` the
//! `sync` thread fsyncs while the writer applies the next batch, answering who waited for
//! durability (the `202`): many events, one fsync, and the fsync off the critical path.
//! Ingest starts the deliveries of an event the journal is sure to accept (no copy of it
//! stored or on its way: `admit.rs` decides, as the append is sent) without waiting for the
//! writer at all, and those of any other once the writer has answered. Reads
//! (`scan_queue`, the delivery log, `recover`) go straight to the store from the caller's
//! thread: fjall is internally synchronized and every read sees a consistent snapshot.
//!
//! Layout (keys in [`codec`], all big-endian so byte order is numeric order):
//!
//! | keyspace     | key                               | value                              |
//! |--------------|-----------------------------------|------------------------------------|
//! | `events`     | seq                               | the event, its implicit deliveries |
//! | `queue`      | subscription, due ms, delivery id | the queued `Delivery`              |
//! | `deliveries` | delivery id                       | the `DeliveryRecord`, once written |
//! | `delivered`  | first delivery id                 | records delivered at once (below)  |
//! | `by_sub`     | subscription, first delivery id   | the group's other ids (see below)  |
//! | `attempts`   | delivery id, attempt              | the `AttemptRecord`                |
//! | `dedup`      | source NUL id                     | seq, accepted-at ms                |
//! | `dead`       | delivery id                       | the `Delivery` as last queued      |
//! | `subs`       | subscription id                   | the `Subscription` (JSON)          |
//! | `meta`       | `deferred_floor`                  | see "Deferred queue entries"       |
//!
//! A backlog lives in `queue` on disk; memory holds only what the dispatcher windows in, so
//! millions of deliveries to a dead endpoint cost disk, not RAM. Start-up
//! ([`Journal::recover`]) is one sequential pass over `queue` plus `subs` and a count of
//! `dead`: no event is read.
//!
//! ## Why this store
//!
//! The workload is append-then-delete: every event writes ~1 KB across five keyspaces in a
//! group commit with one fsync, every finished delivery deletes its queue key and rewrites
//! its log record, and start-up scans the whole queue. `benches/journal.rs` runs exactly
//! that (the journal's own codec, 64 events of ~700 bytes with 1–10 deliveries each per
//! commit, then the matching deletes, then open + full scan of 1,000,000 queued entries)
//! against fjall 3.1 and redb 4.6, interleaved on the same 2-core machine (shared with
//! other builds, so absolute figures wander; the ratios held across runs). One run, redb time
//! over fjall time (above 1: fjall is faster):
//!
//! - group-committed appends, one fsync per commit: **4.1** (fjall 2.5–3.4 ms per commit of
//!   64 events, redb 11–12 ms); an earlier run gave 3.1.
//! - delivered transitions (queue delete + log rewrite, no fsync): **1.7** (1.5 earlier).
//! - reopen + full scan of 1,000,000 queued entries: **0.26**, redb is ~4× faster here (0.26–
//!   0.44 s against 0.9–1.8 s): it opens without replaying anything, where fjall replays its
//!   write-ahead journal into memtables at open.
//!
//! The hot path (the `202` waits for the append commit) and the steady delete stream favour
//! fjall by 4× and 1.7×; start-up favours redb but stays within seconds with fjall, because
//! [`MAX_JOURNAL_BYTES`] caps what is replayed. Measured with this journal (the bench's
//! `recover` part: 1,000,000 queued deliveries, 10 per event, 100 subscriptions, the writing
//! process killed with SIGKILL): open + [`Journal::recover`] costs 3–4 s of CPU (user + sys;
//! ~200 MB peak RSS), of which `recover`'s own scan is 0.5–0.9 s and the rest fjall's journal
//! replay. Wall time was 1.6–8.5 s depending on what else the 2-core box was running (up to
//! 24 s with the load average at 7), about the same after a clean close.
//!
//! An LSM tree turns both the appends and the deletes into sequential journal writes (a
//! delete is a small tombstone), where a copy-on-write B-tree rewrites a page path per
//! commit. fjall also keeps every commit that is not fsynced in the OS page cache, so an
//! acknowledged event survives `kill -9` even with `fsync = "never"`, whereas redb documents a
//! commit without `Durability::Immediate` as not persisted until a durable commit follows. fjall is actively maintained,
//! 100% safe Rust, and its keyspaces commit atomically together, which is what "nothing
//! half-accepted" needs.
//!
//! ## Queue deletes
//!
//! Every delivery adds a queue entry and, once it is delivered, dead or re-queued under a new
//! due time, deletes it: a tombstone. A flush cannot drop a tombstone (an older table may hold
//! the key), so the queue's tables filled with one per delivery ever made, which flushes wrote,
//! compactions merged and every scan (`scan_queue`, start-up) stepped over. A queue key is
//! written exactly once (subscription, due time, delivery id; `outcome::fresh_due` keeps a
//! re-queued delivery off its old key), so it is deleted with fjall's *weak* tombstone: when a
//! flush or compaction meets it with the entry it deletes, neither is written. Most deliveries
//! finish while their entry is still in the memtable, so a flushed queue holds what is still
//! queued. fjall marks `remove_weak` experimental and documents it as undefined for a key
//! written more than once, hence the exact version pin; a test checks the effect.
//!
//! ## Deferred queue entries
//!
//! Even cancelled in the memtable, the entry and its delete were two memtable inserts per
//! delivery and half of what filled the memtables at fan-out 10. So the queue entries of an
//! append's implicit deliveries (below) are not written with it: the writer keeps them in
//! memory (`deferred.rs`) and writes one only if its delivery is still open a second
//! (`[storage] queue_write_after`) after its event arrived, or when a commit answers a queue
//! barrier (a refill reads the queue next). A delivery that ends before then was never in
//! `queue`. Every commit writes the lowest id it still keeps (`meta`'s `deferred_floor`), and
//! opening the journal writes the entries of those at or above it with neither a record nor an
//! entry (`materialize_deferred`), so start-up, `scan_queue` and the dispatcher read the queue
//! whole; retention keeps the events, and the log records, at or above it. Measured with the load
//! bench's fan-out 10 (2 rounds, builds interleaved), no entry was written late and Herald's
//! CPU per 1,000 deliveries fell from 0.016–0.018 s to 0.013–0.014 s.
//!
//! ## Implicit pending records
//!
//! A delivery made at ingest starts out pending, never attempted, due when its event arrived,
//! and most leave that state within milliseconds, when their first transition rewrites the
//! record. Writing the pending record at ingest was one memtable insert and ~120 bytes per
//! delivery that was almost always overwritten before a flush: callgrind counted 9 % of
//! Herald's instructions per delivery at fan-out 10 for it. So ingest takes an event's
//! sequence number and its deliveries' ids as one block (`SeqGen::next_block`: delivery
//! `seq + 1 + i` is the event's `i`-th), the event's value lists those deliveries'
//! subscriptions (16 bytes each, `codec::encode_event_with`), and the record is written only by
//! the first transition. Until then the log derives it: the delivery's event is the last one at
//! or below its id, and the delivery is pending exactly while its queue entry is still the one
//! ingest wrote, or, at or above the deferred floor, while it has neither that entry nor a
//! record (read in the same snapshot: a delivery that has moved on has a record, or had one
//! that retention removed long after the floor passed it, and is never shown as pending
//! again).
//! Listing the whole log merges the records with the implicit deliveries of the events in
//! range, both newest first; the events are read only as far as the next record needs, and
//! none below a floor: the oldest never-attempted queue entry found by start-up's or the last
//! retention sweep's pass over the queue, or that pass's start less [`TIME_SLACK_MS`] (ids
//! are times, and an append is committed within that of taking its ids). So a log of mostly
//! unmatched events is not read back to the retention horizon for every page. Deliveries that
//! do not fit the pattern (a replay's, a test's) get written records as before, and events
//! stored before this layout decode as having none.
//!
//! ## The per-subscription index
//!
//! `by_sub` lists one subscription's deliveries, for the log filtered by subscription (each
//! dialect's per-webhook activity). One entry per delivery was one memtable insert per delivery,
//! ~7 % of Herald's instructions at fan-out 10. So a commit writes one entry per subscription:
//! keyed by its first id in the commit, its value the others as varint gaps (`codec`'s
//! `by_sub_groups`), 1–2 bytes each. A group spans less than `codec::GROUP_SPAN` of ids (65 ms
//! of time; a commit's ids are taken within milliseconds, so one group nearly always), which is
//! what lets a listing read the groups newest key first and still hand out ids in order
//! (`codec::ByIdMerge`), although commits' ids interleave. A listing skips an id with no record
//! (retention removed it), and the sweep removes a group with its last listed id. An entry of
//! a store written before groups (an empty value) is a group of its key's id alone.
//!
//! ## Delivered groups
//!
//! Most deliveries are delivered at their first attempt, and that transition wrote the
//! delivery's first record: one memtable insert per delivery, the last of the writer's that
//! was paid per delivery (a commit's queue deletes cancel their entries). So a commit writes
//! those records in `delivered` groups instead, like `by_sub`: keyed by the first id, the
//! records ascending by id in the value (`codec::encode_delivered_group`), ids less than
//! `codec::GROUP_SPAN` apart, at most `codec::MAX_DELIVERED_GROUP` records. Only a record that
//! is the delivery's first goes there, since a record written on its own always overrides the
//! group's (a point read, and the log's merge, look at `deliveries` first): the writer groups a
//! transition only if it delivered at the first attempt and took away the queue entry ingest
//! wrote for an implicit delivery of an event it appended recently (it remembers the last
//! `RECENT_BLOCKS` events' blocks of ids). Every other transition, a later one of the same
//! delivery included, writes its record on its own as before. A point read looks back at most
//! the span for the group holding an id; the log's listing merges the groups into the written
//! records by id (`Written`). Retention removes the groups keyed below its cutoff (a group
//! keyed just below may hold ids a few milliseconds past it) before the records on their own,
//! and leaves a delivery whose record of its own is still there to that record.
//!
//! ## Compressed logs
//!
//! `events`, `deliveries` and `attempts` (what retention keeps for days) are created with lz4
//! on every table level; fjall's default leaves the first two levels, where every flush
//! lands, uncompressed. The reason is the fsync, not the disk space: a flush writes tens of
//! MiB of table data and syncs it, and the journal's `fdatasync`, which every `202` waits for,
//! queues behind it at the disk (on ext4 with `data=ordered` a sync also commits the
//! filesystem's journal, which waits for other files' newly allocated data). CMS events are JSON
//! that repeats itself: a test's Sitecore-like events flush to 15 % of their size (it checks
//! under half). Measured on the load bench's ingest phases (3 rounds, builds interleaved):
//! `fsync = "batch"` against `"never"` went from 0.68–0.87 to 0.90–0.97, fsyncs over 64 ms
//! from 4–6 per phase to 1–3, and the ack p99 from 109–135 to 36–75 ms; CPU per delivery at
//! fan-out 1 and 10, peak and half rate, did not move beyond the noise (4 rounds). A keyspace
//! keeps the options it was created with, so a store made before this keeps its own.
//!
//! ## Freeing flushed memtables
//!
//! fjall frees a flushed memtable while holding the keyspace's version lock, which every commit
//! needs: a full one (tens of MiB of skip-list nodes) took ~180 ms, a stall of every event in
//! flight. The `reaper` thread keeps a reference to each memtable, so that fjall's drop only
//! decrements a count, and frees it itself once fjall has let go of it (see `reaper.rs`).
//!
//! ## Arenas
//!
//! A memtable entry was three allocations: fjall's skip-list node and, through `Slice`, one
//! each for its key and its value, every one of them on its own cache line somewhere in the
//! heap. The reaper frees them again block by block once the memtable is flushed, and mimalloc
//! frees a block another thread allocated with an atomic push onto its page's list. So the
//! writer copies the keys and values of the keyspaces it writes per event or delivery
//! (`events`, `queue`, `dedup`, `by_sub`, `delivered`) into 64 KiB chunks, one chunk in use
//! per keyspace, and hands fjall slices of them (`bytes::Bytes`, which fjall's `Slice` wraps
//! without a copy): a free is then the node and two reference counts on a chunk header its
//! neighbours share. A chunk holds one keyspace's entries, so it is freed with the memtables
//! they went into and not kept by another keyspace that flushes later. Reads copy what they
//! keep (`event` does already, for the block cache's sake), so nothing else holds a chunk for
//! long. Measured with `fanout-1 --duration 10`, builds interleaved, over three rounds against
//! four: the reaper's CPU per 1,000 deliveries fell from 1.5–1.6 ms to 0.6 ms, Herald's peak
//! RSS from 425–450 MB to 267–274 MB, and its CPU per 1,000 deliveries at half rate from
//! 0.040–0.050 s to 0.034–0.039 s. The writer itself runs ~1 % more instructions (callgrind:
//! 49,210 → 49,721 per delivery at fan-out 1, 31,063 → 31,218 at fan-out 10): splitting a
//! chunk costs about what the allocations did, and an event is encoded into a reused buffer
//! and then copied into its chunk.
//!
//! ## Closing
//!
//! Closing (a clean stop) flushes every memtable once the writer has committed and synced its
//! last commit, so the next start replays nothing: fjall skips what a table already holds.
//! Without it a start after a clean stop replayed the write-ahead journal into memtables,
//! held them (memory) until they filled or the journal's size forced their flush, and that
//! flush then landed in the first minutes of work. On the load bench's million-subs daemon,
//! started on a store its seed had just written and closed, such a flush took 0.41 cores in
//! one of the slices it is compared in (34k deliveries a second against 52k in the slice
//! before). With 100,000 events of ~700 bytes written and no subscription, twice each way:
//! the stop took 0.11 s against 0.03, the next start 0.02 s against 0.35–0.41, and the
//! daemon's RSS after that start 15 MB against 47. A flush of full memtables takes a second or
//! so; closing waits at most [`CLOSE_FLUSH_TIMEOUT`] and otherwise leaves them to the replay,
//! as a crash does.
//!
//! ## Disk trouble
//!
//! Before an append is written the writer compares the free space under the data directory
//! with `[storage] min_free_bytes` (statvfs, cached for [`SPACE_CHECK_EVERY`]); below it the
//! append fails with [`JournalError::DiskFull`] and nothing of it is written. Transitions and
//! the retention sweep still go through: delivering what is stored frees space. A failed
//! commit answers [`JournalError::Io`] to everything in it (fjall's batches are atomic, so
//! none of it is stored). Either way [`Journal::health`] reports `Failing`, the
//! `herald_journal_healthy` gauge drops to 0, `herald_journal_errors_total{kind}` counts the
//! refusal and one log line says why; the state clears (with one more log line) when space is
//! back or a later commit succeeds. Note that fjall poisons the database after a failed
//! journal write, fsync, flush or compaction: from then on every write fails until Herald is
//! restarted, which is fjall's documented recovery path for I/O errors. A commit that fails
//! so, or a failed fsync of Herald's own syncer, marks the journal *lost* ([`Journal::lost`]);
//! the daemon then drains and exits with an error, for its supervisor to restart it. Reads keep
//! working meanwhile.

mod admit;
mod deferred;
pub mod mount;
mod reaper;
mod retention;
mod sync;
mod writer;

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use fjall::config::CompressionPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, Readable};
use tokio::sync::oneshot;

use super::codec;
use super::{
    Ack, AppendStatus, DeliveryQuery, Gate, Health, Journal, JournalError, NewEvent, QueuePos,
    Recovered, Staged, Transition,
};
use crate::config::StorageConfig;
use crate::model::{
    AttemptRecord, Delivery, DeliveryId, DeliveryRecord, DeliveryStatus, Event, Subscription,
    SubscriptionId, now_ms,
};
use crate::telemetry::metrics as m;
use writer::Command;

pub use retention::SweepStats;

/// Commands the writer channel holds at most. A full channel blocks the sender (ingest, the
/// dispatcher) until the writer catches up: that is the journal's backpressure, and it keeps
/// memory bounded however fast events arrive.
const CHANNEL_CAPACITY: usize = 4096;

/// Upper bound on fjall's write-ahead journal. Once its journals exceed it, fjall flushes
/// every keyspace's memtable that still holds data of the oldest one, which bounds both their
/// memory and what start-up after a crash replays. Each flush syncs the journal while holding
/// its lock, stalling the writer's commits (and the deliveries waiting for them) for an fsync;
/// at this size that happens after every journal file (fjall rotates at 64 MB). Measured on the
/// load bench, 128 MiB cut the p99 ingest-to-arrival at half rate from 33–50 ms to 9–11 ms
/// (start-up after `kill -9` with 1,000,000 pending deliveries 5.8 s, against ~5 s), but a
/// daemon just started on a big journal then holds what it replayed: idle RSS at 1,000,000
/// subscriptions went from ~1,000 to ~1,400 bytes per subscription. Memory won; a way to have
/// both is to flush the replayed memtables once start-up is done (fjall has no stable call for
/// that yet).
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

/// Herald rotates a keyspace's memtable itself once fjall counts this many bytes in it, after the
/// commit that got it there: just under fjall's own trigger (64 MiB), so memtables are flushed as
/// often as before (at 32 MiB the flushes and compactions doubled, and the half-rate phases of
/// the load bench paid for them), and fjall's trigger fires at most for the one commit that
/// crosses it. fjall's trigger asks its worker for
/// a rotation on *every* write while a memtable is over the size; under a heavy write load with
/// the worker busy those requests fill its bounded channel, and the worker, on rotating, then
/// blocks for good sending itself the flush (fjall-rs/fjall issue 257, PR 323, both open). From
/// then on nothing is flushed: the memtable and the write-ahead journal grow until the process
/// stops, and the next start replays it all (seen on the load bench's million-subscription
/// seed). A rotation asked from the writer thread puts one message on that channel, which the
/// worker drains.
const MEMTABLE_ROTATE_BYTES: u64 = 60 * 1024 * 1024;

/// fjall's background threads (memtable flushes, compaction). One, not fjall's default of
/// one per core: on the load bench's half-rate phase (2 cores) its workers took 38 % of
/// Herald's CPU, a third of that a second worker handing compaction messages back to the
/// queue while it waited for flushes, and every busy background thread is a core the
/// delivery workers do not get. The write rate one worker keeps up with is far above what
/// ingest produces here.
const STORE_WORKERS: usize = 1;

/// How long a free-space reading is reused: at most ten `statvfs` calls a second, however
/// many appends; the `min_free_bytes` margin (256 MiB by default) covers what can be written
/// in between.
pub const SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Ids and sequence numbers are microsecond timestamps taken at or after the time stored in
/// their record, so a time bound is also an id bound, give or take this much clock slack.
const TIME_SLACK_MS: i64 = 60_000;

fn io(e: fjall::Error) -> JournalError {
    io_ref(&e)
}

fn io_ref(e: &fjall::Error) -> JournalError {
    JournalError::Io(e.to_string())
}

/// The journal's keyspaces (fjall's column families). A write batch spans all of them and
/// commits atomically.
pub(crate) struct Keyspaces {
    /// seq → event.
    pub events: Keyspace,
    /// subscription + due ms + delivery id → queued `Delivery` (pending and retrying).
    pub queue: Keyspace,
    /// delivery id → `DeliveryRecord` (the delivery log).
    pub deliveries: Keyspace,
    /// first delivery id → the records of a commit's deliveries delivered at their first
    /// attempt (see "Delivered groups").
    pub delivered: Keyspace,
    /// subscription + first delivery id → the group's other ids: index of the delivery log per
    /// subscription.
    pub by_sub: Keyspace,
    /// delivery id + attempt number → `AttemptRecord`.
    pub attempts: Keyspace,
    /// `source NUL id` → seq + accepted-at ms.
    pub dedup: Keyspace,
    /// delivery id → the `Delivery` as it was last queued (replayable dead letters).
    pub dead: Keyspace,
    /// subscription id → `Subscription` (JSON).
    pub subs: Keyspace,
    /// [`DEFERRED_FLOOR_KEY`] → the lowest id whose queue entry the writer may not have
    /// written yet (`deferred.rs`); absent when there is none.
    pub meta: Keyspace,
}

/// `meta`'s key of the deferred queue entries' floor (see `deferred.rs`).
pub(crate) const DEFERRED_FLOOR_KEY: &[u8] = b"deferred_floor";

/// The lowest id whose queue entry may not be written yet, as of `snap` (`u64::MAX`: none):
/// an implicit delivery at or above it with neither a record nor a queue entry is pending.
fn deferred_floor(snap: &fjall::Snapshot, ks: &Keyspaces) -> Result<u64, JournalError> {
    Ok(snap
        .get(&ks.meta, DEFERRED_FLOOR_KEY)
        .map_err(io)?
        .and_then(|v| codec::read_u64(&v))
        .unwrap_or(u64::MAX))
}

/// Writes the queue entries the writer had not written when it last committed (a crash, or a
/// stop with deliveries still pending: `deferred.rs`), so that everything after this sees the
/// queue whole. Run at open, before any thread writes. Returns how many it wrote.
fn materialize_deferred(db: &Database, ks: &Keyspaces) -> Result<usize, JournalError> {
    let snap = db.snapshot();
    let floor = deferred_floor(&snap, ks)?;
    if floor == u64::MAX {
        return Ok(0);
    }
    let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncAll));
    let mut written = 0;
    // The floor's event is the last one at or below it; every later one may hold some too.
    let start = snap
        .range(&ks.events, ..=codec::u64_key(floor))
        .next_back()
        .map(|g| g.key().map_err(io))
        .transpose()?
        .and_then(|k| codec::read_u64(&k))
        .unwrap_or(floor);
    for g in snap.range(&ks.events, codec::u64_key(start)..) {
        let (k, v) = kv(g)?;
        let seq = codec::read_u64(&k).unwrap_or(0);
        let imp = codec::event_implicit(&v)?;
        for i in 1..=imp.len() {
            let id = DeliveryId(seq + i);
            let Some(sub) = imp.subscription_of(seq, id) else {
                continue;
            };
            let d = Delivery::fresh(id, sub, seq, imp.received_at_ms);
            let key = codec::queue_key(sub, QueuePos::of(&d));
            if id.0 < floor
                || snap.contains_key(&ks.queue, key).map_err(io)?
                || snap
                    .contains_key(&ks.deliveries, codec::u64_key(id.0))
                    .map_err(io)?
                || grouped_record(&snap, ks, id)?.is_some()
            {
                continue;
            }
            batch.insert(&ks.queue, key, codec::encode_delivery(&d));
            written += 1;
        }
    }
    batch.remove(&ks.meta, DEFERRED_FLOOR_KEY);
    batch.commit().map_err(io)?;
    if written > 0 {
        tracing::info!(
            deliveries = written,
            "journal: wrote the queue entries of deliveries pending at the last stop"
        );
    }
    Ok(written)
}

impl Keyspaces {
    fn all(&self) -> [&Keyspace; 10] {
        [
            &self.events,
            &self.queue,
            &self.deliveries,
            &self.delivered,
            &self.by_sub,
            &self.attempts,
            &self.dedup,
            &self.dead,
            &self.subs,
            &self.meta,
        ]
    }

    /// Rotates every keyspace whose active memtable holds at least `at` bytes (fjall's count);
    /// fjall's worker flushes what was rotated. Returns how many were rotated.
    ///
    /// fjall has no public call for either (see [`MEMTABLE_ROTATE_BYTES`] for why Herald needs
    /// them): this reads the doc-hidden `tree` and calls the doc-hidden `rotate_memtable`, which
    /// is why fjall is pinned to an exact version in `Cargo.toml`.
    pub(crate) fn rotate_full(&self, at: u64) -> Result<usize, JournalError> {
        use fjall::AbstractTree as _;
        let mut rotated = 0;
        for ks in self.all() {
            if ks.tree.active_memtable().size() >= at
                && ks
                    .rotate_memtable()
                    .map_err(|e| JournalError::Io(format!("rotating a memtable: {e}")))?
            {
                rotated += 1;
            }
        }
        Ok(rotated)
    }

    /// Rotates every memtable that holds anything and waits, up to `within`, until fjall's
    /// worker has flushed them all. `Ok(false)`: some were still waiting when time ran out.
    fn flush_all(&self, within: Duration) -> Result<bool, JournalError> {
        use fjall::AbstractTree as _;
        self.rotate_full(1)?;
        let deadline = Instant::now() + within;
        while self
            .all()
            .iter()
            .any(|ks| ks.tree.sealed_memtable_count() > 0)
        {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(true)
    }

    fn open(db: &Database) -> Result<Self, JournalError> {
        let open = |name: &str, lz4: bool| {
            db.keyspace(name, || {
                let opts = KeyspaceCreateOptions::default();
                if lz4 {
                    // See "Compressed logs" in the module docs. fjall keeps a keyspace's
                    // options from its creation: a store made before keeps its own.
                    opts.data_block_compression_policy(CompressionPolicy::all(
                        fjall::CompressionType::Lz4,
                    ))
                } else {
                    opts
                }
            })
            .map_err(|e| JournalError::Io(format!("opening keyspace {name}: {e}")))
        };
        let ks = |name: &str| open(name, false);
        Ok(Keyspaces {
            events: open("events", true)?,
            queue: ks("queue")?,
            deliveries: open("deliveries", true)?,
            delivered: open("delivered", true)?,
            by_sub: ks("by_sub")?,
            attempts: open("attempts", true)?,
            dedup: ks("dedup")?,
            dead: ks("dead")?,
            subs: ks("subs")?,
            meta: ks("meta")?,
        })
    }
}

/// Why the journal is failing, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// Free space below `min_free_bytes`: clears when space is back.
    Full,
    /// A commit failed: clears when a later commit succeeds.
    Io,
}

/// Health state shared by the writer (which changes it) and `health()` (which reads it).
struct HealthState {
    /// Fast path for the writer's per-commit "still ok?" check.
    failing: AtomicBool,
    reason: Mutex<Option<(FailureKind, String)>>,
}

impl HealthState {
    fn lock(&self) -> MutexGuard<'_, Option<(FailureKind, String)>> {
        // The guarded data is a plain value; a panic elsewhere cannot leave it half-written.
        self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters (or stays in) the failing state; logs and sets the gauge only on a change of
    /// kind, never per request.
    fn fail(&self, kind: FailureKind, reason: String) {
        let mut slot = self.lock();
        let changed = slot.as_ref().map(|(k, _)| *k) != Some(kind);
        if changed {
            tracing::error!(
                reason = %reason,
                "journal is failing: ingest answers 503 until this clears; delivery of stored events goes on"
            );
            metrics::gauge!(m::JOURNAL_HEALTHY).set(0.0);
        }
        *slot = Some((kind, reason));
        self.failing.store(true, Ordering::Release);
    }

    /// Leaves the failing state if it is of `kind`.
    fn clear(&self, kind: FailureKind) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut slot = self.lock();
        if slot.as_ref().map(|(k, _)| *k) == Some(kind) {
            *slot = None;
            self.failing.store(false, Ordering::Release);
            metrics::gauge!(m::JOURNAL_HEALTHY).set(1.0);
            tracing::info!("journal accepts writes again");
        }
    }

    fn get(&self) -> Health {
        if !self.failing.load(Ordering::Acquire) {
            return Health::Ok;
        }
        match &*self.lock() {
            Some((_, reason)) => Health::Failing(reason.clone()),
            None => Health::Ok,
        }
    }
}

/// The free-space guard.
struct SpaceCheck {
    path: PathBuf,
    /// 0 disables. Atomic so tests can move it; the config never changes at runtime.
    min_free_bytes: AtomicU64,
    /// The last reading and when it was taken.
    last: Mutex<Option<(Instant, u64)>>,
}

/// Whether `free` bytes are enough under a `min` threshold (0 disables the check).
fn space_ok(free: u64, min: u64) -> bool {
    min == 0 || free >= min
}

impl SpaceCheck {
    fn free_bytes(&self) -> Result<u64, JournalError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last
            && at.elapsed() < SPACE_CHECK_EVERY
        {
            return Ok(free);
        }
        let st = rustix::fs::statvfs(&self.path).map_err(|e| {
            JournalError::Io(format!(
                "cannot read free space of {}: {e}",
                self.path.display()
            ))
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        *last = Some((Instant::now(), free));
        Ok(free)
    }
}

/// State shared by the journal handle, the writer thread and the retention thread.
pub(crate) struct Shared {
    pub db: Database,
    pub ks: Keyspaces,
    health: HealthState,
    space: SpaceCheck,
    /// Dead letters stored, kept exact by the writer (inserts, replays, retention) and
    /// published as `herald_dead_letters`. Seeded by `recover`.
    dead_letters: AtomicI64,
    /// Set by `close`: the retention sweep stops between chunks.
    stopping: AtomicBool,
    /// An fsync failed: what is on disk is no longer known, so appends are refused until a
    /// restart (the syncer's own failures; fjall poisons itself on its own).
    sync_failed: Mutex<Option<JournalError>>,
    /// Set once no write can succeed until a restart ([`Journal::lost`]).
    lost: Mutex<Option<String>>,
    /// A [`Command::Nudge`] is on its way for the transitions waiting: set by the first one
    /// sent after the writer last took them, cleared by the writer before it takes them.
    records_nudged: AtomicBool,
    /// No implicit delivery still queued has an id below this (see "Implicit pending
    /// records"): where listing the whole log stops looking for them. Set by `recover` and
    /// by every retention sweep, from a scan of the queue; 0 until then.
    implicit_floor: AtomicU64,
    /// Which events of an append are sure to be accepted before the writer takes it.
    admission: admit::Admission,
}

/// A lower bound on the ids of the implicit deliveries still queued, from a scan of the queue
/// that found `oldest_fresh` as its lowest id never attempted, started at `now_us`. An id is
/// taken no earlier than its time, and the events in flight when the scan began were given
/// theirs within [`TIME_SLACK_MS`] of it.
fn implicit_floor(oldest_fresh: Option<u64>, now_us: u64) -> u64 {
    let slack_us = TIME_SLACK_MS as u64 * 1000;
    oldest_fresh
        .unwrap_or(u64::MAX)
        .min(now_us.saturating_sub(slack_us))
}

impl Shared {
    fn set_implicit_floor(&self, floor: u64) {
        self.implicit_floor.store(floor, Ordering::Release);
    }

    /// Refuses an append when free space is below the minimum. Also clears a previous
    /// disk-full state once space is back.
    pub(crate) fn check_space(&self) -> Result<(), JournalError> {
        let min = self.space.min_free_bytes.load(Ordering::Relaxed);
        if min == 0 {
            self.health.clear(FailureKind::Full);
            return Ok(());
        }
        let free = match self.space.free_bytes() {
            Ok(free) => free,
            Err(e) => {
                self.health.fail(FailureKind::Io, e.to_string());
                return Err(e);
            }
        };
        if space_ok(free, min) {
            self.health.clear(FailureKind::Full);
            return Ok(());
        }
        let err = JournalError::DiskFull {
            path: self.space.path.display().to_string(),
            free_bytes: free,
            min_free_bytes: min,
        };
        self.health.fail(FailureKind::Full, err.to_string());
        Err(err)
    }

    /// A commit succeeded: an I/O failure is over (not a failed fsync: that one is final).
    pub(crate) fn mark_write_ok(&self) {
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if self.sync_failure().is_none() && !lost {
            self.health.clear(FailureKind::Io);
        }
    }

    /// The failed fsync that stopped appends, if one did.
    pub(crate) fn sync_failure(&self) -> Option<JournalError> {
        self.sync_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// An fsync failed: appends are refused from now on.
    pub(crate) fn mark_sync_failed(&self, err: &JournalError) {
        *self.sync_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.clone());
        self.mark_failing(err);
        self.mark_lost(format!("an fsync failed: {err}"));
    }

    /// A write failed in a way only a restart recovers from.
    pub(crate) fn mark_lost(&self, why: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            tracing::error!(reason = %why, "journal: no further write can succeed until Herald is restarted");
            *lost = Some(why);
        }
    }

    /// A failed commit: when fjall says it poisoned itself (a write or a flush failed before),
    /// the journal is lost.
    pub(crate) fn commit_failed(&self, e: &fjall::Error) -> JournalError {
        let err = io_ref(e);
        self.mark_failing(&err);
        if matches!(e, fjall::Error::Poisoned) {
            self.mark_lost(format!(
                "the store refuses writes after an earlier failure: {e}"
            ));
        }
        err
    }

    /// A write failed: counts it and enters the failing state.
    pub(crate) fn mark_failing(&self, err: &JournalError) {
        count_error(err);
        let kind = match err {
            JournalError::DiskFull { .. } => FailureKind::Full,
            _ => FailureKind::Io,
        };
        self.health.fail(kind, err.to_string());
    }

    /// Applies a change in the number of stored dead letters.
    pub(crate) fn dead_changed(&self, delta: i64) {
        if delta != 0 {
            let n = self.dead_letters.fetch_add(delta, Ordering::AcqRel) + delta;
            metrics::gauge!(m::DEAD_LETTERS).set(n.max(0) as f64);
        }
    }

    /// The retention sweep removed `n` dead letters.
    pub(crate) fn dead_removed(&self, n: u64) {
        self.dead_changed(-(n as i64));
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Counts one refused or failed write in `herald_journal_errors_total{kind}`.
pub(crate) fn count_error(err: &JournalError) {
    metrics::counter!(m::JOURNAL_ERRORS, "kind" => err.kind()).increment(1);
}

/// The backpressure histograms, one per channel into the writer.
struct Waited {
    commands: metrics::Histogram,
    transitions: metrics::Histogram,
}

impl Waited {
    fn new() -> Self {
        let of = |channel: &'static str| metrics::histogram!(m::JOURNAL_BACKPRESSURE_SECONDS, "channel" => channel);
        Waited {
            commands: of("commands"),
            transitions: of("transitions"),
        }
    }
}

/// Sends `item` to the writer, waiting while the channel is full (the journal's backpressure,
/// see [`CHANNEL_CAPACITY`]); a wait is recorded in `waited`. The sender is a caller's thread,
/// often one of the runtime's workers, which a wait holds up with everything queued on it:
/// the histogram is how an operator sees that the store, not the network, sets the pace.
fn send_waiting<T>(
    tx: &Sender<T>,
    item: T,
    waited: &metrics::Histogram,
) -> Result<(), crossbeam_channel::SendError<T>> {
    match tx.try_send(item) {
        Ok(()) => Ok(()),
        Err(crossbeam_channel::TrySendError::Disconnected(item)) => {
            Err(crossbeam_channel::SendError(item))
        }
        Err(crossbeam_channel::TrySendError::Full(item)) => {
            let started = Instant::now();
            let sent = tx.send(item);
            waited.record(started.elapsed().as_secs_f64());
            sent
        }
    }
}

/// Threads owned by the journal, taken (and joined) by `close`.
struct Threads {
    writer: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
    /// Dropping it wakes the retention thread for good.
    retention_stop: Option<Sender<()>>,
    reaper: Option<JoinHandle<()>>,
    /// Dropping it stops the reaper.
    reaper_stop: Option<Sender<()>>,
}

/// The embedded [`Journal`]: a fjall database, its writer, retention and reaper threads.
pub struct EmbeddedJournal {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    /// Transitions: their own channel, so that they do not wake the writer one by one.
    records: Sender<Box<Transition>>,
    threads: Mutex<Threads>,
    /// How long senders waited on a full channel (`herald_journal_backpressure_seconds`).
    waited: Waited,
    /// Whether closing flushes the memtables: always, but for a test journal that never
    /// rotates them (`rotate_at` of `u64::MAX`, to leave a store for start-up to replay).
    flush_on_close: bool,
}

/// Says once, in the log and the `herald_journal_online_discard` gauge, whether the data
/// directory's filesystem discards freed blocks online (see `mount.rs`).
fn warn_of_online_discard(dir: &std::path::Path) {
    let mount = mount::mount_holding(dir);
    let on = mount.as_ref().is_some_and(|m| m.online_discard);
    metrics::gauge!(m::JOURNAL_ONLINE_DISCARD).set(if on { 1.0 } else { 0.0 });
    if let Some(mount) = mount.filter(|m| m.online_discard) {
        tracing::warn!(
            path = %dir.display(),
            mount = %mount.point.display(),
            fs = %mount.fs_type,
            device = %mount.source,
            "journal: the data directory's filesystem is mounted with online discard: fsyncs \
             wait for the TRIM of every file the store deletes; mount it with `nodiscard` and \
             trim periodically (fstrim.timer) instead"
        );
    }
}

impl EmbeddedJournal {
    /// Opens (or creates) the journal in `cfg.path` and starts its writer and retention
    /// threads. `dedup_window` is `[ingest] dedup_window` (zero disables dedup).
    pub fn open(cfg: &StorageConfig, dedup_window: Duration) -> Result<Self, JournalError> {
        Self::open_with(cfg, dedup_window, MEMTABLE_ROTATE_BYTES)
    }

    /// [`open`](Self::open), rotating memtables at `rotate_at` bytes (tests use small ones).
    fn open_with(
        cfg: &StorageConfig,
        dedup_window: Duration,
        rotate_at: u64,
    ) -> Result<Self, JournalError> {
        std::fs::create_dir_all(&cfg.path)
            .map_err(|e| JournalError::Io(format!("creating {}: {e}", cfg.path.display())))?;
        warn_of_online_discard(&cfg.path);
        let db = Database::builder(&cfg.path)
            .cache_size(cfg.cache_bytes)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .worker_threads(STORE_WORKERS)
            .max_cached_files(Some(cfg.cached_files.max(1)))
            .open()
            .map_err(|e| JournalError::Io(format!("opening {}: {e}", cfg.path.display())))?;
        let ks = Keyspaces::open(&db)?;
        materialize_deferred(&db, &ks)?;
        let dedup_window_ms = dedup_window.as_millis().min(i64::MAX as u128) as i64;
        // A memtable replayed from the write-ahead journal that is already full (a store written
        // before Herald rotated memtables itself, or by a stalled fjall) starts flushing now, not
        // at the next write. Smaller ones stay: flushing them here would only move their flush
        // and the compaction after it into the first minutes of work.
        let replayed = ks.rotate_full(rotate_at)?;
        if replayed > 0 {
            tracing::info!(
                keyspaces = replayed,
                "journal: flushing memtables replayed from the write-ahead journal"
            );
        }
        let shared = Arc::new(Shared {
            db,
            ks,
            health: HealthState {
                failing: AtomicBool::new(false),
                reason: Mutex::new(None),
            },
            space: SpaceCheck {
                path: cfg.path.clone(),
                min_free_bytes: AtomicU64::new(cfg.min_free_bytes),
                last: Mutex::new(None),
            },
            dead_letters: AtomicI64::new(0),
            stopping: AtomicBool::new(false),
            sync_failed: Mutex::new(None),
            lost: Mutex::new(None),
            records_nudged: AtomicBool::new(false),
            implicit_floor: AtomicU64::new(0),
            admission: admit::Admission::new(dedup_window_ms),
        });
        metrics::gauge!(m::JOURNAL_HEALTHY).set(1.0);

        let (tx, rx) = bounded(CHANNEL_CAPACITY);
        let (records, records_rx) = bounded(CHANNEL_CAPACITY);
        let opts = writer::WriterOptions {
            fsync: cfg.fsync,
            batch_window: cfg.batch_window,
            batch_max_events: cfg.batch_max_events,
            dedup_window_ms,
            dir: cfg.path.clone(),
            rotate_at,
            queue_write_after_ms: cfg.queue_write_after.as_millis().min(i64::MAX as u128) as i64,
        };
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("herald-journal".into())
                .spawn(move || writer::run(rx, records_rx, shared, opts))
                .map_err(|e| JournalError::Io(format!("starting the writer thread: {e}")))?
        };
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let retention = {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            let (retention, interval) = (cfg.retention, cfg.retention_interval);
            std::thread::Builder::new()
                .name("herald-retention".into())
                .spawn(move || retention::run(shared, tx, retention, interval, stop_rx))
        };
        let retention = match retention {
            Ok(handle) => handle,
            Err(e) => {
                let _ = tx.send(Command::Close);
                let _ = writer.join();
                return Err(JournalError::Io(format!(
                    "starting the retention thread: {e}"
                )));
            }
        };
        // Without the reaper fjall frees flushed memtables itself, under its lock: slower
        // commits around a flush, nothing worse. So a failed start is only logged.
        let (reaper_stop, reaper_rx) = bounded::<()>(1);
        let reaper = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("herald-reaper".into())
                .spawn(move || reaper::run(shared, reaper_rx))
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "journal: cannot start the memtable reaper");
                })
                .ok()
        };
        Ok(EmbeddedJournal {
            shared,
            tx,
            records,
            threads: Mutex::new(Threads {
                writer: Some(writer),
                retention: Some(retention),
                retention_stop: Some(stop_tx),
                reaper,
                reaper_stop: Some(reaper_stop),
            }),
            waited: Waited::new(),
            flush_on_close: rotate_at != u64::MAX,
        })
    }

    /// Runs one retention sweep now (the background thread runs one every
    /// `retention_interval`). Blocks until it is done.
    pub fn sweep(&self, retention: Duration) -> Result<SweepStats, JournalError> {
        retention::sweep(&self.shared, &self.tx, retention)
    }

    /// Dead letters stored right now (exact once `recover` has run).
    pub fn dead_letter_count(&self) -> u64 {
        self.shared.dead_letters.load(Ordering::Acquire).max(0) as u64
    }

    /// Sends a command that carries a reply; a closed journal answers `Closed` at once.
    fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, JournalError>>) -> Command,
    ) -> Ack<T> {
        let (tx, rx) = oneshot::channel();
        if let Err(crossbeam_channel::SendError(cmd)) =
            send_waiting(&self.tx, make(tx), &self.waited.commands)
        {
            cmd.fail(JournalError::Closed);
        }
        rx
    }

    /// Decides which events are sure to be accepted (`admit.rs`) and sends the append, with
    /// a gate for the transitions of the sure ones' deliveries.
    fn admit(
        &self,
        events: Vec<NewEvent>,
        written: Option<writer::Reply<Vec<AppendStatus>>>,
    ) -> (Ack<Vec<AppendStatus>>, Vec<bool>, Option<Arc<Gate>>) {
        let shared = &self.shared;
        // What the writer checks before it takes an append (a full disk, a failed sync),
        // so that no delivery starts for an append it is about to refuse.
        let healthy =
            !shared.health.failing.load(Ordering::Acquire) && shared.check_space().is_ok();
        let stored = |key: &[u8]| match shared.ks.dedup.get(key) {
            Ok(v) => Ok(v
                .and_then(|v| codec::parse_dedup_value(&v))
                .map(|(_, at)| at)),
            Err(_) => Err(()),
        };
        shared
            .admission
            .admit(events, healthy, now_ms(), stored, |events, decided| {
                let n = events.len();
                let sure = decided.sure.clone();
                let gate = sure.contains(&true).then(Arc::default);
                let ack = self.request(|ack| Command::Append {
                    events,
                    decided,
                    gate: gate.clone(),
                    written,
                    ack,
                });
                let sure = if sure.is_empty() {
                    vec![false; n]
                } else {
                    sure
                };
                (ack, sure, gate)
            })
    }

    #[cfg(test)]
    fn set_min_free_bytes(&self, n: u64) {
        self.shared.space.min_free_bytes.store(n, Ordering::Relaxed);
        *self.shared.space.last.lock().unwrap() = None;
    }
}

/// How long closing waits for the memtables' flush before it leaves them to the next start.
/// The unit's `TimeoutStopSec` (45 s) covers the default drain (30 s) and this.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

impl EmbeddedJournal {
    /// Flushes every memtable once the writer has stopped ("Closing" in the module docs).
    fn flush_memtables(&self) {
        let started = Instant::now();
        match self.shared.ks.flush_all(CLOSE_FLUSH_TIMEOUT) {
            Ok(true) => tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "journal: memtables flushed"
            ),
            Ok(false) => tracing::warn!(
                "journal: memtables not flushed within {CLOSE_FLUSH_TIMEOUT:?}; the next start \
                 replays them from the write-ahead journal"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "journal: cannot flush the memtables; the next start replays them from the \
                 write-ahead journal"
            ),
        }
    }
}

impl Drop for EmbeddedJournal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Decodes one `(key, value)` of an iterator, mapping store errors.
fn kv(g: fjall::Guard) -> Result<(fjall::Slice, fjall::Slice), JournalError> {
    g.into_inner().map_err(io)
}

/// Whether a record's status means its delivery is still queued.
fn is_queued(status: DeliveryStatus) -> bool {
    matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
}

/// The lowest id that can belong to a record created at or after `since_ms`.
fn id_floor(since_ms: i64) -> u64 {
    (since_ms.saturating_sub(TIME_SLACK_MS).max(0) as u64).saturating_mul(1000)
}

/// Whether a record passes the query's time filters.
fn in_window(q: &DeliveryQuery, created_at_ms: i64) -> bool {
    q.since_ms.is_none_or(|s| created_at_ms >= s) && q.until_ms.is_none_or(|u| created_at_ms < u)
}

/// The last possible `queue` / `by_sub` key of a subscription.
fn sub_upper<const N: usize>(sub: SubscriptionId) -> [u8; N] {
    let mut k = [0xff; N];
    k[..16].copy_from_slice(sub.as_bytes());
    k
}

/// The log record of delivery `id` if it is an implicit delivery of its event (it has no
/// record of its own) and still queued as ingest queued it: see "Implicit pending records".
fn implicit_record(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, JournalError> {
    // Its event is the last one at or before it: an event's deliveries take the ids right
    // after its sequence number.
    let Some(g) = snap.range(&ks.events, ..=codec::u64_key(id.0)).next_back() else {
        return Ok(None);
    };
    let (k, v) = kv(g)?;
    let seq = codec::read_u64(&k).unwrap_or(0);
    let imp = codec::event_implicit(&v)?;
    let Some(sub) = imp.subscription_of(seq, id) else {
        return Ok(None);
    };
    let due_at_ms = imp.received_at_ms;
    ImplicitCandidate {
        id,
        seq,
        sub,
        due_at_ms,
        event: v,
    }
    .record(snap, ks, deferred_floor(snap, ks)?)
}

/// The record of `id` in a `delivered` group, if one holds it: the groups keyed up to a span
/// below it may ("Delivered groups").
fn grouped_record(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, JournalError> {
    let lo = codec::delivered_key_reaching(id.0);
    for g in snap.range(&ks.delivered, lo..=codec::u64_key(id.0)).rev() {
        let (k, v) = kv(g)?;
        let first = codec::read_u64(&k).unwrap_or(0);
        for entry in codec::delivered_records(first, &v) {
            let (rid, bytes) = entry?;
            if rid == id.0 {
                return codec::decode_record(bytes).map(Some);
            }
            if rid > id.0 {
                break;
            }
        }
    }
    Ok(None)
}

/// A delivery's log record: the one written on its own (which overrides a group's), or its
/// delivered group's, or else the one derived while it is implicit.
fn record_of(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, JournalError> {
    if let Some(v) = snap.get(&ks.deliveries, codec::u64_key(id.0)).map_err(io)? {
        return codec::decode_record(&v).map(Some);
    }
    match grouped_record(snap, ks, id)? {
        Some(r) => Ok(Some(r)),
        None => implicit_record(snap, ks, id),
    }
}

/// One implicit delivery of a stored event, before it is checked against the queue.
struct ImplicitCandidate {
    id: DeliveryId,
    seq: u64,
    sub: SubscriptionId,
    /// Its due and creation time: its event's received-at time.
    due_at_ms: i64,
    event: fjall::Slice,
}

impl ImplicitCandidate {
    /// Its pending record, if its queue entry is still the one ingest wrote, or one the writer
    /// has not written yet (at or above `deferred`, the snapshot's [`deferred_floor`], with no
    /// record written): once the delivery has moved on, a transition wrote its record (or
    /// retention removed that since).
    fn record(
        &self,
        snap: &fjall::Snapshot,
        ks: &Keyspaces,
        deferred: u64,
    ) -> Result<Option<DeliveryRecord>, JournalError> {
        let due = self.due_at_ms;
        let pos = QueuePos {
            due_at_ms: due,
            id: self.id,
        };
        if !snap
            .contains_key(&ks.queue, codec::queue_key(self.sub, pos))
            .map_err(io)?
            && (self.id.0 < deferred
                || snap
                    .contains_key(&ks.deliveries, codec::u64_key(self.id.0))
                    .map_err(io)?
                || grouped_record(snap, ks, self.id)?.is_some())
        {
            return Ok(None);
        }
        let (event_id, event_type) = codec::event_id_and_type(&self.event)?;
        Ok(Some(DeliveryRecord {
            id: self.id,
            subscription: self.sub,
            event_seq: self.seq,
            event_id,
            event_type,
            status: DeliveryStatus::Pending,
            attempts: 0,
            created_at_ms: due,
            next_attempt_at_ms: Some(due),
            last_attempt: None,
        }))
    }
}

/// The implicit deliveries of the events whose ids fall in `[floor, hi)`, newest first.
struct ImplicitIds<'a> {
    events: Option<fjall::Iter>,
    floor: u64,
    hi: Bound<[u8; 8]>,
    /// An event read but not expanded yet: its ids were all at or below the bound asked for.
    peeked: Option<(u64, fjall::Slice)>,
    /// The current event's candidates, oldest first (popped from the back).
    current: Vec<ImplicitCandidate>,
    _snap: std::marker::PhantomData<&'a fjall::Snapshot>,
}

impl<'a> ImplicitIds<'a> {
    fn new(
        snap: &'a fjall::Snapshot,
        ks: &Keyspaces,
        floor: u64,
        hi: Bound<[u8; 8]>,
        wanted: bool,
    ) -> Self {
        // Every id of an event is above its sequence number, so events at or past `hi` have
        // none below it.
        let events = wanted.then(|| snap.range(&ks.events, (Bound::Unbounded, hi)));
        ImplicitIds {
            events,
            floor,
            hi,
            peeked: None,
            current: Vec::new(),
            _snap: std::marker::PhantomData,
        }
    }

    /// The next candidate with an id above `bound` (any, with `None`), reading no event whose
    /// ids are all at or below it.
    fn next_above(
        &mut self,
        bound: Option<u64>,
    ) -> Result<Option<ImplicitCandidate>, JournalError> {
        let above = |id: u64| bound.is_none_or(|b| id > b);
        loop {
            if let Some(c) = self.current.last() {
                return Ok(if above(c.id.0) {
                    self.current.pop()
                } else {
                    None
                });
            }
            let (seq, v) = match self.peeked.take() {
                Some(e) => e,
                None => {
                    let Some(g) = self.events.as_mut().and_then(|e| e.next_back()) else {
                        self.events = None;
                        return Ok(None);
                    };
                    let (k, v) = kv(g)?;
                    (codec::read_u64(&k).unwrap_or(0), v)
                }
            };
            let imp = codec::event_implicit(&v)?;
            let last = seq.saturating_add(imp.len());
            // Blocks of ids are disjoint and ordered like their events: once one ends below
            // the floor, so do all older ones.
            if last < self.floor {
                self.events = None;
                return Ok(None);
            }
            if !above(last) {
                self.peeked = Some((seq, v));
                return Ok(None);
            }
            for i in 1..=imp.len() {
                let id = DeliveryId(seq + i);
                let below_hi = match self.hi {
                    Bound::Excluded(h) => id.0 < u64::from_be_bytes(h),
                    _ => true,
                };
                if id.0 >= self.floor
                    && below_hi
                    && let Some(sub) = imp.subscription_of(seq, id)
                {
                    self.current.push(ImplicitCandidate {
                        id,
                        seq,
                        sub,
                        due_at_ms: imp.received_at_ms,
                        event: v.clone(),
                    });
                }
            }
        }
    }
}

/// The log's written records with ids in a range, newest first: those written on their own and
/// those in delivered groups, merged by id. Where both hold an id, the one written on its own
/// is the later (a group holds first transitions only) and wins.
struct Written {
    logged: fjall::Iter,
    logged_head: Option<(u64, fjall::Slice)>,
    /// The delivered groups that can hold an id in range, newest key first (`None`: not read,
    /// because the listing wants no delivered record).
    groups: Option<fjall::Iter>,
    next_group: Option<(u64, fjall::Slice)>,
    merge: codec::ByIdMerge<Box<[u8]>>,
    grouped_head: Option<(u64, Box<[u8]>)>,
    /// The range's ids: `floor..before`.
    floor: u64,
    before: u64,
}

impl Written {
    fn new(
        snap: &fjall::Snapshot,
        ks: &Keyspaces,
        floor: u64,
        range: (Bound<[u8; 8]>, Bound<[u8; 8]>),
        delivered_wanted: bool,
    ) -> Self {
        let before = match range.1 {
            Bound::Excluded(b) => u64::from_be_bytes(b),
            _ => u64::MAX,
        };
        // Groups keyed below the floor by less than the span may hold ids in range.
        let reaching = codec::delivered_key_reaching(floor);
        Written {
            logged: snap.range(&ks.deliveries, range),
            logged_head: None,
            groups: delivered_wanted
                .then(|| snap.range(&ks.delivered, (Bound::Included(reaching), range.1))),
            next_group: None,
            merge: codec::ByIdMerge::default(),
            grouped_head: None,
            floor,
            before,
        }
    }

    fn read_back(it: &mut fjall::Iter) -> Result<Option<(u64, fjall::Slice)>, JournalError> {
        match it.next_back() {
            Some(g) => {
                let (k, v) = kv(g)?;
                Ok(Some((codec::read_u64(&k).unwrap_or(0), v)))
            }
            None => Ok(None),
        }
    }

    /// The next grouped record's id: buffered groups give up what no unread group can top.
    fn grouped_peek(&mut self) -> Result<Option<u64>, JournalError> {
        while self.grouped_head.is_none() {
            let Some(groups) = self.groups.as_mut() else {
                break;
            };
            if self.next_group.is_none() {
                self.next_group = Self::read_back(groups)?;
            }
            let next_key = self.next_group.as_ref().map(|(k, _)| *k);
            if let Some(entry) = self.merge.pop(next_key) {
                self.grouped_head = Some(entry);
                break;
            }
            let Some((first, v)) = self.next_group.take() else {
                self.groups = None;
                break;
            };
            for entry in codec::delivered_records(first, &v) {
                let (id, bytes) = entry?;
                if id >= self.floor && id < self.before {
                    self.merge.push([(id, Box::from(bytes))]);
                }
            }
        }
        Ok(self.grouped_head.as_ref().map(|(id, _)| *id))
    }

    fn logged_peek(&mut self) -> Result<Option<u64>, JournalError> {
        if self.logged_head.is_none() {
            self.logged_head = Self::read_back(&mut self.logged)?;
        }
        Ok(self.logged_head.as_ref().map(|(id, _)| *id))
    }

    /// The next record's id.
    fn peek(&mut self) -> Result<Option<u64>, JournalError> {
        Ok(self.logged_peek()?.max(self.grouped_peek()?))
    }

    fn next(&mut self) -> Result<Option<DeliveryRecord>, JournalError> {
        match (self.logged_peek()?, self.grouped_peek()?) {
            (None, None) => Ok(None),
            (Some(l), g) if g.is_none_or(|g| l >= g) => {
                if g == Some(l) {
                    self.grouped_head = None;
                }
                let (_, v) = self.logged_head.take().expect("peeked");
                codec::decode_record(&v).map(Some)
            }
            _ => {
                let (_, b) = self.grouped_head.take().expect("peeked");
                codec::decode_record(&b).map(Some)
            }
        }
    }
}

impl Journal for EmbeddedJournal {
    fn append(&self, events: Vec<NewEvent>) -> Ack<Vec<AppendStatus>> {
        // Decided like any other: its claims keep the next appends' decisions exact.
        self.admit(events, None).0
    }

    fn append_staged(&self, events: Vec<NewEvent>) -> Staged {
        let (written_tx, written) = oneshot::channel();
        let (durable, sure, gate) = self.admit(events, Some(written_tx));
        Staged {
            sure,
            gate,
            written,
            durable,
        }
    }

    fn record(&self, transition: Transition) {
        // A closed journal drops the transition: the delivery is attempted again after a
        // restart, which at-least-once allows.
        if send_waiting(
            &self.records,
            Box::new(transition),
            &self.waited.transitions,
        )
        .is_err()
        {
            return;
        }
        // Only the first transition since the writer last took them wakes it.
        if !self.shared.records_nudged.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Command::Nudge);
        }
    }

    fn save_subscription(&self, sub: &Subscription) -> Ack<()> {
        let key = *sub.id.as_bytes();
        let value = codec::encode_subscription(sub);
        self.request(|ack| Command::SaveSubscription { key, value, ack })
    }

    fn delete_subscription(&self, id: SubscriptionId) -> Ack<()> {
        let key = *id.as_bytes();
        self.request(|ack| Command::DeleteSubscription { key, ack })
    }

    fn flush(&self) -> Ack<()> {
        self.request(Command::Flush)
    }

    fn barrier(&self) -> Ack<()> {
        self.request(Command::Barrier)
    }

    fn queue_barrier(&self) -> Ack<()> {
        self.request(Command::QueueBarrier)
    }

    fn recover(&self) -> Result<Recovered, JournalError> {
        let ks = &self.shared.ks;
        // One snapshot so the counts agree with each other.
        let snap = self.shared.db.snapshot();
        let mut out = Recovered::default();

        for g in snap.iter(&ks.subs) {
            let (k, v) = kv(g)?;
            match codec::decode_subscription(&v) {
                Ok(s) => out.subscriptions.push(s),
                Err(e) => {
                    // One unreadable subscription must not keep Herald from starting.
                    count_error(&e);
                    tracing::error!(key = ?&k[..], error = %e, "skipping an unreadable subscription");
                }
            }
        }

        // Queue keys start with the subscription, so each subscription is one run: count
        // runs instead of hashing every entry. The attempt count is read in place.
        let mut current: Option<(SubscriptionId, u64)> = None;
        let mut oldest_fresh: Option<u64> = None;
        let scan_started = crate::model::now_micros();
        for g in snap.iter(&ks.queue) {
            let (k, v) = kv(g)?;
            let Some((sub, pos)) = codec::parse_queue_key(&k) else {
                let e = JournalError::Corrupt("queue key has the wrong length".into());
                count_error(&e);
                continue;
            };
            out.max_id = out.max_id.max(pos.id.0);
            if v.get(32..36).is_some_and(|a| a != [0, 0, 0, 0]) {
                out.retrying += 1;
            } else {
                oldest_fresh = Some(oldest_fresh.map_or(pos.id.0, |o| o.min(pos.id.0)));
            }
            match &mut current {
                Some((s, n)) if *s == sub => *n += 1,
                _ => {
                    if let Some(done) = current.take() {
                        out.queued.push(done);
                    }
                    current = Some((sub, 1));
                }
            }
        }
        out.queued.extend(current);
        self.shared
            .set_implicit_floor(implicit_floor(oldest_fresh, scan_started));

        let dead = snap.len(&ks.dead).map_err(io)? as u64;
        out.dead_letters = dead;
        self.shared
            .dead_letters
            .store(dead.min(i64::MAX as u64) as i64, Ordering::Release);
        metrics::gauge!(m::DEAD_LETTERS).set(dead as f64);

        for ks in [&ks.deliveries, &ks.dead] {
            if let Some(g) = snap.last_key_value(ks) {
                let k = g.key().map_err(io)?;
                out.max_id = out.max_id.max(codec::read_u64(&k).unwrap_or(0));
            }
        }
        // A delivered group's key is its first id; its last record has the highest.
        if let Some(g) = snap.last_key_value(&ks.delivered) {
            let (k, v) = kv(g)?;
            let first = codec::read_u64(&k).unwrap_or(0);
            for entry in codec::delivered_records(first, &v) {
                out.max_id = out.max_id.max(entry?.0);
            }
        }
        // The last event's deliveries took the ids after its sequence number.
        if let Some(g) = snap.last_key_value(&ks.events) {
            let (k, v) = kv(g)?;
            let seq = codec::read_u64(&k).unwrap_or(0);
            let block = codec::event_implicit(&v).map_or(0, |i| i.len());
            out.max_id = out.max_id.max(seq.saturating_add(block));
        }
        Ok(out)
    }

    fn scan_queue(
        &self,
        sub: SubscriptionId,
        after: Option<QueuePos>,
        limit: usize,
    ) -> Result<Vec<Delivery>, JournalError> {
        let lo = match after {
            Some(pos) => Bound::Excluded(codec::queue_key(sub, pos)),
            None => Bound::Included(codec::queue_key(
                sub,
                QueuePos {
                    due_at_ms: 0,
                    id: DeliveryId(0),
                },
            )),
        };
        let hi = Bound::Included(sub_upper::<32>(sub));
        let mut out = Vec::with_capacity(limit.min(4096));
        for g in self.shared.ks.queue.range((lo, hi)).take(limit) {
            let (_, v) = kv(g)?;
            out.push(codec::decode_delivery(&v)?);
        }
        Ok(out)
    }

    fn event(&self, seq: u64) -> Result<Option<Event>, JournalError> {
        match self.shared.ks.events.get(codec::u64_key(seq)).map_err(io)? {
            // Copied out: a value read from the store pins its whole block, and the
            // dispatcher may hold an event for as long as its deliveries retry. Only the
            // event's own bytes, not the list of its implicit deliveries.
            Some(v) => codec::decode_event_copied(seq, &v).map(Some),
            None => Ok(None),
        }
    }

    fn events_between(
        &self,
        since_ms: i64,
        until_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, JournalError> {
        let mut out = Vec::new();
        if limit == 0 || until_ms <= since_ms {
            return Ok(out);
        }
        let lo = id_floor(since_ms).max(after_seq.map_or(0, |s| s.saturating_add(1)));
        // A sequence number is taken after its event's receive time, so once sequences are
        // well past `until_ms` no later event can be inside the window.
        let stop = (until_ms.saturating_add(TIME_SLACK_MS).max(0) as u64).saturating_mul(1000);
        for g in self.shared.ks.events.range(codec::u64_key(lo)..) {
            let (k, v) = kv(g)?;
            let seq = codec::read_u64(&k).unwrap_or(0);
            if seq > stop {
                break;
            }
            if after_seq.is_some_and(|a| seq <= a) {
                continue;
            }
            let e = codec::decode_event_copied(seq, &v)?;
            if e.received_at_ms >= since_ms && e.received_at_ms < until_ms {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, JournalError> {
        // One snapshot: a record written between the two reads must not be missed by both.
        record_of(&self.shared.db.snapshot(), &self.shared.ks, id)
    }

    fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, JournalError> {
        let mut out = Vec::new();
        for g in self.shared.ks.attempts.prefix(codec::u64_key(id.0)) {
            let (_, v) = kv(g)?;
            out.push(codec::decode_attempt(&v)?);
        }
        // The attempt that delivered it is kept in the record only (outcome::after_attempt).
        if let Some(last) = self.delivery(id)?.and_then(|r| r.last_attempt)
            && out.last().is_none_or(|a| a.attempt < last.attempt)
        {
            out.push(last);
        }
        Ok(out)
    }

    fn deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, JournalError> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        let floor = q.since_ms.map_or(0, id_floor);
        let mut keep = |r: DeliveryRecord| {
            if q.status.is_none_or(|s| s == r.status) && in_window(q, r.created_at_ms) {
                out.push(r);
            }
            out.len() < q.limit
        };
        let ks = &self.shared.ks;
        let snap = self.shared.db.snapshot();
        match q.subscription {
            Some(sub) => {
                // Groups keyed below the floor by less than the span may still hold ids above
                // it; groups keyed at `before` or above hold none below it.
                let lo = codec::by_sub_key_reaching(sub, floor);
                let before = q.before.map_or(u64::MAX, |b| b.0);
                let hi = match q.before {
                    Some(b) => Bound::Excluded(codec::by_sub_key(sub, b)),
                    None => Bound::Included(sub_upper::<24>(sub)),
                };
                let mut groups = snap.range(&ks.by_sub, (Bound::Included(lo), hi)).rev();
                let mut merge = codec::ByIdMerge::default();
                let mut ids = Vec::new();
                let mut next = groups.next().map(kv).transpose()?;
                'list: loop {
                    let next_key = next
                        .as_ref()
                        .map(|(k, _)| codec::by_sub_first(k).unwrap_or(0));
                    while let Some((id, ())) = merge.pop(next_key) {
                        // The index and the log are written in one batch (or the record is
                        // implicit); a delivery with neither was removed by retention.
                        if let Some(r) =
                            record_of(&snap, ks, DeliveryId(id))?.filter(|r| r.subscription == sub)
                            && !keep(r)
                        {
                            break 'list;
                        }
                    }
                    let (Some((_, v)), Some(first)) = (next.take(), next_key) else {
                        break;
                    };
                    codec::decode_by_sub_group(first, &v, &mut ids)?;
                    merge.push(
                        ids.iter()
                            .filter(|&&id| id >= floor && id < before)
                            .map(|&id| (id, ())),
                    );
                    next = groups.next().map(kv).transpose()?;
                }
            }
            None => {
                let lo = Bound::Included(codec::u64_key(floor));
                let hi = match q.before {
                    Some(b) => Bound::Excluded(codec::u64_key(b.0)),
                    None => Bound::Unbounded,
                };
                // Two streams, both newest first, merged by id: the log's written records
                // (`Written`), and the implicit deliveries of the events in range (only when
                // pending ones are asked for: an implicit delivery is always pending). A
                // delivery in both has been written since; its record wins.
                let mut written = Written::new(
                    &snap,
                    ks,
                    floor,
                    (lo, hi),
                    q.status.is_none_or(|s| s == DeliveryStatus::Delivered),
                );
                let deferred = deferred_floor(&snap, ks)?;
                let mut implicit = ImplicitIds::new(
                    &snap,
                    ks,
                    floor.max(self.shared.implicit_floor.load(Ordering::Acquire)),
                    hi,
                    q.status.is_none_or(|s| s == DeliveryStatus::Pending),
                );
                // The implicit stream is read only as far as the log's next record: events
                // between two records are read once, and none below the last one needed.
                // A delivery in both streams has been written since, so its ingest queue
                // entry is gone (or was never written, and its record is there) and the
                // implicit one derives nothing.
                loop {
                    let written_id = written.peek()?;
                    let record = match implicit.next_above(written_id)? {
                        Some(c) => c.record(&snap, ks, deferred)?,
                        None => match written.next()? {
                            Some(r) => Some(r),
                            None => break,
                        },
                    };
                    if let Some(r) = record
                        && !keep(r)
                    {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    fn queued(&self, record: &DeliveryRecord) -> Result<Option<Delivery>, JournalError> {
        if !is_queued(record.status) {
            return Ok(None);
        }
        let ks = &self.shared.ks;
        let queue = &ks.queue;
        // The log records when the delivery is due, which is its queue position.
        if let Some(due) = record.next_attempt_at_ms {
            let key = codec::queue_key(
                record.subscription,
                QueuePos {
                    due_at_ms: due,
                    id: record.id,
                },
            );
            let snap = self.shared.db.snapshot();
            if let Some(v) = snap.get(queue, key).map_err(io)? {
                return codec::decode_delivery(&v).map(Some);
            }
            // An implicit delivery whose entry the writer has not written yet is queued as
            // ingest made it.
            if record.status == DeliveryStatus::Pending
                && let Some(r) = implicit_record(&snap, ks, record.id)?
                && r.subscription == record.subscription
            {
                return Ok(Some(Delivery::fresh(
                    r.id,
                    r.subscription,
                    r.event_seq,
                    r.created_at_ms,
                )));
            }
        }
        // Fall back to walking the subscription's queue (an operator action, not a hot path).
        for g in queue.prefix(record.subscription.as_bytes()) {
            let (k, v) = kv(g)?;
            if codec::parse_queue_key(&k).is_some_and(|(_, p)| p.id == record.id) {
                return codec::decode_delivery(&v).map(Some);
            }
        }
        Ok(None)
    }

    fn dead_letters(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>, JournalError> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        let lo = Bound::Included(codec::u64_key(q.since_ms.map_or(0, id_floor)));
        let hi = match q.before {
            Some(b) => Bound::Excluded(codec::u64_key(b.0)),
            None => Bound::Unbounded,
        };
        for g in self.shared.ks.dead.range((lo, hi)).rev() {
            let (_, v) = kv(g)?;
            let d = codec::decode_delivery(&v)?;
            if q.subscription.is_none_or(|s| s == d.subscription) && in_window(q, d.created_at_ms) {
                out.push(d);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn health(&self) -> Health {
        // Re-read free space (cached) so /readyz follows the disk even without ingest.
        let _ = self.shared.check_space();
        self.shared.health.get()
    }

    fn lost(&self) -> Option<String> {
        self.shared
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn close(&self) {
        let mut t = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.stopping.store(true, Ordering::Release);
        // The sweep may be waiting for the writer: stop it first, then the writer.
        drop(t.retention_stop.take());
        if let Some(h) = t.retention.take() {
            let _ = h.join();
        }
        if let Some(h) = t.writer.take() {
            let _ = self.tx.send(Command::Close);
            let _ = h.join();
            // A lost store flushes nothing (its worker may be gone): leave it to the replay.
            if self.flush_on_close && self.lost().is_none() {
                self.flush_memtables();
            }
        }
        drop(t.reaper_stop.take());
        if let Some(h) = t.reaper.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FsyncMode};
    use crate::journal::{DeadOp, QueuePos};
    use crate::model::{AttemptClass, InputKind, now_ms};
    use bytes::Bytes;
    use std::path::Path;

    const HOUR: Duration = Duration::from_secs(3600);

    fn cfg(dir: &Path, fsync: FsyncMode) -> StorageConfig {
        let mut c = Config::defaults().storage;
        c.path = dir.to_path_buf();
        c.fsync = fsync;
        c.min_free_bytes = 0;
        c.cache_bytes = 4 * 1024 * 1024;
        // The tests run sweeps themselves.
        c.retention_interval = HOUR;
        c
    }

    fn open(dir: &Path) -> EmbeddedJournal {
        EmbeddedJournal::open(&cfg(dir, FsyncMode::Batch), HOUR).unwrap()
    }

    async fn ok<T>(ack: Ack<T>) -> T {
        ack.await
            .expect("writer answered")
            .expect("write succeeded")
    }

    async fn err<T: std::fmt::Debug>(ack: Ack<T>) -> JournalError {
        ack.await
            .expect("writer answered")
            .expect_err("write must fail")
    }

    fn event(seq: u64, id: &str) -> Event {
        Event {
            seq,
            id: id.into(),
            source: "sitecore".into(),
            kind: InputKind::Sitecore,
            event_type: "item:saved".into(),
            time: None,
            received_at_ms: (seq / 1000) as i64,
            attributes: Default::default(),
            payload: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        }
    }

    fn delivery(id: u64, sub: SubscriptionId, seq: u64, due: i64) -> Delivery {
        Delivery {
            id: DeliveryId(id),
            subscription: sub,
            event_seq: seq,
            attempts: 0,
            cycle_start: 0,
            due_at_ms: due,
            created_at_ms: (id / 1000) as i64,
        }
    }

    fn new_event(e: Event, deliveries: Vec<Delivery>) -> NewEvent {
        NewEvent {
            event: Arc::new(e),
            deliveries,
        }
    }

    fn record_of(d: &Delivery, status: DeliveryStatus) -> DeliveryRecord {
        DeliveryRecord {
            id: d.id,
            subscription: d.subscription,
            event_seq: d.event_seq,
            event_id: "e".into(),
            event_type: "item:saved".into(),
            status,
            attempts: d.attempts,
            created_at_ms: d.created_at_ms,
            next_attempt_at_ms: is_queued(status).then_some(d.due_at_ms),
            last_attempt: None,
        }
    }

    fn attempt(n: u32) -> AttemptRecord {
        AttemptRecord {
            attempt: n,
            started_at_ms: 1,
            duration_us: 2,
            class: AttemptClass::ServerError,
            status_code: Some(503),
            error: None,
            response_body: Some("busy".into()),
        }
    }

    fn subscription(id: SubscriptionId) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "dialect": "Native",
            "tenant": null,
            "name": "n",
            "description": null,
            "enabled": true,
            "url": "https://example.com/hook",
            "method": "Post",
            "filters": [],
            "headers": [],
            "auth": null,
            "signing_secret": null,
            "format": "CloudEvents",
            "retry": null,
            "timeout": null,
            "disabled_reason": null,
            "version": {"created_by": "t", "created_at_ms": 1, "modified_by": "t",
                        "modified_at_ms": 1, "version_no": 1}
        }))
        .expect("a valid subscription")
    }

    fn all_queued(j: &EmbeddedJournal, sub: SubscriptionId) -> Vec<Delivery> {
        j.scan_queue(sub, None, 1000).unwrap()
    }

    /// The attempt that delivers a delivery is kept in its record only (one write less per
    /// delivery); the list of attempts still shows it, and a manual retry logs it before the
    /// next attempt replaces the record.
    #[tokio::test]
    async fn the_delivering_attempt_is_listed_from_the_record() {
        use crate::model::RetryPolicy;
        use crate::outcome::{self, AttemptSummary, EventRef, Next};
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let d = delivery(3_000_001, sub, 3_000_000, 10);
        let ev = EventRef {
            id: "e",
            event_type: "item:saved",
        };
        let policy = RetryPolicy {
            schedule: vec![Duration::from_secs(1); 5],
            jitter: 0.0,
        };
        let tried = |n: u32, status: u16| {
            let class = AttemptClass::from_status(status);
            let a = AttemptRecord {
                class,
                status_code: Some(status),
                ..attempt(n)
            };
            let s = AttemptSummary {
                class,
                status: Some(status),
                retry_after: None,
            };
            (a, s)
        };
        let j = open(dir.path());
        ok(j.append(vec![new_event(event(3_000_000, "e"), vec![d])])).await;

        let (a1, s1) = tried(1, 503);
        let (next, t) = outcome::after_attempt(&d, ev, a1.clone(), &s1, &policy, 0.5, 20);
        let Next::Retry(retry) = next else {
            panic!("{next:?}")
        };
        j.record(t);
        let (a2, s2) = tried(2, 200);
        let (next, t) = outcome::after_attempt(&retry, ev, a2.clone(), &s2, &policy, 0.5, 30);
        assert_eq!(next, Next::Delivered);
        assert!(t.attempt.is_none(), "the record carries it");
        j.record(t);
        ok(j.flush()).await;
        assert_eq!(j.attempts(d.id).unwrap(), vec![a1.clone(), a2.clone()]);

        // A manual retry, then a third attempt that replaces the record's last attempt.
        let rec = j.delivery(d.id).unwrap().unwrap();
        let base = Delivery {
            attempts: rec.attempts,
            ..retry
        };
        let (again, t) = outcome::requeued(&base, None, false, ev, rec.last_attempt, 40);
        j.record(t);
        let (a3, s3) = tried(3, 500);
        let (_, t) = outcome::after_attempt(&again, ev, a3.clone(), &s3, &policy, 0.5, 50);
        j.record(t);
        ok(j.flush()).await;
        assert_eq!(j.attempts(d.id).unwrap(), vec![a1, a2, a3]);
    }

    /// The writer rotates a memtable itself once it is full, long before fjall's own trigger
    /// (whose flood of requests can stall fjall's worker for good), and a reopened journal
    /// starts flushing what it replayed.
    #[tokio::test]
    async fn full_memtables_are_rotated_and_flushed_by_herald() {
        use fjall::AbstractTree as _;
        const AT: u64 = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), FsyncMode::Batch);
        // Waits until the subscriptions keyspace has more than `n` tables (a flush finished).
        let tables_above = |j: &EmbeddedJournal, n: usize, what: &'static str| {
            let tree = j.shared.ks.subs.tree.clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while tree.table_count() <= n {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{what}: nothing was flushed"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let save = |j: &EmbeddedJournal, n: usize| {
            let acks: Vec<_> = (0..n)
                .map(|_| j.save_subscription(&subscription(SubscriptionId::generate())))
                .collect();
            async move {
                for a in acks {
                    ok(a).await;
                }
            }
        };
        {
            // Without Herald's rotations (and far below fjall's 64 MiB) it all stays in memory.
            let j = EmbeddedJournal::open_with(&c, HOUR, u64::MAX).unwrap();
            save(&j, 1000).await;
            let active = j.shared.ks.subs.tree.active_memtable().size();
            assert!(active >= 4 * AT, "only {active} bytes written");
            assert_eq!(j.shared.ks.subs.tree.table_count(), 0);
            j.close();
        }
        let j = EmbeddedJournal::open_with(&c, HOUR, AT).unwrap();
        // What was replayed is rotated at once and flushed without any new write.
        assert!(j.shared.ks.subs.tree.active_memtable().size() < AT);
        tables_above(&j, 0, "after the replay").await;
        let tables = j.shared.ks.subs.tree.table_count();
        // New writes are rotated as they fill a memtable.
        save(&j, 1000).await;
        let active = j.shared.ks.subs.tree.active_memtable().size();
        assert!(active < 2 * AT, "active memtable holds {active} bytes");
        tables_above(&j, tables, "new writes").await;
        assert_eq!(j.recover().unwrap().subscriptions.len(), 2000);
    }

    /// A clean close flushes every memtable: the next start replays nothing, and reads
    /// everything from tables.
    #[tokio::test]
    async fn closing_flushes_every_memtable() {
        use fjall::AbstractTree as _;
        let dir = tempfile::tempdir().unwrap();
        let a = SubscriptionId::generate();
        let d = delivery(1_000_101, a, 1_000_100, 5);
        {
            let j = open(dir.path());
            ok(j.save_subscription(&subscription(a))).await;
            ok(j.append(vec![new_event(event(1_000_100, "x"), vec![d])])).await;
            j.close();
        }
        let j = open(dir.path());
        for ks in j.shared.ks.all() {
            assert_eq!(
                ks.tree.active_memtable().size(),
                0,
                "{} was replayed",
                ks.name()
            );
        }
        assert!(j.shared.ks.events.tree.table_count() > 0);
        assert_eq!(j.event(1_000_100).unwrap(), Some(event(1_000_100, "x")));
        assert_eq!(all_queued(&j, a), vec![d]);
        assert_eq!(j.recover().unwrap().subscriptions.len(), 1);
    }

    #[tokio::test]
    async fn append_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let d1 = delivery(1_000_101, a, 1_000_100, 5);
        let d2 = delivery(1_000_102, b, 1_000_100, 5);
        let d3 = delivery(1_000_201, a, 1_000_200, 6);
        {
            let j = open(dir.path());
            ok(j.save_subscription(&subscription(a))).await;
            let st = ok(j.append(vec![
                new_event(event(1_000_100, "x"), vec![d1, d2]),
                new_event(event(1_000_200, "y"), vec![d3]),
            ]))
            .await;
            assert_eq!(st, vec![AppendStatus::Accepted; 2]);
            j.close();
        }
        let j = open(dir.path());
        assert_eq!(j.event(1_000_100).unwrap(), Some(event(1_000_100, "x")));
        assert_eq!(j.event(1_000_300).unwrap(), None);
        assert_eq!(all_queued(&j, a), vec![d1, d3]);
        assert_eq!(all_queued(&j, b), vec![d2]);
        let r = j.delivery(d2.id).unwrap().unwrap();
        assert_eq!(r.status, DeliveryStatus::Pending);
        assert_eq!((r.event_seq, r.event_id.as_str()), (1_000_100, "x"));
        let rec = j.recover().unwrap();
        assert_eq!(rec.subscriptions, vec![subscription(a)]);
        let mut queued = rec.queued.clone();
        queued.sort();
        let mut want = vec![(a, 2), (b, 1)];
        want.sort();
        assert_eq!(queued, want);
        assert_eq!(
            (rec.retrying, rec.dead_letters, rec.max_id),
            (0, 0, 1_000_201)
        );
        ok(j.delete_subscription(a)).await;
        assert!(j.recover().unwrap().subscriptions.is_empty());
    }

    #[tokio::test]
    async fn transitions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let d = delivery(2_000_001, sub, 2_000_000, 10);
        let retry = Delivery {
            attempts: 1,
            due_at_ms: 5_000,
            ..d
        };
        {
            let j = open(dir.path());
            ok(j.append(vec![new_event(event(2_000_000, "e"), vec![d])])).await;
            let mut rec = record_of(&retry, DeliveryStatus::Retrying);
            rec.last_attempt = Some(attempt(1));
            j.record(Transition {
                record: rec,
                attempt: Some(attempt(1)),
                dequeue: Some(d),
                enqueue: Some(retry),
                dead: DeadOp::None,
            });
            j.close();
        }
        let j = open(dir.path());
        assert_eq!(
            all_queued(&j, sub),
            vec![retry],
            "due time and attempts kept"
        );
        let rec = j.recover().unwrap();
        assert_eq!((rec.retrying, rec.queued.clone()), (1, vec![(sub, 1)]));
        assert_eq!(j.attempts(d.id).unwrap(), vec![attempt(1)]);
        assert_eq!(
            j.delivery(d.id).unwrap().unwrap().status,
            DeliveryStatus::Retrying
        );

        // Retries run out: a dead letter.
        let dead = Delivery {
            attempts: 2,
            ..retry
        };
        j.record(Transition {
            record: record_of(&dead, DeliveryStatus::Dead),
            attempt: Some(attempt(2)),
            dequeue: Some(retry),
            enqueue: None,
            dead: DeadOp::Insert,
        });
        j.close();
        drop(j);
        let j = open(dir.path());
        let rec = j.recover().unwrap();
        assert_eq!((rec.dead_letters, rec.retrying), (1, 0));
        assert!(rec.queued.is_empty());
        assert_eq!(j.dead_letter_count(), 1);
        let q = DeliveryQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(j.dead_letters(&q).unwrap(), vec![retry]);
        assert_eq!(j.attempts(d.id).unwrap(), vec![attempt(1), attempt(2)]);

        // Replayed: queued again, no longer a dead letter.
        let replay = Delivery {
            cycle_start: 2,
            due_at_ms: 7_000,
            ..dead
        };
        j.record(Transition {
            record: record_of(&replay, DeliveryStatus::Pending),
            attempt: None,
            dequeue: None,
            enqueue: Some(replay),
            dead: DeadOp::Remove,
        });
        ok(j.barrier()).await;
        assert_eq!(j.dead_letter_count(), 0);
        j.close();
        drop(j);
        let j = open(dir.path());
        let rec = j.recover().unwrap();
        assert_eq!((rec.dead_letters, rec.retrying), (0, 1));
        assert_eq!(all_queued(&j, sub), vec![replay]);
        assert!(j.dead_letters(&q).unwrap().is_empty());
        let r = j.delivery(d.id).unwrap().unwrap();
        assert_eq!(j.queued(&r).unwrap(), Some(replay));
    }

    #[tokio::test]
    async fn dedup_within_window_and_inside_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let j = open(dir.path());
        let st = ok(j.append(vec![
            new_event(
                event(3_000_000, "dup"),
                vec![delivery(3_000_001, sub, 3_000_000, 1)],
            ),
            new_event(
                event(3_000_010, "dup"),
                vec![delivery(3_000_011, sub, 3_000_010, 1)],
            ),
            new_event(event(3_000_020, "other"), vec![]),
        ]))
        .await;
        assert_eq!(
            st,
            vec![
                AppendStatus::Accepted,
                AppendStatus::Duplicate {
                    original_seq: 3_000_000
                },
                AppendStatus::Accepted
            ]
        );
        // Again in a later commit: still the original.
        let st = ok(j.append(vec![new_event(
            event(3_000_030, "dup"),
            vec![delivery(3_000_031, sub, 3_000_030, 1)],
        )]))
        .await;
        assert_eq!(
            st,
            vec![AppendStatus::Duplicate {
                original_seq: 3_000_000
            }]
        );
        assert_eq!(
            j.event(3_000_010).unwrap(),
            None,
            "nothing of a duplicate is stored"
        );
        assert_eq!(j.event(3_000_030).unwrap(), None);
        assert_eq!(all_queued(&j, sub).len(), 1);
    }

    #[tokio::test]
    async fn dedup_outside_window_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let j = EmbeddedJournal::open(&cfg(dir.path(), FsyncMode::Batch), Duration::from_millis(1))
            .unwrap();
        ok(j.append(vec![new_event(event(4_000_000, "x"), vec![])])).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let st = ok(j.append(vec![new_event(event(4_000_100, "x"), vec![])])).await;
        assert_eq!(st, vec![AppendStatus::Accepted]);
        assert!(j.event(4_000_100).unwrap().is_some());
    }

    #[tokio::test]
    async fn scan_queue_orders_by_due_then_id_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let (sub, other) = (SubscriptionId::generate(), SubscriptionId::generate());
        let j = open(dir.path());
        let ds = [
            delivery(10, sub, 1, 30),
            delivery(11, sub, 1, 10),
            delivery(12, sub, 1, 20),
            delivery(9, sub, 1, 10),
        ];
        ok(j.append(vec![new_event(
            event(1, "q"),
            ds.iter()
                .copied()
                .chain([delivery(13, other, 1, 0)])
                .collect(),
        )]))
        .await;
        let want = vec![ds[3], ds[1], ds[2], ds[0]];
        assert_eq!(all_queued(&j, sub), want);
        let page1 = j.scan_queue(sub, None, 2).unwrap();
        assert_eq!(page1, want[..2]);
        let after = QueuePos::of(&page1[1]);
        let page2 = j.scan_queue(sub, Some(after), 2).unwrap();
        assert_eq!(page2, want[2..]);
        assert!(
            j.scan_queue(sub, Some(QueuePos::of(&want[3])), 2)
                .unwrap()
                .is_empty()
        );
        assert_eq!(all_queued(&j, other).len(), 1);
    }

    #[tokio::test]
    async fn barrier_makes_earlier_transitions_visible() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let j = open(dir.path());
        let ds: Vec<Delivery> = (0..50).map(|i| delivery(100 + i, sub, 1, 0)).collect();
        ok(j.append(vec![new_event(event(1, "b"), ds.clone())])).await;
        for d in &ds {
            // Two transitions per delivery back to back: the later must win.
            j.record(Transition {
                record: record_of(d, DeliveryStatus::Retrying),
                attempt: Some(attempt(1)),
                dequeue: None,
                enqueue: None,
                dead: DeadOp::None,
            });
            j.record(Transition {
                record: record_of(d, DeliveryStatus::Delivered),
                attempt: Some(attempt(2)),
                dequeue: Some(*d),
                enqueue: None,
                dead: DeadOp::None,
            });
        }
        ok(j.barrier()).await;
        assert!(all_queued(&j, sub).is_empty());
        for d in &ds {
            assert_eq!(
                j.delivery(d.id).unwrap().unwrap().status,
                DeliveryStatus::Delivered
            );
        }
    }

    fn delivered(d: &Delivery) -> Transition {
        Transition {
            record: record_of(d, DeliveryStatus::Delivered),
            attempt: None,
            dequeue: Some(*d),
            enqueue: None,
            dead: DeadOp::None,
        }
    }

    /// Blocks the writer until the returned receiver is read from: it answers an empty sweep
    /// on a rendezvous channel. Returns once the writer has taken the sweep (so it takes
    /// nothing else until released).
    fn hold_writer(
        j: &EmbeddedJournal,
    ) -> crossbeam_channel::Receiver<Result<SweepStats, JournalError>> {
        let (ack, held) = crossbeam_channel::bounded(0);
        j.tx.send(Command::Sweep(
            retention::SweepChunk::Delivered(Vec::new()),
            ack,
        ))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !j.tx.is_empty() {
            assert!(Instant::now() < deadline, "the writer never took the sweep");
            std::thread::yield_now();
        }
        held
    }

    /// A caller that finds the writer's channel full waits, and the wait is recorded per
    /// channel; sends that find room record nothing.
    #[test]
    fn a_wait_on_a_full_channel_is_recorded() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(metrics::with_local_recorder(&recorder, || open(dir.path())));
        // Waits per channel since the last look (a snapshot takes the histograms' values).
        let waits = || {
            let mut n = [0; 2];
            for (k, .., v) in snapshotter.snapshot().into_vec() {
                let channel = k.key().labels().find(|l| l.key() == "channel");
                if k.key().name() != m::JOURNAL_BACKPRESSURE_SECONDS || channel.is_none() {
                    continue;
                }
                let i = usize::from(channel.unwrap().value() == "transitions");
                n[i] += match v {
                    DebugValue::Histogram(h) => h.len(),
                    _ => panic!("not a histogram"),
                };
            }
            n
        };
        let sub = SubscriptionId::generate();
        // One more than the channel holds, sent by another thread while the writer is held.
        let flood = |send: fn(&EmbeddedJournal, SubscriptionId, u64)| {
            let held = hold_writer(&j);
            let tid = Arc::new(AtomicU64::new(0));
            let sender = std::thread::spawn({
                let (j, tid) = (Arc::clone(&j), Arc::clone(&tid));
                move || {
                    let me = rustix::thread::gettid().as_raw_nonzero().get() as u64;
                    tid.store(me, Ordering::SeqCst);
                    for i in 0..=CHANNEL_CAPACITY as u64 {
                        send(&j, sub, i);
                    }
                }
            });
            // The sender only sleeps once the channel is full (its last send waits): then the
            // writer is released.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let me = tid.load(Ordering::SeqCst);
                let state = std::fs::read_to_string(format!("/proc/self/task/{me}/stat"))
                    .ok()
                    .and_then(|st| {
                        Some(st.rsplit_once(')')?.1.split_whitespace().next()?.to_owned())
                    });
                if me != 0 && state.as_deref() == Some("S") {
                    break;
                }
                assert!(Instant::now() < deadline, "the sender never waited");
                std::thread::yield_now();
            }
            held.recv().unwrap().unwrap();
            sender.join().unwrap();
        };
        flood(|j, sub, i| j.record(delivered(&delivery(1_000_000 + i, sub, 1_000_000, 5))));
        assert_eq!(waits(), [0, 1], "[commands, transitions]");
        flood(|j, sub, _| drop(j.save_subscription(&subscription(sub))));
        assert_eq!(waits(), [1, 0], "[commands, transitions]");
    }

    /// The reaper frees flushed memtables at a lower priority than the threads events wait on.
    #[tokio::test]
    async fn the_reaper_runs_nicer_than_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let process = rustix::process::getpriority_process(None).unwrap();
        let j = open(dir.path());
        let want = (process + reaper::NICENESS).min(19);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Several journals may be open in this test process: any reaper at `want` will do.
        while reaper::tests::nice_of_thread("herald-reaper") != Some(want) {
            assert!(Instant::now() < deadline, "no reaper thread at nice {want}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        j.close();
    }

    /// Transitions wake the writer through one nudge per look, not one each: a lost nudge would
    /// leave them waiting until some other command came, which here never does.
    #[tokio::test]
    async fn transitions_alone_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let j = open(dir.path());
        let ds: Vec<Delivery> = (0..40).map(|i| delivery(100 + i, sub, 1, 0)).collect();
        ok(j.append(vec![new_event(event(1, "n"), ds.clone())])).await;
        // Two bursts, the second once the first is committed: the nudge must be re-armed.
        for burst in ds.chunks(20) {
            for d in burst {
                j.record(delivered(d));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while burst.iter().any(|d| {
                j.delivery(d.id).unwrap().map(|r| r.status) != Some(DeliveryStatus::Delivered)
            }) {
                assert!(Instant::now() < deadline, "transitions never committed");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        assert!(all_queued(&j, sub).is_empty());
    }

    /// A finished delivery's queue entry and its (weak) delete cancel out in a flush: the
    /// flushed queue holds the entries still queued, not a tombstone per finished delivery.
    #[tokio::test]
    async fn finished_deliveries_leave_nothing_in_a_flushed_queue() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let j = open(dir.path());
        let ds: Vec<Delivery> = (0..50).map(|i| delivery(100 + i, sub, 1, 0)).collect();
        ok(j.append(vec![new_event(event(1, "w"), ds.clone())])).await;
        for d in &ds[5..] {
            j.record(delivered(d));
        }
        ok(j.barrier()).await;
        let queue = &j.shared.ks.queue;
        queue.rotate_memtable_and_wait().unwrap();
        assert_eq!(queue.table_count(), 1);
        // A plain tombstone per finished delivery would make this 50.
        assert_eq!(queue.approximate_len(), 5);
        let left: Vec<DeliveryId> = all_queued(&j, sub).iter().map(|d| d.id).collect();
        assert_eq!(left, ds[..5].iter().map(|d| d.id).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_event_log_is_compressed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path());
        // CMS events: JSON that repeats its field names and much of its values.
        let mut raw = 0u64;
        let events: Vec<NewEvent> = (0..2000u64)
            .map(|i| {
                let mut e = event(1_000_000 + i * 10, &format!("evt-{i}"));
                e.payload = Bytes::from(format!(
                    r#"{{"EventName":"item:saved","Item":{{"Language":"en","Version":{i},"Id":"4c3a401e-8b78-440a-bf88-736a71ce8e5a","Name":"Sample item {i}","ParentId":"8fb31904-1bbc-463c-821b-c7c1a87bf13e","TemplateId":"0133f52d-271f-4217-b1cd-04342e3457eb","TemplateName":"Sample Item","SharedFields":[],"UnversionedFields":[],"VersionedFields":[]}},"Changes":{{"FieldChanges":[],"PropertyChanges":[]}},"WebhookItemName":"Sample Webhook Event Handler"}}"#
                ));
                raw += codec::encode_event(&e).len() as u64;
                new_event(e, vec![])
            })
            .collect();
        ok(j.append(events)).await;
        let ks = &j.shared.ks.events;
        ks.rotate_memtable_and_wait().unwrap();
        assert_eq!(ks.table_count(), 1);
        let on_disk = ks.disk_space();
        // Uncompressed, the table is larger than what went in.
        assert!(
            on_disk * 2 < raw,
            "{on_disk} bytes on disk for {raw} bytes of events"
        );
        assert_eq!(j.event(1_000_010).unwrap().unwrap().id.as_ref(), "evt-1");
    }

    /// Closing commits the transitions sent before it, as it did when they shared the
    /// writer's channel with the close.
    #[tokio::test]
    async fn transitions_sent_before_close_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let ds: Vec<Delivery> = (0..30).map(|i| delivery(100 + i, sub, 1, 0)).collect();
        {
            let j = open(dir.path());
            ok(j.append(vec![new_event(event(1, "c"), ds.clone())])).await;
            for d in &ds {
                j.record(delivered(d));
            }
            j.close();
        }
        let j = open(dir.path());
        assert!(all_queued(&j, sub).is_empty());
        for d in &ds {
            assert_eq!(
                j.delivery(d.id).unwrap().unwrap().status,
                DeliveryStatus::Delivered
            );
        }
    }

    #[tokio::test]
    async fn delivery_log_queries() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let j = open(dir.path());
        // ids are µs timestamps: created_at_ms = id / 1000.
        let ds: Vec<Delivery> = (1..=6u64)
            .map(|i| delivery(i * 1_000_000, if i % 2 == 0 { b } else { a }, 1, 0))
            .collect();
        ok(j.append(vec![new_event(event(1, "log"), ds.clone())])).await;
        j.record(Transition {
            record: record_of(&ds[0], DeliveryStatus::Delivered),
            attempt: None,
            dequeue: Some(ds[0]),
            enqueue: None,
            dead: DeadOp::None,
        });
        ok(j.barrier()).await;
        let ids = |v: Vec<DeliveryRecord>| {
            v.into_iter()
                .map(|r| r.id.0 / 1_000_000)
                .collect::<Vec<_>>()
        };
        let q = |f: fn(&mut DeliveryQuery)| {
            let mut q = DeliveryQuery {
                limit: 10,
                ..Default::default()
            };
            f(&mut q);
            q
        };
        assert_eq!(
            ids(j.deliveries(&q(|_| {})).unwrap()),
            vec![6, 5, 4, 3, 2, 1]
        );
        let mut qa = q(|_| {});
        qa.subscription = Some(a);
        assert_eq!(ids(j.deliveries(&qa).unwrap()), vec![5, 3, 1]);
        qa.before = Some(DeliveryId(5_000_000));
        qa.limit = 1;
        assert_eq!(ids(j.deliveries(&qa).unwrap()), vec![3]);
        let delivered = q(|q| q.status = Some(DeliveryStatus::Delivered));
        assert_eq!(ids(j.deliveries(&delivered).unwrap()), vec![1]);
        let window = q(|q| {
            q.since_ms = Some(2_000);
            q.until_ms = Some(4_000);
        });
        assert_eq!(ids(j.deliveries(&window).unwrap()), vec![3, 2]);
        let mut page = q(|_| {});
        page.limit = 2;
        page.before = Some(DeliveryId(3_000_000));
        assert_eq!(ids(j.deliveries(&page).unwrap()), vec![2, 1]);
    }

    /// Every `by_sub` group, in key order: its subscription and ids.
    fn by_sub_groups(j: &EmbeddedJournal) -> Vec<(SubscriptionId, Vec<u64>)> {
        j.shared
            .ks
            .by_sub
            .iter()
            .map(|g| {
                let (k, v) = kv(g).unwrap();
                let mut ids = Vec::new();
                codec::decode_by_sub_group(codec::by_sub_first(&k).unwrap(), &v, &mut ids).unwrap();
                (SubscriptionId::from_bytes(k[..16].try_into().unwrap()), ids)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_subscription_s_log_is_indexed_in_one_group_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let j = open(dir.path());
        let base = now_ms() as u64 * 1000 - 3_600_000_000;
        // Two commits of ten events each with a delivery to `a` and to `b`; the second took its
        // ids before the first was written, so the two commits' ids interleave.
        let commit = |offset: u64| {
            (0..10u64)
                .map(|k| {
                    implicit_event(base + offset + 100 * k, &format!("e{offset}-{k}"), &[a, b])
                })
                .collect::<Vec<_>>()
        };
        ok(j.append(commit(50))).await;
        ok(j.append(commit(0))).await;
        let groups = by_sub_groups(&j);
        assert_eq!(
            groups.len(),
            4,
            "one group per subscription and commit: {groups:?}"
        );
        let a_ids = |offset: u64| (0..10u64).map(move |k| base + offset + 100 * k + 1);
        // Dead letters of `a` queued again are indexed already, and not again: one inside
        // a group, and one that is its group's key (a group of it alone would replace that
        // group, and with it the other nine ids). A delivery made by a replay is new, and is.
        let requeued = |id: u64, attempts: u32| {
            let d = Delivery {
                attempts,
                ..delivery(id, a, id - 1, 0)
            };
            // A dead letter queued again is pending in a new cycle, as a replay's new delivery
            // is (`outcome::requeued`, `outcome::created`).
            Transition {
                record: record_of(&d, DeliveryStatus::Pending),
                attempt: None,
                dequeue: None,
                enqueue: Some(d),
                dead: if attempts > 0 {
                    DeadOp::Remove
                } else {
                    DeadOp::None
                },
            }
        };
        j.record(requeued(base + 451, 3));
        j.record(requeued(base + 1, 3));
        ok(j.barrier()).await;
        assert_eq!(by_sub_groups(&j), groups, "nothing indexed twice");
        let replay = base + 2_000_001;
        j.record(requeued(replay, 0));
        ok(j.barrier()).await;
        assert_eq!(by_sub_groups(&j).len(), 5);
        let mut want: Vec<u64> = a_ids(0).chain(a_ids(50)).chain([replay]).collect();
        want.sort_unstable_by(|x, y| y.cmp(x));

        let list = |before: Option<u64>, limit: usize| {
            let q = DeliveryQuery {
                subscription: Some(a),
                before: before.map(DeliveryId),
                limit,
                ..Default::default()
            };
            let got = j.deliveries(&q).unwrap();
            assert!(got.iter().all(|r| r.subscription == a));
            got.iter().map(|r| r.id.0).collect::<Vec<_>>()
        };
        assert_eq!(list(None, 100), want);
        // Pages of 3, each starting before the last one's end, make up the same list.
        let mut paged = Vec::new();
        loop {
            let page = list(paged.last().copied(), 3);
            if page.is_empty() {
                break;
            }
            paged.extend(page);
        }
        assert_eq!(paged, want);
        assert_eq!(list(Some(base + 352), 2), vec![base + 351, base + 301]);
    }

    /// An event whose deliveries are exactly as ingest makes them: ids right after its
    /// sequence number, due and created when it was received.
    fn implicit_event(seq: u64, id: &str, subs: &[SubscriptionId]) -> NewEvent {
        let e = event(seq, id);
        let ds = subs
            .iter()
            .zip(seq + 1..)
            .map(|(&s, id)| Delivery {
                created_at_ms: e.received_at_ms,
                ..delivery(id, s, seq, e.received_at_ms)
            })
            .collect();
        new_event(e, ds)
    }

    #[tokio::test]
    async fn implicit_deliveries_are_logged_as_pending_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let j = open(dir.path());
        // Event 1 (implicit: 1_000_001..=1_000_003), event 2 with one explicit delivery (due
        // later than received), event 3 (implicit: 3_000_001).
        let implicit1 = implicit_event(1_000_000, "one", &[a, b, a]);
        let explicit = delivery(2_000_001, a, 2_000_000, 9_999);
        let implicit3 = implicit_event(3_000_000, "three", &[b]);
        let d1: Vec<Delivery> = implicit1.deliveries.clone();
        ok(j.append(vec![
            implicit1,
            new_event(event(2_000_000, "two"), vec![explicit]),
            implicit3,
        ]))
        .await;
        // Start-up's floor for implicit ids is the oldest never-attempted queue entry.
        j.recover().unwrap();
        assert_eq!(j.shared.implicit_floor.load(Ordering::Acquire), 1_000_001);
        // Only the explicit delivery has a stored record.
        let stored = |id: u64| {
            j.shared
                .ks
                .deliveries
                .get(codec::u64_key(id))
                .unwrap()
                .is_some()
        };
        assert!(stored(2_000_001));
        assert!(!stored(1_000_001) && !stored(1_000_003) && !stored(3_000_001));

        let r = j.delivery(DeliveryId(1_000_002)).unwrap().expect("derived");
        assert_eq!(
            r,
            DeliveryRecord {
                id: DeliveryId(1_000_002),
                subscription: b,
                event_seq: 1_000_000,
                event_id: "one".into(),
                event_type: "item:saved".into(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                created_at_ms: 1_000,
                next_attempt_at_ms: Some(1_000),
                last_attempt: None,
            }
        );
        assert_eq!(j.queued(&r).unwrap(), Some(d1[1]));
        // Ids that are no one's: the event itself, past its block, before any event.
        for id in [1_000_000, 1_000_004, 999, 3_000_002] {
            assert_eq!(j.delivery(DeliveryId(id)).unwrap(), None, "id {id}");
        }

        let ids = |q: DeliveryQuery| {
            j.deliveries(&q)
                .unwrap()
                .into_iter()
                .map(|r| (r.id.0, r.status))
                .collect::<Vec<_>>()
        };
        let all = |status: Option<DeliveryStatus>, sub: Option<SubscriptionId>| DeliveryQuery {
            status,
            subscription: sub,
            limit: 10,
            ..Default::default()
        };
        use DeliveryStatus::{Delivered, Pending, Retrying};
        assert_eq!(
            ids(all(None, None)),
            [
                (3_000_001, Pending),
                (2_000_001, Pending),
                (1_000_003, Pending),
                (1_000_002, Pending),
                (1_000_001, Pending)
            ]
        );
        assert_eq!(
            ids(all(None, Some(a))),
            [
                (2_000_001, Pending),
                (1_000_003, Pending),
                (1_000_001, Pending)
            ]
        );
        // Paging cuts through an event's block.
        let mut page = all(None, None);
        page.before = Some(DeliveryId(1_000_003));
        page.limit = 1;
        assert_eq!(ids(page), [(1_000_002, Pending)]);
        let mut window = all(Some(Pending), None);
        window.since_ms = Some(2_000);
        assert_eq!(ids(window), [(3_000_001, Pending), (2_000_001, Pending)]);

        // Written transitions take over: delivered, and retried under a new due time.
        j.record(Transition {
            record: record_of(&d1[0], Delivered),
            attempt: None,
            dequeue: Some(d1[0]),
            enqueue: None,
            dead: DeadOp::None,
        });
        j.record(retried(&d1[2], 5_000));
        ok(j.barrier()).await;
        assert_eq!(j.delivery(d1[0].id).unwrap().unwrap().status, Delivered);
        assert_eq!(
            ids(all(None, None)),
            [
                (3_000_001, Pending),
                (2_000_001, Pending),
                (1_000_003, Retrying),
                (1_000_002, Pending),
                (1_000_001, Delivered)
            ]
        );
        assert_eq!(
            ids(all(Some(Pending), Some(a))),
            [(2_000_001, Pending)],
            "no implicit record outlives its queue entry"
        );
        assert_eq!(ids(all(Some(Delivered), None)), [(1_000_001, Delivered)]);
    }

    /// Queue entries on disk, in key order.
    fn queue_rows(j: &EmbeddedJournal) -> Vec<(SubscriptionId, u64)> {
        j.shared
            .ks
            .queue
            .iter()
            .map(|g| {
                let (k, _) = g.into_inner().unwrap();
                let (sub, pos) = codec::parse_queue_key(&k).unwrap();
                (sub, pos.id.0)
            })
            .collect()
    }

    fn stored_floor(j: &EmbeddedJournal) -> Option<u64> {
        let f = deferred_floor(&j.shared.db.snapshot(), &j.shared.ks).unwrap();
        (f != u64::MAX).then_some(f)
    }

    #[tokio::test]
    async fn a_fresh_delivery_gets_a_queue_entry_only_if_still_open_at_a_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let j = open(dir.path());
        // Now, so that nothing is old enough to be written for its age.
        let seq = crate::model::now_micros();
        let ne = implicit_event(seq, "now", &[a, b]);
        let d = ne.deliveries.clone();
        ok(j.append(vec![ne])).await;
        assert_eq!(queue_rows(&j), [], "no entry written with the append");
        assert_eq!(stored_floor(&j), Some(seq + 1));
        // Still pending everywhere: the log, a point read, the queued form.
        use DeliveryStatus::{Delivered, Pending};
        let listed = |j: &EmbeddedJournal| {
            j.deliveries(&DeliveryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.id.0, r.status))
            .collect::<Vec<_>>()
        };
        assert_eq!(listed(&j), [(seq + 2, Pending), (seq + 1, Pending)]);
        let r = j.delivery(d[1].id).unwrap().expect("derived");
        assert_eq!(r.status, Pending);
        assert_eq!(j.queued(&r).unwrap(), Some(d[1]));

        // Delivered: nothing to delete, and listed once, as delivered.
        j.record(delivered(&d[0]));
        ok(j.flush()).await;
        assert_eq!(queue_rows(&j), []);
        assert_eq!(listed(&j), [(seq + 2, Pending), (seq + 1, Delivered)]);
        let r0 = j.delivery(d[0].id).unwrap().unwrap();
        assert_eq!(j.queued(&r0).unwrap(), None);

        // A plain barrier (read-your-writes for the API) writes nothing more.
        ok(j.barrier()).await;
        assert_eq!(queue_rows(&j), []);
        // A queue barrier's waiter scans the queue next: what is still open is written for it.
        ok(j.queue_barrier()).await;
        assert_eq!(queue_rows(&j), [(b, seq + 2)]);
        assert_eq!(j.scan_queue(b, None, 10).unwrap(), [d[1]]);
        assert_eq!(stored_floor(&j), None);
        assert_eq!(listed(&j), [(seq + 2, Pending), (seq + 1, Delivered)]);
        // Written, it is deleted by its end as any other.
        j.record(delivered(&d[1]));
        ok(j.flush()).await;
        assert_eq!(queue_rows(&j), []);
        assert_eq!(listed(&j), [(seq + 2, Delivered), (seq + 1, Delivered)]);
    }

    #[tokio::test]
    async fn entries_not_written_at_a_stop_are_written_when_the_journal_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let seq = crate::model::now_micros();
        let ne = implicit_event(seq, "now", &[a, b, a]);
        let d = ne.deliveries.clone();
        {
            let j = open(dir.path());
            ok(j.append(vec![ne])).await;
            // The second one is delivered, the third retried (its new entry is written).
            j.record(delivered(&d[1]));
            j.record(retried(&d[2], d[2].due_at_ms + 60_000));
            ok(j.flush()).await;
            assert_eq!(queue_rows(&j), [(a, seq + 3)]);
            j.close();
        }
        let j = open(dir.path());
        // The first was still pending: its entry is on disk now, for start-up to find.
        let mut want = vec![(a, seq + 1), (a, seq + 3)];
        want.sort();
        assert_eq!(queue_rows(&j), want);
        assert_eq!(stored_floor(&j), None);
        let rec = j.recover().unwrap();
        assert_eq!(rec.queued, [(a, 2)]);
        assert_eq!(j.scan_queue(a, None, 10).unwrap()[0], d[0]);
        assert_eq!(
            j.delivery(d[0].id).unwrap().unwrap().status,
            DeliveryStatus::Pending
        );
        assert_eq!(
            j.delivery(d[1].id).unwrap().unwrap().status,
            DeliveryStatus::Delivered
        );
        // Nothing is written twice: opening again finds nothing more to write.
        j.close();
        drop(j);
        let j = open(dir.path());
        assert_eq!(queue_rows(&j), want);
    }

    #[tokio::test]
    async fn retention_keeps_the_events_of_entries_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = SubscriptionId::generate();
        let j = open(dir.path());
        let seq = crate::model::now_micros();
        let ne = implicit_event(seq, "now", &[a]);
        let d = ne.deliveries.clone();
        // A later event, delivered at once.
        let later = implicit_event(seq + 10, "later", &[a]);
        let d2 = later.deliveries[0];
        ok(j.append(vec![ne, later])).await;
        j.record(delivered(&d2));
        ok(j.flush()).await;
        // Older than a retention of a millisecond, but still pending.
        let past = (seq / 1000) as i64 + 5;
        while now_ms() <= past {
            std::thread::yield_now();
        }
        let stats = j.sweep(Duration::from_millis(1)).unwrap();
        assert_eq!(stats.events, 0);
        assert!(j.event(seq).unwrap().is_some());
        assert_eq!(
            j.delivery(d[0].id).unwrap().unwrap().status,
            DeliveryStatus::Pending
        );
        // The later one's record stays too: without it the log would derive it as pending.
        assert_eq!(stats.deliveries, 0);
        assert_eq!(
            j.delivery(d2.id).unwrap().unwrap().status,
            DeliveryStatus::Delivered
        );
    }

    #[test]
    fn the_implicit_floor_allows_for_ids_in_flight() {
        let slack = TIME_SLACK_MS as u64 * 1000;
        let now = 1_700_000_000_000_000;
        assert_eq!(implicit_floor(Some(5), now), 5);
        assert_eq!(implicit_floor(None, now), now - slack);
        assert_eq!(implicit_floor(Some(now), now), now - slack);
        assert_eq!(implicit_floor(None, 10), 0);
    }

    #[tokio::test]
    async fn the_implicit_stream_reads_only_as_far_as_it_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let a = SubscriptionId::generate();
        let j = open(dir.path());
        ok(j.append(vec![
            implicit_event(1_000_000, "one", &[a]),
            new_event(event(2_000_000, "two"), vec![]),
            implicit_event(3_000_000, "three", &[a, a]),
        ]))
        .await;
        let snap = j.shared.db.snapshot();
        let ks = &j.shared.ks;
        let ids = |it: &mut ImplicitIds<'_>, bound: Option<u64>| {
            std::iter::from_fn(|| it.next_above(bound).unwrap().map(|c| c.id.0)).collect::<Vec<_>>()
        };
        let peeked = |it: &ImplicitIds<'_>| it.peeked.as_ref().map(|(seq, _)| *seq);
        let mut it = ImplicitIds::new(&snap, ks, 0, Bound::Unbounded, true);
        // Event 3's ids end at the bound: it is read, kept, and nothing older is read.
        assert!(ids(&mut it, Some(3_000_002)).is_empty());
        assert_eq!(peeked(&it), Some(3_000_000));
        assert_eq!(ids(&mut it, Some(2_500_000)), [3_000_002, 3_000_001]);
        assert_eq!(peeked(&it), Some(2_000_000));
        assert_eq!(ids(&mut it, None), [1_000_001]);
        // Nothing below the floor: event 1's block ends under it.
        let mut it = ImplicitIds::new(&snap, ks, 1_500_000, Bound::Unbounded, true);
        assert_eq!(ids(&mut it, None), [3_000_002, 3_000_001]);
        assert!(it.events.is_none() && it.peeked.is_none());
        // Below `hi` only, and nothing when pending ones are not asked for.
        let hi = Bound::Excluded(codec::u64_key(3_000_002));
        let mut it = ImplicitIds::new(&snap, ks, 0, hi, true);
        assert_eq!(ids(&mut it, None), [3_000_001, 1_000_001]);
        let mut it = ImplicitIds::new(&snap, ks, 0, Bound::Unbounded, false);
        assert!(ids(&mut it, None).is_empty());
    }

    #[tokio::test]
    async fn a_swept_implicit_delivery_does_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let old = (now_ms() as u64 - 10 * 86_400_000) * 1000;
        let j = open(dir.path());
        // Two deliveries of one old event: one delivered, one still queued, which keeps the
        // event (and so its list of implicit deliveries) past the retention.
        let ne = implicit_event(old, "old", &[sub, sub]);
        let ds = ne.deliveries.clone();
        ok(j.append(vec![ne])).await;
        j.record(Transition {
            record: record_of(&ds[0], DeliveryStatus::Delivered),
            attempt: None,
            dequeue: Some(ds[0]),
            enqueue: None,
            dead: DeadOp::None,
        });
        ok(j.barrier()).await;
        let stats = j.sweep(Duration::from_secs(7 * 86_400)).unwrap();
        assert_eq!((stats.deliveries, stats.events), (1, 0));
        // The sweep's pass over the queue set the floor to the one still waiting.
        assert_eq!(j.shared.implicit_floor.load(Ordering::Acquire), ds[1].id.0);
        assert!(j.event(old).unwrap().is_some());
        assert_eq!(j.delivery(ds[0].id).unwrap(), None);
        assert_eq!(
            j.delivery(ds[1].id).unwrap().unwrap().status,
            DeliveryStatus::Pending
        );
        let q = DeliveryQuery {
            limit: 10,
            ..Default::default()
        };
        for q in [
            q.clone(),
            DeliveryQuery {
                subscription: Some(sub),
                ..q
            },
        ] {
            let ids: Vec<_> = j.deliveries(&q).unwrap().iter().map(|r| r.id).collect();
            assert_eq!(ids, [ds[1].id]);
        }
    }

    #[tokio::test]
    async fn start_up_counts_the_ids_an_event_took() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        {
            let j = open(dir.path());
            let ne = implicit_event(7_000_000, "e", &[a, b, a]);
            let ds = ne.deliveries.clone();
            ok(j.append(vec![ne])).await;
            // As if the deliveries had left the queue and retention had taken their records:
            // only the event still knows their ids.
            for d in &ds {
                j.shared
                    .ks
                    .queue
                    .remove(codec::queue_key(d.subscription, QueuePos::of(d)))
                    .unwrap();
            }
            ok(j.flush()).await;
        }
        let j = open(dir.path());
        assert_eq!(j.recover().unwrap().max_id, 7_000_003);
    }

    /// The ids the `delivered` groups hold, ascending.
    fn grouped_ids(j: &EmbeddedJournal) -> Vec<u64> {
        let mut ids: Vec<u64> = j
            .shared
            .ks
            .delivered
            .iter()
            .flat_map(|g| {
                let (k, v) = kv(g).unwrap();
                codec::delivered_records(codec::read_u64(&k).unwrap(), &v)
                    .map(|e| e.unwrap().0)
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A transition of `d` delivered at its first attempt, as `outcome::after_attempt` makes it.
    /// A transition of `d` (never attempted) after its first attempt failed: due again at
    /// `due_at_ms`.
    fn retried(d: &Delivery, due_at_ms: i64) -> Transition {
        let retry = Delivery {
            attempts: 1,
            due_at_ms,
            ..*d
        };
        Transition {
            record: record_of(&retry, DeliveryStatus::Retrying),
            attempt: Some(attempt(1)),
            dequeue: Some(*d),
            enqueue: Some(retry),
            dead: DeadOp::None,
        }
    }

    fn delivered_now(d: &Delivery) -> Transition {
        let mut t = delivered(d);
        t.record.attempts = 1;
        t.record.last_attempt = Some(AttemptRecord {
            class: AttemptClass::Success,
            status_code: Some(200),
            response_body: None,
            ..attempt(1)
        });
        t
    }

    #[tokio::test]
    async fn first_deliveries_are_logged_in_groups() {
        use DeliveryStatus::{Delivered, Pending, Retrying};
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let day_us = 86_400_000_000u64;
        let now = now_ms() as u64 * 1000;
        let old = now - 10 * day_us;
        let j = open(dir.path());
        // An old implicit event (a, b, a), a recent one (b), and one whose delivery is not
        // implicit (due later than created).
        let e1 = implicit_event(old, "old", &[a, b, a]);
        let d1 = e1.deliveries.clone();
        let e2 = implicit_event(now - 10, "new", &[b]);
        let d2 = e2.deliveries[0];
        let explicit = delivery(now - 4, a, now - 5, 7);
        ok(j.append(vec![e1, e2, new_event(event(now - 5, "x"), vec![explicit])])).await;
        for d in [d1[0], d1[1], d2, explicit] {
            j.record(delivered_now(&d));
        }
        j.record(retried(&d1[2], d1[2].due_at_ms + 5_000));
        ok(j.barrier()).await;

        // The implicit deliveries delivered at once are in groups, with no record of their own;
        // the retry and the explicit delivery have theirs.
        let own = |id: DeliveryId| {
            j.shared
                .ks
                .deliveries
                .contains_key(codec::u64_key(id.0))
                .unwrap()
        };
        assert_eq!(grouped_ids(&j), vec![d1[0].id.0, d1[1].id.0, d2.id.0]);
        assert!(!own(d1[0].id) && !own(d1[1].id) && !own(d2.id));
        assert!(own(d1[2].id) && own(explicit.id));
        assert!(all_queued(&j, b).is_empty(), "their queue entries are gone");
        assert_eq!(
            j.delivery(d1[1].id).unwrap(),
            Some(delivered_now(&d1[1]).record)
        );
        assert_eq!(
            j.attempts(d1[1].id).unwrap(),
            delivered_now(&d1[1])
                .record
                .last_attempt
                .into_iter()
                .collect::<Vec<_>>()
        );

        let ids = |q: DeliveryQuery| {
            j.deliveries(&q)
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.status))
                .collect::<Vec<_>>()
        };
        let q = |status: Option<DeliveryStatus>, sub: Option<SubscriptionId>| DeliveryQuery {
            status,
            subscription: sub,
            limit: 10,
            ..Default::default()
        };
        let whole = [
            (explicit.id, Delivered),
            (d2.id, Delivered),
            (d1[2].id, Retrying),
            (d1[1].id, Delivered),
            (d1[0].id, Delivered),
        ];
        assert_eq!(ids(q(None, None)), whole);
        assert_eq!(
            ids(q(Some(Delivered), None)),
            [whole[0], whole[1], whole[3], whole[4]]
        );
        assert_eq!(ids(q(Some(Pending), None)), []);
        assert_eq!(ids(q(None, Some(a))), [whole[0], whole[2], whole[4]]);
        assert_eq!(ids(q(None, Some(b))), [whole[1], whole[3]]);
        // Paging through the groups, one at a time, and a window that starts between them.
        let mut paged = Vec::new();
        let mut page = q(None, None);
        page.limit = 1;
        loop {
            let got = ids(page.clone());
            let Some(&(last, _)) = got.last() else { break };
            paged.extend(got);
            page.before = Some(last);
        }
        assert_eq!(paged, whole);
        let mut recent = q(None, None);
        recent.since_ms = Some(((now - 10) / 1000) as i64);
        assert_eq!(ids(recent), [whole[0], whole[1]]);

        // A record written on its own later (a replay queues it again) takes over.
        let replayed = Delivery {
            attempts: 1,
            cycle_start: 1,
            due_at_ms: now_ms(),
            ..d1[0]
        };
        j.record(Transition {
            record: record_of(&replayed, Pending),
            attempt: None,
            dequeue: None,
            enqueue: Some(replayed),
            dead: DeadOp::None,
        });
        ok(j.barrier()).await;
        assert_eq!(j.delivery(d1[0].id).unwrap().unwrap().status, Pending);
        assert_eq!(ids(q(None, None))[4], (d1[0].id, Pending));
        assert_eq!(ids(q(Some(Delivered), None)).len(), 3);
        assert_eq!(ids(q(None, Some(a)))[2], (d1[0].id, Pending));

        // Retention takes the old group, but not what a record of its own still holds.
        let stats = j.sweep(Duration::from_secs(7 * 86_400)).unwrap();
        assert_eq!(stats.deliveries, 1, "{stats:?}");
        assert_eq!(grouped_ids(&j), vec![d2.id.0]);
        assert_eq!(j.delivery(d1[1].id).unwrap(), None);
        assert_eq!(j.delivery(d1[0].id).unwrap().unwrap().status, Pending);
        assert_eq!(
            ids(q(None, Some(b))),
            [whole[1]],
            "the index follows the log"
        );
        assert_eq!(
            ids(q(None, None)),
            [whole[0], whole[1], whole[2], (d1[0].id, Pending)]
        );
    }

    #[tokio::test]
    async fn start_up_counts_the_ids_a_delivered_group_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        {
            let j = open(dir.path());
            let ne = implicit_event(7_000_000, "e", &[a, b]);
            let ds = ne.deliveries.clone();
            ok(j.append(vec![ne])).await;
            for d in &ds {
                j.record(delivered_now(d));
            }
            ok(j.barrier()).await;
            assert_eq!(grouped_ids(&j), vec![7_000_001, 7_000_002]);
            // As if retention had taken the event: only the group knows the ids.
            j.shared
                .ks
                .events
                .remove(codec::u64_key(7_000_000))
                .unwrap();
            ok(j.flush()).await;
        }
        let j = open(dir.path());
        assert_eq!(j.recover().unwrap().max_id, 7_000_002);
    }

    #[tokio::test]
    async fn events_between_filters_by_receive_time() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path());
        let evs: Vec<NewEvent> = (1..=5u64)
            .map(|i| new_event(event(i * 1_000_000, &format!("e{i}")), vec![]))
            .collect();
        ok(j.append(evs)).await;
        let seqs = |v: Vec<Event>| v.into_iter().map(|e| e.seq / 1_000_000).collect::<Vec<_>>();
        assert_eq!(
            seqs(j.events_between(2_000, 5_000, None, 10).unwrap()),
            vec![2, 3, 4]
        );
        assert_eq!(
            seqs(j.events_between(2_000, 5_000, None, 2).unwrap()),
            vec![2, 3]
        );
        assert_eq!(
            seqs(j.events_between(2_000, 5_000, Some(3_000_000), 10).unwrap()),
            vec![4]
        );
        assert!(j.events_between(5_000, 5_000, None, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn retention_keeps_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let day_us = 86_400_000_000u64;
        let now = now_ms() as u64 * 1000;
        let old = now - 10 * day_us;
        // Old event whose delivery was delivered; old event with a delivery still queued;
        // old event whose delivery died; a recent delivered one.
        let delivered = delivery(old + 1, sub, old, 0);
        // Another subscription's only delivery, in the same event: its index group goes too.
        let other = delivery(old + 2, SubscriptionId::generate(), old, 0);
        let queued = delivery(old + 11, sub, old + 10, 0);
        let dead = delivery(old + 21, sub, old + 20, 0);
        let recent = delivery(now - 9, sub, now - 10, 0);
        {
            // A 1 ms dedup window, so that a newer event can take over the old one's key.
            let j =
                EmbeddedJournal::open(&cfg(dir.path(), FsyncMode::Batch), Duration::from_millis(1))
                    .unwrap();
            ok(j.append(vec![
                new_event(event(old, "gone"), vec![delivered, other]),
                new_event(event(old + 10, "kept"), vec![queued]),
                new_event(event(old + 20, "dead"), vec![dead]),
            ]))
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            ok(j.append(vec![new_event(event(now - 10, "gone"), vec![recent])])).await;
            for (d, status) in [
                (delivered, DeliveryStatus::Delivered),
                (other, DeliveryStatus::Delivered),
                (recent, DeliveryStatus::Delivered),
            ] {
                j.record(Transition {
                    record: record_of(&d, status),
                    attempt: Some(attempt(1)),
                    dequeue: Some(d),
                    enqueue: None,
                    dead: DeadOp::None,
                });
            }
            j.record(Transition {
                record: record_of(&dead, DeliveryStatus::Dead),
                attempt: None,
                dequeue: Some(dead),
                enqueue: None,
                dead: DeadOp::Insert,
            });
            ok(j.flush()).await;
        }
        let j = open(dir.path());
        assert_eq!(j.recover().unwrap().dead_letters, 1);
        let stats = j.sweep(Duration::from_secs(7 * 86_400)).unwrap();
        assert_eq!(
            stats,
            SweepStats {
                deliveries: 3,
                dead_letters: 1,
                events: 2
            }
        );
        // `sub`'s old group holds `queued`, still listed, so it stays; `other`'s goes with the
        // one delivery it held.
        assert_eq!(
            by_sub_groups(&j),
            vec![
                (sub, vec![delivered.id.0, queued.id.0, dead.id.0]),
                (sub, vec![recent.id.0]),
            ]
        );
        assert_eq!(j.dead_letter_count(), 0);
        assert_eq!(j.delivery(delivered.id).unwrap(), None);
        assert!(j.attempts(delivered.id).unwrap().is_empty());
        assert_eq!(j.delivery(dead.id).unwrap(), None);
        assert_eq!(j.event(old).unwrap(), None);
        assert_eq!(j.event(old + 20).unwrap(), None);
        assert!(
            j.event(old + 10).unwrap().is_some(),
            "referenced by a queued delivery"
        );
        assert!(j.delivery(queued.id).unwrap().is_some());
        assert_eq!(all_queued(&j, sub), vec![queued]);
        assert!(j.event(now - 10).unwrap().is_some());
        assert!(j.delivery(recent.id).unwrap().is_some());
        let mut q = DeliveryQuery {
            limit: 10,
            ..Default::default()
        };
        q.subscription = Some(sub);
        let left: Vec<DeliveryId> = j.deliveries(&q).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(
            left,
            vec![recent.id, queued.id],
            "the index follows the log"
        );
        // The newer event with the old one's (source, id) keeps its dedup entry.
        let st = ok(j.append(vec![new_event(event(now, "gone"), vec![])])).await;
        assert_eq!(
            st,
            vec![AppendStatus::Duplicate {
                original_seq: now - 10
            }]
        );
        // A second sweep finds nothing more.
        assert_eq!(
            j.sweep(Duration::from_secs(7 * 86_400)).unwrap(),
            SweepStats::default()
        );
    }

    #[tokio::test]
    async fn disk_full_refuses_appends_but_applies_transitions() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let j = open(dir.path());
        let d = delivery(101, sub, 100, 0);
        ok(j.append(vec![new_event(event(100, "a"), vec![d])])).await;
        assert_eq!(j.health(), Health::Ok);

        j.set_min_free_bytes(u64::MAX / 2);
        let e = err(j.append(vec![new_event(
            event(200, "b"),
            vec![delivery(201, sub, 200, 0)],
        )]))
        .await;
        assert!(matches!(e, JournalError::DiskFull { .. }), "{e:?}");
        assert_eq!(e.kind(), "full");
        assert!(matches!(j.health(), Health::Failing(r) if r.contains("full")));
        ok(j.barrier()).await;
        assert_eq!(
            j.event(200).unwrap(),
            None,
            "nothing of a refused append is stored"
        );
        assert_eq!(j.delivery(DeliveryId(201)).unwrap(), None);

        // Delivering what is stored goes on.
        j.record(Transition {
            record: record_of(&d, DeliveryStatus::Delivered),
            attempt: Some(attempt(1)),
            dequeue: Some(d),
            enqueue: None,
            dead: DeadOp::None,
        });
        ok(j.barrier()).await;
        assert!(all_queued(&j, sub).is_empty());
        assert!(
            matches!(j.health(), Health::Failing(_)),
            "a transition does not clear it"
        );

        // Space is back: the next append succeeds and health clears.
        j.set_min_free_bytes(1);
        let st = ok(j.append(vec![new_event(event(300, "c"), vec![])])).await;
        assert_eq!(st, vec![AppendStatus::Accepted]);
        assert_eq!(j.health(), Health::Ok);
    }

    #[tokio::test]
    async fn every_fsync_mode_is_durable_across_reopen() {
        for (i, fsync) in [FsyncMode::Never, FsyncMode::Batch, FsyncMode::Always]
            .into_iter()
            .enumerate()
        {
            let dir = tempfile::tempdir().unwrap();
            let sub = SubscriptionId::generate();
            let mut c = cfg(dir.path(), fsync);
            c.batch_window = Duration::from_millis(2 * i as u64);
            {
                let j = EmbeddedJournal::open(&c, HOUR).unwrap();
                let acks: Vec<_> = (0..4u64)
                    .map(|k| {
                        j.append(vec![new_event(
                            event(10 + k, &format!("{k}")),
                            vec![delivery(100 + k, sub, 10 + k, 0)],
                        )])
                    })
                    .collect();
                for a in acks {
                    assert_eq!(ok(a).await, vec![AppendStatus::Accepted], "{fsync:?}");
                }
                ok(j.flush()).await;
            }
            let j = EmbeddedJournal::open(&c, HOUR).unwrap();
            assert_eq!(all_queued(&j, sub).len(), 4, "{fsync:?}");
            assert!(j.event(13).unwrap().is_some(), "{fsync:?}");
        }
    }

    /// Deliveries started before the writer took their append: their transitions wait in the
    /// gate and are applied after the append, so the queue entry it writes is removed, not
    /// left to be delivered again after a restart.
    #[tokio::test]
    async fn early_transitions_are_applied_after_their_append() {
        let dir = tempfile::tempdir().unwrap();
        let sub = SubscriptionId::generate();
        let seq = 5_000_000;
        let ds: Vec<_> = (1..=3)
            .map(|k| delivery(seq + k, sub, seq, 5_000))
            .collect();
        {
            let j = open(dir.path());
            let held = hold_writer(&j);
            let staged = j.append_staged(vec![new_event(event(seq, "early"), ds.clone())]);
            assert_eq!(staged.sure, vec![true]);
            let gate = staged.gate.clone().expect("a gate for the sure event");
            // Delivered before the writer has seen the append.
            for d in &ds {
                gate.record(&j, delivered(d));
            }
            assert!(!gate.is_open());
            held.recv().unwrap().unwrap();
            assert_eq!(ok(staged.written).await, vec![AppendStatus::Accepted]);
            assert!(gate.is_open());
            ok(j.barrier()).await;
            assert!(all_queued(&j, sub).is_empty());
            j.close();
        }
        let j = open(dir.path());
        assert!(all_queued(&j, sub).is_empty(), "nothing to deliver again");
        for d in &ds {
            let r = j.delivery(d.id).unwrap().unwrap();
            assert_eq!(r.status, DeliveryStatus::Delivered, "{:?}", d.id);
        }
    }

    /// An event is sure to be accepted only when no append before it carries its key and the
    /// store holds none: a copy sent while the first is still on its way is left to the
    /// writer, which finds it a duplicate; so is a copy sent after the first is stored.
    #[tokio::test]
    async fn only_an_event_without_an_earlier_copy_is_sure() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path());
        let held = hold_writer(&j);
        let first = j.append_staged(vec![new_event(event(1_000, "a"), vec![])]);
        let copy = j.append_staged(vec![
            new_event(event(2_000, "a"), vec![]),
            new_event(event(3_000, "b"), vec![]),
        ]);
        assert_eq!(
            (first.sure.clone(), copy.sure.clone()),
            (vec![true], vec![false, true])
        );
        held.recv().unwrap().unwrap();
        assert_eq!(ok(first.written).await, vec![AppendStatus::Accepted]);
        assert_eq!(
            ok(copy.written).await,
            vec![
                AppendStatus::Duplicate {
                    original_seq: 1_000
                },
                AppendStatus::Accepted
            ]
        );
        ok(j.barrier()).await;
        assert_eq!(j.shared.admission.claimed(), 0, "claims given back");
        let later = j.append_staged(vec![new_event(event(4_000, "b"), vec![])]);
        assert_eq!(later.sure, vec![false]);
        assert_eq!(
            ok(later.written).await,
            vec![AppendStatus::Duplicate {
                original_seq: 3_000
            }]
        );
        // A journal refusing appends is sure of nothing.
        j.set_min_free_bytes(u64::MAX);
        assert!(matches!(
            err(j.append(vec![new_event(event(5_000, "c"), vec![])])).await,
            JournalError::DiskFull { .. }
        ));
        let refused = j.append_staged(vec![new_event(event(6_000, "d"), vec![])]);
        assert_eq!(refused.sure, vec![false]);
        assert!(refused.gate.is_none());
    }

    #[tokio::test]
    async fn staged_append_is_written_then_durable() {
        for fsync in [FsyncMode::Never, FsyncMode::Batch, FsyncMode::Always] {
            let dir = tempfile::tempdir().unwrap();
            let sub = SubscriptionId::generate();
            let c = cfg(dir.path(), fsync);
            {
                let j = EmbeddedJournal::open(&c, HOUR).unwrap();
                let mut staged = Vec::new();
                for k in 0..20u64 {
                    // Every third is a duplicate of the one before it.
                    let id = format!("{}", k - u64::from(k % 3 == 2));
                    staged.push(j.append_staged(vec![new_event(
                        event(10 + k, &id),
                        vec![delivery(100 + k, sub, 10 + k, 0)],
                    )]));
                }
                for (k, st) in staged.into_iter().enumerate() {
                    let written = ok(st.written).await;
                    let want = if k % 3 == 2 {
                        AppendStatus::Duplicate {
                            original_seq: 10 + k as u64 - 1,
                        }
                    } else {
                        AppendStatus::Accepted
                    };
                    assert_eq!(written, vec![want], "{fsync:?} {k}");
                    // Written means readable.
                    assert_eq!(
                        j.event(10 + k as u64).unwrap().is_some(),
                        k % 3 != 2,
                        "{fsync:?} {k}"
                    );
                    assert_eq!(ok(st.durable).await, vec![want], "{fsync:?} {k}");
                }
            }
            let j = EmbeddedJournal::open(&c, HOUR).unwrap();
            assert_eq!(all_queued(&j, sub).len(), 14, "{fsync:?}");
        }
    }

    #[tokio::test]
    async fn closed_journal_answers_closed() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path());
        j.close();
        j.close(); // idempotent
        assert!(matches!(
            err(j.append(vec![new_event(event(1, "z"), vec![])])).await,
            JournalError::Closed
        ));
        assert!(matches!(err(j.flush()).await, JournalError::Closed));
    }

    #[test]
    fn space_and_time_helpers() {
        let cases = [(0, 0, true), (5, 0, true), (5, 6, false), (6, 6, true)];
        for (free, min, want) in cases {
            assert_eq!(space_ok(free, min), want, "{free} {min}");
        }
        assert_eq!(id_floor(TIME_SLACK_MS + 5), 5_000);
        assert_eq!(id_floor(0), 0);
        assert_eq!(id_floor(i64::MIN), 0);
    }
}
