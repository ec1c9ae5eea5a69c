//! Queue entries the writer has not written yet: those of fresh implicit deliveries.
//!
//! Why: every delivery ingest made used to be written to `queue` with its append, and deleted
//! (a weak tombstone) by its first transition, milliseconds later. Both are memtable inserts;
//! callgrind counted them at a fifth of Herald's instructions per delivery at fan-out 10 and a
//! tenth at fan-out 1, and they were about half of what fills the memtables, so of what
//! flushes and the reaper then work through. Yet nearly all of those entries are never read:
//! the dispatcher holds the delivery in memory and ends it before anything scans the queue.
//!
//! So the writer keeps the queue entries of an append's implicit deliveries here (their
//! subscriptions, a few bytes each) and writes one only when something may need to read it:
//!
//! - the delivery is still open `[storage] queue_write_after` (1 s by default) after its event
//!   arrived (it waits behind a backlog, or retries, or its endpoint is slow), or
//! - a commit answers a queue barrier: the dispatcher refills a spilled endpoint from the queue
//!   right after one, and a delivery it could not hold in memory lives only there.
//!
//! A transition that ends a delivery whose entry is still kept here just drops it: nothing to
//! delete. What is kept here is still on disk in the sense that matters: the event is written
//! (it lists its implicit deliveries' subscriptions), and every commit also writes the lowest id
//! that may be kept here ([`Deferred::floor`], in `meta`). Every implicit delivery at or above
//! that id with no record and no queue entry is one of these; below it, every one has a queue
//! entry or a record. Opening the journal writes the queue entries of those above it
//! (`materialize_deferred`), so start-up, `scan_queue` and the dispatcher see the queue as if
//! they had been written at once; the delivery log derives them as pending the same way.
//!
//! Bounded: a block stays at most `queue_write_after` (plus the time to the next commit), so at
//! 20,000 events a second and the default second this holds ~20,000 blocks, and start-up after
//! a crash reads back at most that many events. The one-second default is far above how long a
//! delivery to a healthy endpoint takes (a few ms at the load bench's half rate) and far below
//! what that read-back costs.

use std::collections::{BTreeMap, VecDeque};

use crate::model::{Delivery, DeliveryId, SubscriptionId};

/// One append's implicit deliveries whose queue entries are kept.
#[derive(Debug)]
struct Block {
    /// The event's received-at time: its deliveries' due and creation time.
    at_ms: i64,
    /// Its first slot's position (counting every slot ever pushed).
    first: u64,
    len: u32,
    /// Slots still open (not ended, not written).
    open: u32,
}

#[derive(Debug)]
struct Slot {
    sub: SubscriptionId,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Kept: neither ended nor written.
    Open,
    /// Ended or written; its block still has open slots.
    Closed,
    /// Its block is gone: the slot may be let go.
    Gone,
}

/// The kept queue entries, by event sequence number.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Blocks with an open slot, by sequence number (ids and sequence numbers are times, so
    /// this is also their age order, give or take the milliseconds between taking an id and
    /// appending).
    blocks: BTreeMap<u64, Block>,
    /// Every block's subscriptions, in the order they were kept; a gone block's leave once
    /// they reach the front.
    slots: VecDeque<Slot>,
    /// The position of `slots[0]`.
    base: u64,
}

impl Deferred {
    /// Keeps the queue entries of event `seq`'s implicit deliveries (ids `seq + 1 ..`, to
    /// `subs` in order, due at `at_ms`).
    pub(super) fn keep(&mut self, seq: u64, at_ms: i64, subs: &[SubscriptionId]) {
        let Ok(len) = u32::try_from(subs.len()) else {
            return;
        };
        if len == 0 {
            return;
        }
        let first = self.base + self.slots.len() as u64;
        self.slots.extend(subs.iter().map(|&sub| Slot {
            sub,
            state: SlotState::Open,
        }));
        let replaced = self.blocks.insert(
            seq,
            Block {
                at_ms,
                first,
                len,
                open: len,
            },
        );
        // Sequence numbers are unique; were one kept twice, the first block's slots would
        // otherwise never be let go.
        if let Some(old) = replaced {
            self.let_go((old.first - self.base) as usize, old.len as usize);
        }
    }

    /// Whether `d`'s queue entry is kept here (then it is dropped: the caller has nothing to
    /// delete). `false` for anything else, whose entry is on disk.
    pub(super) fn take(&mut self, d: &Delivery) -> bool {
        let Some(b) = self.blocks.get_mut(&d.event_seq) else {
            return false;
        };
        let Some(i) = d.id.0.checked_sub(d.event_seq + 1) else {
            return false;
        };
        if i >= u64::from(b.len) {
            return false;
        }
        let at = (b.first - self.base) as usize;
        let slot = &mut self.slots[at + i as usize];
        // Only the delivery as ingest made it: one attempted or re-queued has its entry on disk.
        if slot.state != SlotState::Open
            || *d != Delivery::fresh(d.id, slot.sub, d.event_seq, b.at_ms)
        {
            return false;
        }
        slot.state = SlotState::Closed;
        b.open -= 1;
        if b.open == 0 {
            let len = b.len as usize;
            self.blocks.remove(&d.event_seq);
            self.let_go(at, len);
        }
        true
    }

    /// Hands over, to be written, the open entries of every block whose event arrived at least
    /// `after_ms` before `now_ms` (of every block, with `all`), and forgets them. Returns how
    /// many were handed over.
    pub(super) fn write_due(
        &mut self,
        now_ms: i64,
        all: bool,
        after_ms: i64,
        mut write: impl FnMut(&Delivery),
    ) -> usize {
        let mut n = 0;
        while let Some(entry) = self.blocks.first_entry() {
            if !all && entry.get().at_ms > now_ms.saturating_sub(after_ms) {
                break;
            }
            let (seq, b) = entry.remove_entry();
            let at = (b.first - self.base) as usize;
            for i in 0..u64::from(b.len) {
                let slot = &mut self.slots[at + i as usize];
                if slot.state == SlotState::Open {
                    n += 1;
                    write(&Delivery::fresh(
                        DeliveryId(seq + 1 + i),
                        slot.sub,
                        seq,
                        b.at_ms,
                    ));
                }
            }
            self.let_go(at, b.len as usize);
        }
        n
    }

    /// Drops event `seq`'s entries (its append was not stored).
    pub(super) fn forget(&mut self, seq: u64) {
        if let Some(b) = self.blocks.remove(&seq) {
            self.let_go((b.first - self.base) as usize, b.len as usize);
        }
    }

    /// The lowest id whose queue entry may be kept here; `None` when none is.
    pub(super) fn floor(&self) -> Option<u64> {
        self.blocks.first_key_value().map(|(&seq, _)| seq + 1)
    }

    /// Entries kept.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.blocks.values().map(|b| b.open as usize).sum()
    }

    /// Marks the `len` slots at `at` (a block just removed) gone, and lets go of the gone
    /// slots at the front.
    fn let_go(&mut self, at: usize, len: usize) {
        for s in self.slots.range_mut(at..at + len) {
            s.state = SlotState::Gone;
        }
        while self
            .slots
            .front()
            .is_some_and(|s| s.state == SlotState::Gone)
        {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(n: u8) -> SubscriptionId {
        SubscriptionId::from_bytes([n; 16])
    }

    fn fresh(seq: u64, i: u64, s: SubscriptionId, at: i64) -> Delivery {
        Delivery::fresh(DeliveryId(seq + 1 + i), s, seq, at)
    }

    #[test]
    fn an_entry_kept_is_taken_once_and_only_as_ingest_made_it() {
        let mut d = Deferred::default();
        d.keep(100, 5, &[sub(1), sub(2)]);
        assert_eq!(d.floor(), Some(101));
        // Not as ingest made it: attempted, another cycle, another due time, another
        // subscription, an id outside the block, an unknown event.
        let mut tried = fresh(100, 0, sub(1), 5);
        tried.attempts = 1;
        assert!(!d.take(&tried));
        let mut late = fresh(100, 0, sub(1), 5);
        late.due_at_ms = 6;
        assert!(!d.take(&late));
        let mut cycle = fresh(100, 0, sub(1), 5);
        cycle.cycle_start = 1;
        assert!(!d.take(&cycle));
        assert!(!d.take(&fresh(100, 0, sub(2), 5)));
        assert!(!d.take(&fresh(100, 2, sub(1), 5)));
        assert!(!d.take(&fresh(99, 0, sub(1), 5)));
        assert_eq!(d.open(), 2);

        assert!(d.take(&fresh(100, 1, sub(2), 5)));
        assert!(!d.take(&fresh(100, 1, sub(2), 5)), "taken once");
        assert_eq!(d.floor(), Some(101));
        assert!(d.take(&fresh(100, 0, sub(1), 5)));
        assert_eq!(d.floor(), None);
        assert!(d.slots.is_empty(), "closed slots are let go");
    }

    #[test]
    fn entries_are_written_once_old_enough_or_all_at_a_barrier() {
        let mut d = Deferred::default();
        d.keep(100, 1_000, &[sub(1), sub(2), sub(3)]);
        d.keep(200, 1_500, &[sub(4)]);
        d.keep(300, 2_000, &[sub(5)]);
        assert!(d.take(&fresh(100, 1, sub(2), 1_000)));
        // A look that writes nothing keeps the slots of blocks still kept.
        assert_eq!(d.write_due(0, false, 1_000, |_| {}), 0);
        assert_eq!(d.slots.len(), 5);

        let mut written = Vec::new();
        // Nothing is a second old yet.
        assert_eq!(d.write_due(1_999, false, 1_000, |x| written.push(*x)), 0);
        // The first block is; of it only what is still open.
        assert_eq!(d.write_due(2_000, false, 1_000, |x| written.push(*x)), 2);
        assert_eq!(
            written,
            vec![fresh(100, 0, sub(1), 1_000), fresh(100, 2, sub(3), 1_000)]
        );
        assert_eq!(d.floor(), Some(201));
        // Written, it is no longer taken here: its end deletes the entry on disk.
        assert!(!d.take(&fresh(100, 0, sub(1), 1_000)));

        written.clear();
        assert_eq!(d.write_due(0, true, 1_000, |x| written.push(*x)), 2);
        assert_eq!(
            written,
            vec![fresh(200, 0, sub(4), 1_500), fresh(300, 0, sub(5), 2_000)]
        );
        assert_eq!(d.floor(), None);
        assert!(d.slots.is_empty());
    }

    #[test]
    fn the_floor_is_the_lowest_block_kept_whatever_the_order_of_appends() {
        let mut d = Deferred::default();
        // Appends reach the writer a little out of id order.
        d.keep(300, 3, &[sub(1)]);
        d.keep(100, 1, &[sub(1), sub(2)]);
        assert_eq!(d.floor(), Some(101));
        assert!(d.take(&fresh(100, 0, sub(1), 1)));
        assert_eq!(d.floor(), Some(101), "block 100 still has an open entry");
        assert!(d.take(&fresh(100, 1, sub(2), 1)));
        assert_eq!(d.floor(), Some(301));
        // Slots of block 300 came first and are still open: nothing is let go yet.
        assert_eq!(d.slots.len(), 3);
        assert!(d.take(&fresh(300, 0, sub(1), 3)));
        assert!(d.slots.is_empty());
    }

    #[test]
    fn a_block_kept_again_replaces_the_first() {
        let mut d = Deferred::default();
        d.keep(100, 1, &[sub(1)]);
        d.keep(100, 1, &[sub(2)]);
        assert!(!d.take(&fresh(100, 0, sub(1), 1)));
        assert!(d.take(&fresh(100, 0, sub(2), 1)));
        assert!(d.slots.is_empty(), "the first block's slot is let go too");
    }

    #[test]
    fn a_forgotten_block_is_neither_taken_nor_written() {
        let mut d = Deferred::default();
        d.keep(100, 1, &[sub(1)]);
        d.keep(200, 2, &[sub(2), sub(3)]);
        d.forget(200);
        d.forget(300);
        assert_eq!(d.floor(), Some(101));
        assert!(!d.take(&fresh(200, 0, sub(2), 2)));
        let mut written = Vec::new();
        assert_eq!(d.write_due(0, true, 1_000, |x| written.push(*x)), 1);
        assert_eq!(written, [fresh(100, 0, sub(1), 1)]);
        assert!(d.slots.is_empty());
    }
}
