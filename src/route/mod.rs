//! The topic index: event → the enabled subscriptions whose filters match (DESIGN §1, §3).
//!
//! It sits between the journal and the renderers and runs once per accepted event, on every
//! ingest thread at once, with up to millions of subscriptions stored. So the read path takes no
//! lock, allocates nothing, and costs what the *matching* subscriptions cost plus small constants
//! (the event type's length and its number of attributes) — never the number stored.
//!
//! # Layout
//!
//! Every filter is stored under keys made of one type pattern (`*`, an exact type, or a trailing
//! wildcard prefix; no types counts as `*`) and at most one attribute condition `(name, value)`.
//! The writer picks one condition per filter — the one that is most selective by name and whose
//! keys are least crowded now — and stores the filter once per type × value of that condition.
//! Routing an event looks up, for each type pattern that can match the event type (the exact
//! lower-cased type, each of its prefixes whose length some stored prefix pattern has, and `*`),
//! the key with no attribute and the key with each of the event's `(name, value)` pairs; every
//! candidate is then verified with [`Filter::matches`], the single definition of matching, so
//! the index only has to never *miss* — an extra candidate is just rejected.
//!
//! Keys are 64-bit SipHash digests under a per-index random key (attackers cannot aim at one
//! key), so a key costs 8 bytes, not three strings. A small second map records, per type pattern,
//! which attribute names have entries (a 64-bit name mask), so type patterns and attributes with
//! nothing stored cost one probe of a small, cache-resident map instead of a miss in the big one.
//!
//! # Concurrency
//!
//! Both maps are `papaya` lock-free hash maps; a key's entries are an immutable [`Bucket`] that
//! the single writer (writes are rare and serialized by a mutex) replaces whole. A write that
//! moves a subscription between keys first *adds* its new entries, then bumps `phase`, then
//! *removes* the old ones. A reader whose route call did not straddle a bump saw, for every key,
//! either all additions or no removals, so it cannot miss a subscription that matched before and
//! after the write; a reader that did straddle one simply routes again (only filter-changing
//! updates bump, so this is rare). Duplicates (a subscription found through several keys or
//! filters, or in both versions mid-update) are removed per call. Replaced buckets and map
//! entries are reclaimed by `seize` once no reader can still see them.

mod bucket;
mod keys;
pub mod store;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::RandomState;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use papaya::Guard;
use smallvec::SmallVec;

use crate::model::filter::Filter;
use crate::model::{Event, Subscription, SubscriptionId};

use bucket::{Bucket, Slot, WIDTH};
use keys::{
    KIND_ANY, KIND_EXACT, KIND_PREFIX, KeyHasher, MAX_VALUES, NO_ATTR_BIT, NO_COND, NO_TYPE,
    PassThrough, WHOLE, name_bit, prefix_bit, slot_key, type_key_parts, weight,
};

/// Subscriptions indexed by topic, for routing, plus by id, for the management API.
///
/// `T` is what the dispatcher keeps per subscription (the subscription itself, or it plus
/// compiled templates); it is stored and handed out as `Arc<T>`.
pub struct TopicIndex<T> {
    /// Bucket key (type pattern + optional attribute condition) → the entries stored under it.
    topics: papaya::HashMap<u64, Bucket<T>, PassThrough>,
    /// Type key → which attribute names have entries under that type pattern. Shares the
    /// collector of `topics`, so a route call pins once for both.
    types: papaya::HashMap<u64, TypeInfo, PassThrough>,
    /// Bit `l - 1` is set while some prefix pattern of byte length `l` is stored; bit 63 stands
    /// for every length from 64 up. Tells `route` which prefixes of the event type to look up.
    prefix_lens: AtomicU64,
    /// Bumped between the add and the remove half of an update that moves entries between keys;
    /// a route call that sees it change routes again.
    phase: AtomicU64,
    /// Lock-free `get`.
    by_id: papaya::HashMap<SubscriptionId, Arc<T>>,
    count: AtomicUsize,
    /// The SipHash key for bucket and type keys.
    seed: RandomState,
    writer: Mutex<Writer<T>>,
}

/// State only writers touch.
struct Writer<T> {
    /// Every stored item in id order, for `list` (and the source of truth for writes).
    ordered: BTreeMap<SubscriptionId, Arc<T>>,
    /// For buckets larger than one leaf: where each item's entries sit, so removing one item from
    /// a bucket of a million costs `O(log n)`, not a scan. Keyed by bucket key, then item pointer.
    positions: HashMap<u64, HashMap<usize, SmallVec<[u32; 2]>>>,
    /// Entries per (type key, name-mask bit): a bit is cleared when its count drops to zero.
    type_bits: HashMap<(u64, u64), u64>,
    /// Entries per `prefix_lens` bit.
    prefix_counts: [u64; 64],
    /// Reused buffer of candidate keys.
    scratch: Vec<u64>,
}

/// Which attribute names have entries under one type pattern.
#[derive(Default)]
struct TypeInfo {
    /// [`NO_ATTR_BIT`], plus [`name_bit`] of each attribute name used in a key.
    mask: AtomicU64,
}

impl<T> Default for TopicIndex<T>
where
    T: AsRef<Subscription> + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TopicIndex<T>
where
    T: AsRef<Subscription> + Send + Sync + 'static,
{
    pub fn new() -> Self {
        let collector = Arc::new(seize::Collector::new());
        TopicIndex {
            topics: papaya::HashMap::builder()
                .hasher(PassThrough)
                .shared_collector(Arc::clone(&collector))
                .build(),
            types: papaya::HashMap::builder()
                .hasher(PassThrough)
                .shared_collector(collector)
                .build(),
            prefix_lens: AtomicU64::new(0),
            phase: AtomicU64::new(0),
            by_id: papaya::HashMap::new(),
            count: AtomicUsize::new(0),
            seed: RandomState::new(),
            writer: Mutex::new(Writer {
                ordered: BTreeMap::new(),
                positions: HashMap::new(),
                type_bits: HashMap::new(),
                prefix_counts: [0; 64],
                scratch: Vec::new(),
            }),
        }
    }

    /// Inserts `item`, or replaces the stored subscription with its id; returns the old one.
    pub fn upsert(&self, item: Arc<T>) -> Option<Arc<T>> {
        let mut w = self.lock();
        let guard = self.topics.guard();
        let id = sub(&item).id;
        let old = w.ordered.insert(id, Arc::clone(&item));
        self.by_id.pin().insert(id, Arc::clone(&item));
        if old.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        let old_routed = old.as_ref().filter(|o| sub(o).enabled);
        match (old_routed, sub(&item).enabled) {
            // Same filters (a new URL, name, secret…): swap the pointer in place, key by key.
            // Each key shows the old or the new version, and both verify alike.
            (Some(o), true) if sub(o).filters == sub(&item).filters => {
                self.replace_slots(&mut w, o, &item, &guard);
            }
            (o, routed) => {
                if routed {
                    self.add_slots(&mut w, &item, &guard);
                }
                if let Some(o) = o {
                    if routed {
                        // Additions happen-before the bump, removals after it (SeqCst RMW).
                        self.phase.fetch_add(1, Ordering::SeqCst);
                    }
                    self.remove_slots(&mut w, o, &guard);
                }
            }
        }
        old
    }

    /// Removes the subscription with `id`; returns it.
    pub fn remove(&self, id: &SubscriptionId) -> Option<Arc<T>> {
        let mut w = self.lock();
        let old = w.ordered.remove(id)?;
        self.by_id.pin().remove(id);
        self.count.fetch_sub(1, Ordering::Relaxed);
        if sub(&old).enabled {
            let guard = self.topics.guard();
            self.remove_slots(&mut w, &old, &guard);
        }
        Some(old)
    }

    /// The stored subscription with `id`, enabled or not. Lock-free.
    pub fn get(&self, id: &SubscriptionId) -> Option<Arc<T>> {
        self.by_id.pin().get(id).cloned()
    }

    /// Number of stored subscriptions, enabled or not.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscriptions in id order after `after` (exclusive), at most `limit` that satisfy `keep` —
    /// for API paging. `O(log n)` to find the start, then one step per subscription looked at.
    /// Holds the writer lock while it runs, so `keep` must not write to this index.
    pub fn list(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<Arc<T>> {
        let w = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        w.ordered
            .range((start, Bound::Unbounded))
            .map(|(_, item)| item)
            .filter(|item| keep(item))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Appends every enabled subscription that matches `event` to `out`, each once (what `out`
    /// held before is left alone). Lock-free; allocates only if the event type has upper-case
    /// letters or `out` must grow.
    pub fn route(&self, event: &Event, out: &mut Vec<Arc<T>>) {
        let type_lc = ascii_lower(&event.event_type);
        let start = out.len();
        let guard = self.topics.guard();
        loop {
            let phase = self.phase.load(Ordering::Acquire);
            self.collect(event, &type_lc, out, &guard);
            // Every load above is ordered before the re-check: if this call observed any removal
            // of an update, it also observes that update's bump and retries.
            fence(Ordering::Acquire);
            if self.phase.load(Ordering::Relaxed) == phase {
                break;
            }
            out.truncate(start);
        }
        dedup_by_id(out, start);
    }

    // ---- read path -------------------------------------------------------------------------

    fn collect(&self, event: &Event, type_lc: &str, out: &mut Vec<Arc<T>>, guard: &impl Guard) {
        let ty = type_lc.as_bytes();
        self.collect_type(KIND_ANY, b"", event, type_lc, out, guard);
        self.collect_type(KIND_EXACT, ty, event, type_lc, out, guard);
        let lens = self.prefix_lens.load(Ordering::Acquire);
        // Lengths 1..=63, one bit each, in increasing order.
        let mut short = lens & !(1 << 63);
        while short != 0 {
            let l = short.trailing_zeros() as usize + 1;
            if l > ty.len() {
                break;
            }
            short &= short - 1;
            // A pattern is whole UTF-8, so it can only equal a prefix cut at a char boundary.
            if type_lc.is_char_boundary(l) {
                self.collect_type(KIND_PREFIX, &ty[..l], event, type_lc, out, guard);
            }
        }
        if lens & (1 << 63) != 0 {
            for l in 64..=ty.len() {
                if type_lc.is_char_boundary(l) {
                    self.collect_type(KIND_PREFIX, &ty[..l], event, type_lc, out, guard);
                }
            }
        }
    }

    fn collect_type(
        &self,
        kind: u8,
        pattern: &[u8],
        event: &Event,
        type_lc: &str,
        out: &mut Vec<Arc<T>>,
        guard: &impl Guard,
    ) {
        let h = KeyHasher::for_type(&self.seed, kind, pattern);
        let Some(info) = self.types.get(&h.type_key(), guard) else {
            return;
        };
        let mask = info.mask.load(Ordering::Acquire);
        if mask & NO_ATTR_BIT != 0 {
            self.scan(h.bucket_key(None), event, type_lc, out, guard);
        }
        if mask & !NO_ATTR_BIT != 0 {
            for (name, value) in &event.attributes {
                if mask & name_bit(name) != 0 {
                    self.scan(
                        h.bucket_key(Some((name, value))),
                        event,
                        type_lc,
                        out,
                        guard,
                    );
                }
            }
        }
    }

    fn scan(
        &self,
        key: u64,
        event: &Event,
        type_lc: &str,
        out: &mut Vec<Arc<T>>,
        guard: &impl Guard,
    ) {
        if let Some(bucket) = self.topics.get(&key, guard) {
            bucket.for_each(|slot| {
                if verify(slot, event, type_lc) {
                    out.push(Arc::clone(&slot.item));
                }
            });
        }
    }

    // ---- write path ------------------------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Writer<T>> {
        // Writers leave the index consistent at every step they can fail at (they cannot), so a
        // poisoned lock only means another thread panicked elsewhere while holding it.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `item`'s entries under the keys chosen for each of its filters.
    fn add_slots(&self, w: &mut Writer<T>, item: &Arc<T>, guard: &impl Guard) {
        let s = sub(item);
        if s.filters.is_empty() || s.filters.len() >= usize::from(WHOLE) {
            let slot = Slot {
                item: Arc::clone(item),
                filter: WHOLE,
                ty: NO_TYPE,
                cond: NO_COND,
                val: 0,
            };
            self.add_slot(w, s, slot, guard);
            return;
        }
        for (fi, f) in s.filters.iter().enumerate() {
            let typed = !f.types.is_empty() && f.types.len() < usize::from(NO_TYPE);
            let tys: SmallVec<[u16; 4]> = if typed {
                (0..f.types.len() as u16).collect()
            } else {
                SmallVec::from_elem(NO_TYPE, 1)
            };
            let cond = self.choose_condition(f, &tys, guard);
            let vals = cond
                .and_then(|c| f.attributes.get(usize::from(c)))
                .map_or(1, |c| c.values.len());
            for &ty in &tys {
                for val in 0..vals {
                    let slot = Slot {
                        item: Arc::clone(item),
                        filter: fi as u16,
                        ty,
                        cond: cond.unwrap_or(NO_COND),
                        val: val as u16,
                    };
                    self.add_slot(w, s, slot, guard);
                }
            }
        }
    }

    /// Picks the attribute condition of `f` to index on: the lowest `weight(name) × Σ (1 +
    /// entries already under the key)` over the keys it would use. The weight ranks names by how
    /// few events usually carry a given value (an entity id beats a language); the crowding term
    /// steers filters away from keys that many others already share (the one tenant every filter
    /// names) toward their more distinctive condition. `None`: the no-attribute key.
    fn choose_condition(&self, f: &Filter, tys: &[u16], guard: &impl Guard) -> Option<u8> {
        let hashers: SmallVec<[KeyHasher; 4]> = tys
            .iter()
            .map(|&ty| {
                let (kind, pattern) = type_key_parts(f, ty);
                KeyHasher::for_type(&self.seed, kind, pattern)
            })
            .collect();
        let mut best: Option<(u64, u8)> = None;
        for (ci, c) in f.attributes.iter().enumerate().take(usize::from(NO_COND)) {
            if c.values.len() >= MAX_VALUES {
                continue;
            }
            let mut crowd = 0u64;
            for h in &hashers {
                for v in &c.values {
                    let key = h.bucket_key(Some((&c.name, v)));
                    let len = self.topics.get(&key, guard).map_or(0, |b| b.len() as u64);
                    crowd = crowd.saturating_add(1 + len);
                }
            }
            let cost = crowd.saturating_mul(weight(&c.name));
            if best.is_none_or(|(b, _)| cost < b) {
                best = Some((cost, ci as u8));
            }
        }
        best.map(|(_, ci)| ci)
    }

    /// Publishes one entry: the type's name bit and prefix length first, then the entry, so a
    /// reader that can see the entry can also find its way to it.
    fn add_slot(&self, w: &mut Writer<T>, s: &Subscription, slot: Slot<T>, guard: &impl Guard) {
        let (kind, pattern, attr) = slot_key(s, &slot);
        let h = KeyHasher::for_type(&self.seed, kind, pattern);
        let type_key = h.type_key();
        let bit = attr.map_or(NO_ATTR_BIT, |(name, _)| name_bit(name));
        let n = w.type_bits.entry((type_key, bit)).or_insert(0);
        *n += 1;
        if *n == 1 {
            let info = self
                .types
                .get_or_insert_with(type_key, TypeInfo::default, guard);
            info.mask.fetch_or(bit, Ordering::SeqCst);
        }
        if kind == KIND_PREFIX {
            let b = prefix_bit(pattern.len());
            w.prefix_counts[b] += 1;
            if w.prefix_counts[b] == 1 {
                self.prefix_lens.fetch_or(1 << b, Ordering::SeqCst);
            }
        }
        self.bucket_push(w, h.bucket_key(attr), slot, guard);
    }

    /// Removes every entry of `old` (matched by pointer): the keys it may sit under are every key
    /// any choice of condition could have produced, so no per-subscription record is kept.
    fn remove_slots(&self, w: &mut Writer<T>, old: &Arc<T>, guard: &impl Guard) {
        let s = sub(old);
        let mut keys = std::mem::take(&mut w.scratch);
        self.candidate_keys(s, &mut keys);
        let ptr = Arc::as_ptr(old) as *const () as usize;
        for &key in &keys {
            for slot in self.bucket_remove(w, key, ptr, guard) {
                self.slot_removed(w, s, &slot, guard);
            }
        }
        w.scratch = recycle(keys);
    }

    /// Points every entry of `old` at `new` instead (same filters, so same keys).
    fn replace_slots(&self, w: &mut Writer<T>, old: &Arc<T>, new: &Arc<T>, guard: &impl Guard) {
        let mut keys = std::mem::take(&mut w.scratch);
        self.candidate_keys(sub(old), &mut keys);
        for &key in &keys {
            self.bucket_replace(w, key, old, new, guard);
        }
        w.scratch = recycle(keys);
    }

    /// Every bucket key `s` can have entries under, sorted and deduplicated.
    fn candidate_keys(&self, s: &Subscription, keys: &mut Vec<u64>) {
        keys.clear();
        let any = KeyHasher::for_type(&self.seed, KIND_ANY, b"");
        keys.push(any.bucket_key(None));
        if s.filters.len() < usize::from(WHOLE) {
            for f in &s.filters {
                let mut hashers: SmallVec<[KeyHasher; 4]> = SmallVec::new();
                if f.types.is_empty() || f.types.len() >= usize::from(NO_TYPE) {
                    hashers.push(any.clone());
                } else {
                    for ty in 0..f.types.len() as u16 {
                        let (kind, pattern) = type_key_parts(f, ty);
                        hashers.push(KeyHasher::for_type(&self.seed, kind, pattern));
                    }
                }
                for h in &hashers {
                    keys.push(h.bucket_key(None));
                    for c in f.attributes.iter().take(usize::from(NO_COND)) {
                        if c.values.len() < MAX_VALUES {
                            keys.extend(c.values.iter().map(|v| h.bucket_key(Some((&c.name, v)))));
                        }
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
    }

    /// Undoes `add_slot`'s bookkeeping for an entry already taken out of its bucket.
    fn slot_removed(
        &self,
        w: &mut Writer<T>,
        s: &Subscription,
        slot: &Slot<T>,
        guard: &impl Guard,
    ) {
        let (kind, pattern, attr) = slot_key(s, slot);
        let type_key = KeyHasher::for_type(&self.seed, kind, pattern).type_key();
        let bit = attr.map_or(NO_ATTR_BIT, |(name, _)| name_bit(name));
        if let Some(n) = w.type_bits.get_mut(&(type_key, bit)) {
            *n -= 1;
            if *n == 0 {
                w.type_bits.remove(&(type_key, bit));
                if let Some(info) = self.types.get(&type_key, guard) {
                    let before = info.mask.fetch_and(!bit, Ordering::SeqCst);
                    if before & !bit == 0 {
                        self.types.remove(&type_key, guard);
                    }
                }
            }
        }
        if kind == KIND_PREFIX {
            let b = prefix_bit(pattern.len());
            w.prefix_counts[b] = w.prefix_counts[b].saturating_sub(1);
            if w.prefix_counts[b] == 0 {
                self.prefix_lens.fetch_and(!(1 << b), Ordering::SeqCst);
            }
        }
    }

    // ---- buckets ---------------------------------------------------------------------------

    fn bucket_push(&self, w: &mut Writer<T>, key: u64, slot: Slot<T>, guard: &impl Guard) {
        let ptr = slot.ptr();
        let new = match self.topics.get(&key, guard) {
            Some(b) => b.push(slot),
            None => Bucket::single(slot),
        };
        let n = new.len();
        if n > WIDTH {
            let positions = w.positions.entry(key).or_default();
            if n == WIDTH + 1 {
                // Just outgrew one leaf: start tracking positions.
                positions.clear();
                let mut i = 0u32;
                new.for_each(|s| {
                    positions.entry(s.ptr()).or_default().push(i);
                    i += 1;
                });
            } else {
                positions.entry(ptr).or_default().push((n - 1) as u32);
            }
        }
        self.topics.insert(key, new, guard);
    }

    /// Takes every entry whose item is `ptr` out of bucket `key`; returns them.
    fn bucket_remove(
        &self,
        w: &mut Writer<T>,
        key: u64,
        ptr: usize,
        guard: &impl Guard,
    ) -> SmallVec<[Slot<T>; 2]> {
        let mut removed = SmallVec::new();
        let Some(cur) = self.topics.get(&key, guard) else {
            return removed;
        };
        let new = if cur.len() <= WIDTH {
            let mut kept = Vec::with_capacity(cur.len());
            cur.for_each(|s| {
                if s.ptr() == ptr {
                    removed.push(s.clone());
                } else {
                    kept.push(s.clone());
                }
            });
            if removed.is_empty() {
                return removed;
            }
            Bucket::from_leaf(kept)
        } else {
            let Some(positions) = w.positions.get_mut(&key) else {
                return removed;
            };
            let Some(mut mine) = positions.remove(&ptr) else {
                return removed;
            };
            // Highest first, so each one is either the last entry or gets the last entry moved
            // into its place (the last entry is never one of ours still to come).
            mine.sort_unstable_by(|a, b| b.cmp(a));
            let mut current = Some(cur.shallow_clone());
            for p in mine {
                let p = p as usize;
                let Some((rest, last)) = current.as_ref().and_then(Bucket::pop) else {
                    break;
                };
                let last_pos = rest.as_ref().map_or(0, Bucket::len);
                current = if p == last_pos {
                    removed.push(last);
                    rest
                } else {
                    let Some(rest) = rest else { break };
                    if let Some(gone) = rest.get(p) {
                        removed.push(gone.clone());
                    }
                    if let Some(moved) = positions.get_mut(&last.ptr())
                        && let Some(at) = moved.iter_mut().find(|at| **at as usize == last_pos)
                    {
                        *at = p as u32;
                    }
                    rest.set(p, last)
                };
            }
            current
        };
        match new {
            Some(b) => {
                if b.len() <= WIDTH {
                    w.positions.remove(&key);
                }
                self.topics.insert(key, b, guard);
            }
            None => {
                w.positions.remove(&key);
                self.topics.remove(&key, guard);
            }
        }
        removed
    }

    /// Points the entries of `old` in bucket `key` at `new`, in place.
    fn bucket_replace(
        &self,
        w: &mut Writer<T>,
        key: u64,
        old: &Arc<T>,
        new: &Arc<T>,
        guard: &impl Guard,
    ) {
        let Some(cur) = self.topics.get(&key, guard) else {
            return;
        };
        let old_ptr = Arc::as_ptr(old) as *const () as usize;
        let swap = |s: &Slot<T>| Slot {
            item: Arc::clone(new),
            ..s.clone()
        };
        let updated = if cur.len() <= WIDTH {
            let mut hit = false;
            let mut slots = Vec::with_capacity(cur.len());
            cur.for_each(|s| {
                if s.ptr() == old_ptr {
                    hit = true;
                    slots.push(swap(s));
                } else {
                    slots.push(s.clone());
                }
            });
            if !hit {
                return;
            }
            Bucket::from_leaf(slots)
        } else {
            let Some(positions) = w.positions.get_mut(&key) else {
                return;
            };
            let Some(mine) = positions.remove(&old_ptr) else {
                return;
            };
            let mut current = cur.shallow_clone();
            for &p in &mine {
                let p = p as usize;
                if let Some(next) = current.get(p).map(swap).and_then(|s| current.set(p, s)) {
                    current = next;
                }
            }
            positions.insert(Arc::as_ptr(new) as *const () as usize, mine);
            Some(current)
        };
        if let Some(b) = updated {
            self.topics.insert(key, b, guard);
        }
    }

    /// Counts for tests: (buckets, entries, type infos, type bits, tracked large buckets).
    #[cfg(test)]
    fn shape(&self) -> (usize, usize, usize, usize, usize, u64) {
        let w = self.lock();
        let topics = self.topics.pin();
        let entries = topics.iter().map(|(_, b)| b.len()).sum();
        (
            topics.len(),
            entries,
            self.types.len(),
            w.type_bits.len(),
            w.positions.len(),
            self.prefix_lens.load(Ordering::Relaxed),
        )
    }
}

/// Whether the entry's subscription is enabled and the entry's filter matches.
#[inline]
fn verify<T: AsRef<Subscription>>(slot: &Slot<T>, event: &Event, type_lc: &str) -> bool {
    let s = sub(&slot.item);
    if !s.enabled {
        return false;
    }
    if slot.filter == WHOLE {
        return crate::model::filter::any_matches(&s.filters, event, type_lc);
    }
    s.filters
        .get(usize::from(slot.filter))
        .is_some_and(|f| f.matches(event, type_lc))
}

fn sub<T: AsRef<Subscription>>(item: &Arc<T>) -> &Subscription {
    (**item).as_ref()
}

/// `t` lower-cased, borrowed when it already is.
fn ascii_lower(t: &str) -> Cow<'_, str> {
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        Cow::Borrowed(t)
    }
}

/// Keeps one item per subscription id among `out[start..]`.
fn dedup_by_id<T: AsRef<Subscription>>(out: &mut Vec<Arc<T>>, start: usize) {
    let n = out.len() - start;
    if n < 2 {
        return;
    }
    let mut kept = start;
    if n <= 16 {
        for i in start..out.len() {
            let id = sub(&out[i]).id;
            if !out[start..kept].iter().any(|x| sub(x).id == id) {
                out.swap(kept, i);
                kept += 1;
            }
        }
    } else {
        // Many matches: sort once rather than compare every pair.
        out[start..].sort_unstable_by_key(|x| sub(x).id);
        kept += 1;
        for i in start + 1..out.len() {
            if sub(&out[i]).id != sub(&out[kept - 1]).id {
                out.swap(kept, i);
                kept += 1;
            }
        }
    }
    out.truncate(kept);
}

/// Keeps a scratch buffer's allocation unless one huge subscription inflated it.
fn recycle(mut keys: Vec<u64>) -> Vec<u64> {
    keys.clear();
    if keys.capacity() > 4096 {
        keys.shrink_to(4096);
    }
    keys
}

#[cfg(test)]
mod tests;
