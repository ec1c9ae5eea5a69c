//! Which events of an append are sure to be accepted, decided before the writer sees them.
//!
//! Why: an event's deliveries used to start only once the writer had committed its batch.
//! The writer commits one batch at a time, and a commit waits behind anything that holds the
//! store: fjall's journal lock during a flush's sync, a memtable rotation, the previous
//! commit. Under the load bench's half-rate phase at fan-out 1 that wait was most of the
//! tail: a build that started every delivery before the append (not safe, below) kept the
//! p99 ingest-to-arrival under 10 ms in 6 runs of 6, against 1 of 6 for the same build
//! waiting, and 2 of 6 for one that answered from the writer before the commit instead.
//!
//! What makes starting early safe is knowing the writer's answer. The writer accepts an event
//! unless its `(source, id)` is a duplicate: stored within the dedup window, or in an append
//! the writer takes before it. So an append is decided here, under one lock held until it is
//! sent ([`Admission::admit`]): appends reach the writer in the order they were decided. Every
//! event of every append *claims* its key (a count per hash of the key) until the writer has
//! committed it, when the key is readable in the store (or failed to, when it never will be).
//! An event is **sure** when its key had no claim before its own and is not stored within the
//! window: then no append before it can carry the key, and the writer, told so, accepts it
//! without looking it up again. Anything else is left to the writer, as before: a key held by
//! an earlier append, a key stored, a lookup that failed, an unhealthy journal (which the
//! writer would refuse), two hashes that collide.
//!
//! A sure event can still fail to be stored, if its commit fails (an I/O error, or the disk
//! filling between this check and the writer's): its deliveries may then have been made, and
//! its sender, told to send it again, gets them made again. That is at-least-once, as for a
//! sync that fails after the deliveries started (`Staged`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use crate::journal::NewEvent;
use crate::journal::codec;

/// The fixed seed of the claims' hash: one key hashes alike in every call.
const SEED: u64 = 0x6865_7261_6c64_2121;

/// What [`Admission::admit`] decided for one append, carried to the writer with it.
#[derive(Debug, Default)]
pub(super) struct Decided {
    /// One per event (empty: none is sure).
    pub sure: Vec<bool>,
    /// The claims the writer gives back once it has committed the append.
    pub claims: Vec<u64>,
}

/// The dedup decisions taken ahead of the writer.
pub(super) struct Admission {
    window_ms: i64,
    /// Held from deciding an append until it is sent. Its value is a buffer for a key.
    order: Mutex<Vec<u8>>,
    /// Hash of `(source, id)` → how many appends sent and not yet committed carry it. The
    /// keys are hashes already: foldhash only spreads them (SipHash cost ~60 instructions an
    /// event, for nothing: nobody outside picks these keys).
    claims: Mutex<HashMap<u64, u32, foldhash::fast::RandomState>>,
    hasher: foldhash::fast::FixedState,
}

impl Admission {
    /// `window_ms`: `[ingest] dedup_window` (0: no dedup, every event of a healthy journal
    /// is sure).
    pub fn new(window_ms: i64) -> Self {
        Admission {
            window_ms,
            order: Mutex::new(Vec::new()),
            claims: Mutex::new(HashMap::default()),
            hasher: foldhash::fast::FixedState::with_seed(SEED),
        }
    }

    /// Decides `events` and sends them with `send`, in decision order. `stored(key)` reads
    /// the store's dedup entry for `key`: `Ok(Some(accepted_at_ms))` when there is one.
    /// `healthy`: whether the writer would take an append now. Returns what `send` returns.
    pub fn admit<R>(
        &self,
        events: Vec<NewEvent>,
        healthy: bool,
        now_ms: i64,
        stored: impl Fn(&[u8]) -> Result<Option<i64>, ()>,
        send: impl FnOnce(Vec<NewEvent>, Decided) -> R,
    ) -> R {
        if self.window_ms <= 0 {
            let sure = if healthy {
                vec![true; events.len()]
            } else {
                Vec::new()
            };
            let decided = Decided {
                sure,
                claims: Vec::new(),
            };
            return send(events, decided);
        }
        let mut key = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let claims: Vec<u64> = events
            .iter()
            .map(|ne| self.hasher.hash_one((&*ne.event.source, &*ne.event.id)))
            .collect();
        let mut sure = {
            let mut held = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            claims
                .iter()
                .map(|&h| {
                    let n = held.entry(h).or_insert(0);
                    *n += 1;
                    healthy && *n == 1
                })
                .collect::<Vec<_>>()
        };
        for (s, ne) in sure.iter_mut().zip(&events) {
            if *s {
                key.clear();
                codec::dedup_key_into(&ne.event.source, &ne.event.id, &mut key);
                *s = unclaimed_is_sure(stored(&key), now_ms, self.window_ms);
            }
        }
        send(events, Decided { sure, claims })
    }

    /// The writer has committed (or failed to commit) the appends that carried `claims`.
    pub fn release(&self, claims: &[u64]) {
        if claims.is_empty() {
            return;
        }
        let mut held = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for h in claims {
            if let Some(n) = held.get_mut(h) {
                *n -= 1;
                if *n == 0 {
                    held.remove(h);
                }
            }
        }
    }

    /// Keys claimed right now (tests).
    #[cfg(test)]
    pub fn claimed(&self) -> usize {
        self.claims.lock().unwrap().len()
    }
}

/// Whether an event whose key no earlier append claims is sure to be accepted, given what the
/// store holds for its key: nothing, or an entry too old to count.
fn unclaimed_is_sure(stored: Result<Option<i64>, ()>, now_ms: i64, window_ms: i64) -> bool {
    match stored {
        Ok(None) => true,
        Ok(Some(accepted_at)) => !within_window(now_ms, accepted_at, window_ms),
        // The writer treats a failed read as "not seen"; it decides this one.
        Err(()) => false,
    }
}

/// Whether a dedup entry accepted at `accepted_at` still holds at `now`.
pub(super) fn within_window(now: i64, accepted_at: i64, window_ms: i64) -> bool {
    now.saturating_sub(accepted_at) <= window_ms
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::model::{Event, InputKind};

    fn ne(source: &str, id: &str) -> NewEvent {
        NewEvent {
            event: Arc::new(Event {
                seq: 1,
                id: id.into(),
                source: source.into(),
                kind: InputKind::Sitecore,
                event_type: "t".into(),
                time: None,
                received_at_ms: 0,
                attributes: Default::default(),
                payload: Bytes::new(),
            }),
            deliveries: Vec::new(),
        }
    }

    fn decide(a: &Admission, events: Vec<NewEvent>, healthy: bool) -> Decided {
        a.admit(
            events,
            healthy,
            1_000,
            |k| Ok((k == codec::dedup_key("s", "stored").as_slice()).then_some(900)),
            |_, d| d,
        )
    }

    #[test]
    fn sure_only_for_the_first_claim_of_a_key_not_stored() {
        let a = Admission::new(500);
        let d = decide(
            &a,
            vec![ne("s", "a"), ne("s", "a"), ne("s", "stored"), ne("t", "a")],
            true,
        );
        assert_eq!(d.sure, vec![true, false, false, true]);
        assert_eq!(d.claims.len(), 4);
        // Held until released: the same key in a later append is not sure.
        let later = decide(&a, vec![ne("s", "a"), ne("s", "b")], true);
        assert_eq!(later.sure, vec![false, true]);
        a.release(&d.claims);
        // Still held by `later`.
        assert_eq!(decide(&a, vec![ne("s", "a")], true).sure, vec![false]);
        a.release(&later.claims);
        // The last one above still holds "a"; nothing else is held once it goes.
        assert_eq!(a.claimed(), 1);
    }

    #[test]
    fn an_unhealthy_journal_decides_nothing_but_claims() {
        let a = Admission::new(500);
        let d = decide(&a, vec![ne("s", "a")], false);
        assert_eq!(d.sure, vec![false]);
        assert_eq!(decide(&a, vec![ne("s", "a")], true).sure, vec![false]);
        let off = Admission::new(0);
        assert!(decide(&off, vec![ne("s", "a")], false).sure.is_empty());
        let d = decide(&off, vec![ne("s", "a"), ne("s", "a")], true);
        assert_eq!((d.sure, d.claims.len()), (vec![true, true], 0));
    }

    #[test]
    fn stored_entries_count_within_the_window() {
        let cases = [
            (Ok(None), true),
            (Ok(Some(1_000)), false),
            (Ok(Some(500)), false),
            (Ok(Some(499)), true),
            (Err(()), false),
        ];
        for (stored, want) in cases {
            assert_eq!(unclaimed_is_sure(stored, 1_000, 500), want, "{stored:?}");
        }
    }
}
