//! Keys and record encodings of the journal. Pure functions, round-trip tested.
//!
//! Keys are big-endian so that byte order is numeric order: events sort by sequence (which is
//! time), a subscription's queue sorts by due time then delivery id, the delivery log by id
//! (time). Hot records (events, queued deliveries) use a hand-written binary layout, fixed
//! fields first, because they are written and read once per delivery; delivery log records use
//! postcard behind a version byte; subscriptions are JSON so new optional fields can be added
//! without a migration (they are written rarely and read once at start-up).

use bytes::Bytes;

use super::{JournalError, QueuePos};
use crate::model::{
    AttemptRecord, Delivery, DeliveryId, DeliveryRecord, DeliveryStatus, Event, InputKind,
    Subscription, SubscriptionId,
};

const EVENT_V1: u8 = 1;
/// V1 plus the event's *implicit deliveries* after the received-at time: a count and that many
/// subscription ids (see [`encode_event_with`]).
const EVENT_V2: u8 = 2;
const RECORD_V1: u8 = 1;

fn corrupt(what: &str) -> JournalError {
    JournalError::Corrupt(what.to_string())
}

// ---- keys ---------------------------------------------------------------------------------

pub fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// `queue` key: subscription (16) + due ms (8) + delivery id (8).
pub fn queue_key(sub: SubscriptionId, pos: QueuePos) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(sub.as_bytes());
    k[16..24].copy_from_slice(&(pos.due_at_ms.max(0) as u64).to_be_bytes());
    k[24..].copy_from_slice(&pos.id.0.to_be_bytes());
    k
}

pub fn parse_queue_key(k: &[u8]) -> Option<(SubscriptionId, QueuePos)> {
    if k.len() != 32 {
        return None;
    }
    let sub = SubscriptionId::from_bytes(k[..16].try_into().ok()?);
    let due = read_u64(&k[16..24])? as i64;
    let id = read_u64(&k[24..32])?;
    Some((
        sub,
        QueuePos {
            due_at_ms: due,
            id: DeliveryId(id),
        },
    ))
}

/// `by_sub` key: subscription (16) + delivery id (8).
pub fn by_sub_key(sub: SubscriptionId, id: DeliveryId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(sub.as_bytes());
    k[16..].copy_from_slice(&id.0.to_be_bytes());
    k
}

/// The first delivery id of a `by_sub` key: the smallest id of its group.
pub fn by_sub_first(k: &[u8]) -> Option<u64> {
    read_u64(k.get(16..)?)
}

/// The lowest `by_sub` key of `sub` whose group can hold `id` (or a later one): groups keyed
/// up to a span below it may.
pub fn by_sub_key_reaching(sub: SubscriptionId, id: u64) -> [u8; 24] {
    by_sub_key(sub, DeliveryId(lowest_reaching(id)))
}

/// The lowest `delivered` key whose group can hold `id` (or a later one).
pub fn delivered_key_reaching(id: u64) -> [u8; 8] {
    u64_key(lowest_reaching(id))
}

/// The lowest first id of a group (either kind) that can hold `id`.
fn lowest_reaching(id: u64) -> u64 {
    id.saturating_sub(GROUP_SPAN - 1)
}

/// Calls `group` with each run of `items` (sorted), in order: a run goes on while `fits(first
/// of the run, item)` and it is shorter than `max`.
fn runs<T>(items: &[T], max: usize, fits: impl Fn(&T, &T) -> bool, mut group: impl FnMut(&[T])) {
    let mut rest = items;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take(max)
            .position(|item| !fits(first, item))
            .unwrap_or(rest.len().min(max));
        group(&rest[..n]);
        rest = &rest[n..];
    }
}

/// How far apart (in delivery ids, which are microseconds) the ids of one group (`by_sub` or
/// `delivered`) may be: every id in a group is below its key's id plus this. The bound is what
/// lets a listing walk the groups newest first and still put their ids in order (see
/// [`ByIdMerge`]), and a point read look back no further than this for the group holding an
/// id; a commit's ids for one subscription are taken within milliseconds, so one group holds
/// them all but when a commit straddles the bound.
pub const GROUP_SPAN: u64 = 1 << 16;

/// Appends `v` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint from the front of `b`: the value and the bytes it took.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A `by_sub` group's value: the ids after the key's, each as the LEB128 varint of its
/// distance from the one before (`ids` ascending, without duplicates). A group of one id has
/// an empty value, which is also what stores written before groups hold for every delivery.
pub fn encode_by_sub_group(mut ids: impl Iterator<Item = u64>, out: &mut Vec<u8>) {
    out.clear();
    let Some(mut prev) = ids.next() else {
        return;
    };
    for id in ids {
        put_varint(out, id - prev);
        prev = id;
    }
}

/// The ids of a `by_sub` group, ascending: the key's `first`, then those its value lists.
pub fn decode_by_sub_group(first: u64, v: &[u8], out: &mut Vec<u64>) -> Result<(), JournalError> {
    out.clear();
    out.push(first);
    let (mut prev, mut rest) = (first, v);
    while !rest.is_empty() {
        let (d, n) = read_varint(rest)
            .ok_or_else(|| corrupt("by_sub group: truncated or overlong varint"))?;
        rest = &rest[n..];
        prev = prev
            .checked_add(d)
            .filter(|_| d > 0)
            .ok_or_else(|| corrupt("by_sub group: ids out of order"))?;
        out.push(prev);
    }
    Ok(())
}

/// Splits `pairs` (a commit's `(subscription, delivery id)` index entries) into `by_sub` groups:
/// sorted, duplicates dropped, one group per run of one subscription's ids no more than
/// [`GROUP_SPAN`] - 1 above the run's first. Calls `group` with each subscription and its run.
pub fn by_sub_groups(
    pairs: &mut Vec<(SubscriptionId, u64)>,
    mut group: impl FnMut(SubscriptionId, &[(SubscriptionId, u64)]),
) {
    // Keyed as integers (big-endian, so in the keys' byte order): `SubscriptionId`'s own order
    // compares its bytes through `memcmp`, which made this sort ~900 instructions a delivery.
    pairs.sort_unstable_by_key(|&(sub, id)| (sub.0.as_u128(), id));
    pairs.dedup();
    runs(
        pairs,
        usize::MAX,
        |&(sub, first), &(s, id)| s == sub && id - first < GROUP_SPAN,
        |run| group(run[0].0, run),
    );
}

/// Merges groups (`by_sub` or `delivered`) read newest key first into one stream of ids, newest
/// first, each with what the group holds for it (`V`: nothing for `by_sub`, the record for
/// `delivered`). A group keyed `k` holds ids in `k..k + GROUP_SPAN`, and so does every group
/// read after it with an older key; so once the next key is known, every buffered id at or
/// above it plus the span is beyond the reach of what is still to be read, and can go.
/// Duplicates (an id indexed twice: a dead letter queued again) come out once.
pub struct ByIdMerge<V: Ord = ()> {
    heap: std::collections::BinaryHeap<(u64, V)>,
    last: Option<u64>,
}

impl<V: Ord> Default for ByIdMerge<V> {
    fn default() -> Self {
        ByIdMerge {
            heap: std::collections::BinaryHeap::new(),
            last: None,
        }
    }
}

impl<V: Ord> ByIdMerge<V> {
    /// Buffers the entries of the group just read.
    pub fn push(&mut self, entries: impl IntoIterator<Item = (u64, V)>) {
        self.heap.extend(entries);
    }

    /// The next entry, newest first, that no group keyed below `next_key` (the key of the next
    /// group to read, `None` once there is none) can still hold more of.
    pub fn pop(&mut self, next_key: Option<u64>) -> Option<(u64, V)> {
        loop {
            let top = self.heap.peek()?.0;
            if next_key.is_some_and(|k| top < k.saturating_add(GROUP_SPAN)) {
                return None;
            }
            let entry = self.heap.pop()?;
            if self.last != Some(top) {
                self.last = Some(top);
                return Some(entry);
            }
        }
    }
}

/// The most records one `delivered` group holds: a commit of thousands of deliveries writes
/// a few values of tens of KiB rather than one of megabytes, which every point read of an id in
/// its span would step through.
pub const MAX_DELIVERED_GROUP: usize = 256;

/// A record waiting for its commit's `delivered` groups: its delivery id, and the offset and
/// length of its encoding in the commit's buffer.
pub type DeliveredEntry = (u64, usize, usize);

/// Splits a commit's delivered records into `delivered` groups: sorted by id (a duplicate id
/// keeps its first record), each group's ids less than [`GROUP_SPAN`] above its first, at most
/// [`MAX_DELIVERED_GROUP`] of them. Calls `group` with each.
pub fn delivered_groups(entries: &mut Vec<DeliveredEntry>, group: impl FnMut(&[DeliveredEntry])) {
    entries.sort_by_key(|e| e.0);
    entries.dedup_by_key(|e| e.0);
    runs(
        entries,
        MAX_DELIVERED_GROUP,
        |&(first, ..), &(id, ..)| id - first < GROUP_SPAN,
        group,
    );
}

/// A `delivered` group's value (its key is its first id): per record, ascending by id, the
/// varint distance of its id from the one before (0 for the first), the varint length of its
/// encoding, then the encoding ([`encode_record_into`]), which `buf` holds at the entry's
/// offset.
pub fn encode_delivered_group(entries: &[DeliveredEntry], buf: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let Some(&(mut prev, ..)) = entries.first() else {
        return;
    };
    for &(id, at, len) in entries {
        put_varint(out, id - prev);
        put_varint(out, len as u64);
        out.extend_from_slice(&buf[at..at + len]);
        prev = id;
    }
}

/// The records of a `delivered` group keyed `first`: ids ascending, each with its encoding.
pub fn delivered_records(first: u64, v: &[u8]) -> DeliveredRecords<'_> {
    DeliveredRecords {
        rest: v,
        prev: first,
        started: false,
    }
}

/// See [`delivered_records`]. Stops after the first error.
pub struct DeliveredRecords<'a> {
    rest: &'a [u8],
    prev: u64,
    started: bool,
}

impl<'a> DeliveredRecords<'a> {
    fn entry(&mut self) -> Result<(u64, &'a [u8]), JournalError> {
        let bad = || corrupt("delivered group: truncated or out of order");
        let (gap, n) = read_varint(self.rest).ok_or_else(bad)?;
        let (len, m) = read_varint(&self.rest[n..]).ok_or_else(bad)?;
        let body = self.rest[n + m..]
            .get(..usize::try_from(len).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        // The first record is the key's id; each later one is strictly above the one before.
        if self.started == (gap == 0) {
            return Err(bad());
        }
        let id = self.prev.checked_add(gap).ok_or_else(bad)?;
        self.rest = &self.rest[n + m + body.len()..];
        (self.prev, self.started) = (id, true);
        Ok((id, body))
    }
}

impl<'a> Iterator for DeliveredRecords<'a> {
    type Item = Result<(u64, &'a [u8]), JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = self.entry();
        if entry.is_err() {
            self.rest = &[];
        }
        Some(entry)
    }
}

/// `attempts` key: delivery id (8) + attempt number (4).
pub fn attempt_key(id: DeliveryId, attempt: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&id.0.to_be_bytes());
    k[8..].copy_from_slice(&attempt.to_be_bytes());
    k
}

/// `dedup` key: source, a NUL, id.
pub fn dedup_key(source: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + id.len());
    dedup_key_into(source, id, &mut k);
    k
}

/// [`dedup_key`], appended to `k`.
pub fn dedup_key_into(source: &str, id: &str, k: &mut Vec<u8>) {
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
}

/// `dedup` value: event seq + accepted-at ms.
pub fn dedup_value(seq: u64, accepted_at_ms: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..].copy_from_slice(&accepted_at_ms.to_be_bytes());
    v
}

pub fn parse_dedup_value(v: &[u8]) -> Option<(u64, i64)> {
    Some((read_u64(v)?, read_u64(v.get(8..)?)? as i64))
}

// ---- deliveries (queue and dead-letter values) ----------------------------------------------

pub const DELIVERY_LEN: usize = 60;

pub fn encode_delivery(d: &Delivery) -> [u8; DELIVERY_LEN] {
    let mut b = [0u8; DELIVERY_LEN];
    b[..8].copy_from_slice(&d.id.0.to_be_bytes());
    b[8..24].copy_from_slice(d.subscription.as_bytes());
    b[24..32].copy_from_slice(&d.event_seq.to_be_bytes());
    b[32..36].copy_from_slice(&d.attempts.to_be_bytes());
    b[36..40].copy_from_slice(&d.cycle_start.to_be_bytes());
    b[40..48].copy_from_slice(&d.due_at_ms.to_be_bytes());
    b[48..56].copy_from_slice(&d.created_at_ms.to_be_bytes());
    // 56..60 reserved (flags) — zero.
    b
}

pub fn decode_delivery(b: &[u8]) -> Result<Delivery, JournalError> {
    if b.len() != DELIVERY_LEN {
        return Err(corrupt("delivery record has the wrong length"));
    }
    let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or_default());
    Ok(Delivery {
        id: DeliveryId(u64_at(0)),
        subscription: SubscriptionId::from_bytes(b[8..24].try_into().unwrap_or_default()),
        event_seq: u64_at(24),
        attempts: u32_at(32),
        cycle_start: u32_at(36),
        due_at_ms: u64_at(40) as i64,
        created_at_ms: u64_at(48) as i64,
    })
}

// ---- events ---------------------------------------------------------------------------------

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Encodes an event with no implicit deliveries (see [`encode_event_with`]).
pub fn encode_event(e: &Event) -> Vec<u8> {
    encode_event_with(e, &[])
}

/// Encodes an event: version, kind, received-at, the implicit deliveries, then length-prefixed
/// strings, the attributes, and the payload bytes last (so decoding can slice it without a copy).
///
/// `implicit` lists the subscriptions of the deliveries created with the event that have no
/// delivery-log record of their own yet: the `i`-th is delivery `seq + 1 + i`, pending, due and
/// created at the event's received-at time. The journal derives their log records from this
/// and their queue entries until their first transition writes one (`journal::embedded`,
/// "Implicit pending records").
pub fn encode_event_with(e: &Event, implicit: &[SubscriptionId]) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_event_into(e, implicit, &mut buf);
    buf
}

/// [`encode_event_with`] into `buf` (cleared first), for a caller that reuses one buffer.
pub fn encode_event_into(e: &Event, implicit: &[SubscriptionId], buf: &mut Vec<u8>) {
    let attr_len: usize = e
        .attributes
        .iter()
        .map(|(n, v)| 8 + n.len() + v.len())
        .sum();
    buf.clear();
    buf.reserve(
        32 + e.id.len()
            + e.source.len()
            + e.event_type.len()
            + e.time.as_deref().map_or(0, str::len)
            + attr_len
            + e.payload.len()
            + 16 * implicit.len(),
    );
    buf.push(EVENT_V2);
    buf.push(e.kind as u8);
    buf.extend_from_slice(&e.received_at_ms.to_be_bytes());
    buf.extend_from_slice(&(implicit.len() as u32).to_be_bytes());
    for sub in implicit {
        buf.extend_from_slice(sub.as_bytes());
    }
    put_str(buf, &e.id);
    put_str(buf, &e.source);
    put_str(buf, &e.event_type);
    match &e.time {
        Some(t) => {
            buf.push(1);
            put_str(buf, t);
        }
        None => buf.push(0),
    }
    buf.extend_from_slice(&(e.attributes.len() as u32).to_be_bytes());
    for (n, v) in &e.attributes {
        put_str(buf, n);
        put_str(buf, v);
    }
    buf.extend_from_slice(&e.payload);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| corrupt("event record is truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn str(&mut self) -> Result<Box<str>, JournalError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?)
            .map(Into::into)
            .map_err(|_| corrupt("event record has invalid UTF-8"))
    }
}

/// Decodes an event stored under `seq`. `raw` is the stored value; the payload is a zero-copy
/// slice of it.
pub fn decode_event(seq: u64, raw: Bytes) -> Result<Event, JournalError> {
    decode_event_with(seq, &raw, |start| raw.slice(start..))
}

/// [`decode_event`] from a borrowed value, copying only the payload: the event then holds
/// its own bytes and nothing else. A stored value also lists the event's implicit deliveries,
/// 16 bytes per matching subscription: with 2,000 subscriptions a copy of the whole value was
/// 32 KB per event, and a refill that read back 2,000 endpoints' queues at once held (and, as
/// a payload slice, kept) one such copy per row, gigabytes in all.
pub fn decode_event_copied(seq: u64, raw: &[u8]) -> Result<Event, JournalError> {
    decode_event_with(seq, raw, |start| Bytes::copy_from_slice(&raw[start..]))
}

fn decode_event_with(
    seq: u64,
    raw: &[u8],
    payload: impl FnOnce(usize) -> Bytes,
) -> Result<Event, JournalError> {
    let mut r = Reader { b: raw, pos: 0 };
    let head = event_head(&mut r)?;
    let (kind, received_at_ms) = (head.kind, head.received_at_ms);
    let id = r.str()?;
    let source = r.str()?;
    let event_type = r.str()?;
    let time = match r.u8()? {
        0 => None,
        _ => Some(r.str()?),
    };
    let n = r.u32()? as usize;
    let mut attributes = crate::model::Attributes::new();
    for _ in 0..n {
        let name = r.str()?;
        let value = r.str()?;
        attributes.push((name, value));
    }
    let payload_start = r.pos;
    Ok(Event {
        seq,
        id,
        source,
        kind,
        event_type,
        time,
        received_at_ms,
        attributes,
        payload: payload(payload_start),
    })
}

/// Whether `deliveries`, created with `e`, can be stored as its implicit deliveries: exactly as
/// ingest makes them (ids right after the event's sequence number, in order; never attempted;
/// due and created at its received-at time). Anything else gets explicit records.
pub fn implicit_fits(e: &Event, deliveries: &[Delivery]) -> bool {
    if deliveries.is_empty() || e.seq.checked_add(deliveries.len() as u64 + 1).is_none() {
        return false;
    }
    deliveries.iter().zip(e.seq + 1..).all(|(d, id)| {
        *d == Delivery::fresh(DeliveryId(id), d.subscription, e.seq, e.received_at_ms)
    })
}

/// What precedes an event's strings.
struct EventHead<'a> {
    kind: InputKind,
    received_at_ms: i64,
    /// 16 bytes per implicit delivery.
    implicit: &'a [u8],
}

fn event_head<'a>(r: &mut Reader<'a>) -> Result<EventHead<'a>, JournalError> {
    let version = r.u8()?;
    if version != EVENT_V1 && version != EVENT_V2 {
        return Err(corrupt("unknown event record version"));
    }
    let kind = InputKind::from_u8(r.u8()?).ok_or_else(|| corrupt("unknown input kind"))?;
    let received_at_ms = i64::from_be_bytes(r.take(8)?.try_into().unwrap_or_default());
    let implicit = match version {
        EVENT_V1 => &[][..],
        _ => {
            let n = r.u32()? as usize;
            r.take(
                n.checked_mul(16)
                    .ok_or_else(|| corrupt("event record is truncated"))?,
            )?
        }
    };
    Ok(EventHead {
        kind,
        received_at_ms,
        implicit,
    })
}

/// The implicit deliveries of a stored event (see [`encode_event_with`]), without decoding the
/// rest of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImplicitDeliveries<'a> {
    pub received_at_ms: i64,
    subs: &'a [u8],
}

impl ImplicitDeliveries<'_> {
    pub fn len(&self) -> u64 {
        (self.subs.len() / 16) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The subscription of delivery `id` if it is one of the implicit deliveries of the event
    /// stored under `seq`.
    pub fn subscription_of(&self, seq: u64, id: DeliveryId) -> Option<SubscriptionId> {
        let i = usize::try_from(id.0.checked_sub(seq)?.checked_sub(1)?).ok()?;
        let b = self.subs.chunks_exact(16).nth(i)?;
        Some(SubscriptionId::from_bytes(b.try_into().ok()?))
    }
}

/// An event's producer id and type, without decoding the rest of it.
pub fn event_id_and_type(raw: &[u8]) -> Result<(String, String), JournalError> {
    let mut r = Reader { b: raw, pos: 0 };
    event_head(&mut r)?;
    let id = r.str()?;
    let _source = r.str()?;
    let event_type = r.str()?;
    Ok((id.into(), event_type.into()))
}

pub fn event_implicit(raw: &[u8]) -> Result<ImplicitDeliveries<'_>, JournalError> {
    let head = event_head(&mut Reader { b: raw, pos: 0 })?;
    Ok(ImplicitDeliveries {
        received_at_ms: head.received_at_ms,
        subs: head.implicit,
    })
}

// ---- delivery log ---------------------------------------------------------------------------

/// A [`DeliveryRecord`] with its strings borrowed. postcard writes fields in order and a `&str`
/// as it writes a `String`, so this encodes to exactly the bytes of the owned record: ingest
/// writes a new delivery's record from the event it already holds, without copying the event's
/// id and type into a record first (two allocations per delivery on the journal thread).
#[derive(Debug, serde::Serialize)]
pub struct RecordRef<'a> {
    pub id: DeliveryId,
    pub subscription: SubscriptionId,
    pub event_seq: u64,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub last_attempt: Option<&'a AttemptRecord>,
}

impl<'a> From<&'a DeliveryRecord> for RecordRef<'a> {
    fn from(r: &'a DeliveryRecord) -> Self {
        RecordRef {
            id: r.id,
            subscription: r.subscription,
            event_seq: r.event_seq,
            event_id: &r.event_id,
            event_type: &r.event_type,
            status: r.status,
            attempts: r.attempts,
            created_at_ms: r.created_at_ms,
            next_attempt_at_ms: r.next_attempt_at_ms,
            last_attempt: r.last_attempt.as_ref(),
        }
    }
}

pub fn encode_record(r: &DeliveryRecord) -> Vec<u8> {
    encode_record_ref(&RecordRef::from(r))
}

pub fn encode_record_ref(r: &RecordRef<'_>) -> Vec<u8> {
    // Sized up front (fixed fields take at most ~80 bytes as varints): growing the buffer by
    // doubling from one byte was a handful of reallocations per record.
    let strings = r.event_id.len()
        + r.event_type.len()
        + r.last_attempt.map_or(0, |a| {
            a.error.as_ref().map_or(0, String::len)
                + a.response_body.as_ref().map_or(0, String::len)
        });
    let mut buf = Vec::with_capacity(96 + strings);
    encode_record_into(r, &mut buf);
    buf
}

/// Appends the record's encoding to `out` (a commit's buffer of `delivered` records).
pub fn encode_record_into(r: &RecordRef<'_>, out: &mut Vec<u8>) {
    out.push(RECORD_V1);
    // Serializing plain data into a Vec cannot fail.
    postcard::to_io(r, out).expect("postcard encodes a DeliveryRecord");
}

pub fn decode_record(b: &[u8]) -> Result<DeliveryRecord, JournalError> {
    match b.split_first() {
        Some((&RECORD_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(&format!("delivery record: {e}")))
        }
        _ => Err(corrupt("unknown delivery record version")),
    }
}

pub fn encode_attempt(a: &AttemptRecord) -> Vec<u8> {
    let mut buf = vec![RECORD_V1];
    postcard::to_io(a, &mut buf).expect("postcard encodes an AttemptRecord");
    buf
}

pub fn decode_attempt(b: &[u8]) -> Result<AttemptRecord, JournalError> {
    match b.split_first() {
        Some((&RECORD_V1, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(&format!("attempt record: {e}")))
        }
        _ => Err(corrupt("unknown attempt record version")),
    }
}

// ---- subscriptions --------------------------------------------------------------------------

pub fn encode_subscription(s: &Subscription) -> Vec<u8> {
    serde_json::to_vec(s).expect("a Subscription always serializes")
}

pub fn decode_subscription(b: &[u8]) -> Result<Subscription, JournalError> {
    serde_json::from_slice(b).map_err(|e| corrupt(&format!("subscription: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptClass, DeliveryStatus};

    fn event() -> Event {
        Event {
            seq: 42,
            id: "evt-1".into(),
            source: "sitecore".into(),
            kind: InputKind::Sitecore,
            event_type: "item:saved".into(),
            time: Some("2026-11-22T10:00:00Z".into()),
            received_at_ms: 1_700_000_000_123,
            attributes: [
                ("language".into(), "en".into()),
                ("entityid".into(), "x".into()),
            ]
            .into_iter()
            .collect(),
            payload: Bytes::from_static(br#"{"EventName":"item:saved"}"#),
        }
    }

    #[test]
    fn by_sub_groups_round_trip_and_reject_garbage() {
        let mut v = Vec::new();
        let mut out = Vec::new();
        for ids in [
            &[7u64][..],
            &[7, 8, 9],
            &[1, 200, 70_000, 70_001],
            &[0, u64::MAX],
        ] {
            encode_by_sub_group(ids.iter().copied(), &mut v);
            assert_eq!(v.is_empty(), ids.len() == 1, "{ids:?}");
            decode_by_sub_group(ids[0], &v, &mut out).unwrap();
            assert_eq!(out, ids);
        }
        // Small gaps take a byte each: a commit's 64 ids of one subscription in ~64 bytes.
        encode_by_sub_group((0..64u64).map(|i| 1_000_000 + i * 100), &mut v);
        assert_eq!(v.len(), 63);
        // An old store's entry (empty value) is the key's id alone.
        decode_by_sub_group(5, &[], &mut out).unwrap();
        assert_eq!(out, [5]);
        for bad in [
            &[0x80u8][..],
            &[0][..],
            &[0xff; 11][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        ] {
            assert!(
                matches!(
                    decode_by_sub_group(5, bad, &mut out),
                    Err(JournalError::Corrupt(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_commit_is_indexed_in_one_group_per_subscription_and_span() {
        let (a, b) = (
            SubscriptionId::from_bytes([1; 16]),
            SubscriptionId::from_bytes([2; 16]),
        );
        let mut pairs = vec![
            (b, 10),
            (a, 30),
            (a, 10),
            (b, 11),
            (a, 10),
            (a, 10 + GROUP_SPAN - 1),
            (a, 10 + GROUP_SPAN),
        ];
        let mut groups = Vec::new();
        by_sub_groups(&mut pairs, |sub, run| {
            assert!(run.iter().all(|&(s, _)| s == sub));
            groups.push((sub, run.iter().map(|&(_, id)| id).collect::<Vec<_>>()));
        });
        assert_eq!(
            groups,
            vec![
                (a, vec![10, 30, 10 + GROUP_SPAN - 1]),
                (a, vec![10 + GROUP_SPAN]),
                (b, vec![10, 11]),
            ]
        );
    }

    #[test]
    fn delivered_groups_round_trip_split_and_reject_garbage() {
        // A commit's records, out of order, one id twice: the first one stays.
        let s = GROUP_SPAN;
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        let mut texts = Vec::new();
        for (n, id) in [500, 100, 100 + s - 1, 100 + s, 300, 500]
            .into_iter()
            .enumerate()
        {
            let at = buf.len();
            let text = format!("record {n} of {id}");
            buf.extend_from_slice(text.as_bytes());
            entries.push((id, at, buf.len() - at));
            texts.push((id, text));
        }
        let mut groups = Vec::new();
        let mut v = Vec::new();
        delivered_groups(&mut entries, |g| {
            encode_delivered_group(g, &buf, &mut v);
            let first = g[0].0;
            let got: Vec<(u64, String)> = delivered_records(first, &v)
                .map(|e| e.map(|(id, b)| (id, String::from_utf8(b.to_vec()).unwrap())))
                .collect::<Result<_, _>>()
                .unwrap();
            groups.push(got);
        });
        let rec = |n: usize| texts[n].clone();
        assert_eq!(
            groups,
            vec![vec![rec(1), rec(4), rec(0), rec(2)], vec![rec(3)]]
        );
        // No group holds more than MAX_DELIVERED_GROUP records.
        let mut many: Vec<DeliveredEntry> = (0..MAX_DELIVERED_GROUP as u64 * 2 + 1)
            .map(|i| (1_000 + i, 0, 0))
            .collect();
        let mut sizes = Vec::new();
        delivered_groups(&mut many, |g| sizes.push(g.len()));
        assert_eq!(sizes, [MAX_DELIVERED_GROUP, MAX_DELIVERED_GROUP, 1]);
        // Garbage: a length past the end, a truncated varint, a first gap that is not 0, a
        // later gap of 0.
        for bad in [
            &[0u8, 5, 1, 2][..],
            &[0x80][..],
            &[1, 0][..],
            &[0, 0, 0, 0][..],
        ] {
            let got: Vec<_> = delivered_records(7, bad).collect();
            assert!(
                matches!(got.last(), Some(Err(JournalError::Corrupt(_)))),
                "{bad:?}: {got:?}"
            );
        }
    }

    #[test]
    fn groups_read_newest_key_first_merge_into_descending_ids() {
        // Three groups of one subscription as a listing reads them (newest key first). Their
        // ids overlap: the middle one, keyed lower, holds an id above the first's smallest,
        // and 150 is indexed twice.
        let s = GROUP_SPAN;
        let groups: [(u64, Vec<u64>); 3] = [
            (2 * s, vec![2 * s, 2 * s + 5]),
            (s + 10, vec![s + 10, 2 * s + 1, 2 * s + 9]),
            (100, vec![100, 150]),
        ];
        let more = [(90u64, vec![90, 150])];
        let mut m = ByIdMerge::default();
        let mut out = Vec::new();
        let all: Vec<&(u64, Vec<u64>)> = groups.iter().chain(&more).collect();
        for (i, (_, ids)) in all.iter().enumerate() {
            m.push(ids.iter().map(|&id| (id, ())));
            let next = all.get(i + 1).map(|g| g.0);
            while let Some((id, ())) = m.pop(next) {
                out.push(id);
            }
        }
        assert_eq!(
            out,
            vec![2 * s + 9, 2 * s + 5, 2 * s + 1, 2 * s, s + 10, 150, 100, 90]
        );
        // Nothing comes out while a group still to be read could hold something bigger.
        let mut m = ByIdMerge::default();
        m.push([(s + 3, ())]);
        assert_eq!(m.pop(Some(4)), None);
        assert_eq!(m.pop(Some(3)), Some((s + 3, ())));
    }

    #[test]
    fn event_roundtrip() {
        let e = event();
        let raw = Bytes::from(encode_event(&e));
        assert_eq!(decode_event(42, raw).unwrap(), e);
        let mut no_time = e.clone();
        no_time.time = None;
        no_time.attributes.clear();
        let raw = Bytes::from(encode_event(&no_time));
        assert_eq!(decode_event(42, raw).unwrap(), no_time);
    }

    #[test]
    fn a_copied_event_holds_its_payload_alone() {
        let e = event();
        let subs: Vec<_> = (0..2000).map(|_| SubscriptionId::generate()).collect();
        let raw = encode_event_with(&e, &subs);
        assert!(raw.len() > 32_000);
        let copied = decode_event_copied(42, &raw).unwrap();
        assert_eq!(copied, e);
        // Its own allocation, not a slice of the stored value with the 2,000 subscriptions.
        let inside = raw.as_ptr_range();
        assert!(!inside.contains(&copied.payload.as_ptr()));
        // The zero-copy decoding does slice the value.
        let raw = Bytes::from(raw);
        let sliced = decode_event(42, raw.clone()).unwrap();
        assert!(raw.as_ptr_range().contains(&sliced.payload.as_ptr()));
    }

    #[test]
    fn implicit_deliveries_ride_with_the_event() {
        let e = event();
        let (a, b) = (SubscriptionId::generate(), SubscriptionId::generate());
        let raw = encode_event_with(&e, &[a, b]);
        assert_eq!(decode_event(42, Bytes::copy_from_slice(&raw)).unwrap(), e);
        let imp = event_implicit(&raw).unwrap();
        assert_eq!((imp.len(), imp.received_at_ms), (2, e.received_at_ms));
        // Deliveries 43 and 44 belong to event 42; nothing else does.
        assert_eq!(imp.subscription_of(42, DeliveryId(43)), Some(a));
        assert_eq!(imp.subscription_of(42, DeliveryId(44)), Some(b));
        for id in [0, 41, 42, 45, u64::MAX] {
            assert_eq!(imp.subscription_of(42, DeliveryId(id)), None, "id {id}");
        }
        assert!(event_implicit(&encode_event(&e)).unwrap().is_empty());
    }

    #[test]
    fn version_1_events_still_decode() {
        // A version-1 record is a version-2 one with no implicit deliveries and no count.
        let e = event();
        let v2 = encode_event(&e);
        let mut v1 = vec![EVENT_V1];
        v1.extend_from_slice(&v2[1..10]);
        v1.extend_from_slice(&v2[14..]);
        assert_eq!(decode_event(42, Bytes::from(v1.clone())).unwrap(), e);
        let imp = event_implicit(&v1).unwrap();
        assert!(imp.is_empty());
        assert_eq!(imp.received_at_ms, e.received_at_ms);
    }

    #[test]
    fn truncated_event_is_corrupt_not_a_panic() {
        let raw = encode_event(&event());
        for cut in [0, 1, 5, 12, 20] {
            let r = decode_event(1, Bytes::copy_from_slice(&raw[..cut]));
            assert!(matches!(r, Err(JournalError::Corrupt(_))), "cut {cut}");
        }
    }

    #[test]
    fn delivery_roundtrip_and_queue_key_order() {
        let d = Delivery {
            id: DeliveryId(7),
            subscription: SubscriptionId::generate(),
            event_seq: 9,
            attempts: 3,
            cycle_start: 1,
            due_at_ms: 1_700_000_000_000,
            created_at_ms: 1_600_000_000_000,
        };
        assert_eq!(decode_delivery(&encode_delivery(&d)).unwrap(), d);
        let a = queue_key(
            d.subscription,
            QueuePos {
                due_at_ms: 5,
                id: DeliveryId(100),
            },
        );
        let b = queue_key(
            d.subscription,
            QueuePos {
                due_at_ms: 6,
                id: DeliveryId(1),
            },
        );
        assert!(a < b, "due time sorts before id");
        assert_eq!(
            parse_queue_key(&a),
            Some((
                d.subscription,
                QueuePos {
                    due_at_ms: 5,
                    id: DeliveryId(100)
                }
            ))
        );
    }

    #[test]
    fn record_roundtrip() {
        let r = DeliveryRecord {
            id: DeliveryId(1),
            subscription: SubscriptionId::generate(),
            event_seq: 2,
            event_id: "e".into(),
            event_type: "t".into(),
            status: DeliveryStatus::Retrying,
            attempts: 1,
            created_at_ms: 3,
            next_attempt_at_ms: Some(4),
            last_attempt: Some(AttemptRecord {
                attempt: 1,
                started_at_ms: 3,
                duration_us: 10,
                class: AttemptClass::ServerError,
                status_code: Some(500),
                error: None,
                response_body: Some("oops".into()),
            }),
        };
        assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
        // The borrowed form writes what the owned record itself serializes to, so records
        // written before it existed still read.
        for r in [
            r.clone(),
            DeliveryRecord {
                last_attempt: None,
                event_id: "x".repeat(300),
                ..r.clone()
            },
        ] {
            let mut owned = vec![RECORD_V1];
            owned.extend(postcard::to_allocvec(&r).unwrap());
            assert_eq!(encode_record_ref(&RecordRef::from(&r)), owned);
        }
        let a = r.last_attempt.clone().unwrap();
        assert_eq!(decode_attempt(&encode_attempt(&a)).unwrap(), a);
        assert!(decode_record(&[9, 9]).is_err());
    }
}
