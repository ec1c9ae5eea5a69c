//! Memory probe for stored subscriptions (issue 5): loads the subscriptions of a data directory
//! through the start-up path (`EmbeddedJournal::recover`, then `Subscriptions::load`) and prints
//! resident memory and live heap bytes per subscription at each step.
//!
//! `cargo run --release --example mem_probe -- <data dir>` on a copy of a seeded data directory
//! (the e2e bench keeps one under `target/bench/e2e-cache`); the directory is opened read-write.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use herald::config::Config;
use herald::journal::Journal;
use herald::journal::embedded::EmbeddedJournal;
use herald::render::RenderDefaults;
use herald::route::store::Subscriptions;

/// `herald::alloc::Mimalloc`, as in `main.rs`, counting live requested bytes and allocations.
struct Counting;

static BYTES: AtomicI64 = AtomicI64::new(0);
static COUNT: AtomicI64 = AtomicI64::new(0);
/// Live bytes as mimalloc's size classes round them (`mi_usable_size`).
static USABLE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size() as i64, Ordering::Relaxed);
        COUNT.fetch_add(1, Ordering::Relaxed);
        let p = unsafe { herald::alloc::Mimalloc.alloc(l) };
        USABLE.fetch_add(unsafe { mi_usable_size(p) } as i64, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        BYTES.fetch_sub(l.size() as i64, Ordering::Relaxed);
        COUNT.fetch_sub(1, Ordering::Relaxed);
        USABLE.fetch_sub(unsafe { mi_usable_size(p) } as i64, Ordering::Relaxed);
        unsafe { herald::alloc::Mimalloc.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size() as i64, Ordering::Relaxed);
        COUNT.fetch_add(1, Ordering::Relaxed);
        let p = unsafe { herald::alloc::Mimalloc.alloc_zeroed(l) };
        USABLE.fetch_add(unsafe { mi_usable_size(p) } as i64, Ordering::Relaxed);
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        BYTES.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        USABLE.fetch_sub(unsafe { mi_usable_size(p) } as i64, Ordering::Relaxed);
        let q = unsafe { herald::alloc::Mimalloc.realloc(p, l, n) };
        USABLE.fetch_add(unsafe { mi_usable_size(q) } as i64, Ordering::Relaxed);
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

unsafe extern "C" {
    fn mi_collect(force: bool);
    fn mi_usable_size(p: *const u8) -> usize;
    fn mi_malloc(size: usize) -> *mut u8;
    fn mi_free(p: *mut u8);
}

fn rss() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Mark {
    rss: i64,
    bytes: i64,
    count: i64,
    usable: i64,
}

fn mark() -> Mark {
    Mark {
        rss: rss(),
        bytes: BYTES.load(Ordering::Relaxed),
        count: COUNT.load(Ordering::Relaxed),
        usable: USABLE.load(Ordering::Relaxed),
    }
}

fn show(step: &str, base: &Mark, n: usize, t: Instant) {
    let m = mark();
    let n = n.max(1) as f64;
    println!(
        "{step:<28} {:>6.2}s rss {:>7.1} MB ({:>6.1} B/sub) heap {:>7.1} MB ({:>6.1} B/sub, {:>5.2} allocs/sub, {:>6.1} B/sub in size classes)",
        t.elapsed().as_secs_f64(),
        m.rss as f64 / 1e6,
        (m.rss - base.rss) as f64 / n,
        m.bytes as f64 / 1e6,
        (m.bytes - base.bytes) as f64 / n,
        (m.count - base.count) as f64 / n,
        (m.usable - base.usable) as f64 / n,
    );
}

struct Wrap(herald::model::Subscription);

impl AsRef<herald::model::Subscription> for Wrap {
    fn as_ref(&self) -> &herald::model::Subscription {
        &self.0
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: mem_probe <data dir>"))?;
    println!(
        "size_of Subscription {} Target {}",
        std::mem::size_of::<herald::model::Subscription>(),
        std::mem::size_of::<herald::route::store::Target>(),
    );
    for size in [288usize, 304, 320, 336, 376, 384] {
        // SAFETY: a plain allocation, freed right away.
        let usable = unsafe {
            let p = mi_malloc(size);
            let u = mi_usable_size(p);
            mi_free(p);
            u
        };
        println!("mimalloc: {size} bytes take {usable}");
    }
    let mut cfg = Config::defaults();
    cfg.storage.path = dir.into();
    let t = Instant::now();
    let base = mark();
    let journal: Arc<dyn Journal> = Arc::new(EmbeddedJournal::open(
        &cfg.storage,
        cfg.ingest.dedup_window,
    )?);
    show("open", &base, 1, t);
    if std::env::var_os("PROBE_TWICE").is_some() {
        drop(journal.recover()?);
        show("recover, dropped", &base, 1_000_000, t);
    }
    let recovered = journal.recover()?;
    let n = recovered.subscriptions.len();
    println!("{n} subscriptions");
    show("recover", &base, n, t);
    println!(
        "recovered vec capacity {} ({:.1} B/sub inline)",
        recovered.subscriptions.capacity(),
        (recovered.subscriptions.capacity() * std::mem::size_of::<herald::model::Subscription>())
            as f64
            / n as f64
    );
    {
        let before = mark();
        let copy: Vec<herald::model::Subscription> = recovered.subscriptions.to_vec();
        show("  (a clone of the subs)", &before, n, t);
        drop(copy);
        let before = mark();
        let index = herald::route::TopicIndex::<Wrap>::new();
        index.upsert_many(
            recovered
                .subscriptions
                .iter()
                .map(|s| Arc::new(Wrap(s.clone()))),
        );
        show("  (an index of clones)", &before, n, t);
        drop(index);
    }
    show("recover, clones dropped", &base, n, t);
    let subs = Subscriptions::load(
        journal.clone(),
        recovered.subscriptions,
        RenderDefaults {
            user_agent: http::HeaderValue::from_static("probe"),
        },
    );
    show("load", &base, n, t);
    unsafe { mi_collect(true) };
    show("mi_collect(true)", &base, n, t);
    std::thread::sleep(std::time::Duration::from_secs(2));
    show("after 2 s", &base, n, t);
    println!("stored {}", subs.len());
    if let Some(t) = subs.list(None, 1, |_| true).pop() {
        // SAFETY: the pointer is inside a live allocation; mimalloc finds its block.
        let usable = unsafe { mi_usable_size((Arc::as_ptr(&t) as *const u8).sub(16)) };
        println!("an Arc<Target> takes {usable} bytes");
    }
    Ok(())
}
