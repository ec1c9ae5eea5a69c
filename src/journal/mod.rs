//! The storage interface: everything Herald must not lose goes through [`Journal`].
//!
//! Where it sits: ingest routes an event, then [`Journal::append`]s it together with the
//! deliveries it created and answers `202` only when the returned [`Ack`] resolves (DESIGN §4:
//! ack means durable). The dispatcher reports every attempt as a [`Transition`] and reads
//! backlogs back with [`Journal::scan_queue`]; the API reads the delivery log and dead letters.
//!
//! The pipeline only sees this trait. Today it has one backend, `embedded` (an LSM store in
//! the data directory, group-committed on a dedicated writer thread); a clustered backend can
//! implement the same calls without the stages changing shape.
//!
//! Writes are asynchronous messages to a single writer, so their order is the order they were
//! sent in; reads are synchronous and may touch the disk, so async callers run scans on the
//! blocking pool.

pub mod codec;
pub mod embedded;

use std::sync::Arc;

use crate::model::{
    AttemptRecord, Delivery, DeliveryId, DeliveryRecord, DeliveryStatus, Event, Subscription,
    SubscriptionId,
};

/// Resolves when the write is durable (per `[storage] fsync`) or failed.
pub type Ack<T> = tokio::sync::oneshot::Receiver<Result<T, JournalError>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// Free space under `[storage] min_free_bytes`: writes are refused before the disk fills.
    #[error(
        "storage is full: {free_bytes} bytes free under {path}, below the {min_free_bytes}-byte minimum"
    )]
    DiskFull {
        path: String,
        free_bytes: u64,
        min_free_bytes: u64,
    },
    /// The store failed a write (I/O error). Herald keeps delivering what it holds in memory.
    #[error("storage write failed: {0}")]
    Io(String),
    /// A stored record could not be decoded (corruption, or a newer format).
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The writer thread has stopped (shutdown).
    #[error("storage is shut down")]
    Closed,
}

impl JournalError {
    /// The bounded label for `herald_journal_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalError::DiskFull { .. } => "full",
            JournalError::Io(_) => "io",
            JournalError::Corrupt(_) => "corrupt",
            JournalError::Closed => "closed",
        }
    }
}

/// One event to make durable, with the deliveries routing created for it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Arc<Event>,
    pub deliveries: Vec<Delivery>,
}

/// What became of one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendStatus {
    /// Stored with its deliveries.
    Accepted,
    /// `(source, id)` was accepted within the dedup window: nothing was stored.
    Duplicate { original_seq: u64 },
}

/// What happens to a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadOp {
    None,
    /// The delivery became a dead letter.
    Insert,
    /// The dead letter was replayed (it is queued again).
    Remove,
}

/// One state change of a delivery, written as it is: the outcome stage decides, the journal
/// stores (`crate::outcome` builds these).
#[derive(Debug, Clone)]
pub struct Transition {
    /// The delivery's new log entry (overwrites the old one).
    pub record: DeliveryRecord,
    /// The attempt that caused the change, appended to the attempt log.
    pub attempt: Option<AttemptRecord>,
    /// The queue entry to remove (as it was queued: its due time is part of the key).
    pub dequeue: Option<Delivery>,
    /// The queue entry to add (a retry, a replay).
    pub enqueue: Option<Delivery>,
    pub dead: DeadOp,
}

/// Position in a subscription's queue: `(due time, delivery id)`. The queue of one
/// subscription is read in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueuePos {
    pub due_at_ms: i64,
    pub id: DeliveryId,
}

impl QueuePos {
    pub fn of(d: &Delivery) -> Self {
        QueuePos {
            due_at_ms: d.due_at_ms,
            id: d.id,
        }
    }
}

/// Filters for the delivery log, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub subscription: Option<SubscriptionId>,
    pub status: Option<DeliveryStatus>,
    /// Only deliveries with an id below this (paging cursor).
    pub before: Option<DeliveryId>,
    /// Created at or after / before, ms.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: usize,
}

/// What the store held at start-up, for the in-memory state and gauges.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub subscriptions: Vec<Subscription>,
    /// Subscriptions with queued deliveries, with how many.
    pub queued: Vec<(SubscriptionId, u64)>,
    /// Queued deliveries that have failed at least once.
    pub retrying: u64,
    pub dead_letters: u64,
    /// Highest event sequence and delivery id stored or taken by a stored event's implicit
    /// deliveries (seed for the id generator).
    pub max_id: u64,
}

/// Durability state, for `/readyz` and `herald_journal_healthy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    Failing(String),
}

/// What [`Journal::append_staged`] knows at once, and its two later answers.
pub struct Staged {
    /// One per event, in order: `true` when the journal already knows the event will be
    /// accepted (its `(source, id)` is neither stored within the dedup window nor in an
    /// append sent before this one), so its deliveries may start now, through [`gate`].
    /// `false`: `written` says what became of it.
    ///
    /// [`gate`]: Staged::gate
    pub sure: Vec<bool>,
    /// Where the transitions of the deliveries started early go until the writer has taken
    /// the append (`Some` when any event is sure).
    pub gate: Option<Arc<Gate>>,
    /// The batch is committed: one status per event, in order.
    pub written: Ack<Vec<AppendStatus>>,
    /// The batch is durable per `[storage] fsync` (the same statuses).
    pub durable: Ack<Vec<AppendStatus>>,
}

/// Keeps the transitions of deliveries that started before the writer took their append.
///
/// A transition applied before the append that created its delivery would be undone by it:
/// the append's queue entry would outlive the delivery's end, and be delivered again after a
/// restart. So until the writer takes the append, the deliveries' transitions wait here, and
/// the writer applies them right after the append, in the same commit; from then on they go
/// to the journal as any other ([`Journal::record`]), and so reach the writer after it too.
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::atomic::AtomicBool,
    /// Boxed, as the journal's channel takes them: a push moves a pointer, not the record,
    /// and growing the list copies pointers.
    #[allow(clippy::vec_box)]
    parked: std::sync::Mutex<Vec<Box<Transition>>>,
}

impl Gate {
    /// Records `t` through `journal` if the writer has taken the append, or keeps it for the
    /// writer to apply after the append.
    #[inline]
    pub fn record(&self, journal: &dyn Journal, t: Transition) {
        use std::sync::atomic::Ordering;
        if !self.open.load(Ordering::Acquire) {
            let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            // Checked again under the lock: `open` is set under it.
            if !self.open.load(Ordering::Acquire) {
                parked.push(Box::new(t));
                return;
            }
        }
        journal.record(t);
    }

    /// The writer has taken the append: what waited, in the order it came; every later
    /// transition is recorded directly.
    pub fn open(&self) -> Vec<Box<Transition>> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        self.open.store(true, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut *parked)
    }

    pub fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The storage interface.
pub trait Journal: Send + Sync + 'static {
    /// Makes events and their deliveries durable, deduplicating on `(source, id)`. The result
    /// has one status per event, in order. Nothing is half-stored: on error, none of the batch.
    fn append(&self, events: Vec<NewEvent>) -> Ack<Vec<AppendStatus>>;

    /// [`Journal::append`] in steps, so that deliveries need not wait for the store: the
    /// events [`Staged::sure`] names can start at once (their transitions through
    /// [`Staged::gate`]), the others once `written` resolves: the batch is committed
    /// (readable, deduplicated; it survives a crash of Herald once synced, which `durable`
    /// says). Delivering before the sync, or the commit, is at-least-once: an event lost to
    /// a power loss, or to a failed write, was never acknowledged, and its sender sends it
    /// again. Nothing is half-stored: if `written` fails, none of the batch is.
    fn append_staged(&self, events: Vec<NewEvent>) -> Staged;

    /// Records a delivery's state change. Not awaited: if Herald dies before it is on disk, the
    /// delivery is simply attempted again (at-least-once). Applied even while appends are
    /// refused for lack of space (delivering frees space). Blocks briefly only when the
    /// writer is a full channel behind (backpressure, `herald_journal_backpressure_seconds`).
    fn record(&self, transition: Transition);

    /// Stores (creates or replaces) a subscription.
    fn save_subscription(&self, sub: &Subscription) -> Ack<()>;

    /// Removes a subscription (its queued deliveries become dead letters via `record`).
    fn delete_subscription(&self, id: SubscriptionId) -> Ack<()>;

    /// Resolves once everything sent before it is durable (tests, shutdown). Always syncs,
    /// whatever `[storage] fsync` says.
    fn flush(&self) -> Ack<()>;

    /// Resolves once every write sent before it has been applied and is visible to reads,
    /// without forcing an fsync. The dispatcher calls it before re-reading a spilled queue
    /// from disk, so that a delivery whose completion is still on its way to the store is
    /// not read back as queued; the API before reading the delivery log (read-your-writes).
    fn barrier(&self) -> Ack<()>;

    /// A [`barrier`](Self::barrier) after which [`scan_queue`](Self::scan_queue) holds every
    /// delivery queued before it: the embedded journal writes a fresh delivery's queue entry
    /// late, only if it is still needed, and this is such a need. The dispatcher's refill.
    fn queue_barrier(&self) -> Ack<()>;

    /// Everything needed to rebuild memory at start-up.
    fn recover(&self) -> Result<Recovered, JournalError>;

    /// Up to `limit` queued deliveries of `sub` after `after` (exclusive), in queue order:
    /// every one appended before the last [`queue_barrier`](Self::queue_barrier) answered; one
    /// appended since may not be in it yet.
    fn scan_queue(
        &self,
        sub: SubscriptionId,
        after: Option<QueuePos>,
        limit: usize,
    ) -> Result<Vec<Delivery>, JournalError>;

    fn event(&self, seq: u64) -> Result<Option<Event>, JournalError>;

    /// Events received in `[since_ms, until_ms)`, after sequence `after_seq`, oldest first.
    fn events_between(
        &self,
        since_ms: i64,
        until_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, JournalError>;

    fn delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, JournalError>;

    /// Every attempt of a delivery, oldest first (the last one may be stored in its record
    /// only; this puts it in the list).
    fn attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, JournalError>;

    fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, JournalError>;

    /// The queued form of a delivery (to retry it now), if it is queued.
    fn queued(&self, record: &DeliveryRecord) -> Result<Option<Delivery>, JournalError>;

    /// Dead letters, newest first, filtered like `deliveries` (status is ignored).
    fn dead_letters(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, JournalError>;

    fn health(&self) -> Health;

    /// Why the journal cannot write again until Herald is restarted (the store poisoned itself
    /// after a failed write, or an fsync failed), if that happened. The daemon then drains and
    /// exits with an error, so that its supervisor restarts it and it recovers from the disk.
    fn lost(&self) -> Option<String> {
        None
    }

    /// Stops the writer after everything queued is written.
    fn close(&self);
}
