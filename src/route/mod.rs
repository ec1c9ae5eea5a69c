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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use papaya::Guard;
use smallvec::SmallVec;

use crate::model::event::attr;
use crate::model::filter::{Filter, TypePattern};
use crate::model::{Event, Subscription, SubscriptionId};

use bucket::{Bucket, Slot, WIDTH};

/// `Slot::filter` for an entry that stands for the whole subscription: one with no filters
/// (it takes every event) or with more than this index can number. Verified with `any_matches`.
const WHOLE: u16 = u16::MAX;
/// `Slot::ty` for the `*` key (the filter has no types, or more than this index can number).
const NO_TYPE: u16 = u16::MAX;
/// `Slot::cond` for the key with no attribute.
const NO_COND: u8 = u8::MAX;
/// An attribute condition with this many values or more is never the indexed one.
const MAX_VALUES: usize = u16::MAX as usize;

/// Type-pattern kinds as hashed into keys.
const KIND_ANY: u8 = 0;
const KIND_EXACT: u8 = 1;
const KIND_PREFIX: u8 = 2;

/// Bit 0 of a type's name mask: entries with no attribute condition.
const NO_ATTR_BIT: u64 = 1;

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

/// The key an entry sits under: (type kind, type pattern bytes, attribute condition).
fn slot_key<'a, T>(
    s: &'a Subscription,
    slot: &Slot<T>,
) -> (u8, &'a [u8], Option<(&'a str, &'a str)>) {
    let Some(f) = s
        .filters
        .get(usize::from(slot.filter))
        .filter(|_| slot.filter != WHOLE)
    else {
        return (KIND_ANY, b"", None);
    };
    let (kind, pattern) = type_key_parts(f, slot.ty);
    let attr = (slot.cond != NO_COND)
        .then(|| f.attributes.get(usize::from(slot.cond)))
        .flatten()
        .and_then(|c| Some((&*c.name, &**c.values.get(usize::from(slot.val))?)));
    (kind, pattern, attr)
}

/// A type pattern as hashed: `*` (also an empty prefix, which matches everything), an exact
/// type, or a prefix.
fn type_key_parts(f: &Filter, ty: u16) -> (u8, &[u8]) {
    match f.types.get(usize::from(ty)).filter(|_| ty != NO_TYPE) {
        None | Some(TypePattern::Any) => (KIND_ANY, b""),
        Some(TypePattern::Prefix(p)) if p.is_empty() => (KIND_ANY, b""),
        Some(TypePattern::Exact(t)) => (KIND_EXACT, t.as_bytes()),
        Some(TypePattern::Prefix(p)) => (KIND_PREFIX, p.as_bytes()),
    }
}

/// The `prefix_lens` bit for a prefix of `len` bytes (`len ≥ 1`).
fn prefix_bit(len: usize) -> usize {
    len.clamp(1, 64) - 1
}

/// The name-mask bit for an attribute name: 1..=63 by an FNV-1a hash (bit 0 is
/// [`NO_ATTR_BIT`]). Two names may share a bit; that only costs a lookup that finds nothing.
#[inline]
fn name_bit(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    1 << (1 + h % 63)
}

/// How many events typically share one value of this attribute, relatively: the lower, the
/// better a key it makes.
fn weight(name: &str) -> u64 {
    match name {
        attr::ENTITY_ID | attr::SUBJECT => 1,
        attr::PARENT_ID | attr::OWNER => 2,
        attr::CONTENT_TYPE | attr::TEMPLATE_NAME => 4,
        attr::LANGUAGE | attr::ENVIRONMENT | attr::ENVIRONMENT_TYPE => 16,
        _ => 8,
    }
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

/// Hashes keys: the type pattern once, then each attribute condition on a copy of that state.
#[derive(Clone)]
struct KeyHasher(DefaultHasher);

impl KeyHasher {
    fn for_type(seed: &RandomState, kind: u8, pattern: &[u8]) -> Self {
        let mut h = seed.build_hasher();
        h.write_u8(kind);
        h.write_usize(pattern.len());
        h.write(pattern);
        KeyHasher(h)
    }

    fn type_key(&self) -> u64 {
        self.0.clone().finish()
    }

    fn bucket_key(&self, attr: Option<(&str, &str)>) -> u64 {
        let mut h = self.0.clone();
        match attr {
            None => h.write_u8(0),
            Some((name, value)) => {
                h.write_u8(1);
                h.write_usize(name.len());
                h.write(name.as_bytes());
                h.write_usize(value.len());
                h.write(value.as_bytes());
            }
        }
        h.finish()
    }
}

/// The maps' keys are already keyed SipHash digests: use them as they are.
#[derive(Clone, Copy, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here (`write_u64`); fold anything else anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::filter::AttributeMatch;
    use crate::model::{Dialect, Format, HttpMethod, InputKind, Version};
    use bytes::Bytes;
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;

    /// What the dispatcher would store: the subscription plus its own data.
    #[derive(Debug)]
    struct Item(Subscription);

    impl AsRef<Subscription> for Item {
        fn as_ref(&self) -> &Subscription {
            &self.0
        }
    }

    fn id(n: u32) -> SubscriptionId {
        SubscriptionId::from_bytes((u128::from(n) + 1).to_be_bytes())
    }

    fn subscription(n: u32, enabled: bool, filters: Vec<Filter>) -> Subscription {
        Subscription {
            id: id(n),
            dialect: Dialect::Native,
            tenant: None,
            name: format!("sub {n}"),
            description: None,
            enabled,
            url: format!("https://example.com/hook/{n}"),
            method: HttpMethod::Post,
            filters,
            headers: Vec::new(),
            auth: None,
            signing_secret: None,
            format: Format::CloudEvents,
            retry: None,
            timeout: None,
            disabled_reason: None,
            version: Version {
                created_by: "test".into(),
                created_at_ms: 0,
                modified_by: "test".into(),
                modified_at_ms: 0,
                version_no: 1,
            },
        }
    }

    fn item(n: u32, enabled: bool, filters: Vec<Filter>) -> Arc<Item> {
        Arc::new(Item(subscription(n, enabled, filters)))
    }

    fn filter(types: &[&str], attrs: &[(&str, &[&str])]) -> Filter {
        let mut attributes: Vec<AttributeMatch> = attrs
            .iter()
            .map(|(n, vs)| AttributeMatch {
                name: (*n).into(),
                values: vs.iter().map(|v| (*v).into()).collect(),
            })
            .collect();
        attributes.sort_by(|a, b| a.name.cmp(&b.name));
        Filter {
            types: types
                .iter()
                .map(|t| TypePattern::parse(t).expect("valid pattern"))
                .collect(),
            attributes,
        }
    }

    fn event(t: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            id: "1".into(),
            source: "test".into(),
            kind: InputKind::CloudEvent,
            event_type: t.into(),
            time: None,
            received_at_ms: 0,
            attributes: attrs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            payload: Bytes::new(),
        }
    }

    /// Routed ids, sorted; fails on a duplicate.
    fn routed(index: &TopicIndex<Item>, e: &Event) -> Vec<SubscriptionId> {
        let mut out = Vec::new();
        index.route(e, &mut out);
        let mut ids: Vec<SubscriptionId> = out.iter().map(|i| i.0.id).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "a subscription was routed twice for {e:?}");
        ids
    }

    /// The same, by brute force over every stored subscription.
    fn wanted(index: &TopicIndex<Item>, e: &Event) -> Vec<SubscriptionId> {
        let lc = e.event_type.to_ascii_lowercase();
        let mut ids: Vec<SubscriptionId> = index
            .list(None, usize::MAX, |i| i.0.wants(e, &lc))
            .iter()
            .map(|i| i.0.id)
            .collect();
        ids.sort();
        ids
    }

    fn ids(ns: &[u32]) -> Vec<SubscriptionId> {
        let mut v: Vec<_> = ns.iter().map(|&n| id(n)).collect();
        v.sort();
        v
    }

    /// An index with nothing in it has no buckets, types, bits or tracked positions.
    fn assert_empty_shape(index: &TopicIndex<Item>) {
        assert_eq!(index.shape(), (0, 0, 0, 0, 0, 0), "index not empty");
    }

    #[test]
    fn routing_table() {
        let index = TopicIndex::new();
        let subs: Vec<(u32, bool, Vec<Filter>)> = vec![
            (1, true, vec![filter(&["item:saved"], &[])]),
            (2, true, vec![filter(&["item:*"], &[])]),
            (3, true, vec![filter(&["*"], &[])]),
            (4, true, vec![]),
            (5, true, vec![filter(&[], &[("language", &["en"])])]),
            (
                6,
                true,
                vec![filter(&["item:saved"], &[("language", &["de", "en"])])],
            ),
            (
                7,
                true,
                vec![filter(
                    &["item:saved"],
                    &[("language", &["en"]), ("entityid", &["e1"])],
                )],
            ),
            (
                8,
                true,
                vec![filter(
                    &["item:saved"],
                    &[("language", &["en"]), ("entityid", &["e2"])],
                )],
            ),
            (9, false, vec![filter(&["item:saved"], &[])]),
            (
                10,
                true,
                vec![filter(&["entry.*"], &[("contenttype", &["blog"])])],
            ),
            (
                11,
                true,
                vec![filter(&["entry.published", "entry.created"], &[])],
            ),
            (
                12,
                true,
                vec![
                    filter(&["item:added"], &[]),
                    filter(&[], &[("owner", &["bob"])]),
                ],
            ),
            (13, true, vec![filter(&["item:saved*"], &[])]),
            (14, true, vec![filter(&["i*"], &[])]),
            (
                15,
                true,
                vec![filter(&["item:saved"], &[("language", &[])])],
            ),
            (16, true, vec![filter(&["publish:*"], &[])]),
        ];
        for (n, enabled, filters) in subs {
            index.upsert(item(n, enabled, filters));
        }
        let cases: Vec<(Event, Vec<u32>)> = vec![
            (
                event("item:saved", &[("language", "en"), ("entityid", "e1")]),
                vec![1, 2, 3, 4, 5, 6, 7, 13, 14],
            ),
            (
                event("Item:Saved", &[("language", "de")]),
                vec![1, 2, 3, 4, 6, 13, 14],
            ),
            (
                event("item:added", &[("owner", "bob")]),
                vec![2, 3, 4, 12, 14],
            ),
            (
                event("item:deleted", &[("owner", "bob")]),
                vec![2, 3, 4, 12, 14],
            ),
            (
                event("entry.published", &[("contenttype", "blog")]),
                vec![3, 4, 10, 11],
            ),
            (event("entry.created", &[]), vec![3, 4, 11]),
            (
                event("publish:end", &[("language", "en")]),
                vec![3, 4, 5, 16],
            ),
            (event("ping", &[]), vec![3, 4]),
            (event("item:savedx", &[]), vec![2, 3, 4, 13, 14]),
        ];
        for (e, want) in cases {
            assert_eq!(routed(&index, &e), ids(&want), "{e:?}");
            assert_eq!(routed(&index, &e), wanted(&index, &e), "{e:?}");
        }
    }

    /// Random subscriptions and events from small pools (so that they collide often), checked
    /// against `Subscription::wants` over every subscription, through inserts, updates,
    /// enable/disable and removals.
    #[test]
    fn random_cross_check_against_brute_force() {
        const TYPES: &[&str] = &[
            "item:saved",
            "item:added",
            "item:deleted",
            "Item:Saved",
            "entry.published",
            "entry.created",
            "publish:end",
            "ping",
            "sitecore.backbone.messages.audit.created",
        ];
        const PATTERNS: &[&str] = &[
            "item:saved",
            "item:added",
            "item:*",
            "entry.*",
            "entry.published",
            "*",
            "i*",
            "publish:end",
            "sitecore.*",
            "sitecore.backbone.messages.audit.created",
            "item:saved*",
            "e*",
        ];
        const NAMES: &[&str] = &["language", "contenttype", "entityid", "owner", "space"];
        const VALUES: &[&str] = &["a", "b", "c", "d"];
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let random_filter = |rng: &mut fastrand::Rng| {
            let types: Vec<&str> = (0..rng.usize(0..3))
                .map(|_| PATTERNS[rng.usize(..PATTERNS.len())])
                .collect();
            let mut names: Vec<&str> = (0..rng.usize(0..3))
                .map(|_| NAMES[rng.usize(..NAMES.len())])
                .collect();
            names.sort();
            names.dedup();
            let values: Vec<Vec<&str>> = names
                .iter()
                .map(|_| {
                    (0..rng.usize(0..4))
                        .map(|_| VALUES[rng.usize(..VALUES.len())])
                        .collect()
                })
                .collect();
            let attrs: Vec<(&str, &[&str])> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| (*n, v.as_slice()))
                .collect();
            filter(&types, &attrs)
        };
        let random_sub = |rng: &mut fastrand::Rng, n: u32| {
            let filters = (0..rng.usize(0..4)).map(|_| random_filter(rng)).collect();
            item(n, rng.u8(..10) != 0, filters)
        };
        let random_event = |rng: &mut fastrand::Rng| {
            let attrs: Vec<(&str, &str)> = (0..rng.usize(0..6))
                .map(|_| {
                    (
                        NAMES[rng.usize(..NAMES.len())],
                        VALUES[rng.usize(..VALUES.len())],
                    )
                })
                .collect();
            event(TYPES[rng.usize(..TYPES.len())], &attrs)
        };

        let index = TopicIndex::new();
        let mut routed_total = 0;
        for round in 0..30 {
            for _ in 0..60 {
                let n = rng.u32(0..400);
                match rng.u8(..10) {
                    0..=5 => {
                        index.upsert(random_sub(&mut rng, n));
                    }
                    6 | 7 => {
                        // Same filters, toggled or renamed: the in-place path.
                        if let Some(old) = index.get(&id(n)) {
                            let mut s = old.0.clone();
                            s.enabled = rng.bool();
                            s.url.push('x');
                            index.upsert(Arc::new(Item(s)));
                        }
                    }
                    _ => {
                        index.remove(&id(n));
                    }
                }
            }
            for _ in 0..40 {
                let e = random_event(&mut rng);
                let got = routed(&index, &e);
                assert_eq!(got, wanted(&index, &e), "round {round}: {e:?}");
                routed_total += got.len();
            }
        }
        assert!(
            routed_total > 1000,
            "the pools must make events match: {routed_total}"
        );
        for n in 0..400 {
            index.remove(&id(n));
        }
        assert!(index.is_empty());
        assert_empty_shape(&index);
    }

    #[test]
    fn upsert_with_new_filters_drops_the_old_entries() {
        let index = TopicIndex::new();
        let saved_en = event("item:saved", &[("language", "en")]);
        let saved_de = event("item:saved", &[("language", "de")]);
        index.upsert(item(
            1,
            true,
            vec![filter(&["item:saved"], &[("language", &["en"])])],
        ));
        assert_eq!(routed(&index, &saved_en), ids(&[1]));
        let old = index.upsert(item(
            1,
            true,
            vec![filter(&["item:saved"], &[("language", &["de"])])],
        ));
        assert!(old.is_some());
        assert_eq!(routed(&index, &saved_en), ids(&[]));
        assert_eq!(routed(&index, &saved_de), ids(&[1]));
        let (buckets, entries, types, bits, _, _) = index.shape();
        assert_eq!((buckets, entries, types, bits), (1, 1, 1, 1));

        // Repeated updates do not accumulate anything.
        for i in 0..200 {
            let lang = if i % 2 == 0 { "en" } else { "de" };
            let t = if i % 3 == 0 { "item:*" } else { "item:saved" };
            index.upsert(item(1, true, vec![filter(&[t], &[("language", &[lang])])]));
        }
        let (buckets, entries, types, bits, _, _) = index.shape();
        assert_eq!((buckets, entries, types, bits), (1, 1, 1, 1));
        assert_eq!(index.len(), 1);
        index.remove(&id(1));
        assert_empty_shape(&index);
    }

    #[test]
    fn remove_and_disable() {
        let index = TopicIndex::new();
        let e = event("item:saved", &[]);
        index.upsert(item(1, true, vec![filter(&["item:saved"], &[])]));
        index.upsert(item(2, false, vec![filter(&["item:saved"], &[])]));
        assert_eq!(routed(&index, &e), ids(&[1]));
        // Disabled: stored, listed, never routed.
        assert!(index.get(&id(2)).is_some());
        assert_eq!(index.list(None, 10, |_| true).len(), 2);
        index.upsert(item(1, false, vec![filter(&["item:saved"], &[])]));
        assert_eq!(routed(&index, &e), ids(&[]));
        assert_empty_shape(&index);
        index.upsert(item(2, true, vec![filter(&["item:saved"], &[])]));
        assert_eq!(routed(&index, &e), ids(&[2]));
        assert_eq!(index.remove(&id(2)).map(|i| i.0.id), Some(id(2)));
        assert!(index.remove(&id(2)).is_none());
        assert!(index.get(&id(2)).is_none());
        assert_eq!(routed(&index, &e), ids(&[]));
        assert_eq!(index.len(), 1);
        index.remove(&id(1));
        assert_empty_shape(&index);
    }

    #[test]
    fn a_subscription_matching_through_several_filters_is_routed_once() {
        let index = TopicIndex::new();
        index.upsert(item(
            1,
            true,
            vec![
                filter(&["item:saved", "item:*", "*"], &[]),
                filter(&[], &[("language", &["en", "de"])]),
                filter(&["item:saved"], &[("entityid", &["x"])]),
            ],
        ));
        let e = event(
            "item:saved",
            &[("language", "en"), ("language", "de"), ("entityid", "x")],
        );
        let mut out = Vec::new();
        index.route(&e, &mut out);
        assert_eq!(out.len(), 1);
        // What `out` already held is kept and not deduplicated against.
        index.route(&e, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn many_matches_are_deduplicated_by_sorting() {
        let index = TopicIndex::new();
        for n in 0..100 {
            index.upsert(item(
                n,
                true,
                vec![filter(&["item:*"], &[]), filter(&["item:saved"], &[])],
            ));
        }
        let e = event("item:saved", &[]);
        assert_eq!(routed(&index, &e).len(), 100);
    }

    #[test]
    fn wildcards_and_case() {
        let index = TopicIndex::new();
        index.upsert(item(1, true, vec![filter(&["item:*"], &[])]));
        index.upsert(item(2, true, vec![filter(&["entry.*"], &[])]));
        index.upsert(item(3, true, vec![filter(&["*"], &[])]));
        index.upsert(item(4, true, vec![filter(&[], &[])]));
        let long = "a".repeat(70);
        index.upsert(item(5, true, vec![filter(&[&format!("{long}*")], &[])]));
        index.upsert(item(6, true, vec![filter(&["é*"], &[])]));
        assert_eq!(routed(&index, &event("ITEM:Saved", &[])), ids(&[1, 3, 4]));
        assert_eq!(routed(&index, &event("item:", &[])), ids(&[1, 3, 4]));
        assert_eq!(routed(&index, &event("item", &[])), ids(&[3, 4]));
        assert_eq!(
            routed(&index, &event("entry.published", &[])),
            ids(&[2, 3, 4])
        );
        assert_eq!(routed(&index, &event("entry:published", &[])), ids(&[3, 4]));
        let longer = format!("{long}:saved");
        assert_eq!(routed(&index, &event(&longer, &[])), ids(&[3, 4, 5]));
        assert_eq!(routed(&index, &event(&long[..69], &[])), ids(&[3, 4]));
        assert_eq!(routed(&index, &event("éa", &[])), ids(&[3, 4, 6]));
        for n in 1..=6 {
            index.remove(&id(n));
        }
        assert_empty_shape(&index);
    }

    #[test]
    fn the_selective_condition_is_indexed() {
        let index = TopicIndex::new();
        for n in 0..200 {
            index.upsert(item(
                n,
                true,
                vec![filter(
                    &["item:saved"],
                    &[("language", &["en"]), ("entityid", &[&format!("e{n}")])],
                )],
            ));
        }
        // One bucket per entity id, none under language.
        let (buckets, entries, ..) = index.shape();
        assert_eq!((buckets, entries), (200, 200));
        let e = event("item:saved", &[("language", "en"), ("entityid", "e7")]);
        assert_eq!(routed(&index, &e), ids(&[7]));
    }

    #[test]
    fn large_buckets_track_positions() {
        let index = TopicIndex::new();
        let e = event("item:saved", &[]);
        let n = 3000;
        for i in 0..n {
            // Some subscriptions sit in the bucket twice.
            let filters = if i % 7 == 0 {
                vec![filter(&["item:saved"], &[]), filter(&["item:saved"], &[])]
            } else {
                vec![filter(&["item:saved"], &[])]
            };
            index.upsert(item(i, true, filters));
        }
        assert_eq!(routed(&index, &e).len(), n as usize);
        assert_eq!(index.shape().4, 1, "one large bucket tracked");
        // Remove every third, rename every fifth (in place), disable every eleventh.
        let mut expect = BTreeSet::new();
        for i in 0..n {
            if i % 3 == 0 {
                index.remove(&id(i));
            } else if i % 11 == 0 {
                let mut s = index.get(&id(i)).expect("stored").0.clone();
                s.enabled = false;
                index.upsert(Arc::new(Item(s)));
            } else {
                if i % 5 == 0 {
                    let mut s = index.get(&id(i)).expect("stored").0.clone();
                    s.name.push_str(" renamed");
                    index.upsert(Arc::new(Item(s)));
                }
                expect.insert(id(i));
            }
        }
        let mut out = Vec::new();
        index.route(&e, &mut out);
        let got: BTreeSet<_> = out.iter().map(|i| i.0.id).collect();
        assert_eq!(got, expect);
        assert_eq!(got.len(), out.len());
        // Renamed in place: routing hands out the new version.
        let renamed = (0..n)
            .filter(|i| i % 3 != 0 && i % 11 != 0 && i % 5 == 0)
            .count();
        assert_eq!(
            out.iter().filter(|i| i.0.name.ends_with("renamed")).count(),
            renamed
        );
        for i in 0..n {
            index.remove(&id(i));
        }
        assert_empty_shape(&index);
    }

    #[test]
    fn list_pages_in_id_order() {
        let index = TopicIndex::new();
        for n in (0..50).rev() {
            index.upsert(item(n, n % 2 == 0, vec![]));
        }
        let page = index.list(None, 10, |_| true);
        assert_eq!(
            page.iter().map(|i| i.0.id).collect::<Vec<_>>(),
            (0..10).map(id).collect::<Vec<_>>()
        );
        let page = index.list(Some(id(9)), 5, |i| i.0.enabled);
        assert_eq!(
            page.iter().map(|i| i.0.id).collect::<Vec<_>>(),
            [10, 12, 14, 16, 18].map(id).to_vec()
        );
        assert!(index.list(Some(id(49)), 5, |_| true).is_empty());
        assert_eq!(index.list(None, 0, |_| true).len(), 0);
    }

    /// Readers route while a writer churns: never miss a subscription that matches throughout —
    /// neither untouched ones sharing buckets with the churn, nor ones whose filters keep moving
    /// between keys while still matching — and never route one that never matches.
    #[test]
    fn readers_never_miss_during_writes() {
        let index = TopicIndex::new();
        let e = event(
            "item:saved",
            &[
                ("language", "en"),
                ("contenttype", "blog"),
                ("entityid", "e1"),
            ],
        );
        // Always matching, all sharing keys the writer rewrites.
        let matching = [
            filter(&["item:saved"], &[("entityid", &["e1"])]),
            filter(&["item:saved"], &[("contenttype", &["blog"])]),
            filter(&["item:*"], &[("language", &["en"])]),
            filter(&["item:saved"], &[]),
            filter(&[], &[("contenttype", &["blog"]), ("language", &["en"])]),
        ];
        // Never matching, in the same buckets.
        let other = [
            filter(&["item:saved"], &[("entityid", &["e2"])]),
            filter(
                &["item:saved"],
                &[("contenttype", &["blog"]), ("language", &["de"])],
            ),
            filter(&["item:*"], &[("language", &["fr"])]),
            filter(&["item:added"], &[]),
        ];
        let stable: Vec<u32> = (0..40).collect();
        let moving: Vec<u32> = (100..110).collect();
        let noise: Vec<u32> = (200..260).collect();
        for &n in &stable {
            index.upsert(item(
                n,
                true,
                vec![matching[n as usize % matching.len()].clone()],
            ));
        }
        for &n in &moving {
            index.upsert(item(n, true, vec![matching[0].clone()]));
        }
        let must: BTreeSet<SubscriptionId> = stable.iter().chain(&moving).map(|&n| id(n)).collect();
        let never: BTreeSet<SubscriptionId> = (300..310).map(id).collect();
        for n in 300..310u32 {
            index.upsert(item(n, true, vec![other[n as usize % other.len()].clone()]));
        }

        let done = AtomicBool::new(false);
        let routes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        out.clear();
                        index.route(&e, &mut out);
                        let got: BTreeSet<SubscriptionId> = out.iter().map(|i| i.0.id).collect();
                        assert_eq!(got.len(), out.len(), "duplicate routed");
                        let missing: Vec<_> = must.difference(&got).collect();
                        assert!(missing.is_empty(), "missed {missing:?}");
                        assert!(
                            got.is_disjoint(&never),
                            "routed a non-matching subscription"
                        );
                        routes.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let mut rng = fastrand::Rng::with_seed(11);
            for step in 0..6000usize {
                // Move a still-matching subscription to other keys (and sometimes two filters).
                let n = moving[step % moving.len()];
                let mut filters = vec![matching[rng.usize(..matching.len())].clone()];
                if rng.bool() {
                    filters.push(matching[rng.usize(..matching.len())].clone());
                }
                index.upsert(item(n, true, filters));
                // Churn non-matching subscriptions in the same buckets.
                let n = noise[rng.usize(..noise.len())];
                match rng.u8(..4) {
                    0 => {
                        index.remove(&id(n));
                    }
                    _ => {
                        let f = other[rng.usize(..other.len())].clone();
                        index.upsert(item(n, rng.bool(), vec![f]));
                    }
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        assert!(routes.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn helpers() {
        assert!(matches!(ascii_lower("item:saved"), Cow::Borrowed(_)));
        assert_eq!(ascii_lower("Item:Saved"), "item:saved");
        assert_eq!(prefix_bit(1), 0);
        assert_eq!(prefix_bit(63), 62);
        assert_eq!(prefix_bit(64), 63);
        assert_eq!(prefix_bit(500), 63);
        for name in ["language", "entityid", "", "x"] {
            let b = name_bit(name);
            assert_eq!(b.count_ones(), 1);
            assert_ne!(b, NO_ATTR_BIT);
        }
        assert!(weight(attr::ENTITY_ID) < weight(attr::CONTENT_TYPE));
        assert!(weight(attr::CONTENT_TYPE) < weight(attr::LANGUAGE));
    }
}
