//! Outcome: what becomes of a delivery after an attempt — delivered, retried later, or kept as
//! a dead letter — and the journal [`Transition`] that records it.
//!
//! The last stage of the flow. `policy` decides (pure); this module turns the decision into the
//! delivery's next state (DESIGN/STYLE "states are types": a queued [`Delivery`] goes in, a
//! [`Next`] comes out) and into the exact write the journal must make, so that the dispatcher
//! only moves values around and a restart resumes from what was written.

pub mod policy;

use crate::journal::{DeadOp, Transition};
use crate::model::{AttemptRecord, Delivery, DeliveryRecord, DeliveryStatus, RetryPolicy};
pub use policy::{AttemptSummary, DeadReason, Decision};

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    /// Queued again with one more attempt counted and a new due time.
    Retry(Delivery),
    Dead(DeadReason),
}

/// The event facts the delivery log shows beside each delivery.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
}

fn record(
    d: &Delivery,
    ev: EventRef<'_>,
    status: DeliveryStatus,
    attempts: u32,
    next_attempt_at_ms: Option<i64>,
    last_attempt: Option<AttemptRecord>,
) -> DeliveryRecord {
    DeliveryRecord {
        id: d.id,
        subscription: d.subscription,
        event_seq: d.event_seq,
        event_id: ev.id.to_string(),
        event_type: ev.event_type.to_string(),
        status,
        attempts,
        created_at_ms: d.created_at_ms,
        next_attempt_at_ms,
        last_attempt,
    }
}

/// After an attempt of `d` (as it was queued) that ended at `now_ms`: the next state and the
/// transition to journal. `unit` is a uniform random number for jitter.
pub fn after_attempt(
    d: &Delivery,
    ev: EventRef<'_>,
    attempt: AttemptRecord,
    summary: &AttemptSummary,
    policy: &RetryPolicy,
    unit: f64,
    now_ms: i64,
) -> (Next, Transition) {
    let attempts = d.attempts + 1;
    let retries_done = d.attempts.saturating_sub(d.cycle_start);
    match policy::decide(summary, retries_done, policy, unit) {
        Decision::Delivered => {
            // The delivering attempt lives in the record only (`last_attempt`): the common case,
            // delivered at once, then writes one entry less. A delivery leaves this state only
            // through `requeued`, which writes it to the attempt log before it is overwritten.
            let t = Transition {
                record: record(
                    d,
                    ev,
                    DeliveryStatus::Delivered,
                    attempts,
                    None,
                    Some(attempt),
                ),
                attempt: None,
                dequeue: Some(*d),
                enqueue: None,
                dead: DeadOp::None,
            };
            (Next::Delivered, t)
        }
        Decision::Retry { delay } => {
            let next = Delivery {
                attempts,
                due_at_ms: fresh_due(now_ms.saturating_add(delay.as_millis() as i64), Some(d)),
                ..*d
            };
            let t = Transition {
                record: record(
                    d,
                    ev,
                    DeliveryStatus::Retrying,
                    attempts,
                    Some(next.due_at_ms),
                    Some(attempt.clone()),
                ),
                attempt: Some(attempt),
                dequeue: Some(*d),
                enqueue: Some(next),
                dead: DeadOp::None,
            };
            (Next::Retry(next), t)
        }
        Decision::Dead(reason) => {
            // The journal keeps the queued form as the dead letter; the record carries the
            // attempt count, which a replay takes from it.
            let t = Transition {
                record: record(
                    d,
                    ev,
                    DeliveryStatus::Dead,
                    attempts,
                    None,
                    Some(attempt.clone()),
                ),
                attempt: Some(attempt),
                dequeue: Some(*d),
                enqueue: None,
                dead: DeadOp::Insert,
            };
            (Next::Dead(reason), t)
        }
    }
}

/// A delivery created after its event was accepted (a replay to one subscription): queued,
/// pending, indexed under its subscription.
pub fn created(d: &Delivery, ev: EventRef<'_>) -> Transition {
    Transition {
        record: record(d, ev, DeliveryStatus::Pending, 0, Some(d.due_at_ms), None),
        attempt: None,
        dequeue: None,
        enqueue: Some(*d),
        dead: DeadOp::None,
    }
}

/// A queued delivery given up without an attempt (its subscription was deleted).
pub fn abandoned(d: &Delivery, ev: EventRef<'_>) -> Transition {
    Transition {
        record: record(d, ev, DeliveryStatus::Dead, d.attempts, None, None),
        attempt: None,
        dequeue: Some(*d),
        enqueue: None,
        dead: DeadOp::Insert,
    }
}

/// A dead letter (or a delivered or retrying delivery, for a manual retry) queued again now:
/// a new retry cycle, so the schedule starts over while attempt numbers keep counting.
/// `queued` is the delivery's current queue entry, if it has one (a retrying delivery), which is
/// replaced; `was_dead` removes the dead letter.
pub fn requeued(
    base: &Delivery,
    queued: Option<&Delivery>,
    was_dead: bool,
    ev: EventRef<'_>,
    last_attempt: Option<AttemptRecord>,
    now_ms: i64,
) -> (Delivery, Transition) {
    let next = Delivery {
        cycle_start: base.attempts,
        due_at_ms: fresh_due(now_ms, queued),
        ..*base
    };
    let t = Transition {
        record: record(
            base,
            ev,
            DeliveryStatus::Pending,
            base.attempts,
            Some(now_ms),
            last_attempt.clone(),
        ),
        // A delivered delivery's last attempt may live in its record only (see
        // `after_attempt`); the next attempt overwrites that, so it goes to the log now
        // (rewriting an attempt already there is harmless: same key, same value).
        attempt: last_attempt,
        dequeue: queued.copied(),
        enqueue: Some(next),
        dead: if was_dead {
            DeadOp::Remove
        } else {
            DeadOp::None
        },
    };
    (next, t)
}

/// The due time of a queue entry that replaces `replacing`: `due`, or a millisecond later when
/// that would give the new entry the old one's key (subscription, due time, id). The journal
/// deletes a queue entry with a weak tombstone, which is only correct for a key written once
/// (see `journal::embedded`), so a delivery never reuses the key it is leaving: a retry with a
/// zero delay, or one moved up to now, within the millisecond it was due.
fn fresh_due(due: i64, replacing: Option<&Delivery>) -> i64 {
    match replacing {
        Some(old) if old.due_at_ms == due => due.saturating_add(1),
        _ => due,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptClass, DeliveryId, SubscriptionId};
    use std::time::Duration;

    fn delivery(attempts: u32, cycle_start: u32) -> Delivery {
        Delivery {
            id: DeliveryId(10),
            subscription: SubscriptionId::generate(),
            event_seq: 3,
            attempts,
            cycle_start,
            due_at_ms: 1_000,
            created_at_ms: 900,
        }
    }

    fn attempt(n: u32, status: u16) -> (AttemptRecord, AttemptSummary) {
        let class = AttemptClass::from_status(status);
        (
            AttemptRecord {
                attempt: n,
                started_at_ms: 1_000,
                duration_us: 5,
                class,
                status_code: Some(status),
                error: None,
                response_body: None,
            },
            AttemptSummary {
                class,
                status: Some(status),
                retry_after: None,
            },
        )
    }

    const EV: EventRef<'static> = EventRef {
        id: "e1",
        event_type: "item:saved",
    };

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(5)],
            jitter: 0.0,
        }
    }

    #[test]
    fn failure_then_retry_then_dead() {
        let d = delivery(0, 0);
        let (rec, sum) = attempt(1, 500);
        let (next, t) = after_attempt(&d, EV, rec, &sum, &policy(), 0.5, 2_000);
        let Next::Retry(r) = next else {
            panic!("{next:?}")
        };
        assert_eq!((r.attempts, r.due_at_ms), (1, 7_000));
        assert_eq!(t.dequeue, Some(d));
        assert_eq!(t.enqueue, Some(r));
        assert_eq!(t.record.status, DeliveryStatus::Retrying);
        assert_eq!(t.record.next_attempt_at_ms, Some(7_000));

        let (rec, sum) = attempt(2, 500);
        let (next, t) = after_attempt(&r, EV, rec, &sum, &policy(), 0.5, 8_000);
        assert_eq!(next, Next::Dead(DeadReason::Exhausted));
        assert_eq!(t.dead, DeadOp::Insert);
        assert_eq!(t.dequeue, Some(r));
        assert_eq!(t.enqueue, None);
        assert_eq!(t.record.attempts, 2);
    }

    /// A re-queued delivery never takes the queue key it leaves (the journal's weak delete
    /// needs every key written once): a zero-delay retry, or a manual retry, in the very
    /// millisecond the delivery was due gets the next millisecond.
    #[test]
    fn a_requeued_delivery_never_reuses_its_queue_key() {
        let d = delivery(0, 0);
        let zero = RetryPolicy {
            schedule: vec![Duration::ZERO],
            jitter: 0.0,
        };
        let (rec, sum) = attempt(1, 500);
        let (next, t) = after_attempt(&d, EV, rec, &sum, &zero, 0.5, d.due_at_ms);
        let Next::Retry(r) = next else {
            panic!("{next:?}")
        };
        assert_eq!(r.due_at_ms, d.due_at_ms + 1);
        assert_eq!(t.enqueue, Some(r));
        // A millisecond later, the zero delay stands.
        let (rec, sum) = attempt(1, 500);
        let (next, _) = after_attempt(&d, EV, rec, &sum, &zero, 0.5, d.due_at_ms + 7);
        assert_eq!(
            next,
            Next::Retry(Delivery {
                attempts: 1,
                due_at_ms: d.due_at_ms + 7,
                ..d
            })
        );

        let (moved, t) = requeued(&d, Some(&d), false, EV, None, d.due_at_ms);
        assert_eq!(moved.due_at_ms, d.due_at_ms + 1);
        assert_eq!((t.dequeue, t.enqueue), (Some(d), Some(moved)));
        let (moved, _) = requeued(&d, Some(&d), false, EV, None, d.due_at_ms + 3);
        assert_eq!(moved.due_at_ms, d.due_at_ms + 3);
        // Not queued (a dead letter): nothing to collide with.
        let (moved, _) = requeued(&d, None, true, EV, None, d.due_at_ms);
        assert_eq!(moved.due_at_ms, d.due_at_ms);
    }

    #[test]
    fn success_dequeues() {
        let d = delivery(1, 0);
        let (rec, sum) = attempt(2, 204);
        let (next, t) = after_attempt(&d, EV, rec, &sum, &policy(), 0.5, 2_000);
        assert_eq!(next, Next::Delivered);
        assert_eq!(t.record.status, DeliveryStatus::Delivered);
        assert_eq!(
            (t.dequeue, t.enqueue, t.dead),
            (Some(d), None, DeadOp::None)
        );
    }

    #[test]
    fn requeue_starts_a_new_cycle() {
        let dead = delivery(2, 0);
        let (next, t) = requeued(&dead, None, true, EV, None, 50_000);
        assert_eq!(
            (next.cycle_start, next.attempts, next.due_at_ms),
            (2, 2, 50_000)
        );
        assert_eq!(t.dead, DeadOp::Remove);
        // The schedule restarts: the next failure is retried, not dead.
        let (rec, sum) = attempt(3, 500);
        let (n, _) = after_attempt(&next, EV, rec, &sum, &policy(), 0.5, 60_000);
        assert!(matches!(n, Next::Retry(_)), "{n:?}");
    }
}
