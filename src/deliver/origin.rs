//! Requests in flight per origin (`[delivery] max_in_flight_per_origin`).
//!
//! `max_in_flight_per_endpoint` bounds one subscription, but a CMS often points many
//! subscriptions at one receiver (a search indexer, a cache purger), one per content type or
//! site. Without a bound per origin, 500 subscriptions to one host send it 500 × 16 requests
//! at once, and take up to `[delivery] max_connections` (all of Herald's) doing so. So an
//! attempt takes a turn of its origin (scheme, host, port: what a connection is shared by)
//! for the time of its exchange.
//!
//! A lane that finds its origin's turns taken gives back its connection slot while it waits
//! (see `dispatch::run_attempt`): lanes of other receivers then find slots, so a busy
//! receiver holds at most its own turns' worth of Herald's connections and never starves
//! the others. The wait is before the attempt's timeout starts, as the slot's is.
//!
//! Turns are a semaphore per origin in a map. The map is pruned of origins nobody holds or
//! waits for whenever it has doubled since the last pruning, so templated URLs that name
//! many hosts cost memory only while they are in use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use http::Uri;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::pool::OriginKey;

/// Fewer origins than this are never pruned.
const PRUNE_FROM: usize = 1024;

/// The turns of every origin.
pub(super) struct Origins {
    per_origin: usize,
    /// Whether the limit can bind at all (see [`Origins::new`]).
    binds: bool,
    turns: DashMap<OriginKey, Arc<OriginTurns>, foldhash::fast::RandomState>,
    /// Origins left after the last pruning: the map is pruned again at twice as many.
    pruned_to: AtomicUsize,
}

/// The origin a lane took its last turn of, and its turns. A lane sends to one receiver
/// nearly always, so on all but its first attempt it compares the URL with this instead of
/// hashing the origin and locking a shard of the map (callgrind, fan-out 10: the map alone
/// cost ~190 instructions per delivery, ~0.6 %). The reference also keeps the origin from
/// being pruned while the lane runs. One pointer: a lane's future is copied when it is
/// spawned.
#[derive(Default)]
pub(super) struct Recent(Option<Arc<OriginTurns>>);

/// One origin and its turns.
pub(super) struct OriginTurns {
    key: OriginKey,
    turns: Semaphore,
}

/// Whether an attempt may go now. Both borrow the semaphore from the caller's [`Recent`],
/// which holds it: no reference count is touched per attempt.
pub(super) enum Turn<'r> {
    /// Its origin's turn, held until it is dropped; `None` for a URL without an origin, which
    /// the client refuses anyway.
    Go(Option<SemaphorePermit<'r>>),
    /// Every turn of its origin is taken: wait on this.
    Wait(&'r Semaphore),
}

impl Origins {
    /// Turns of `per_origin` each. With `connections` attempts in flight at most in all
    /// (`[delivery] max_connections`), a limit of that or more never binds, and is not kept.
    pub(super) fn new(per_origin: usize, connections: usize) -> Self {
        Origins {
            per_origin: per_origin.max(1),
            binds: per_origin < connections,
            turns: DashMap::default(),
            pruned_to: AtomicUsize::new(0),
        }
    }

    /// Takes a turn of `uri`'s origin if one is free. `recent` is the caller's last origin.
    pub(super) fn try_take<'r>(&self, uri: &Uri, recent: &'r mut Recent) -> Turn<'r> {
        if !self.binds {
            return Turn::Go(None);
        }
        if recent.0.as_deref().is_none_or(|o| !o.key.is_of(uri)) {
            let Some(key) = OriginKey::of(uri) else {
                return Turn::Go(None);
            };
            // A read lock on the map's shard for a known origin; the entry is made once.
            let origin = match self.turns.get(&key) {
                Some(o) => Arc::clone(&o),
                None => self.insert(key),
            };
            recent.0 = Some(origin);
        }
        match recent.0.as_deref() {
            Some(o) => match o.turns.try_acquire() {
                Ok(permit) => Turn::Go(Some(permit)),
                Err(_) => Turn::Wait(&o.turns),
            },
            None => Turn::Go(None),
        }
    }

    fn insert(&self, key: OriginKey) -> Arc<OriginTurns> {
        let origin = Arc::clone(&self.turns.entry(key.clone()).or_insert_with(|| {
            Arc::new(OriginTurns {
                key,
                turns: Semaphore::new(self.per_origin),
            })
        }));
        let len = self.turns.len();
        if len >= PRUNE_FROM && len >= 2 * self.pruned_to.load(Ordering::Relaxed) {
            self.prune();
        }
        origin
    }

    /// Forgets the origins no lane holds (a turn borrows its lane's reference). Each entry is
    /// looked at under its shard's lock, which a taker also holds while it clones the
    /// reference: an origin held only by the map has no turn out and no waiter.
    fn prune(&self) {
        self.turns.retain(|_, origin| Arc::strong_count(origin) > 1);
        self.pruned_to.store(self.turns.len(), Ordering::Relaxed);
    }

    /// Origins with an entry (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.turns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// A turn taken, or `None` for a URL without an origin; panics if it had to wait.
    fn go(t: Turn<'_>) -> Option<SemaphorePermit<'_>> {
        match t {
            Turn::Go(p) => p,
            Turn::Wait(_) => panic!("had to wait"),
        }
    }

    fn waits(t: Turn<'_>) -> bool {
        matches!(t, Turn::Wait(_))
    }

    /// Turns are per origin: a path, a query or another lane share them; another port or
    /// scheme does not.
    #[test]
    fn an_origin_has_its_own_turns() {
        let o = Origins::new(2, 100);
        let mut lanes: Vec<Recent> = (0..6).map(|_| Recent::default()).collect();
        let [l0, l1, l2, l3, l4, l5] = &mut lanes[..] else {
            unreachable!()
        };
        let a = go(o.try_take(&uri("http://hooks.example:8080/a"), l0));
        let b = go(o.try_take(&uri("http://hooks.example:8080/b?x=1"), l1));
        assert!(a.is_some() && b.is_some());
        assert!(waits(o.try_take(&uri("http://hooks.example:8080/c"), l2)));
        assert!(go(o.try_take(&uri("http://hooks.example:8081/a"), l3)).is_some());
        assert!(go(o.try_take(&uri("https://hooks.example:8080/a"), l4)).is_some());
        drop(a);
        assert!(go(o.try_take(&uri("http://hooks.example:8080/d"), l5)).is_some());
        drop(b);
    }

    /// A lane's recent origin is used only for URLs of that origin: one that moves between
    /// receivers (a templated host) takes each one's turns.
    #[test]
    fn the_recent_origin_is_only_used_for_its_own_urls() {
        let o = Origins::new(1, 100);
        let (mut holder_a, mut holder_b, mut lane) =
            (Recent::default(), Recent::default(), Recent::default());
        let a = go(o.try_take(&uri("http://a.example/1"), &mut holder_a));
        let b = go(o.try_take(&uri("http://b.example/1"), &mut holder_b));
        assert!(a.is_some() && b.is_some(), "a turn of each");
        assert!(waits(o.try_take(&uri("http://b.example/2"), &mut lane)));
        assert!(waits(o.try_take(&uri("http://a.example/2"), &mut lane)));
        drop(a);
        assert!(go(o.try_take(&uri("http://a.example/3"), &mut lane)).is_some());
        assert!(go(o.try_take(&uri("https://a.example/3"), &mut lane)).is_some());
        drop(b);
    }

    /// A limit of `max_connections` or more cannot bind: nothing is kept, nobody waits.
    #[test]
    fn a_limit_that_cannot_bind_is_not_kept() {
        let o = Origins::new(4, 4);
        let mut lanes: Vec<Recent> = (0..8).map(|_| Recent::default()).collect();
        let turns: Vec<_> = lanes
            .iter_mut()
            .map(|l| go(o.try_take(&uri("http://a.example/"), l)))
            .collect();
        assert!(turns.iter().all(Option::is_none), "no turn is taken");
        assert_eq!(o.len(), 0);
    }

    /// A URL without an origin goes without a turn (the client refuses it).
    #[test]
    fn a_url_without_an_origin_takes_no_turn() {
        let o = Origins::new(1, 100);
        assert!(go(o.try_take(&uri("/relative"), &mut Recent::default())).is_none());
        assert_eq!(o.len(), 0);
    }

    /// Once the map has doubled, origins nobody uses are forgotten; one that a lane still
    /// holds stays.
    #[test]
    fn unused_origins_are_pruned() {
        let o = Origins::new(1, 100);
        let mut holder = Recent::default();
        let held = go(o.try_take(&uri("http://held.example/"), &mut holder));
        for i in 0..PRUNE_FROM - 2 {
            let mut lane = Recent::default();
            drop(o.try_take(&uri(&format!("http://h{i}.example/")), &mut lane));
        }
        assert_eq!(
            o.len(),
            PRUNE_FROM - 1,
            "below the pruning size nothing goes"
        );
        let mut last = Recent::default();
        drop(o.try_take(&uri("http://last.example/"), &mut last));
        assert_eq!(o.len(), 2, "the held origin and the one just taken");
        assert!(
            waits(o.try_take(&uri("http://held.example/x"), &mut Recent::default())),
            "the held origin's turn was forgotten"
        );
        drop(held);
    }
}
