//! The retention sweep: removes delivered events and the delivery log after `[storage]
//! retention`, from its own thread, in small chunks, so ingest never waits long for it.
//!
//! What stays no matter how old: queued deliveries (pending or retrying), their log records
//! and the events they point to. Dead letters older than the retention go with the log (they
//! can no longer be replayed once their event is gone, so they are removed together).
//!
//! How: this thread finds candidates by reading the store (reads never block the writer),
//! then sends them to the writer as [`SweepChunk`]s of at most [`CHUNK`] and waits for each.
//! The writer commits everything sent before a chunk first and re-checks every candidate
//! against the current state, so a dead letter replayed after this thread read it, or a
//! dedup key taken over by a newer event with the same `(source, id)`, is left alone. Only
//! one chunk is in flight at a time: the sweep's memory is bounded by [`CHUNK`] plus the set
//! of old events still referenced by the backlog (8 bytes each).

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fjall::Readable;

use super::Shared;
use super::writer::Command;
use crate::journal::JournalError;
use crate::journal::codec;
use crate::model::{DeliveryId, DeliveryStatus, now_micros, now_ms};

/// Candidates per chunk: small enough that the writer spends a few milliseconds on one.
pub(super) const CHUNK: usize = 1024;

/// Rows read between two looks at the stop flag.
const ROWS_PER_STOP_CHECK: usize = 16_384;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    /// Delivery-log records (with their attempts and index keys).
    pub deliveries: u64,
    /// Dead letters among them.
    pub dead_letters: u64,
    pub events: u64,
}

impl SweepStats {
    fn add(&mut self, o: SweepStats) {
        self.deliveries += o.deliveries;
        self.dead_letters += o.dead_letters;
        self.events += o.events;
    }
}

/// Deletes for the writer to re-check and apply.
pub(super) enum SweepChunk {
    /// Old delivery-log records that were finished (delivered or dead) when read.
    Deliveries(Vec<DeliveryId>),
    /// Delivered groups keyed below the cutoff, by key.
    Delivered(Vec<u64>),
    /// Old events no queued delivery or dead letter referenced, with their dedup keys.
    Events(Vec<(u64, Vec<u8>)>),
}

/// Whether a delivery-log record may be removed once old: only finished deliveries.
pub(super) fn removable(status: DeliveryStatus) -> bool {
    matches!(status, DeliveryStatus::Delivered | DeliveryStatus::Dead)
}

/// The id below which records are older than the retention (ids and sequence numbers are
/// microsecond timestamps), or `None` when nothing can be that old.
fn cutoff_id(now_ms: i64, retention: Duration) -> Option<u64> {
    let cutoff_ms = now_ms.checked_sub(i64::try_from(retention.as_millis()).ok()?)?;
    (cutoff_ms > 0).then(|| (cutoff_ms as u64).saturating_mul(1000))
}

pub(super) fn run(
    shared: std::sync::Arc<Shared>,
    tx: Sender<Command>,
    retention: Duration,
    interval: Duration,
    stop: Receiver<()>,
) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match sweep(&shared, &tx, retention) {
            Ok(s) if s != SweepStats::default() => tracing::info!(
                deliveries = s.deliveries,
                dead_letters = s.dead_letters,
                events = s.events,
                "retention sweep removed old records"
            ),
            Ok(_) => {}
            Err(JournalError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
    }
}

fn io(e: fjall::Error) -> JournalError {
    JournalError::Io(e.to_string())
}

/// Sends one chunk to the writer and waits for it.
fn apply(tx: &Sender<Command>, chunk: SweepChunk) -> Result<SweepStats, JournalError> {
    let (ack, rx) = crossbeam_channel::bounded(1);
    tx.send(Command::Sweep(chunk, ack))
        .map_err(|_| JournalError::Closed)?;
    rx.recv().map_err(|_| JournalError::Closed)?
}

/// One full sweep. Blocks until every chunk is applied; stops early (with `Closed`) when
/// the journal is closing.
pub(super) fn sweep(
    shared: &Shared,
    tx: &Sender<Command>,
    retention: Duration,
) -> Result<SweepStats, JournalError> {
    let ks = &shared.ks;
    let Some(cutoff) = cutoff_id(now_ms(), retention) else {
        return Ok(SweepStats::default());
    };
    let mut stats = SweepStats::default();

    // 1. Delivered groups keyed below the cutoff: every record in them is finished. A group
    // keyed just below it may hold ids up to a span past it, which go a little early; but then
    // no group outlives a record of its own (written since for one of its ids, and removed
    // below), which would show the group's older record again. Groups go first, so a reader
    // between the two steps still sees the newer record.
    let mut keys = Vec::with_capacity(CHUNK);
    for (n, g) in ks.delivered.range(..codec::u64_key(cutoff)).enumerate() {
        if n % ROWS_PER_STOP_CHECK == 0 && shared.stopping() {
            return Err(JournalError::Closed);
        }
        if let Some(first) = codec::read_u64(&g.key().map_err(io)?) {
            keys.push(first);
        }
        if keys.len() == CHUNK {
            stats.add(apply(tx, SweepChunk::Delivered(std::mem::take(&mut keys)))?);
        }
    }
    if !keys.is_empty() {
        stats.add(apply(tx, SweepChunk::Delivered(keys))?);
    }

    // 2. Finished delivery-log records older than the cutoff.
    let mut ids = Vec::with_capacity(CHUNK);
    for (n, g) in ks.deliveries.range(..codec::u64_key(cutoff)).enumerate() {
        // A long backlog of old queued records yields no candidates for a while: look up
        // from the read loop too, so `close` never waits for a whole pass.
        if n % ROWS_PER_STOP_CHECK == 0 && shared.stopping() {
            return Err(JournalError::Closed);
        }
        let (k, v) = g.into_inner().map_err(io)?;
        let finished = codec::decode_record(&v).map_or(true, |r| removable(r.status));
        if finished && let Some(id) = codec::read_u64(&k) {
            ids.push(DeliveryId(id));
        }
        if ids.len() == CHUNK {
            if shared.stopping() {
                return Err(JournalError::Closed);
            }
            stats.add(apply(tx, SweepChunk::Deliveries(std::mem::take(&mut ids)))?);
        }
    }
    if !ids.is_empty() {
        stats.add(apply(tx, SweepChunk::Deliveries(ids))?);
    }

    // 3. Events older than the cutoff that no queued delivery or dead letter points to.
    // One snapshot for both keyspaces: a replay moves a delivery from `dead` to `queue` in
    // one commit, and reading them at two moments could miss it in both.
    // The same pass over the queue renews the floor of the implicit deliveries' ids.
    let mut referenced = Vec::new();
    // Implicit deliveries at or above this may be queued without a queue entry yet: their
    // events stay.
    let deferred;
    {
        let scan_started = now_micros();
        let snap = shared.db.snapshot();
        let mut oldest_fresh: Option<u64> = None;
        let queue = snap.iter(&ks.queue).map(|g| (true, g));
        let dead = snap.iter(&ks.dead).map(|g| (false, g));
        for (n, (queued, g)) in queue.chain(dead).enumerate() {
            if n % ROWS_PER_STOP_CHECK == 0 && shared.stopping() {
                return Err(JournalError::Closed);
            }
            let (_, v) = g.into_inner().map_err(io)?;
            if let Ok(d) = codec::decode_delivery(&v) {
                if queued && d.attempts == 0 {
                    oldest_fresh = Some(oldest_fresh.map_or(d.id.0, |o| o.min(d.id.0)));
                }
                if d.event_seq < cutoff {
                    referenced.push(d.event_seq);
                }
            }
        }
        deferred = super::deferred_floor(&snap, ks)?;
        let oldest = match oldest_fresh {
            Some(o) => Some(o.min(deferred)),
            None => (deferred < u64::MAX).then_some(deferred),
        };
        shared.set_implicit_floor(super::implicit_floor(oldest, scan_started));
    }
    referenced.sort_unstable();
    referenced.dedup();
    let mut events = Vec::with_capacity(CHUNK);
    for (n, g) in ks.events.range(..codec::u64_key(cutoff)).enumerate() {
        if n % ROWS_PER_STOP_CHECK == 0 && shared.stopping() {
            return Err(JournalError::Closed);
        }
        let (k, v) = g.into_inner().map_err(io)?;
        let Some(seq) = codec::read_u64(&k) else {
            continue;
        };
        if referenced.binary_search(&seq).is_ok()
            || codec::event_implicit(&v).is_ok_and(|i| seq.saturating_add(i.len()) >= deferred)
        {
            continue;
        }
        // An unreadable event is removed too; its dedup key (if any) then ages out with
        // nothing pointing at it, which only means a re-sent copy is accepted again.
        let dedup_key = codec::decode_event(seq, v.into())
            .map(|e| codec::dedup_key(&e.source, &e.id))
            .unwrap_or_default();
        events.push((seq, dedup_key));
        if events.len() == CHUNK {
            if shared.stopping() {
                return Err(JournalError::Closed);
            }
            stats.add(apply(tx, SweepChunk::Events(std::mem::take(&mut events)))?);
        }
    }
    if !events.is_empty() {
        stats.add(apply(tx, SweepChunk::Events(events))?);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_deliveries_are_removable() {
        let cases = [
            (DeliveryStatus::Pending, false),
            (DeliveryStatus::Retrying, false),
            (DeliveryStatus::Delivered, true),
            (DeliveryStatus::Dead, true),
        ];
        for (status, want) in cases {
            assert_eq!(removable(status), want, "{status:?}");
        }
    }

    #[test]
    fn cutoff_is_in_microseconds_and_never_before_the_epoch() {
        let day = Duration::from_secs(86_400);
        let cases = [
            (1_700_000_000_000, day, Some(1_699_913_600_000_000)),
            (1_000, Duration::from_secs(1), None),
            (1_000, Duration::from_secs(2), None),
            (5_000, Duration::from_secs(1), Some(4_000_000)),
            (1_000, Duration::MAX, None),
        ];
        for (now, retention, want) in cases {
            assert_eq!(cutoff_id(now, retention), want, "{now} {retention:?}");
        }
    }
}
