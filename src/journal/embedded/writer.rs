//! The single writer thread: group commit.
//!
//! Every write reaches this thread through one bounded crossbeam channel. The thread takes the
//! first command, drains whatever else is already queued (and, with a batch window, waits that
//! long for more), applies all of it as one atomic write batch, then syncs once and answers
//! every waiting ingest request. Under load, everything that arrives during one fsync goes into
//! the next: many events, one fsync. Dedup is decided here too, because this thread is the one
//! place where "was `(source, id)` seen before?" cannot race with another writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use fjall::PersistMode;
use tokio::sync::oneshot;

use super::{Keyspaces, Shared};
use crate::config::FsyncMode;
use crate::journal::codec;
use crate::journal::{AppendStatus, DeadOp, JournalError, NewEvent, QueuePos, Transition};
use crate::model::{DeliveryRecord, DeliveryStatus, now_ms};
use crate::telemetry::metrics as m;

pub(super) enum Command {
    Append {
        events: Vec<NewEvent>,
        ack: oneshot::Sender<Result<Vec<AppendStatus>, JournalError>>,
    },
    Record(Box<Transition>),
    SaveSubscription {
        key: [u8; 16],
        value: Vec<u8>,
        ack: oneshot::Sender<Result<(), JournalError>>,
    },
    DeleteSubscription {
        key: [u8; 16],
        ack: oneshot::Sender<Result<(), JournalError>>,
    },
    Flush(oneshot::Sender<Result<(), JournalError>>),
}

pub(super) struct WriterOptions {
    pub fsync: FsyncMode,
    pub batch_window: Duration,
    pub batch_max_events: usize,
    pub dedup_window_ms: i64,
}

enum Reply {
    Append(
        oneshot::Sender<Result<Vec<AppendStatus>, JournalError>>,
        Vec<AppendStatus>,
    ),
    Unit(oneshot::Sender<Result<(), JournalError>>),
}

/// One commit being assembled.
struct Commit<'a> {
    ks: &'a Keyspaces,
    batch: fjall::OwnedWriteBatch,
    replies: Vec<Reply>,
    events: usize,
    appends: usize,
    /// Dedup keys written in this commit (not yet visible to `get`).
    seen: HashMap<Vec<u8>, u64>,
}

pub(super) fn run(rx: Receiver<Command>, shared: Arc<Shared>, opts: WriterOptions) {
    let ks = &shared.ks;
    let commits = metrics::counter!(m::JOURNAL_COMMITS);
    let batch_events = metrics::histogram!(m::JOURNAL_BATCH_EVENTS);
    while let Ok(first) = rx.recv() {
        let mut c = Commit {
            ks,
            batch: shared.db.batch(),
            replies: Vec::new(),
            events: 0,
            appends: 0,
            seen: HashMap::new(),
        };
        let deadline = Instant::now() + opts.batch_window;
        c.apply(first, &shared, &opts);
        loop {
            if c.events >= opts.batch_max_events
                || (opts.fsync == FsyncMode::Always && c.appends > 0)
            {
                break;
            }
            match rx.try_recv() {
                Ok(cmd) => c.apply(cmd, &shared, &opts),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Wait for more only when there is an ingest request to amortize the sync
                    // over; transitions alone never need to wait.
                    if opts.batch_window.is_zero()
                        || c.appends == 0
                        || opts.fsync != FsyncMode::Batch
                    {
                        break;
                    }
                    match rx.recv_deadline(deadline) {
                        Ok(cmd) => c.apply(cmd, &shared, &opts),
                        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                            break;
                        }
                    }
                }
            }
        }
        let result = c.finish(&shared, opts.fsync);
        commits.increment(1);
        batch_events.record(c.events as f64);
        for reply in c.replies {
            match reply {
                Reply::Append(tx, statuses) => {
                    let _ = tx.send(result.clone().map(|()| statuses));
                }
                Reply::Unit(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
    // The channel closed: everything sent has been written. Make it durable.
    let _ = shared.db.persist(PersistMode::SyncAll);
}

impl Commit<'_> {
    fn apply(&mut self, cmd: Command, shared: &Shared, opts: &WriterOptions) {
        match cmd {
            Command::Append { events, ack } => {
                if let Err(e) = shared.check_space() {
                    let _ = ack.send(Err(e));
                    return;
                }
                self.appends += 1;
                let statuses = self.append(events, opts);
                self.replies.push(Reply::Append(ack, statuses));
            }
            Command::Record(t) => self.record(&t),
            Command::SaveSubscription { key, value, ack } => {
                self.batch.insert(&self.ks.subs, key, value);
                self.replies.push(Reply::Unit(ack));
            }
            Command::DeleteSubscription { key, ack } => {
                self.batch.remove(&self.ks.subs, key);
                self.replies.push(Reply::Unit(ack));
            }
            Command::Flush(ack) => self.replies.push(Reply::Unit(ack)),
        }
    }

    fn append(&mut self, events: Vec<NewEvent>, opts: &WriterOptions) -> Vec<AppendStatus> {
        let now = now_ms();
        let mut statuses = Vec::with_capacity(events.len());
        for ne in events {
            let e = &ne.event;
            if opts.dedup_window_ms > 0 {
                let key = codec::dedup_key(&e.source, &e.id);
                if let Some(original_seq) = self.duplicate_of(&key, now, opts.dedup_window_ms) {
                    statuses.push(AppendStatus::Duplicate { original_seq });
                    continue;
                }
                self.batch
                    .insert(&self.ks.dedup, key.clone(), codec::dedup_value(e.seq, now).to_vec());
                self.seen.insert(key, e.seq);
            }
            self.events += 1;
            self.batch
                .insert(&self.ks.events, codec::u64_key(e.seq), codec::encode_event(e));
            for d in &ne.deliveries {
                self.batch.insert(
                    &self.ks.queue,
                    codec::queue_key(d.subscription, QueuePos::of(d)),
                    codec::encode_delivery(d).to_vec(),
                );
                let record = DeliveryRecord {
                    id: d.id,
                    subscription: d.subscription,
                    event_seq: e.seq,
                    event_id: e.id.to_string(),
                    event_type: e.event_type.to_string(),
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    created_at_ms: d.created_at_ms,
                    next_attempt_at_ms: Some(d.due_at_ms),
                    last_attempt: None,
                };
                self.batch.insert(
                    &self.ks.deliveries,
                    codec::u64_key(d.id.0),
                    codec::encode_record(&record),
                );
                self.batch.insert(
                    &self.ks.by_sub,
                    codec::by_sub_key(d.subscription, d.id),
                    Vec::new(),
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
        (now - accepted_at <= window_ms).then_some(seq)
    }

    fn record(&mut self, t: &Transition) {
        let r = &t.record;
        self.batch.insert(
            &self.ks.deliveries,
            codec::u64_key(r.id.0),
            codec::encode_record(r),
        );
        if let Some(a) = &t.attempt {
            self.batch.insert(
                &self.ks.attempts,
                codec::attempt_key(r.id, a.attempt),
                codec::encode_attempt(a),
            );
        }
        if let Some(d) = &t.dequeue {
            self.batch
                .remove(&self.ks.queue, codec::queue_key(d.subscription, QueuePos::of(d)));
        }
        if let Some(d) = &t.enqueue {
            self.batch.insert(
                &self.ks.queue,
                codec::queue_key(d.subscription, QueuePos::of(d)),
                codec::encode_delivery(d).to_vec(),
            );
        }
        match t.dead {
            DeadOp::None => {}
            DeadOp::Insert => {
                // The dead letter keeps the delivery as it was last queued, for replay.
                if let Some(d) = t.dequeue.as_ref().or(t.enqueue.as_ref()) {
                    self.batch.insert(
                        &self.ks.dead,
                        codec::u64_key(r.id.0),
                        codec::encode_delivery(d).to_vec(),
                    );
                }
            }
            DeadOp::Remove => self.batch.remove(&self.ks.dead, codec::u64_key(r.id.0)),
        }
    }

    fn finish(&mut self, shared: &Shared, fsync: FsyncMode) -> Result<(), JournalError> {
        let batch = std::mem::replace(&mut self.batch, shared.db.batch());
        let result = batch.commit().and_then(|()| match fsync {
            // Committing a batch already hands its bytes to the OS (a crash of Herald loses
            // nothing); the sync is what survives a power loss.
            FsyncMode::Never => Ok(()),
            FsyncMode::Batch | FsyncMode::Always if self.appends > 0 || self.has_unit_replies() => {
                shared.db.persist(PersistMode::SyncAll)
            }
            _ => Ok(()),
        });
        match result {
            Ok(()) => {
                shared.mark_write_ok();
                Ok(())
            }
            Err(e) => {
                let err = JournalError::Io(e.to_string());
                shared.mark_failing(&err);
                Err(err)
            }
        }
    }

    fn has_unit_replies(&self) -> bool {
        self.replies.iter().any(|r| matches!(r, Reply::Unit(_)))
    }
}
