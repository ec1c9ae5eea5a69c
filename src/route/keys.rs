//! How index keys are derived, shared by the read and the write path of the topic index.
//!
//! A key is a keyed SipHash digest of (type pattern kind, pattern text) and, for bucket keys, of
//! an optional attribute condition `(name, value)`. The writer and `route` must derive them the
//! same way, so both go through [`Keys`] and [`bucket_key`]; everything else here is the small
//! policy around them (which bit an attribute name sets, how selective a name is, which prefix
//! lengths share a bit), kept as pure functions with their tests beside them.

use std::hash::{BuildHasher, Hasher, RandomState};

use crate::model::event::attr;
use crate::model::filter::{Filter, TypePattern};
use crate::model::{Subscription, SubscriptionId};

use super::bucket::Slot;

/// [`Slot::filter`] for an entry that stands for the whole subscription: one with no filters
/// (it takes every event) or with more than this index can number. Verified with `any_matches`.
pub(super) const WHOLE: u16 = u16::MAX;
/// [`Slot::ty`] for the `*` key (the filter has no types, or more than this index can number).
pub(super) const NO_TYPE: u16 = u16::MAX;
/// [`Slot::cond`] for the key with no attribute.
pub(super) const NO_COND: u8 = u8::MAX;
/// An attribute condition with this many values or more is never the indexed one.
pub(super) const MAX_VALUES: usize = u16::MAX as usize;

/// Type-pattern kinds as hashed into keys.
pub(super) const KIND_ANY: u8 = 0;
pub(super) const KIND_EXACT: u8 = 1;
pub(super) const KIND_PREFIX: u8 = 2;

/// Bit 0 of a type's name mask: entries with no attribute condition.
pub(super) const NO_ATTR_BIT: u64 = 1;

/// A key before hashing: (type kind, type pattern bytes, attribute condition).
pub(super) type KeyParts<'a> = (u8, &'a [u8], Option<(&'a str, &'a str)>);

/// The key an entry sits under.
pub(super) fn slot_key<'a, T>(s: &'a Subscription, slot: &Slot<T>) -> KeyParts<'a> {
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
pub(super) fn type_key_parts(f: &Filter, ty: u16) -> (u8, &[u8]) {
    match f.types.get(usize::from(ty)).filter(|_| ty != NO_TYPE) {
        None | Some(TypePattern::Any) => (KIND_ANY, b""),
        Some(TypePattern::Prefix(p)) if p.is_empty() => (KIND_ANY, b""),
        Some(TypePattern::Exact(t)) => (KIND_EXACT, t.as_bytes()),
        Some(TypePattern::Prefix(p)) => (KIND_PREFIX, p.as_bytes()),
    }
}

/// The `prefix_lens` bit for a prefix of `len` bytes (`len ≥ 1`).
pub(super) fn prefix_bit(len: usize) -> usize {
    len.clamp(1, 64) - 1
}

/// The name-mask bit for an attribute name: 1..=63 by an FNV-1a hash (bit 0 is
/// [`NO_ATTR_BIT`]). Two names may share a bit; that only costs a lookup that finds nothing.
#[inline]
pub(super) fn name_bit(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    1 << (1 + h % 63)
}

/// How many events typically carry one value of this attribute, relatively: the lower, the
/// better a key it makes. One item's id is on a handful of events; a content type or a tenant
/// (space, project, site) on one type's or one customer's share; a workflow state or a language
/// on a large share of everything. Deployments differ (a single-tenant Herald sees one space on
/// every event), which the crowding term of the choice corrects for.
pub(super) fn weight(name: &str) -> u64 {
    match name {
        attr::ENTITY_ID | attr::SUBJECT => 1,
        attr::PARENT_ID | attr::OWNER => 2,
        attr::CONTENT_TYPE | attr::TEMPLATE_NAME | attr::SPACE | attr::PROJECT | attr::SITE => 4,
        attr::LANGUAGE | attr::ENVIRONMENT | attr::ENVIRONMENT_TYPE => 16,
        _ => 8,
    }
}

/// Derives every key from a per-index random SipHash key. A type pattern and an attribute
/// condition are each hashed once (SipHash, so nobody without the key can aim two inputs at one
/// digest); a bucket key combines the two with [`bucket_key`], so `route` hashes each event
/// attribute once however many type patterns it looks it up under.
///
/// A subscription id's key is foldhash, with a seed of its own: the dispatcher looks the
/// subscription up by id for every attempt, and SipHash's ~150 instructions there were 0.5 % of
/// a delivery's. Ids are UUIDs, Herald's own or given through an authenticated API, and foldhash
/// is seeded per index, so nobody can aim ids at one key without the seed (the journal's
/// dedup keys, which senders choose, rely on the same).
pub(super) struct Keys {
    seed: RandomState,
    ids: foldhash::fast::RandomState,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            seed: RandomState::new(),
            ids: foldhash::fast::RandomState::default(),
        }
    }

    /// The key of a type pattern (of the `types` map, and half of a bucket key).
    pub fn ty(&self, kind: u8, pattern: &[u8]) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write_u8(1);
        h.write_u8(kind);
        h.write_usize(pattern.len());
        h.write(pattern);
        h.finish()
    }

    /// The hash of one attribute condition `(name, value)`.
    pub fn attr(&self, name: &str, value: &str) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write_u8(2);
        h.write_usize(name.len());
        h.write(name.as_bytes());
        h.write_usize(value.len());
        h.write(value.as_bytes());
        h.finish()
    }

    /// The key of a subscription id.
    pub fn id(&self, id: &SubscriptionId) -> u64 {
        self.ids.hash_one(u128::from_ne_bytes(*id.as_bytes()))
    }
}

/// A bucket key: a type key and, optionally, an attribute hash. Both inputs are secret-keyed
/// digests, and the mix is a bijection of `ty` for each `attr`, so distinct pairs collide only by
/// 64-bit chance — and a collision only puts two keys' entries in one bucket, which verification
/// and the entries' own indices make harmless.
#[inline]
pub(super) fn bucket_key(ty: u64, attr: Option<u64>) -> u64 {
    let other = match attr {
        None => 0x243F_6A88_85A3_08D3,
        Some(a) => fmix64(a ^ 0x1319_8A2E_0370_7344),
    };
    fmix64(ty ^ other)
}

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::filter::AttributeMatch;
    use std::sync::Arc;

    #[test]
    fn prefix_lengths_share_a_bit_only_from_64_up() {
        for (len, bit) in [(1, 0), (2, 1), (63, 62), (64, 63), (65, 63), (500, 63)] {
            assert_eq!(prefix_bit(len), bit, "{len}");
        }
    }

    #[test]
    fn name_bits_never_use_the_no_attribute_bit() {
        for name in ["language", "entityid", "contenttype", "", "x", "sitecore"] {
            let b = name_bit(name);
            assert_eq!(b.count_ones(), 1, "{name}");
            assert_ne!(b, NO_ATTR_BIT, "{name}");
            assert_eq!(b, name_bit(name), "stable");
        }
    }

    #[test]
    fn selective_names_weigh_less() {
        let order = [
            attr::ENTITY_ID,
            attr::OWNER,
            attr::SPACE,
            attr::WORKFLOW_STATE,
            attr::LANGUAGE,
        ];
        for pair in order.windows(2) {
            assert!(weight(pair[0]) < weight(pair[1]), "{pair:?}");
        }
        assert_eq!(weight("somethingelse"), weight(attr::WORKFLOW_STATE));
    }

    #[test]
    fn type_patterns_as_keys() {
        let f = Filter {
            types: Box::new([
                TypePattern::Any,
                TypePattern::Exact("item:saved".into()),
                TypePattern::Prefix("item:".into()),
                TypePattern::Prefix("".into()),
            ]),
            attributes: Box::default(),
        };
        let cases: [(u16, (u8, &[u8])); 6] = [
            (0, (KIND_ANY, b"")),
            (1, (KIND_EXACT, b"item:saved")),
            (2, (KIND_PREFIX, b"item:")),
            (3, (KIND_ANY, b"")),
            (4, (KIND_ANY, b"")),
            (NO_TYPE, (KIND_ANY, b"")),
        ];
        for (ty, want) in cases {
            assert_eq!(type_key_parts(&f, ty), want, "{ty}");
        }
    }

    #[test]
    fn bucket_keys_separate_every_part() {
        let k = Keys::new();
        let exact = k.ty(KIND_EXACT, b"item:saved");
        let keys = [
            bucket_key(exact, None),
            bucket_key(exact, Some(k.attr("ab", "c"))),
            bucket_key(exact, Some(k.attr("a", "bc"))),
            bucket_key(exact, Some(k.attr("", "abc"))),
            bucket_key(k.ty(KIND_PREFIX, b"item:saved"), None),
            bucket_key(k.ty(KIND_ANY, b""), None),
            bucket_key(k.ty(KIND_EXACT, b"item:save"), Some(k.attr("d", ""))),
            exact,
        ];
        let mut unique = keys.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        // Deterministic for one index: the writer and `route` agree.
        assert_eq!(
            bucket_key(k.ty(KIND_EXACT, b"item:saved"), Some(k.attr("ab", "c"))),
            keys[1]
        );
        // Another index has another secret.
        assert_ne!(Keys::new().ty(KIND_EXACT, b"item:saved"), exact);
    }

    #[test]
    fn fmix_is_a_bijection_on_a_sample() {
        let mut out: Vec<u64> = (0..10_000u64).map(fmix64).collect();
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), 10_000);
        assert_ne!(fmix64(1), 1);
    }

    #[test]
    fn slots_map_back_to_their_keys() {
        let s = {
            let mut s: Subscription = serde_json::from_value(serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000001", "dialect": "Native", "tenant": null,
                "name": "n", "description": null, "enabled": true, "url": "https://x",
                "method": "Post", "filters": [], "headers": [], "auth": null,
                "signing_secret": null, "format": "CloudEvents", "retry": null, "timeout": null,
                "disabled_reason": null,
                "version": {"created_by": "", "created_at_ms": 0, "modified_by": "",
                            "modified_at_ms": 0, "version_no": 1}
            }))
            .expect("subscription json");
            s.filters = vec![Filter {
                types: Box::new([TypePattern::Exact("item:saved".into())]),
                attributes: Box::new([AttributeMatch {
                    name: "language".into(),
                    values: Box::new(["de".into(), "en".into()]),
                }]),
            }]
            .into();
            s
        };
        let slot = |filter, ty, cond, val| Slot {
            item: Arc::new(()),
            filter,
            ty,
            cond,
            val,
        };
        let cases: [(Slot<()>, KeyParts); 5] = [
            (
                slot(0, 0, 0, 1),
                (KIND_EXACT, b"item:saved", Some(("language", "en"))),
            ),
            (slot(0, 0, NO_COND, 0), (KIND_EXACT, b"item:saved", None)),
            (
                slot(0, NO_TYPE, 0, 0),
                (KIND_ANY, b"", Some(("language", "de"))),
            ),
            (slot(WHOLE, 0, 0, 0), (KIND_ANY, b"", None)),
            (slot(0, 0, 0, 9), (KIND_EXACT, b"item:saved", None)),
        ];
        for (sl, want) in cases {
            assert_eq!(slot_key(&s, &sl), want);
        }
    }
}
