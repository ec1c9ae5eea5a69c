//! The topic index against the one definition of matching (`Subscription::wants` over every
//! stored subscription): fixed tables, a seeded random cross-check through inserts, updates,
//! enable/disable and removals, index hygiene (nothing left behind after updates and removals),
//! and readers routing while a writer churns.

use super::*;
use crate::model::filter::{AttributeMatch, TypePattern};
use crate::model::{Dialect, Format, HttpMethod, InputKind, Version};
use crate::model::{OptDuration, OptText};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
        name: format!("sub {n}").into(),
        description: OptText::NONE,
        enabled,
        url: format!("https://example.com/hook/{n}").into(),
        method: HttpMethod::Post,
        filters: filters.into(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format: Format::CloudEvents,
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
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
        attributes: attributes.into(),
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
                        s.url = format!("{}x", s.url).into();
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

/// A single-tenant deployment names the same space in every filter: the index notices the
/// crowded key and spreads the filters over their content types instead.
#[test]
fn crowded_keys_are_avoided() {
    let index = TopicIndex::new();
    for n in 0..400 {
        let ct = format!("ct{}", n % 100);
        index.upsert(item(
            n,
            true,
            vec![filter(
                &["item:saved"],
                &[("space", &["acme"]), ("contenttype", &[&ct])],
            )],
        ));
    }
    let (buckets, entries, ..) = index.shape();
    assert_eq!(entries, 400);
    assert!(
        buckets >= 90,
        "spread over content types: {buckets} buckets"
    );
    // An event of one content type checks a handful of candidates, not all 400.
    let e = event("item:saved", &[("space", "acme"), ("contenttype", "ct7")]);
    assert_eq!(routed(&index, &e), ids(&[7, 107, 207, 307]));
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
                s.name = format!("{} renamed", s.name).into();
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
fn ascii_lower_borrows_when_it_can() {
    assert!(matches!(ascii_lower("item:saved"), Cow::Borrowed(_)));
    assert_eq!(ascii_lower("Item:Saved"), "item:saved");
}

#[test]
fn upsert_many_is_one_batch() {
    let index = TopicIndex::new();
    index.upsert(item(0, true, vec![filter(&["item:saved"], &[])]));
    index.upsert(item(150, true, vec![filter(&["item:saved"], &[])]));
    // 0 is replaced; 5 comes twice in the batch, the later (disabled) one wins.
    index.upsert_many(
        (0..100)
            .map(|n| item(n, n % 2 == 0, vec![filter(&["item:*"], &[])]))
            .chain([item(5, false, vec![])]),
    );
    assert_eq!(index.len(), 101);
    let e = event("item:saved", &[]);
    assert_eq!(routed(&index, &e), wanted(&index, &e));
    assert_eq!(routed(&index, &e).len(), 51);
    // `list` sees the batch merged in id order, each id once, the last version of each.
    let listed = index.list(None, usize::MAX, |_| true);
    let ids: Vec<SubscriptionId> = listed.iter().map(|i| i.0.id).collect();
    let mut want: Vec<SubscriptionId> = (0..100).chain([150]).map(id).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(
        listed
            .iter()
            .all(|i| index.get(&i.0.id).is_some_and(|g| Arc::ptr_eq(&g, i)))
    );
    assert!(
        listed
            .iter()
            .any(|i| i.0.id == id(5) && !i.0.enabled && i.0.filters.is_empty())
    );
    assert_eq!(index.list(Some(want[9]), 3, |_| true).len(), 3);
    assert_eq!(index.list(Some(want[9]), 3, |_| true)[0].0.id, want[10]);
    index.remove(&id(150));
    for n in 0..100 {
        index.remove(&id(n));
    }
    assert_empty_shape(&index);
}

#[test]
fn get_finds_every_stored_subscription() {
    let index = TopicIndex::new();
    for n in 0..500 {
        index.upsert(item(n, n % 3 != 0, vec![]));
    }
    for n in 0..500 {
        assert_eq!(index.get(&id(n)).map(|i| i.0.id), Some(id(n)));
    }
    assert!(index.get(&id(500)).is_none());
    index.remove(&id(7));
    assert!(index.get(&id(7)).is_none());
    assert_eq!(index.len(), 499);
}

#[test]
fn colliding_id_keys_keep_every_subscription() {
    let a = item(1, true, vec![]);
    let b = item(2, true, vec![]);
    let one = Ids::One(Arc::clone(&a));
    let both = one.with(&b);
    assert_eq!(both.find(&id(1)).map(|i| i.0.id), Some(id(1)));
    assert_eq!(both.find(&id(2)).map(|i| i.0.id), Some(id(2)));
    let renamed = item(2, false, vec![]);
    let both = both.with(&renamed);
    assert_eq!(both.find(&id(2)).map(|i| i.0.enabled), Some(false));
    let rest = both.without(&id(1)).expect("one left");
    assert!(rest.find(&id(1)).is_none());
    assert!(rest.find(&id(2)).is_some());
    assert!(matches!(rest, Ids::One(_)));
    assert!(one.without(&id(1)).is_none());
}

#[test]
fn the_index_is_shared_across_threads() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<TopicIndex<Item>>();
}

/// Subscriptions larger than the entry indices can number still route exactly (through the
/// `*` key, verified in full) and leave nothing behind.
#[test]
fn oversized_subscriptions_fall_back_to_full_verification() {
    let index = TopicIndex::new();
    let many_filters: Vec<Filter> = (0..usize::from(u16::MAX))
        .map(|i| filter(&[&format!("t{i}")], &[]))
        .collect();
    index.upsert(item(1, true, many_filters));
    let many_types: Vec<String> = (0..usize::from(u16::MAX))
        .map(|i| format!("x{i}"))
        .collect();
    let many_types: Vec<&str> = many_types.iter().map(String::as_str).collect();
    index.upsert(item(
        2,
        true,
        vec![filter(&many_types, &[("language", &["en"])])],
    ));
    let many_values: Vec<String> = (0..usize::from(u16::MAX))
        .map(|i| format!("v{i}"))
        .collect();
    let many_values: Vec<&str> = many_values.iter().map(String::as_str).collect();
    index.upsert(item(
        3,
        true,
        vec![filter(&["item:saved"], &[("entityid", &many_values)])],
    ));
    let cases = [
        (event("t77", &[]), vec![1]),
        (event("x9", &[("language", "en")]), vec![2]),
        (event("x9", &[("language", "de")]), vec![]),
        (event("item:saved", &[("entityid", "v123")]), vec![3]),
        (event("item:saved", &[("entityid", "w")]), vec![]),
    ];
    for (e, want) in cases {
        assert_eq!(routed(&index, &e), ids(&want), "{e:?}");
        assert_eq!(routed(&index, &e), wanted(&index, &e), "{e:?}");
    }
    for n in 1..=3 {
        index.remove(&id(n));
    }
    assert_empty_shape(&index);
}
