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
//! the index only has to never *miss* — an extra candidate is just rejected. A subscription found
//! through several keys or filters is returned once.
//!
//! Keys are 64-bit SipHash digests under a per-index random key (attackers cannot aim at one
//! key), so a key costs 8 bytes, not three strings. A second, small map records per type pattern
//! which attribute names have entries (a 64-bit name mask), so type patterns and attributes with
//! nothing stored cost one probe of a small, cache-resident map instead of a miss in the big one.
//!
//! # Concurrency
//!
//! The whole index is one immutable `Snapshot` behind an `ArcSwap`: a route call loads it once
//! (no lock, no retry) and sees every write entirely or not at all, so a write can never make it
//! miss a subscription that matched before and after. Writes (rare) are serialized by a mutex;
//! the writer edits a private copy of the snapshot and publishes it. The maps are persistent
//! tries (`trie`) and each key's entries a persistent vector (`bucket`), so a write copies only
//! the few nodes on the paths it changes and shares the rest; superseded nodes are freed with
//! the last snapshot that uses them, and nothing grows with churn.
//!
//! # Costs
//!
//! Routing: a few SipHash digests (one per type pattern looked up and per event attribute), one
//! trie walk per key looked up (depth `log32` of the keys stored: 4 at a million), and one
//! `Filter::matches` per candidate. A write copies about four trie nodes of up to 32 children per
//! key it touches and publishes a snapshot: tens of microseconds at a million subscriptions.
//! [`TopicIndex::upsert_many`] loads a batch (start-up) with one publish, editing the nodes it
//! creates in place.
//!
//! (A concurrent hash map with in-place updates was tried first: `papaya` 0.2 slows to 0.1–3 ms
//! per operation at a million keys when the same key is removed and re-inserted, which is what
//! moving a subscription between keys does, and readers then need an add-then-remove protocol
//! with retries to never miss a moving subscription.)

mod bucket;
mod keys;
pub mod store;
mod trie;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use smallvec::SmallVec;

use crate::model::filter::Filter;
use crate::model::{Event, Subscription, SubscriptionId};

use bucket::{Bucket, Slot, WIDTH};
use keys::{
    KIND_ANY, KIND_EXACT, KIND_PREFIX, Keys, MAX_VALUES, NO_ATTR_BIT, NO_COND, NO_TYPE, WHOLE,
    bucket_key, name_bit, prefix_bit, slot_key, type_key_parts, weight,
};
use trie::Trie;

/// Subscriptions indexed by topic, for routing, plus by id, for the management API.
///
/// `T` is what the dispatcher keeps per subscription (the subscription itself, or it plus
/// compiled templates); it is stored and handed out as `Arc<T>`.
pub struct TopicIndex<T> {
    /// What readers see. Replaced whole by every write.
    current: ArcSwap<Snapshot<T>>,
    /// Derives bucket, type and id keys under this index's secret.
    keys: Keys,
    writer: Mutex<Writer<T>>,
}

/// One published state of the index.
struct Snapshot<T> {
    /// Bucket key (type pattern + optional attribute condition) → the entries stored under it.
    topics: Trie<Bucket<T>>,
    /// Type key → name mask: [`NO_ATTR_BIT`] if some entry under that type pattern has no
    /// attribute condition, plus [`name_bit`] of each attribute name used with it.
    types: Trie<u64>,
    /// Bit `l - 1` is set while some prefix pattern of byte length `l` is stored; bit 63 stands
    /// for every length from 64 up. Tells `route` which prefixes of the event type to look up.
    prefix_lens: u64,
    /// Id key → every stored subscription, enabled or not, for `get`.
    ids: Trie<Ids<T>>,
    /// Number of stored subscriptions.
    count: usize,
}

impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Snapshot {
            topics: self.topics.clone(),
            types: self.types.clone(),
            prefix_lens: self.prefix_lens,
            ids: self.ids.clone(),
            count: self.count,
        }
    }
}

/// The subscriptions under one id key: one, unless two ids' 64-bit digests collide.
enum Ids<T> {
    One(Arc<T>),
    Many(Arc<[Arc<T>]>),
}

impl<T> Clone for Ids<T> {
    fn clone(&self) -> Self {
        match self {
            Ids::One(a) => Ids::One(Arc::clone(a)),
            Ids::Many(m) => Ids::Many(Arc::clone(m)),
        }
    }
}

impl<T: AsRef<Subscription>> Ids<T> {
    fn find(&self, id: &SubscriptionId) -> Option<&Arc<T>> {
        match self {
            Ids::One(a) => (sub(a).id == *id).then_some(a),
            Ids::Many(m) => m.iter().find(|a| sub(a).id == *id),
        }
    }

    /// These with `item` added or replacing the one with its id.
    fn with(&self, item: &Arc<T>) -> Self {
        let id = sub(item).id;
        let mut all: Vec<Arc<T>> = match self {
            Ids::One(a) => vec![Arc::clone(a)],
            Ids::Many(m) => m.to_vec(),
        };
        all.retain(|a| sub(a).id != id);
        if all.is_empty() {
            return Ids::One(Arc::clone(item));
        }
        all.push(Arc::clone(item));
        Ids::Many(all.into())
    }

    /// These without `id`; `None` when nothing is left.
    fn without(&self, id: &SubscriptionId) -> Option<Self> {
        let Ids::Many(m) = self else {
            return None;
        };
        let mut rest: Vec<Arc<T>> = m.iter().filter(|a| sub(a).id != *id).cloned().collect();
        match rest.len() {
            0 => None,
            1 => rest.pop().map(Ids::One),
            _ => Some(Ids::Many(rest.into())),
        }
    }
}

/// State only writers touch.
struct Writer<T> {
    /// The snapshot being prepared; published (cloned into `current`) after every write.
    next: Snapshot<T>,
    /// Every stored item in id order, for `list`. A batch ([`TopicIndex::upsert_many`]) is
    /// merged in bulk, which packs the tree's nodes full: inserted one by one in id order (how
    /// start-up reads them) they stay about half full, some 20 bytes more per subscription.
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
    /// An empty index.
    pub fn new() -> Self {
        let empty = Snapshot {
            topics: Trie::new(),
            types: Trie::new(),
            prefix_lens: 0,
            ids: Trie::new(),
            count: 0,
        };
        TopicIndex {
            current: ArcSwap::from_pointee(empty.clone()),
            keys: Keys::new(),
            writer: Mutex::new(Writer {
                next: empty,
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
        let mut guard = self.lock();
        let w = &mut *guard;
        let old = self.apply_upsert(w, item, true);
        self.publish(w);
        old
    }

    /// Upserts every item, publishing once at the end: for loading many subscriptions at start-up
    /// (each single write publishes a snapshot; a batch shares one, and the nodes it creates are
    /// edited in place instead of being copied again). Readers see none of the batch or all of it.
    pub fn upsert_many(&self, items: impl IntoIterator<Item = Arc<T>>) {
        let mut guard = self.lock();
        let w = &mut *guard;
        let mut batch = Vec::new();
        for item in items {
            batch.push((sub(&item).id, Arc::clone(&item)));
            self.apply_upsert(w, item, false);
        }
        // `collect` sorts and bulk-builds (a later duplicate id wins, as a later upsert would);
        // `append` into an empty map is a swap, else a bulk merge.
        let mut batch: BTreeMap<SubscriptionId, Arc<T>> = batch.into_iter().collect();
        w.ordered.append(&mut batch);
        self.publish(w);
    }

    /// Removes the subscription with `id`; returns it.
    pub fn remove(&self, id: &SubscriptionId) -> Option<Arc<T>> {
        let mut guard = self.lock();
        let w = &mut *guard;
        let old = w.ordered.remove(id)?;
        let key = self.id_key(id);
        let rest = w.next.ids.get(key).and_then(|ids| ids.without(id));
        match rest {
            Some(rest) => w.next.ids.insert(key, rest),
            None => w.next.ids.remove(key),
        };
        w.next.count -= 1;
        if sub(&old).enabled {
            self.remove_slots(w, &old);
        }
        self.publish(w);
        Some(old)
    }

    /// The stored subscription with `id`, enabled or not. Lock-free.
    pub fn get(&self, id: &SubscriptionId) -> Option<Arc<T>> {
        let snap = self.current.load();
        snap.ids.get(self.id_key(id))?.find(id).cloned()
    }

    /// Number of stored subscriptions, enabled or not.
    pub fn len(&self) -> usize {
        self.current.load().count
    }

    /// Whether no subscription is stored.
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
        let snap = self.current.load();
        self.collect(&snap, event, &type_lc, out);
        dedup_by_id(out, start);
    }

    // ---- read path -------------------------------------------------------------------------

    fn collect(&self, snap: &Snapshot<T>, event: &Event, type_lc: &str, out: &mut Vec<Arc<T>>) {
        let ty = type_lc.as_bytes();
        let mut attrs = AttrHashes::new(&self.keys, event);
        let mut each = |kind, pattern: &[u8]| {
            self.collect_type(snap, kind, pattern, event, type_lc, &mut attrs, out);
        };
        each(KIND_ANY, b"");
        each(KIND_EXACT, ty);
        // Lengths 1..=63, one bit each, in increasing order.
        let mut short = snap.prefix_lens & !(1 << 63);
        while short != 0 {
            let l = short.trailing_zeros() as usize + 1;
            if l > ty.len() {
                break;
            }
            short &= short - 1;
            // A pattern is whole UTF-8, so it can only equal a prefix cut at a char boundary.
            if type_lc.is_char_boundary(l) {
                each(KIND_PREFIX, &ty[..l]);
            }
        }
        if snap.prefix_lens & (1 << 63) != 0 {
            for l in 64..=ty.len() {
                if type_lc.is_char_boundary(l) {
                    each(KIND_PREFIX, &ty[..l]);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn collect_type(
        &self,
        snap: &Snapshot<T>,
        kind: u8,
        pattern: &[u8],
        event: &Event,
        type_lc: &str,
        attrs: &mut AttrHashes<'_>,
        out: &mut Vec<Arc<T>>,
    ) {
        let ty = self.keys.ty(kind, pattern);
        let Some(&mask) = snap.types.get(ty) else {
            return;
        };
        let mut scan = |key| {
            if let Some(bucket) = snap.topics.get(key) {
                bucket.for_each(|slot| {
                    if verify(slot, event, type_lc) {
                        out.push(Arc::clone(&slot.item));
                    }
                });
            }
        };
        if mask & NO_ATTR_BIT != 0 {
            scan(bucket_key(ty, None));
        }
        if mask & !NO_ATTR_BIT != 0 {
            for i in 0..event.attributes.len() {
                if mask & attrs.bit(i) != 0
                    && let Some(hash) = attrs.hash(i)
                {
                    scan(bucket_key(ty, Some(hash)));
                }
            }
        }
    }

    // ---- write path ------------------------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Writer<T>> {
        // Every write leaves `next` consistent before it publishes, and nothing in it panics on
        // input; a poisoned lock only means another thread panicked elsewhere while holding it.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, w: &Writer<T>) {
        self.current.store(Arc::new(w.next.clone()));
    }

    fn id_key(&self, id: &SubscriptionId) -> u64 {
        self.keys.id(id)
    }

    /// The unpublished part of `upsert`.
    /// The upsert of `item` in everything but `ordered`, which it updates only when `order` is
    /// set (a batch merges its own into `ordered` at the end).
    fn apply_upsert(&self, w: &mut Writer<T>, item: Arc<T>, order: bool) -> Option<Arc<T>> {
        let id = sub(&item).id;
        let key = self.id_key(&id);
        // The previous version comes from the id map, which holds exactly what `ordered` does.
        let (old, ids) = match w.next.ids.get(key) {
            Some(ids) => (ids.find(&id).cloned(), ids.with(&item)),
            None => (None, Ids::One(Arc::clone(&item))),
        };
        w.next.ids.insert(key, ids);
        if order {
            w.ordered.insert(id, Arc::clone(&item));
        }
        if old.is_none() {
            w.next.count += 1;
        }
        let old_routed = old.as_ref().filter(|o| sub(o).enabled);
        match (old_routed, sub(&item).enabled) {
            // Same filters (a new URL, name, secret…): point the existing entries at the new
            // version instead of moving them, so the keys chosen for them stay put.
            (Some(o), true) if sub(o).filters == sub(&item).filters => {
                self.replace_slots(w, o, &item);
            }
            (o, routed) => {
                if let Some(o) = o {
                    self.remove_slots(w, o);
                }
                if routed {
                    self.add_slots(w, &item);
                }
            }
        }
        old
    }

    /// Stores `item`'s entries under the keys chosen for each of its filters.
    fn add_slots(&self, w: &mut Writer<T>, item: &Arc<T>) {
        let s = sub(item);
        if s.filters.is_empty() || s.filters.len() >= usize::from(WHOLE) {
            let slot = Slot {
                item: Arc::clone(item),
                filter: WHOLE,
                ty: NO_TYPE,
                cond: NO_COND,
                val: 0,
            };
            self.add_slot(w, s, slot);
            return;
        }
        for (fi, f) in s.filters.iter().enumerate() {
            let typed = !f.types.is_empty() && f.types.len() < usize::from(NO_TYPE);
            let tys: SmallVec<[u16; 4]> = if typed {
                (0..f.types.len() as u16).collect()
            } else {
                SmallVec::from_elem(NO_TYPE, 1)
            };
            let cond = self.choose_condition(&w.next, f, &tys);
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
                    self.add_slot(w, s, slot);
                }
            }
        }
    }

    /// Picks the attribute condition of `f` to index on: the lowest `weight(name) × Σ (1 +
    /// entries already under the key)` over the keys it would use. The weight ranks names by how
    /// few events usually carry a given value (an entity id beats a language); the crowding term
    /// steers filters away from keys that many others already share (the one tenant every filter
    /// names) toward their more distinctive condition. `None`: the no-attribute key.
    fn choose_condition(&self, snap: &Snapshot<T>, f: &Filter, tys: &[u16]) -> Option<u8> {
        let types: SmallVec<[u64; 4]> = tys
            .iter()
            .map(|&ty| {
                let (kind, pattern) = type_key_parts(f, ty);
                self.keys.ty(kind, pattern)
            })
            .collect();
        let mut best: Option<((u64, u64), u8)> = None;
        for (ci, c) in f.attributes.iter().enumerate().take(usize::from(NO_COND)) {
            if c.values.len() >= MAX_VALUES {
                continue;
            }
            let mut crowd = 0u64;
            for v in &c.values {
                let attr = self.keys.attr(&c.name, v);
                for &ty in &types {
                    let key = bucket_key(ty, Some(attr));
                    let len = snap.topics.get(key).map_or(0, |b| b.len() as u64);
                    crowd = crowd.saturating_add(1 + len);
                }
            }
            // On equal cost, the name that is rarer on events wins.
            let rank = (crowd.saturating_mul(weight(&c.name)), weight(&c.name));
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, ci as u8));
            }
        }
        best.map(|(_, ci)| ci)
    }

    /// Stores one entry and records its type's name bit and prefix length.
    fn add_slot(&self, w: &mut Writer<T>, s: &Subscription, slot: Slot<T>) {
        let (kind, pattern, attr) = slot_key(s, &slot);
        let type_key = self.keys.ty(kind, pattern);
        let bit = attr.map_or(NO_ATTR_BIT, |(name, _)| name_bit(name));
        let n = w.type_bits.entry((type_key, bit)).or_insert(0);
        *n += 1;
        if *n == 1 {
            let mask = w.next.types.get(type_key).copied().unwrap_or(0);
            w.next.types.insert(type_key, mask | bit);
        }
        if kind == KIND_PREFIX {
            let b = prefix_bit(pattern.len());
            w.prefix_counts[b] += 1;
            w.next.prefix_lens |= 1 << b;
        }
        let key = bucket_key(type_key, attr.map(|(n, v)| self.keys.attr(n, v)));
        self.bucket_push(w, key, slot);
    }

    /// Removes every entry of `old` (matched by pointer): the keys it may sit under are every key
    /// any choice of condition could have produced, so no per-subscription record is kept.
    fn remove_slots(&self, w: &mut Writer<T>, old: &Arc<T>) {
        let s = sub(old);
        let mut keys = std::mem::take(&mut w.scratch);
        self.candidate_keys(s, &mut keys);
        let ptr = Arc::as_ptr(old) as *const () as usize;
        for &key in &keys {
            for slot in self.bucket_remove(w, key, ptr) {
                self.slot_removed(w, s, &slot);
            }
        }
        w.scratch = recycle(keys);
    }

    /// Points every entry of `old` at `new` instead (same filters, so same keys).
    fn replace_slots(&self, w: &mut Writer<T>, old: &Arc<T>, new: &Arc<T>) {
        let mut keys = std::mem::take(&mut w.scratch);
        self.candidate_keys(sub(old), &mut keys);
        for &key in &keys {
            self.bucket_replace(w, key, old, new);
        }
        w.scratch = recycle(keys);
    }

    /// Every bucket key `s` can have entries under, sorted and deduplicated.
    fn candidate_keys(&self, s: &Subscription, keys: &mut Vec<u64>) {
        keys.clear();
        let any = self.keys.ty(KIND_ANY, b"");
        keys.push(bucket_key(any, None));
        if s.filters.len() < usize::from(WHOLE) {
            for f in &s.filters {
                let mut types: SmallVec<[u64; 4]> = SmallVec::new();
                if f.types.is_empty() || f.types.len() >= usize::from(NO_TYPE) {
                    types.push(any);
                } else {
                    for ty in 0..f.types.len() as u16 {
                        let (kind, pattern) = type_key_parts(f, ty);
                        types.push(self.keys.ty(kind, pattern));
                    }
                }
                keys.extend(types.iter().map(|&ty| bucket_key(ty, None)));
                for c in f.attributes.iter().take(usize::from(NO_COND)) {
                    if c.values.len() < MAX_VALUES {
                        for v in &c.values {
                            let attr = self.keys.attr(&c.name, v);
                            keys.extend(types.iter().map(|&ty| bucket_key(ty, Some(attr))));
                        }
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
    }

    /// Undoes `add_slot`'s bookkeeping for an entry already taken out of its bucket.
    fn slot_removed(&self, w: &mut Writer<T>, s: &Subscription, slot: &Slot<T>) {
        let (kind, pattern, attr) = slot_key(s, slot);
        let type_key = self.keys.ty(kind, pattern);
        let bit = attr.map_or(NO_ATTR_BIT, |(name, _)| name_bit(name));
        if let Some(n) = w.type_bits.get_mut(&(type_key, bit)) {
            *n -= 1;
            if *n == 0 {
                w.type_bits.remove(&(type_key, bit));
                let mask = w.next.types.get(type_key).copied().unwrap_or(0) & !bit;
                if mask == 0 {
                    w.next.types.remove(type_key);
                } else {
                    w.next.types.insert(type_key, mask);
                }
            }
        }
        if kind == KIND_PREFIX {
            let b = prefix_bit(pattern.len());
            w.prefix_counts[b] = w.prefix_counts[b].saturating_sub(1);
            if w.prefix_counts[b] == 0 {
                w.next.prefix_lens &= !(1 << b);
            }
        }
    }

    // ---- buckets ---------------------------------------------------------------------------

    fn bucket_push(&self, w: &mut Writer<T>, key: u64, slot: Slot<T>) {
        let ptr = slot.ptr();
        let new = match w.next.topics.get(key) {
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
        w.next.topics.insert(key, new);
    }

    /// Takes every entry whose item is `ptr` out of bucket `key`; returns them.
    fn bucket_remove(&self, w: &mut Writer<T>, key: u64, ptr: usize) -> SmallVec<[Slot<T>; 2]> {
        let mut removed = SmallVec::new();
        let Some(cur) = w.next.topics.get(key) else {
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
            let mut current = Some(cur.clone());
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
                w.next.topics.insert(key, b);
            }
            None => {
                w.positions.remove(&key);
                w.next.topics.remove(key);
            }
        }
        removed
    }

    /// Points the entries of `old` in bucket `key` at `new`, in place.
    fn bucket_replace(&self, w: &mut Writer<T>, key: u64, old: &Arc<T>, new: &Arc<T>) {
        let Some(cur) = w.next.topics.get(key) else {
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
            let mut current = cur.clone();
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
            w.next.topics.insert(key, b);
        }
    }

    /// Counts for tests: (buckets, entries, type keys, type bits, tracked large buckets, prefix
    /// length mask), checked against what was published.
    #[cfg(test)]
    fn shape(&self) -> (usize, usize, usize, usize, usize, u64) {
        let w = self.lock();
        let snap = self.current.load();
        assert_eq!(snap.topics.len(), w.next.topics.len(), "published");
        let mut entries = 0;
        snap.topics.for_each(|_, b| entries += b.len());
        (
            snap.topics.len(),
            entries,
            snap.types.len(),
            w.type_bits.len(),
            w.positions.len(),
            snap.prefix_lens,
        )
    }
}

/// The event's attributes' name bits and hashes, computed on first use and kept for the rest of
/// the route call: each attribute is hashed once, however many type patterns it is looked up
/// under, and only if some type pattern has entries under its name. Fixed capacity, so routing
/// does not allocate; attributes past it (events carry a handful) are recomputed on each use.
struct AttrHashes<'a> {
    keys: &'a Keys,
    event: &'a Event,
    /// 0: not computed yet (a name bit is never 0).
    bits: [u64; 16],
    hashes: [Option<u64>; 16],
}

impl<'a> AttrHashes<'a> {
    fn new(keys: &'a Keys, event: &'a Event) -> Self {
        AttrHashes {
            keys,
            event,
            bits: [0; 16],
            hashes: [None; 16],
        }
    }

    /// The name bit of attribute `i`.
    #[inline]
    fn bit(&mut self, i: usize) -> u64 {
        match self.bits.get(i) {
            Some(&b) if b != 0 => b,
            _ => {
                let b = self.event.attributes.get(i).map_or(0, |(n, _)| name_bit(n));
                if let Some(slot) = self.bits.get_mut(i) {
                    *slot = b;
                }
                b
            }
        }
    }

    /// The hash of attribute `i`'s `(name, value)`.
    #[inline]
    fn hash(&mut self, i: usize) -> Option<u64> {
        if let Some(Some(h)) = self.hashes.get(i) {
            return Some(*h);
        }
        let (name, value) = self.event.attributes.get(i)?;
        let h = self.keys.attr(name, value);
        if let Some(slot) = self.hashes.get_mut(i) {
            *slot = Some(h);
        }
        Some(h)
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
