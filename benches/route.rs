//! Topic index: route cost per event at 10, 10 000 and 1 000 000 stored subscriptions with 3
//! matching, write cost at 1 000 000, and memory per subscription at 1 000 000.
//!
//! The stored subscriptions look like a multi-tenant deployment (ten per tenant): per-entity
//! filters, per-tenant (`space`) filters on content type, language or workflow state, exact and
//! wildcard types. None of the filler matches the benchmark event (checked with
//! `Subscription::wants`), but much of it shares the event's type and language, and five
//! subscriptions of the event's own tenant share its keys without matching, so the index has to
//! be selective, not lucky. The route times at 10 000 and 1 000 000 should be about equal (at 10
//! there are fewer keys to look up at all).
//!
//! Run: `cargo bench --bench route -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use herald::model::filter::AttributeMatch;
use herald::model::{
    Dialect, Event, Filter, Format, HttpMethod, InputKind, Secret, Subscription, SubscriptionId,
    Tenant, TenantKind, TypePattern, Version,
};
use herald::model::{OptDuration, OptText};
use herald::route::TopicIndex;

/// Counts live heap bytes (requested sizes; the allocator's own per-block overhead is extra).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> isize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<isize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What the dispatcher stores: the subscription (plus, in the daemon, compiled templates).
struct Item(Subscription);

impl AsRef<Subscription> for Item {
    fn as_ref(&self) -> &Subscription {
        &self.0
    }
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    format!("{:032x}", rng.u128(..))
}

fn filter(types: &[&str], attrs: &[(&str, Vec<String>)]) -> Filter {
    let mut attributes: Vec<AttributeMatch> = attrs
        .iter()
        .map(|(n, vs)| AttributeMatch {
            name: (*n).into(),
            values: vs.iter().map(|v| v.as_str().into()).collect(),
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

/// A realistic small subscription around `filters`.
fn subscription(rng: &mut fastrand::Rng, tenant: &str, filters: Vec<Filter>) -> Arc<Item> {
    let n = rng.u32(..1_000_000);
    Arc::new(Item(Subscription {
        id: SubscriptionId::generate(),
        dialect: Dialect::SitecoreAudit,
        tenant: Some(Box::new(Tenant {
            kind: TenantKind::Space,
            name: tenant.to_string(),
        })),
        name: format!("Content sync {n}").into(),
        description: OptText::NONE,
        enabled: true,
        url: format!("https://hooks.example.com/{tenant}/{n}").into(),
        method: HttpMethod::Post,
        filters: filters.into(),
        headers: Box::default(),
        auth: None,
        signing_secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
        format: Format::CloudEvents,
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: "admin@example.com".into(),
            created_at_ms: 1_700_000_000_000,
            modified_by: "admin@example.com".into(),
            modified_at_ms: 1_700_000_000_000,
            version_no: 1,
        },
    }))
}

const ENTITY: &str = "6f1c0a2e9b7d4c3a8e5f1b2d3c4a5e6f";

fn the_event() -> Event {
    let attrs = [
        ("space", "acme"),
        ("language", "en"),
        ("contenttype", "blog"),
        ("entityid", ENTITY),
        ("owner", "alice"),
    ];
    Event {
        seq: 1,
        id: "evt-1".into(),
        source: "sitecore".into(),
        kind: InputKind::Sitecore,
        event_type: "item:saved".into(),
        time: None,
        received_at_ms: 0,
        attributes: attrs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect(),
        payload: Default::default(),
    }
}

const TYPES: &[&str] = &[
    "item:saved",
    "item:added",
    "item:deleted",
    "item:*",
    "publish:end",
    "publish:*",
    "entry.published",
    "entry.*",
    "item:versionadded",
    "*",
];
const LANGUAGES: &[&str] = &["en", "de", "fr", "nl", "es", "it", "ja", "da"];
const STATES: &[&str] = &["draft", "review", "approved", "published"];

/// The three subscriptions that match [`the_event`].
fn matching(rng: &mut fastrand::Rng) -> Vec<Arc<Item>> {
    let en = vec!["en".to_string(), "de".to_string()];
    vec![
        subscription(
            rng,
            "acme",
            vec![filter(
                &["item:saved"],
                &[("entityid", vec![ENTITY.into()])],
            )],
        ),
        subscription(
            rng,
            "acme",
            vec![filter(
                &["item:*"],
                &[
                    ("space", vec!["acme".into()]),
                    ("contenttype", vec!["blog".into()]),
                ],
            )],
        ),
        subscription(
            rng,
            "acme",
            vec![filter(
                &["item:saved", "item:added"],
                &[("space", vec!["acme".into()]), ("language", en)],
            )],
        ),
    ]
}

/// One non-matching subscription of a realistic kind, in one of `tenants` other tenants.
fn filler(rng: &mut fastrand::Rng, event: &Event, tenants: u32) -> Arc<Item> {
    loop {
        let tenant = format!("t{}", rng.u32(..tenants));
        let ty = TYPES[rng.usize(..TYPES.len())];
        // Content type ids belong to their tenant (Sitecore templates, Contensis content
        // types and DatoCMS models are per space / project / site); languages, workflow states
        // and event types are shared by everyone.
        let content_type = format!("{tenant}-ct{}", rng.u32(..8));
        let f = match rng.u8(..10) {
            0..=2 => filter(&[ty], &[("entityid", vec![uuid(rng)])]),
            3..=6 => filter(
                &[ty],
                &[
                    ("space", vec![tenant.clone()]),
                    ("contenttype", vec![content_type]),
                ],
            ),
            7 | 8 => filter(
                &[ty],
                &[
                    ("space", vec![tenant.clone()]),
                    (
                        "language",
                        vec![LANGUAGES[rng.usize(..LANGUAGES.len())].into()],
                    ),
                ],
            ),
            _ => filter(
                &[ty],
                &[
                    ("space", vec![tenant.clone()]),
                    (
                        "workflowstate",
                        vec![STATES[rng.usize(..STATES.len())].into()],
                    ),
                ],
            ),
        };
        let item = subscription(rng, &tenant, vec![f]);
        if !item.0.wants(event, &event.event_type) {
            return item;
        }
    }
}

/// The event's own tenant has a few more subscriptions that do not match it (other content
/// types, languages, types): they share its keys, so routing must verify and reject them. A
/// tenant's size does not grow with the number of tenants, so neither does their count.
fn same_tenant_misses(rng: &mut fastrand::Rng) -> Vec<Arc<Item>> {
    let acme = || ("space", vec!["acme".to_string()]);
    [
        filter(
            &["item:saved"],
            &[acme(), ("contenttype", vec!["news".into()])],
        ),
        filter(&["item:*"], &[acme(), ("language", vec!["fr".into()])]),
        filter(&["*"], &[acme(), ("workflowstate", vec!["draft".into()])]),
        filter(&["publish:end"], &[acme()]),
        filter(&["entry.*"], &[acme()]),
    ]
    .into_iter()
    .map(|f| subscription(rng, "acme", vec![f]))
    .collect()
}

/// `n` subscriptions, three of which match [`the_event`], loaded in one batch (as at start-up).
fn build(n: usize, rng: &mut fastrand::Rng) -> TopicIndex<Item> {
    let event = the_event();
    let tenants = (n as u32 / 10).max(1);
    let mut items = matching(rng);
    items.extend(
        same_tenant_misses(rng)
            .into_iter()
            .take(n.saturating_sub(3)),
    );
    while items.len() < n {
        items.push(filler(rng, &event, tenants));
    }
    let index = TopicIndex::new();
    let started = Instant::now();
    index.upsert_many(items);
    eprintln!("loaded {n} subscriptions in {:.2?}", started.elapsed());
    index
}

/// Memory per subscription at 1 000 000 typical small subscriptions (one filter, one type, one
/// attribute value), split into the subscription itself and the index around it.
fn report_memory() {
    const N: usize = 1_000_000;
    let mut rng = fastrand::Rng::with_seed(1);
    let (live0, rss0) = (live(), rss());
    let items: Vec<Arc<Item>> = (0..N)
        .map(|i| {
            let f = filter(&["item:saved"], &[("entityid", vec![uuid(&mut rng)])]);
            subscription(&mut rng, &format!("t{}", i % 100_000), vec![f])
        })
        .collect();
    // The Vec holding them is not part of either figure.
    let subs = live() - live0 - (items.capacity() * size_of::<Arc<Item>>()) as isize;
    let (live1, rss1) = (live(), rss());
    let index = TopicIndex::new();
    let started = Instant::now();
    index.upsert_many(items.iter().cloned());
    let took = started.elapsed();
    let idx = live() - live1;
    let rss_total = rss() - rss0;
    eprintln!(
        "memory at {N} subscriptions: subscription {} B + index {} B = {} B each (heap bytes \
         requested); resident set grew {} B each in all, {} B of it for the subscriptions \
         (allocator overhead included); loaded in {:.2?}",
        subs / N as isize,
        idx / N as isize,
        (subs + idx) / N as isize,
        rss_total / N as isize,
        (rss1 - rss0) / N as isize,
        took,
    );
    drop(items);
    drop(index);
}

/// CPU time this thread has used (Linux `schedstat`), for timings that other processes on the
/// machine do not inflate; `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

fn bench_route(c: &mut Criterion) {
    let event = the_event();
    let mut rng = fastrand::Rng::with_seed(42);
    let sets: Vec<(usize, TopicIndex<Item>)> = [10usize, 10_000, 1_000_000]
        .into_iter()
        .map(|n| (n, build(n, &mut rng)))
        .collect();
    let mut out = Vec::new();
    for (_, index) in &sets {
        out.clear();
        index.route(&event, &mut out);
        assert_eq!(out.len(), 3, "exactly the three matching subscriptions");
    }
    let mut group = c.benchmark_group("route");
    for (n, index) in &sets {
        group.bench_function(format!("3_of_{n}"), |b| {
            b.iter(|| {
                out.clear();
                index.route(black_box(&event), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
    compare_interleaved(&sets, &event);
    if let Some((_, index)) = sets.last() {
        bench_writes(c, index, &mut rng);
    }
}

/// The three sizes again, interleaved (A B C A B C …) and timed in thread CPU time, so a
/// neighbour's load or a change of machine speed between criterion runs does not skew the
/// comparison: the median per size over the rounds.
fn compare_interleaved(sets: &[(usize, TopicIndex<Item>)], event: &Event) {
    const ROUNDS: usize = 15;
    const CALLS: u32 = 20_000;
    if thread_cpu().is_none() {
        return;
    }
    let mut out = Vec::new();
    let mut samples = vec![Vec::with_capacity(ROUNDS); sets.len()];
    for _ in 0..ROUNDS {
        for (i, (_, index)) in sets.iter().enumerate() {
            let start = thread_cpu().unwrap_or_default();
            for _ in 0..CALLS {
                out.clear();
                index.route(black_box(event), &mut out);
            }
            samples[i].push((thread_cpu().unwrap_or_default() - start) / CALLS);
        }
    }
    for ((n, _), mut s) in sets.iter().zip(samples) {
        s.sort();
        eprintln!(
            "route 3 of {n}: median {:?} CPU per event (interleaved)",
            s[ROUNDS / 2]
        );
    }
}

/// Writes against the 1 000 000 set: insert + remove of a new subscription, and an update that
/// moves a subscription's filter to other keys.
fn bench_writes(c: &mut Criterion, index: &TopicIndex<Item>, rng: &mut fastrand::Rng) {
    let event = the_event();
    let fresh: Vec<Arc<Item>> = (0..1000).map(|_| filler(rng, &event, 100_000)).collect();
    let mut group = c.benchmark_group("write_at_1000000");
    let mut i = 0;
    group.bench_function("insert_then_remove", |b| {
        b.iter(|| {
            let item = &fresh[i % fresh.len()];
            i += 1;
            index.upsert(Arc::clone(item));
            black_box(index.remove(&item.0.id))
        })
    });
    // Two versions of one subscription, with different filters: each upsert moves it.
    let versions: Vec<Arc<Item>> = fresh[..2]
        .iter()
        .map(|v| {
            let mut s = v.0.clone();
            s.id = fresh[0].0.id;
            Arc::new(Item(s))
        })
        .collect();
    index.upsert(Arc::clone(&versions[0]));
    let mut i = 0;
    group.bench_function("update_filters", |b| {
        b.iter(|| {
            i += 1;
            black_box(index.upsert(Arc::clone(&versions[i % 2])))
        })
    });
    let mut renamed = versions[0].0.clone();
    renamed.name = format!("{} (renamed)", renamed.name).into();
    let renamed = [Arc::clone(&versions[0]), Arc::new(Item(renamed))];
    let mut i = 0;
    group.bench_function("update_same_filters", |b| {
        b.iter(|| {
            i += 1;
            black_box(index.upsert(Arc::clone(&renamed[i % 2])))
        })
    });
    group.finish();
}

/// Set in the child process that measures memory.
const MEMORY_ONLY: &str = "HERALD_ROUTE_BENCH_MEMORY";

fn main() {
    if std::env::var_os(MEMORY_ONLY).is_some() {
        report_memory();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_route(&mut c);
    c.final_summary();
    // In a fresh process, so that the resident set size means something and freeing a million
    // subscriptions does not disturb the timings above.
    if let Ok(exe) = std::env::current_exe() {
        let status = std::process::Command::new(exe)
            .env(MEMORY_ONLY, "1")
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("memory report failed: {status:?}");
        }
    }
}
