//! Identifiers and the clock-based sequence generator.
//!
//! Subscription ids are UUIDs: the native API and Contensis show them hyphenated, Sitecore audit
//! as 32 hex digits, DatoCMS as a plain string, all the same 16 bytes. Event sequence numbers and
//! delivery ids are `u64`s taken from [`SeqGen`]: microseconds since the epoch, bumped to stay
//! strictly increasing, so they sort by time (the journal's keys are time-ordered for free) and
//! stay unique across restarts without a persisted counter (a restart never happens within the
//! same microsecond as the last id, and the journal also seeds the generator with the highest id
//! it holds).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriptionId(pub Uuid);

impl SubscriptionId {
    pub fn generate() -> Self {
        SubscriptionId(Uuid::new_v4())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        SubscriptionId(Uuid::from_bytes(b))
    }

    /// 32 lower-case hex digits, no hyphens (the Sitecore audit form).
    pub fn simple(&self) -> String {
        self.0.simple().to_string()
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for SubscriptionId {
    type Err = uuid::Error;

    /// Accepts the hyphenated, simple (32 hex) and braced forms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(SubscriptionId)
    }
}

/// A delivery: one event for one subscription. Stable across retries; it is the `webhook-id`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(pub u64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for DeliveryId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(DeliveryId)
    }
}

/// Strictly increasing, time-ordered `u64`s (microseconds since the epoch). Lock-free.
#[derive(Debug, Default)]
pub struct SeqGen {
    last: AtomicU64,
}

impl SeqGen {
    pub fn new() -> Self {
        SeqGen {
            last: AtomicU64::new(0),
        }
    }

    /// Makes every later value greater than `floor` (the highest id found in the journal).
    pub fn observe(&self, floor: u64) {
        self.last.fetch_max(floor, Ordering::AcqRel);
    }

    pub fn next(&self) -> u64 {
        self.next_block(1)
    }

    /// `n` (at least 1) consecutive values at once, returning the first: an event's sequence
    /// number followed by its deliveries' ids, so that a delivery id names its event (the
    /// journal relies on it for deliveries it stores no record of yet).
    pub fn next_block(&self, n: u64) -> u64 {
        let span = n.max(1) - 1;
        let now = crate::model::now_micros();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let first = if now > prev { now } else { prev + 1 };
            match self.last.compare_exchange_weak(
                prev,
                first + span,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return first,
                Err(actual) => prev = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_consecutive_and_never_overlap() {
        let g = std::sync::Arc::new(SeqGen::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    (0..1000u64)
                        .map(|i| (g.next_block(i % 7 + 1), i % 7 + 1))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut blocks: Vec<(u64, u64)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        blocks.sort();
        for w in blocks.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?} overlap");
        }
        let last = blocks.last().unwrap();
        assert!(g.next() >= last.0 + last.1);
        let empty = g.next_block(0);
        assert!(g.next() > empty, "an empty block still takes one value");
    }

    #[test]
    fn seq_is_strictly_increasing_and_respects_floor() {
        let g = SeqGen::new();
        let a = g.next();
        let b = g.next();
        assert!(b > a);
        g.observe(u64::MAX / 2);
        assert!(g.next() > u64::MAX / 2);
    }

    #[test]
    fn subscription_id_forms() {
        let id = SubscriptionId::generate();
        let simple = id.simple();
        assert_eq!(simple.len(), 32);
        assert_eq!(simple.parse::<SubscriptionId>().unwrap(), id);
        assert_eq!(id.to_string().parse::<SubscriptionId>().unwrap(), id);
    }
}
