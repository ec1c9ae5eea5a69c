//! Subscriptions for the scenarios: the bodies posted to `/v1/subscriptions`, the million-subs
//! population, and two ways to create it (the API, or Herald's own journal library).
//!
//! Where it sits: the orchestrator creates these before a scenario's traffic starts. The
//! million-subs population looks like a multi-tenant deployment (the shapes `benches/route.rs`
//! uses): per-entity filters, per-tenant filters on content type, language or workflow state,
//! exact and wildcard types. Three subscriptions match the bench event; every filler is checked
//! against the event *as Herald decodes it* (`herald::decode` on the real payload, then
//! `Subscription::wants`, the one definition of matching), so "3 match" is a fact, not a hope.
//!
//! Why a second way: `POST /v1/subscriptions` is serialized in Herald (one store mutex held
//! across the journal write, so one commit, with its fsync, per create), which makes a
//! million creates take far longer than the bench may. The bench therefore measures the API's
//! create rate for a bounded time and writes the rest of the population with
//! `herald::journal::embedded::EmbeddedJournal` into the data directory before Herald starts —
//! the same records the API would write (bodies go through `api::native::body::parse`, the
//! API's own parser), which Herald then loads at start-up as it would after a restart.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use herald::api::native::body::{self, Mode};
use herald::journal::Journal;
use herald::journal::embedded::EmbeddedJournal;
use herald::model::{Dialect, Event, InputKind, Subscription, SubscriptionId, Version};
use herald::model::{OptDuration, OptText};
use serde_json::{Value, json};

use crate::load::{self, CONTENT_TYPE, ENTITY, EVENT_TYPE, LANGUAGE, Payload, SPACE, Target};
use crate::sink::FILLER_SLOT;

/// Where filler subscriptions point: a port nothing listens on, so a filler delivered by
/// mistake is a refused attempt in Herald's metrics rather than a silent extra request.
pub const FILLER_BASE: &str = "http://127.0.0.1:9";

/// A subscription body for the native API.
pub fn body(name: &str, url: &str, filters: Value) -> Value {
    json!({"name": name, "url": url, "filters": filters, "format": "cloudevents"})
}

/// `n` subscriptions to every bench event, endpoint `i` at `{bases[i]}/s/{i}` (or `/slow/{i}`
/// for the indexes in `slow`).
pub fn fanout(bases: &[String], n: usize, slow: &[usize]) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let path = if slow.contains(&i) { "slow" } else { "s" };
            body(
                &format!("bench {i}"),
                &format!("{}/{path}/{i}", bases[i]),
                json!([{"types": [EVENT_TYPE]}]),
            )
        })
        .collect()
}

/// The three million-subs subscriptions that match the bench event, at `/s/0..3`: one by
/// entity, one by tenant and content type under a wildcard type, one by tenant and language.
pub fn matching(bases: &[String]) -> Vec<Value> {
    vec![
        body(
            "entity watcher",
            &format!("{}/s/0", bases[0]),
            json!([{"types": [EVENT_TYPE], "attributes": {"entityid": [ENTITY]}}]),
        ),
        body(
            "blog indexer",
            &format!("{}/s/1", bases[1]),
            json!([{"types": ["item:*"], "attributes": {"space": [SPACE], "contenttype": [CONTENT_TYPE]}}]),
        ),
        body(
            "english search",
            &format!("{}/s/2", bases[2]),
            json!([{"types": ["item:saved", "item:added"], "attributes": {"space": [SPACE], "language": [LANGUAGE, "de"]}}]),
        ),
    ]
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

/// Generates non-matching subscription bodies, checked against the decoded bench event.
pub struct Filler {
    rng: fastrand::Rng,
    event: Event,
    type_lc: String,
    url: String,
    tenants: u32,
    n: u64,
}

/// The bench event as Herald decodes it.
pub fn decoded_event(payload: &Payload) -> anyhow::Result<Event> {
    let mut one = Vec::new();
    payload.write(&mut one, 1, 1);
    let limits = herald::decode::Limits {
        max_batch_items: 10,
        max_json_depth: 64,
    };
    let mut events = herald::decode::decode(
        InputKind::CloudEvent,
        Some("application/cloudevents+json"),
        &Bytes::from(one),
        &limits,
        0,
    )
    .map_err(|e| anyhow::anyhow!("the bench payload does not decode: {e}"))?;
    events
        .pop()
        .context("the bench payload decoded to no event")
}

impl Filler {
    pub fn new(payload: &Payload, base: &str, seed: u64) -> anyhow::Result<Filler> {
        let event = decoded_event(payload)?;
        let type_lc = event.event_type.to_ascii_lowercase();
        Ok(Filler {
            rng: fastrand::Rng::with_seed(seed),
            event,
            type_lc,
            url: format!("{base}/s/{FILLER_SLOT}"),
            tenants: 50_000,
            n: 0,
        })
    }

    fn filter(&mut self) -> Value {
        let rng = &mut self.rng;
        // 1 in 10 000 fillers belongs to the event's own tenant; 1 in 40 shares its content type.
        let tenant = if rng.u32(..10_000) == 0 {
            SPACE.to_string()
        } else {
            format!("t{}", rng.u32(..self.tenants))
        };
        let ty = TYPES[rng.usize(..TYPES.len())];
        let ct = if rng.u8(..40) == 0 {
            CONTENT_TYPE.to_string()
        } else {
            format!("ct{}", rng.u32(..40))
        };
        match rng.u8(..10) {
            0..=2 => {
                json!([{"types": [ty], "attributes": {"entityid": [format!("{:032x}", rng.u128(..))]}}])
            }
            3..=6 => {
                json!([{"types": [ty], "attributes": {"space": [tenant], "contenttype": [ct]}}])
            }
            7 | 8 => {
                json!([{"types": [ty], "attributes": {"space": [tenant], "language": [LANGUAGES[rng.usize(..LANGUAGES.len())]]}}])
            }
            _ => {
                json!([{"types": [ty], "attributes": {"space": [tenant], "workflowstate": [STATES[rng.usize(..STATES.len())]]}}])
            }
        }
    }

    /// The next non-matching body and the subscription the API would build from it.
    pub fn next(&mut self) -> anyhow::Result<(Value, Subscription)> {
        loop {
            self.n += 1;
            let filters = self.filter();
            let b = body(&format!("filler {}", self.n), &self.url, filters);
            let sub = build(&b)?;
            if !sub.wants(&self.event, &self.type_lc) {
                return Ok((b, sub));
            }
        }
    }

    /// Whether `b` (a body) matches the bench event, as Herald would decide.
    pub fn wants(&self, b: &Value) -> anyhow::Result<bool> {
        Ok(build(b)?.wants(&self.event, &self.type_lc))
    }
}

/// The subscription `POST /v1/subscriptions` would store for `b` (native dialect, version 1).
pub fn build(b: &Value) -> anyhow::Result<Subscription> {
    let fields = body::parse(b, Mode::Create, None)
        .map_err(|errs| anyhow::anyhow!("invalid subscription body: {errs:?}"))?;
    let now = herald::model::now_ms();
    let mut sub = Subscription {
        id: SubscriptionId::generate(),
        dialect: Dialect::Native,
        tenant: None,
        name: Box::default(),
        description: OptText::NONE,
        enabled: true,
        url: Box::default(),
        method: Default::default(),
        filters: Box::default(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format: Default::default(),
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: "bench".into(),
            created_at_ms: now,
            modified_by: "bench".into(),
            modified_at_ms: now,
            version_no: 1,
        },
    };
    fields.apply(&mut sub);
    Ok(sub)
}

/// Writes `n` filler subscriptions straight into the journal of a stopped Herald (the config's
/// `[storage]`), keeping up to a channel's worth of saves in flight so they group-commit.
pub fn seed(config_text: &str, filler: &mut Filler, n: usize) -> anyhow::Result<Duration> {
    let config = herald::config::Config::from_toml(config_text)
        .map_err(|e| anyhow::anyhow!("bench config is invalid: {:?}", e.0))?;
    let started = Instant::now();
    let journal = EmbeddedJournal::open(&config.storage, config.ingest.dedup_window)
        .map_err(|e| anyhow::anyhow!("opening the journal to seed it: {e}"))?;
    let mut acks = VecDeque::new();
    for _ in 0..n {
        let (_, sub) = filler.next()?;
        acks.push_back(journal.save_subscription(&sub));
        if acks.len() >= 8192
            && let Some(ack) = acks.pop_front()
        {
            ack.blocking_recv()
                .context("journal writer stopped")?
                .map_err(|e| anyhow::anyhow!("saving a subscription: {e}"))?;
        }
    }
    for ack in acks {
        ack.blocking_recv()
            .context("journal writer stopped")?
            .map_err(|e| anyhow::anyhow!("saving a subscription: {e}"))?;
    }
    journal
        .flush()
        .blocking_recv()
        .context("journal writer stopped")?
        .map_err(|e| anyhow::anyhow!("flushing the journal: {e}"))?;
    journal.close();
    drop(journal);
    // Written in seconds, the subscriptions sit in level-0 tables fjall has not compacted yet,
    // and the first flush of `subs` after Herald starts (the API's creates) would rewrite all
    // of them (~300 MB, a second of a core) in the middle of the measured slices. A store that
    // took its subscriptions over weeks has compacted them long before: so does the seed.
    let db = fjall::Database::builder(&config.storage.path)
        .open()
        .context("reopening the seeded store")?;
    db.keyspace("subs", fjall::KeyspaceCreateOptions::default)
        .context("opening the seeded subscriptions")?
        .major_compact()
        .context("compacting the seeded subscriptions")?;
    Ok(started.elapsed())
}

/// Creates subscriptions through `POST /v1/subscriptions` over `conns` parallel keep-alive
/// connections until `count` are created or `within` has passed. Returns how many were created
/// and how long it took.
pub async fn create_via_api(
    target: Target,
    bodies: Arc<std::sync::Mutex<Box<dyn Iterator<Item = Value> + Send>>>,
    conns: usize,
    count: u64,
    within: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let deadline = started + within;
    let created = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (target, bodies, created) = (target.clone(), bodies.clone(), created.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = load::connect(&target).await?;
            while Instant::now() < deadline && created.load(Ordering::Relaxed) < count {
                let Some(b) = bodies.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    break;
                };
                let (status, answer) = load::send(
                    &mut s,
                    "POST",
                    "/v1/subscriptions",
                    Some("application/json"),
                    Bytes::from(b.to_string()),
                )
                .await?;
                if status != 201 {
                    bail!(
                        "creating a subscription: {status} {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                created.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((created.load(Ordering::Relaxed), started.elapsed()))
}

/// Creates each body in order through the API (a handful: the scenarios' own subscriptions).
pub async fn create_all(target: &Target, bodies: &[Value]) -> anyhow::Result<()> {
    let mut s = load::connect(target).await?;
    for b in bodies {
        let (status, answer) = load::send(
            &mut s,
            "POST",
            "/v1/subscriptions",
            Some("application/json"),
            Bytes::from(b.to_string()),
        )
        .await?;
        if status != 201 {
            bail!(
                "creating a subscription: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    Ok(())
}

/// Size of a directory tree, bytes.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
