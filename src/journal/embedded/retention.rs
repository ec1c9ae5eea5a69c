//! The retention sweep: removes delivered events and the delivery log after `[storage]
//! retention`, on its own thread, in small batches, so ingest never waits for it.
//!
//! What stays no matter how old: queued deliveries (pending or retrying) and the events they
//! point to. Dead letters older than the retention go with the log (they can no longer be
//! replayed once their event is gone, so they are removed together and counted).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::Shared;
use crate::journal::JournalError;
use crate::journal::codec;
use crate::model::{DeliveryStatus, now_ms};

/// Deletes per write batch: small enough that one batch never holds the journal for long.
const CHUNK: usize = 4096;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepStats {
    pub deliveries: u64,
    pub dead_letters: u64,
    pub events: u64,
}

pub(super) fn run(shared: Arc<Shared>, retention: Duration, interval: Duration, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match sweep(&shared, retention) {
            Ok(s) if s != SweepStats::default() => tracing::info!(
                deliveries = s.deliveries,
                dead_letters = s.dead_letters,
                events = s.events,
                "retention sweep removed old records"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
    }
}

fn io(e: fjall::Error) -> JournalError {
    JournalError::Io(e.to_string())
}

pub(super) fn sweep(shared: &Shared, retention: Duration) -> Result<SweepStats, JournalError> {
    let ks = &shared.ks;
    let cutoff_ms = now_ms() - retention.as_millis() as i64;
    if cutoff_ms <= 0 {
        return Ok(SweepStats::default());
    }
    // Ids and sequence numbers are microsecond timestamps.
    let cutoff_id = (cutoff_ms as u64).saturating_mul(1000);
    let mut stats = SweepStats::default();

    // 1. The delivery log (and dead letters) older than the cutoff, unless still queued.
    let mut batch = shared.db.batch();
    let mut ops = 0;
    for kv in ks.deliveries.range(..codec::u64_key(cutoff_id)) {
        let (k, v) = kv.into_inner().map_err(io)?;
        let record = match codec::decode_record(&v) {
            Ok(r) => r,
            Err(_) => {
                batch.remove(&ks.deliveries, k);
                ops += 1;
                continue;
            }
        };
        match record.status {
            DeliveryStatus::Pending | DeliveryStatus::Retrying => continue,
            DeliveryStatus::Dead => {
                batch.remove(&ks.dead, k.clone());
                stats.dead_letters += 1;
            }
            DeliveryStatus::Delivered => {}
        }
        batch.remove(&ks.deliveries, k);
        batch.remove(&ks.by_sub, codec::by_sub_key(record.subscription, record.id));
        for a in 1..=record.attempts {
            batch.remove(&ks.attempts, codec::attempt_key(record.id, a));
        }
        stats.deliveries += 1;
        ops += 3 + record.attempts as usize;
        if ops >= CHUNK {
            batch.commit().map_err(io)?;
            batch = shared.db.batch();
            ops = 0;
        }
    }
    batch.commit().map_err(io)?;
    shared.dead_removed(stats.dead_letters);

    // 2. Events older than the cutoff that no queued delivery or dead letter points to.
    let mut referenced = HashSet::new();
    for kv in ks.queue.iter().chain(ks.dead.iter()) {
        let (_, v) = kv.into_inner().map_err(io)?;
        if let Ok(d) = codec::decode_delivery(&v)
            && d.event_seq < cutoff_id
        {
            referenced.insert(d.event_seq);
        }
    }
    let mut batch = shared.db.batch();
    let mut ops = 0;
    for kv in ks.events.range(..codec::u64_key(cutoff_id)) {
        let (k, v) = kv.into_inner().map_err(io)?;
        let seq = codec::read_u64(&k).unwrap_or(0);
        if referenced.contains(&seq) {
            continue;
        }
        if let Ok(e) = codec::decode_event(seq, v.into()) {
            batch.remove(&ks.dedup, codec::dedup_key(&e.source, &e.id));
        }
        batch.remove(&ks.events, k);
        stats.events += 1;
        ops += 2;
        if ops >= CHUNK {
            batch.commit().map_err(io)?;
            batch = shared.db.batch();
            ops = 0;
        }
    }
    batch.commit().map_err(io)?;
    Ok(stats)
}
