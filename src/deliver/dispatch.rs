//! The dispatcher: per-endpoint queues, concurrency limits and retry timers, in bounded memory.
//!
//! Every subscription with work is an *endpoint* with its own queue, its own driver task and
//! at most `[delivery] max_in_flight_per_endpoint` *lanes*, so a slow or dead target only ever
//! holds its own deliveries (DESIGN §4 isolation). Endpoints exist only while they have work; an
//! idle one is dropped, so a million quiet subscriptions cost nothing here. Across endpoints,
//! an attempt also takes a turn of its receiver's origin (`[delivery] max_in_flight_per_origin`,
//! `origin.rs`), so many subscriptions to one host do not flood it.
//!
//! A lane is a task that runs attempts one after another while the endpoint has ready work;
//! with none it parks for `[delivery] lane_linger` (25 ms), and work arriving meanwhile is
//! handed to it, before it ends. Under load, or with bursts closer together than the linger, a
//! lane runs thousands of attempts, so a delivery costs no task spawn, no semaphore and no
//! wake-up of the driver; the driver only starts lanes, sleeps until the next retry is due,
//! refills from disk and retires the idle endpoint once its last lane has ended.
//!
//! The journal's queue is the truth; memory holds a window of it. Each endpoint keeps at most
//! `[storage] memory_window` deliveries (ready, waiting for a retry, or in flight). Past that it
//! is *spilled*: new work stays on disk only, and when the window drains below half the driver
//! reads the next slice back from the journal (`scan_queue`, in due-time order). A backlog of
//! millions to a dead endpoint therefore lives on disk, and start-up only marks endpoints
//! spilled instead of loading their queues.
//!
//! A window per endpoint does not bound the whole: with thousands of subscriptions each could
//! hold its window (2,000 subscriptions to one dead receiver held 2 million deliveries, 700 MB
//! and growing, before this). So all endpoints together hold at most `[storage] memory_budget`
//! deliveries, give or take one admission per worker thread. Past it, an endpoint still takes
//! work into memory while it holds less than its fair share (the budget over the endpoints with
//! work, at least one), so a dead receiver's retries cannot starve a healthy one; beyond that it
//! spills. A spilled endpoint whose refill finds no room waits in a queue of such endpoints and
//! is woken, oldest first, when deliveries leave memory ([`Budget`]).
//!
//! Re-reading must never resurrect a delivery that just finished but whose journal write is
//! still in the writer's channel. A refill therefore (1) notes which deliveries are in memory
//! and starts recording completions, (2) waits for a journal queue barrier, so every earlier
//! write is visible and every delivery queued before it is in the queue, (3) scans, and (4)
//! skips what memory holds or what completed meanwhile; if it had to skip such a completion it
//! stays spilled and looks again later, so nothing is stranded.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Notify;

use super::origin::{Origins, Recent, Turn as OriginTurn};
use super::{Attempt, Client, SendLimits};
use crate::config::DeliveryConfig;
use crate::journal::{Gate, Journal, JournalError, QueuePos, Transition};
use crate::model::{
    AttemptClass, AttemptRecord, Delivery, DeliveryId, DeliveryRecord, DeliveryStatus, Event,
    SeqGen, SubscriptionId, now_ms,
};
use crate::outcome::{self, AttemptSummary, DeadReason, EventRef, Next};
use crate::render::AttemptCtx;
use crate::route::store::Subscriptions;
use crate::telemetry::metrics::{self as m, DeliveryMetrics};

/// What the dispatcher needs from the configuration.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub delivery: DeliveryConfig,
    /// Deliveries held in memory per endpoint.
    pub memory_window: usize,
    /// Deliveries held in memory across all endpoints.
    pub memory_budget: usize,
}

/// How many more deliveries an endpoint holding `held` may take into memory, with `total`
/// held by all endpoints together. `endpoints` (the endpoints with work) is asked only when the
/// budget is spent: then the endpoint may still fill its fair share of the budget.
fn room(
    held: usize,
    window: usize,
    total: usize,
    budget: usize,
    endpoints: impl FnOnce() -> usize,
) -> usize {
    let window_room = window.saturating_sub(held);
    let budget_room = budget.saturating_sub(total);
    if budget_room >= window_room {
        return window_room;
    }
    let fair = (budget / endpoints().max(1)).max(1);
    window_room.min(budget_room.max(fair.saturating_sub(held)))
}

/// The memory budget's books: deliveries held by all endpoints, and the spilled endpoints
/// waiting for room to refill, oldest first.
struct Budget {
    limit: usize,
    held: AtomicUsize,
    waiting: Mutex<VecDeque<std::sync::Weak<Endpoint>>>,
    /// `waiting.len()`, read without the lock on every release.
    waiters: AtomicUsize,
    gauge: metrics::Gauge,
    waiters_gauge: metrics::Gauge,
}

impl Budget {
    fn total(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Books an endpoint's change from holding `before` to `after` deliveries; a release wakes
    /// as many waiting endpoints as deliveries left, once the total is under the budget.
    fn account(&self, before: usize, after: usize) {
        if after > before {
            self.take(after - before);
        } else if before > after {
            self.release(before - after);
        }
    }

    fn take(&self, n: usize) {
        let total = self.held.fetch_add(n, Ordering::Relaxed) + n;
        self.gauge.set(total as f64);
    }

    fn release(&self, n: usize) {
        let total = self.held.fetch_sub(n, Ordering::Relaxed) - n;
        self.gauge.set(total as f64);
        if total < self.limit && self.waiters.load(Ordering::Acquire) > 0 {
            self.wake(n);
        }
    }

    /// Takes `n` from the budget for a refill about to read; what it does not use goes back
    /// when the [`Reservation`] is dropped.
    fn reserve(&self, n: usize) -> Reservation<'_> {
        self.take(n);
        Reservation {
            budget: self,
            left: n,
        }
    }

    /// Queues a spilled endpoint for room, unless it is queued already.
    fn wait_for_room(&self, ep: &Arc<Endpoint>) {
        if ep.awaiting_room.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.push_back(Arc::downgrade(ep));
        self.waiters.store(waiting.len(), Ordering::Release);
        self.waiters_gauge.set(waiting.len() as f64);
    }

    fn wake(&self, mut n: usize) {
        let mut woken = Vec::new();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            while n > 0 {
                let Some(ep) = waiting.pop_front() else { break };
                if let Some(ep) = ep.upgrade() {
                    ep.awaiting_room.store(false, Ordering::Release);
                    woken.push(ep);
                    n -= 1;
                }
            }
            self.waiters.store(waiting.len(), Ordering::Release);
            self.waiters_gauge.set(waiting.len() as f64);
        }
        for ep in woken {
            ep.wake.notify_one();
        }
    }
}

/// One delivery in memory: its queued form (whose due time is part of its journal key, so it is
/// never changed in place) and when to run it.
#[derive(Debug, Clone)]
struct Item {
    delivery: Delivery,
    run_at_ms: i64,
    /// The event, when it is still in memory from ingest; loaded from the journal otherwise.
    event: Option<Arc<Event>>,
    /// Where its transitions go while the writer has not taken its event's append (ingest
    /// started it early; see [`Journal::append_staged`]).
    gate: Option<Arc<Gate>>,
}

impl Item {
    /// Records a transition of this item's delivery: through its gate while that is shut.
    #[inline]
    fn record(&self, journal: &dyn Journal, t: Transition) {
        match self.gate.as_deref() {
            Some(g) => g.record(journal, t),
            None => journal.record(t),
        }
    }
}

#[derive(Default)]
struct State {
    ready: VecDeque<Item>,
    /// Waiting for their time, by (run at, id).
    delayed: BTreeMap<(i64, DeliveryId), Item>,
    inflight: HashSet<DeliveryId, foldhash::fast::RandomState>,
    /// There are queued deliveries on disk that are not in memory.
    spilled: bool,
    /// Bumped whenever something is spilled, so a refill knows whether it saw everything.
    spill_gen: u64,
    /// While a refill runs: deliveries that finished or were re-queued meanwhile.
    refilling: Option<HashSet<DeliveryId>>,
    /// Where the next refill of this spill resumes reading (the last queue position read);
    /// `None`: read from the start. See [`refill`].
    cursor: Option<QueuePos>,
    /// A driver task is running for this endpoint.
    running: bool,
    /// Lanes running (each has at most one attempt in flight), parked ones included.
    lanes: usize,
    /// Lanes parked on [`Endpoint::work`], waiting out `[delivery] lane_linger` for more work.
    parked: usize,
    /// Dropped from the endpoint map; a new endpoint must be made.
    retired: bool,
}

impl State {
    fn held(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.inflight.len()
    }

    /// The ids waiting in memory (`ready` and `delayed`; `inflight` is a set of its own), for a
    /// refill to look its rows up in: scanning the queues per row made a refill of a
    /// half-full window about a million comparisons, under the endpoint's lock.
    fn queued_ids(&self) -> HashSet<DeliveryId, foldhash::fast::RandomState> {
        self.ready
            .iter()
            .chain(self.delayed.values())
            .map(|i| i.delivery.id)
            .collect()
    }

    fn push(&mut self, item: Item, now: i64) {
        if item.run_at_ms <= now {
            self.ready.push_back(item);
        } else {
            self.delayed
                .insert((item.run_at_ms, item.delivery.id), item);
        }
    }

    fn spill(&mut self) {
        if !self.spilled {
            self.cursor = None;
        }
        self.spilled = true;
        self.spill_gen += 1;
    }

    /// Moves what has come due from `delayed` to `ready`.
    fn promote(&mut self, now: i64) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let item = entry.remove();
            self.ready.push_back(item);
        }
    }
}

/// Events read back from the journal, shared while any delivery in memory holds them. After a
/// restart every endpoint refills at once, and the endpoints of one busy source read the same
/// events: 2,000 subscriptions held 490k deliveries of about 1,000 events, and each delivery
/// had its own copy of its event.
struct LoadedEvents {
    map: Mutex<LoadedMap>,
}

struct LoadedMap {
    events: std::collections::HashMap<u64, std::sync::Weak<Event>, foldhash::fast::RandomState>,
    /// Entries no delivery holds any more are dropped once the map reaches this size, which is
    /// then doubled if most entries were still held (so pruning stays rare).
    prune_at: usize,
}

/// The smallest [`LoadedMap::prune_at`].
const LOADED_PRUNE_MIN: usize = 4096;

impl LoadedEvents {
    fn new() -> LoadedEvents {
        LoadedEvents {
            map: Mutex::new(LoadedMap {
                events: Default::default(),
                prune_at: LOADED_PRUNE_MIN,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LoadedMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event under `seq`: a copy some delivery in memory still holds, else `load`'s.
    fn get_or_load(&self, seq: u64, load: impl FnOnce() -> Option<Event>) -> Option<Arc<Event>> {
        if let Some(e) = self
            .lock()
            .events
            .get(&seq)
            .and_then(std::sync::Weak::upgrade)
        {
            return Some(e);
        }
        // Loaded outside the lock; two refills loading one event at once keep one copy each.
        let e = Arc::new(load()?);
        let mut map = self.lock();
        if map.events.len() >= map.prune_at {
            map.events.retain(|_, w| w.strong_count() > 0);
            map.prune_at = (map.events.len() * 2).max(LOADED_PRUNE_MIN);
        }
        map.events.insert(seq, Arc::downgrade(&e));
        Some(e)
    }
}

/// Room in the budget held for a refill: each delivery it takes into memory uses one (the
/// budget counted it already); the rest is given back on drop, on every way out of the refill.
struct Reservation<'a> {
    budget: &'a Budget,
    left: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            self.budget.release(self.left);
        }
    }
}

struct Endpoint {
    id: SubscriptionId,
    state: Mutex<State>,
    /// Queued in [`Budget::waiting`] (set and cleared with that queue, not under `state`).
    awaiting_room: AtomicBool,
    /// Wakes the driver.
    wake: Notify,
    /// Wakes a parked lane: ready work it takes instead of a new lane being started.
    work: Notify,
}

impl Endpoint {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queues half-changed in a way that
        // loses durable data (the journal is the truth), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    cfg: DispatchConfig,
    journal: Arc<dyn Journal>,
    client: Client,
    subs: Arc<Subscriptions>,
    /// foldhash, as the pool's origins: looked up for every delivery, and SipHash showed.
    endpoints: DashMap<SubscriptionId, Arc<Endpoint>, foldhash::fast::RandomState>,
    stopping: AtomicBool,
    inflight: AtomicUsize,
    /// One per delivery connection allowed (`[delivery] max_connections`): a lane holds one
    /// while it runs attempts, so attempts in flight never want more connections than the pool
    /// may open, and an attempt that has to wait does so before its timeout starts.
    slots: tokio::sync::Semaphore,
    /// Attempts in flight per origin (`[delivery] max_in_flight_per_origin`, `origin.rs`).
    origins: Origins,
    budget: Budget,
    loaded: LoadedEvents,
    metrics: DeliveryMetrics,
    idle: Notify,
}

impl Inner {
    /// Whether a spilled endpoint holding `held` reads more back now ([`refill_due`]). When the
    /// budget, not its window, keeps it from that, it is queued to be woken as deliveries leave
    /// memory: before the driver waits (its `notified` is already enabled, so a release after
    /// this wakes it), then looked at again, in case room was made just before. Meanwhile the
    /// driver still sleeps until its next retry.
    fn refill_due(&self, ep: &Arc<Endpoint>, held: usize) -> bool {
        let window = self.cfg.memory_window;
        if refill_due(held, window, self.room(held)) {
            return true;
        }
        if self.room(held) < window.saturating_sub(held) {
            self.budget.wait_for_room(ep);
            return refill_due(held, window, self.room(held));
        }
        false
    }

    /// [`room`] for an endpoint holding `held`.
    fn room(&self, held: usize) -> usize {
        room(
            held,
            self.cfg.memory_window,
            self.budget.total(),
            self.budget.limit,
            || self.endpoints.len(),
        )
    }

    /// Lanes (attempts in flight) per endpoint at most.
    fn lane_limit(&self) -> usize {
        self.cfg.delivery.max_in_flight_per_endpoint.max(1)
    }
}

/// Handle to the dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

/// What a manual retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryNow {
    /// Queued to run now.
    Queued,
    /// An attempt is running right now; nothing changed.
    InFlight,
}

impl Dispatcher {
    pub fn new(
        cfg: DispatchConfig,
        journal: Arc<dyn Journal>,
        client: Client,
        subs: Arc<Subscriptions>,
    ) -> Dispatcher {
        let slots = tokio::sync::Semaphore::new(cfg.delivery.max_connections.max(1));
        let origins = Origins::new(
            cfg.delivery.max_in_flight_per_origin,
            cfg.delivery.max_connections,
        );
        let budget = cfg.memory_budget;
        Dispatcher {
            inner: Arc::new(Inner {
                cfg,
                journal,
                client,
                subs,
                endpoints: DashMap::default(),
                stopping: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                slots,
                origins,
                budget: Budget {
                    limit: budget.max(1),
                    held: AtomicUsize::new(0),
                    waiting: Mutex::new(VecDeque::new()),
                    waiters: AtomicUsize::new(0),
                    gauge: metrics::gauge!(m::DELIVERIES_IN_MEMORY),
                    waiters_gauge: metrics::gauge!(m::ENDPOINTS_AWAITING_MEMORY),
                },
                loaded: LoadedEvents::new(),
                metrics: DeliveryMetrics::new(),
                idle: Notify::new(),
            }),
        }
    }

    /// Hands over deliveries that the journal has written, or that it is sure to write
    /// (`gate`: where their transitions wait until it has; see [`Journal::append_staged`]).
    pub fn enqueue(&self, event: &Arc<Event>, deliveries: &[Delivery], gate: Option<&Arc<Gate>>) {
        self.inner
            .metrics
            .pending
            .increment(deliveries.len() as f64);
        for d in deliveries {
            self.push(
                d.subscription,
                Item {
                    delivery: *d,
                    run_at_ms: d.due_at_ms,
                    event: Some(event.clone()),
                    gate: gate.cloned(),
                },
            );
        }
    }

    /// Start-up: these subscriptions have deliveries queued on disk.
    pub fn resume(&self, queued: &[(SubscriptionId, u64)]) {
        for (sub, _) in queued {
            self.with_endpoint(*sub, |st| st.spill());
        }
    }

    /// Runs a delivery again now: a dead letter or a delivered delivery starts a new retry cycle;
    /// a queued one is moved up to now.
    pub async fn retry_now(&self, record: &DeliveryRecord) -> Result<RetryNow, JournalError> {
        let now = now_ms();
        let sub = record.subscription;
        let ev = EventRef {
            id: &record.event_id,
            event_type: &record.event_type,
        };
        let ep = self.endpoint(sub);
        {
            let mut st = ep.lock();
            if st.inflight.contains(&record.id) {
                return Ok(RetryNow::InFlight);
            }
            // In memory: run it now, keeping its queued form (its journal key) unchanged.
            if let Some(pos) = st.ready.iter().position(|i| i.delivery.id == record.id) {
                let item = st.ready.remove(pos).expect("position is in range");
                st.ready.push_front(item);
                drop(st);
                ep.wake.notify_one();
                return Ok(RetryNow::Queued);
            }
            let key = st
                .delayed
                .iter()
                .find(|(_, i)| i.delivery.id == record.id)
                .map(|(k, _)| *k);
            if let Some(key) = key {
                let mut item = st.delayed.remove(&key).expect("key was just found");
                item.run_at_ms = now;
                st.ready.push_front(item);
                drop(st);
                ep.wake.notify_one();
                return Ok(RetryNow::Queued);
            }
        }
        // Not in memory: re-key it in the journal (a new cycle, due now).
        let journal = self.inner.journal.clone();
        let r = record.clone();
        let queued = tokio::task::spawn_blocking(move || journal.queued(&r))
            .await
            .map_err(|_| JournalError::Closed)??;
        let base = Delivery {
            id: record.id,
            subscription: sub,
            event_seq: record.event_seq,
            attempts: record.attempts,
            cycle_start: 0,
            due_at_ms: record.next_attempt_at_ms.unwrap_or(now),
            created_at_ms: record.created_at_ms,
        };
        let was_dead = record.status == DeliveryStatus::Dead;
        let (next, t) = outcome::requeued(
            &base,
            queued.as_ref(),
            was_dead,
            ev,
            record.last_attempt.clone(),
            now,
        );
        self.inner.journal.record(t);
        if queued.is_none() {
            self.inner.metrics.pending.increment(1.0);
            if next.attempts > 0 {
                self.inner.metrics.retry_depth.increment(1.0);
            }
        }
        {
            let mut st = ep.lock();
            if let Some(r) = st.refilling.as_mut() {
                r.insert(next.id);
            }
        }
        self.push(
            sub,
            Item {
                delivery: next,
                run_at_ms: now,
                event: None,
                gate: None,
            },
        );
        Ok(RetryNow::Queued)
    }

    /// Delivers already-journaled events again to one subscription (a replay): one new
    /// delivery per event, made durable before they are queued. Returns how many were created.
    pub async fn redeliver(
        &self,
        sub: SubscriptionId,
        events: Vec<Arc<Event>>,
        ids: &SeqGen,
    ) -> Result<usize, JournalError> {
        let now = now_ms();
        let mut created = Vec::with_capacity(events.len());
        for event in events {
            let d = Delivery::fresh(DeliveryId(ids.next()), sub, event.seq, now);
            self.inner.journal.record(outcome::created(
                &d,
                EventRef {
                    id: &event.id,
                    event_type: &event.event_type,
                },
            ));
            created.push((event, d));
        }
        if created.is_empty() {
            return Ok(0);
        }
        self.inner
            .journal
            .flush()
            .await
            .map_err(|_| JournalError::Closed)??;
        for (event, d) in &created {
            self.enqueue(event, std::slice::from_ref(d), None);
        }
        self.inner.metrics.created.increment(created.len() as u64);
        Ok(created.len())
    }

    /// Stops starting attempts and waits up to `deadline` for the ones in flight. Returns how
    /// many were still running when it gave up (they stay queued in the journal).
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Lanes waiting for a connection slot wake up, see `stopping` and end.
        self.inner.slots.close();
        for ep in self.inner.endpoints.iter() {
            ep.wake.notify_one();
            ep.work.notify_waiters();
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a completion in between is not missed.
            notified.as_mut().enable();
            let n = self.inner.inflight.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.inner.inflight.load(Ordering::SeqCst);
            }
        }
    }

    /// Attempts in flight right now.
    pub fn inflight(&self) -> usize {
        self.inner.inflight.load(Ordering::SeqCst)
    }

    fn endpoint(&self, sub: SubscriptionId) -> Arc<Endpoint> {
        self.inner
            .endpoints
            .entry(sub)
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    id: sub,
                    state: Mutex::new(State::default()),
                    awaiting_room: AtomicBool::new(false),
                    wake: Notify::new(),
                    work: Notify::new(),
                })
            })
            .clone()
    }

    /// Runs `f` on a live endpoint's state and makes sure its driver runs.
    fn with_endpoint(&self, sub: SubscriptionId, f: impl FnOnce(&mut State)) {
        loop {
            let ep = self.endpoint(sub);
            let mut st = ep.lock();
            if st.retired {
                // Lost a race with the endpoint going idle; it has left the map by now.
                drop(st);
                self.inner
                    .endpoints
                    .remove_if(&sub, |_, e| Arc::ptr_eq(e, &ep));
                continue;
            }
            let before = st.held();
            f(&mut st);
            self.inner.budget.account(before, st.held());
            let start = !st.running;
            st.running = true;
            let wake = !start && driver_has_work(&st, self.inner.lane_limit());
            let hand_over = st.parked > 0 && !st.ready.is_empty();
            drop(st);
            if hand_over {
                ep.work.notify_one();
            }
            if start {
                tokio::spawn(drive(self.inner.clone(), ep));
            } else if wake {
                ep.wake.notify_one();
            }
            return;
        }
    }

    fn push(&self, sub: SubscriptionId, item: Item) {
        let now = now_ms();
        let inner = &self.inner;
        self.with_endpoint(sub, |st| {
            if st.spilled || inner.room(st.held()) == 0 {
                st.spill();
            } else {
                st.push(item, now);
            }
        });
    }
}

/// What the driver does next, decided under the endpoint lock and acted on after it.
enum Step {
    /// Start this many lanes.
    Lanes(usize),
    Refill,
    /// Sleep until this many ms from now, or until woken.
    Sleep(u64),
    /// Wait to be woken (a lane ended, new work arrived).
    Wait,
    Exit,
}

/// Whether a change to an endpoint's state gives its driver something to do: ready work that
/// no parked lane takes, with a lane free, or anything other than ready work (a retry to time,
/// a spill to read back). Ready work while every lane runs needs no driver: the lanes take it
/// in turn. Called under the endpoint lock by whoever changed the state.
fn driver_has_work(st: &State, lane_limit: usize) -> bool {
    lanes_to_start(st, lane_limit) > 0 || !st.delayed.is_empty() || st.spilled
}

/// Lanes the driver starts: one per ready delivery that no parked lane will take, up to the
/// endpoint's limit (parked lanes count against it).
fn lanes_to_start(st: &State, lane_limit: usize) -> usize {
    st.ready
        .len()
        .saturating_sub(st.parked)
        .min(lane_limit.saturating_sub(st.lanes))
}

/// Moves the front of `ready` to `inflight` (the lane saw ready work under this lock).
fn take_ready(st: &mut State) -> Item {
    let item = st.ready.pop_front().expect("lane_step saw ready work");
    st.inflight.insert(item.delivery.id);
    item
}

/// What a lane's look at its endpoint came to, acted on once the lock is released.
enum Turn {
    Run(Item),
    /// Ready work, but no connection slot free.
    WaitForSlot,
    Park,
}

/// What a lane does next, decided under the endpoint lock.
#[derive(Debug, PartialEq, Eq)]
enum LaneStep {
    /// Run the front of `ready`.
    Take,
    /// Wait for work on [`Endpoint::work`] until the linger deadline (`[delivery] lane_linger`).
    Park,
    /// End the lane.
    Exit,
}

/// A lane's policy: take ready work; with none, park while its linger lasts (`linger_left`);
/// end when the dispatcher stops.
fn lane_step(st: &State, stopping: bool, linger_left: bool) -> LaneStep {
    if stopping {
        LaneStep::Exit
    } else if !st.ready.is_empty() {
        LaneStep::Take
    } else if linger_left {
        LaneStep::Park
    } else {
        LaneStep::Exit
    }
}

/// One endpoint's driver: starts lanes while there is ready work and a lane free, sleeps until
/// the next retry is due, refills from disk when spilled, and exits when the endpoint is idle.
async fn drive(inner: Arc<Inner>, ep: Arc<Endpoint>) {
    let limit = inner.lane_limit();
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            ep.lock().running = false;
            return;
        }
        let now = now_ms();
        let notified = ep.wake.notified();
        tokio::pin!(notified);
        // Register interest before looking, so a push between the look and the wait wakes us.
        notified.as_mut().enable();
        let (step, hand_over) = {
            let mut st = ep.lock();
            st.promote(now);
            // Retries that came due go to parked lanes first.
            let hand_over = st.ready.len().min(st.parked);
            let start = lanes_to_start(&st, limit);
            let step = if start > 0 {
                st.lanes += start;
                Step::Lanes(start)
            } else if st.spilled && st.refilling.is_none() && inner.refill_due(&ep, st.held()) {
                Step::Refill
            } else if let Some((&(due, _), _)) = st.delayed.first_key_value() {
                Step::Sleep((due - now).max(1) as u64)
            } else if st.lanes > 0 || st.spilled {
                Step::Wait
            } else {
                // Idle: leave the map so a million quiet subscriptions hold nothing here.
                st.running = false;
                st.retired = true;
                Step::Exit
            };
            (step, hand_over)
        };
        for _ in 0..hand_over {
            ep.work.notify_one();
        }
        match step {
            Step::Lanes(n) => {
                for _ in 0..n {
                    tokio::spawn(lane(inner.clone(), ep.clone()));
                }
            }
            Step::Refill => {
                if let Err(e) = refill(&inner, &ep).await {
                    tracing::warn!(subscription = %ep.id, error = %e, "could not read the queue back from the journal; will try again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Step::Sleep(ms) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = notified => {}
                }
            }
            Step::Wait => notified.await,
            Step::Exit => {
                inner
                    .endpoints
                    .remove_if(&ep.id, |_, e| Arc::ptr_eq(e, &ep));
                return;
            }
        }
    }
}

/// One lane of an endpoint: takes the next ready delivery and runs its attempt, again and
/// again; with nothing ready it parks for up to `[delivery] lane_linger` (counted in `parked`,
/// so ready work goes to it rather than to a new lane) and then ends. Its slot was counted in
/// `lanes` by whoever started it; it gives the slot back under the same lock that saw the queue
/// empty, so work pushed after that sees the free slot and wakes the driver.
///
/// Why lanes linger: starting one is a task spawn that copies the lane's ~2 KiB future. Under
/// load a lane runs thousands of attempts, but work that comes in bursts a few milliseconds
/// apart (a feeder posting batches, a CMS publishing a site) emptied the queue between bursts,
/// and every lane (and the endpoint's driver) ended and was started again: at half of the load
/// bench's peak that was a spawn per delivery, and `memcpy` grew to a sixth of the workers'
/// time. A parked lane holds its ~2 KiB and a timer entry until its linger ends.
async fn lane(inner: Arc<Inner>, ep: Arc<Endpoint>) {
    let linger = inner.cfg.delivery.lane_linger;
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut parked = false;
    // The lane's connection slot: taken before its first attempt, kept while it runs attempts
    // one after another (no semaphore traffic per attempt), given back when it parks or ends.
    let mut slot: Option<tokio::sync::SemaphorePermit<'_>> = None;
    // The origin of its last attempt (`origin::Recent`).
    let mut recent = Recent::default();
    loop {
        // The wait lives in this inner loop only, so the lane's future does not carry it
        // through the attempt.
        let item = loop {
            let notified = ep.work.notified();
            tokio::pin!(notified);
            let turn = {
                let mut st = ep.lock();
                if std::mem::take(&mut parked) {
                    st.parked -= 1;
                }
                // Only a retry waits in `delayed`; at load it is empty, and the clock is not read.
                if !st.delayed.is_empty() {
                    st.promote(now_ms());
                }
                let linger_left = !linger.is_zero()
                    && linger_until.is_none_or(|t| t > tokio::time::Instant::now());
                match lane_step(&st, inner.stopping.load(Ordering::SeqCst), linger_left) {
                    LaneStep::Take if slot.is_none() => match inner.slots.try_acquire() {
                        Ok(s) => {
                            slot = Some(s);
                            Turn::Run(take_ready(&mut st))
                        }
                        // Every connection is spoken for: wait (the work stays queued, where
                        // another lane or a manual retry sees it), then look again.
                        Err(_) => Turn::WaitForSlot,
                    },
                    LaneStep::Take => Turn::Run(take_ready(&mut st)),
                    LaneStep::Park => {
                        st.parked += 1;
                        parked = true;
                        slot = None;
                        // Registered under the lock, so work pushed once it is released
                        // wakes this lane.
                        notified.as_mut().enable();
                        Turn::Park
                    }
                    LaneStep::Exit => {
                        st.lanes -= 1;
                        drop(st);
                        // The driver may retire the endpoint, or refill it, now.
                        ep.wake.notify_one();
                        return;
                    }
                }
            };
            match turn {
                Turn::Run(item) => break item,
                Turn::WaitForSlot => {
                    inner.metrics.connection_waits.increment(1);
                    // Closed only by `drain`: the next look sees `stopping`.
                    slot = inner.slots.acquire().await.ok();
                    continue;
                }
                Turn::Park => {}
            }
            let until = *linger_until.get_or_insert_with(|| tokio::time::Instant::now() + linger);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        };
        linger_until = None;
        inner.inflight.fetch_add(1, Ordering::SeqCst);
        attempt(&inner, &ep, item, &mut slot, &mut recent).await;
    }
}

/// Reads the next slice of a spilled endpoint's queue back from the journal, with the events
/// of what it read (one blocking task for both, not one per delivery).
///
/// Delivered entries leave tombstones in the queue until compaction drops them, so reading a
/// busy subscription's queue from its start skips every delivery made since: scanning from
/// the start on every refill would cost more the longer the backlog lasts, and a spill under
/// load might never catch up. So a spill reads on from a cursor (the last position read), and
/// only once the cursor reaches the end does the next refill read from the start again: that
/// pass finds what was queued behind the cursor meanwhile (an ingest whose due time is a
/// little older than what was already read) and is the only one that may end the spill. A
/// cursor never passes the present, so deliveries due later (retries) are read in due-time
/// order with everything else.
async fn refill(inner: &Arc<Inner>, ep: &Arc<Endpoint>) -> Result<(), JournalError> {
    let window = inner.cfg.memory_window;
    let (gen_at_start, after, asked, mut room) = {
        let mut st = ep.lock();
        st.refilling = Some(HashSet::new());
        // Read no more than there is room for now (the driver refills at half the window, and
        // within the budget): rows read past it were read, and their events loaded, again by
        // the next refill. The room is reserved in the budget before the read, so refills
        // running side by side cannot load more events than the budget between them.
        let (held, room) = (st.held(), inner.room(st.held()));
        let budget_bound = room < window.saturating_sub(held);
        let rows = refill_rows(room, st.cursor.is_none(), held, budget_bound);
        (st.spill_gen, st.cursor, rows, inner.budget.reserve(room))
    };
    let result = async {
        inner
            .journal
            .queue_barrier()
            .await
            .map_err(|_| JournalError::Closed)??;
        let journal = inner.journal.clone();
        let sub = ep.id;
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || {
            let rows = journal.scan_queue(sub, after, asked)?;
            let loaded = rows
                .into_iter()
                .map(|d| {
                    // Unreadable or gone: the attempt loads it (or ends the delivery).
                    let event = inner
                        .loaded
                        .get_or_load(d.event_seq, || journal.event(d.event_seq).ok().flatten());
                    (d, event)
                })
                .collect::<Vec<_>>();
            Ok::<_, JournalError>(loaded)
        })
        .await
        .map_err(|_| JournalError::Closed)?
    }
    .await;
    let mut st = ep.lock();
    let finished = st.refilling.take().unwrap_or_default();
    let rows = result?;
    inner.metrics.refills.increment(1);
    inner.metrics.refill_rows.increment(rows.len() as u64);
    let now = now_ms();
    let mut skipped_finished = false;
    let mut read_all = rows.len() < asked;
    let mut queued = st.queued_ids();
    let holds =
        |st: &State, queued: &HashSet<_, _>, id| st.inflight.contains(&id) || queued.contains(&id);
    for (d, event) in rows {
        if after.is_some() && d.due_at_ms > now {
            // Past the present: what is due later is left to the pass from the start, which
            // reads everything due before it first.
            read_all = true;
            break;
        }
        let full = room.left == 0 || st.held() >= window;
        if full && !holds(&st, &queued, d.id) && !finished.contains(&d.id) {
            // No room: the cursor stays before this one.
            read_all = false;
            break;
        }
        st.cursor = Some(QueuePos::of(&d));
        if finished.contains(&d.id) {
            skipped_finished = true;
            continue;
        }
        if holds(&st, &queued, d.id) {
            continue;
        }
        queued.insert(d.id);
        st.push(
            Item {
                delivery: d,
                run_at_ms: d.due_at_ms,
                event,
                gate: None,
            },
            now,
        );
        room.left -= 1;
    }
    let (restart, unspill) = after_pass(
        after.is_some(),
        read_all,
        skipped_finished,
        st.spill_gen == gen_at_start,
    );
    if restart {
        st.cursor = None;
    }
    if unspill {
        st.spilled = false;
    }
    Ok(())
}

/// Whether a spilled endpoint holding `held` with `room` for more (`window` its own limit) reads
/// more back: with the window alone, once it has drained below half of it, so a refill is worth
/// its scan; when the budget is what limits it, as soon as it has any room.
fn refill_due(held: usize, window: usize, room: usize) -> bool {
    let budget_bound = room < window.saturating_sub(held);
    room > held || (budget_bound && room > 0)
}

/// How many queue rows a refill reads: the endpoint's [`room`], at least one (so that a pass
/// ends). A pass from the start meets what the endpoint holds among the first rows (the
/// earliest due) and skips them, so when the budget limits the endpoint it reads those too:
/// with room for fewer rows than it holds, it would otherwise read only rows it holds, find
/// nothing new, and do the same again (an endpoint spun on scans so). With the window alone it
/// has room for more than it holds whenever it refills. Also from the start, where what the endpoint holds comes first and is skipped:
/// reading a whole window there loaded those rows' events for nothing (measured slower, 34–42k
/// against 41–46k deliveries a second with an endpoint spilling at fan-out 1).
fn refill_rows(room: usize, from_start: bool, held: usize, budget_bound: bool) -> usize {
    let skipped = if from_start && budget_bound { held } else { 0 };
    (room + skipped).max(1)
}

/// What a refill pass that `read_all` it could (the queue's end, or the present) means for
/// the spill: `(read from the start next time, the spill is over)`. Reaching the end from a
/// cursor proves nothing about what was queued behind it, so only a pass from the start can
/// end a spill, and only if nothing was spilled or finished while it read.
fn after_pass(
    from_cursor: bool,
    read_all: bool,
    skipped_finished: bool,
    nothing_spilled_meanwhile: bool,
) -> (bool, bool) {
    let over = read_all && !from_cursor && !skipped_finished && nothing_spilled_meanwhile;
    (read_all, over)
}

/// Loads an item's event: from memory when ingest handed it over, else from the journal.
async fn load_event(inner: &Inner, item: &Item) -> Result<Option<Arc<Event>>, JournalError> {
    if let Some(e) = &item.event {
        return Ok(Some(e.clone()));
    }
    let journal = inner.journal.clone();
    let seq = item.delivery.event_seq;
    tokio::task::spawn_blocking(move || journal.event(seq))
        .await
        .map_err(|_| JournalError::Closed)?
        .map(|e| e.map(Arc::new))
}

/// A short, printable start of a response body for the delivery log.
fn body_excerpt(body: &Option<Bytes>) -> Option<String> {
    body.as_ref()
        .filter(|b| !b.is_empty())
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
}

/// One attempt of one delivery, then its outcome, by a lane that holds `slot` (its connection
/// slot, given back while the attempt waits for its origin).
async fn attempt<'a>(
    inner: &'a Arc<Inner>,
    ep: &Endpoint,
    item: Item,
    slot: &mut Option<tokio::sync::SemaphorePermit<'a>>,
    recent: &mut Recent,
) {
    let d = item.delivery;
    let next = run_attempt(inner, &item, slot, recent).await;
    // Only the last attempt out wakes a drain (which waits for none in flight): Notify's
    // `notify_waiters` takes its lock even with nobody waiting, one lock both workers took
    // for every attempt.
    if inner.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
        inner.idle.notify_waiters();
    }
    let wake = {
        let mut st = ep.lock();
        let before = st.held();
        st.inflight.remove(&d.id);
        if let Some(r) = st.refilling.as_mut() {
            r.insert(d.id);
        }
        if let Some(Next::Retry(retry)) = &next {
            if st.spilled || inner.room(st.held()) == 0 {
                st.spill();
            } else {
                st.push(
                    Item {
                        delivery: *retry,
                        run_at_ms: retry.due_at_ms,
                        event: item.event.clone(),
                        // Open by now, unless the writer is slower than the retry: kept while not.
                        gate: item.gate.clone().filter(|g| !g.is_open()),
                    },
                    now_ms(),
                );
            }
        }
        inner.budget.account(before, st.held());
        // A retry to time or a spill to read back is the driver's; ready work is this lane's.
        !st.delayed.is_empty() || st.spilled
    };
    if wake {
        ep.wake.notify_one();
    }
}

/// Waits for a turn of a busy origin, then for a connection slot again, and sends: waiting on
/// one receiver, the lane holds no slot, so the lanes of other receivers find slots meanwhile
/// (`origin.rs`).
async fn send_after_turn<'a>(
    inner: &'a Inner,
    turns: &tokio::sync::Semaphore,
    slot: &mut Option<tokio::sync::SemaphorePermit<'a>>,
    req: crate::render::Request,
    limits: SendLimits,
) -> Attempt {
    *slot = None;
    let _turn = turns.acquire().await;
    // Closed only by `drain`, which lets an attempt begun finish.
    *slot = inner.slots.acquire().await.ok();
    inner.metrics.inflight.increment(1.0);
    let a = inner.client.send(req, &limits).await;
    inner.metrics.inflight.decrement(1.0);
    a
}

/// Renders, sends and records one attempt; returns what became of the delivery (`None` when the
/// journal could not be read and the delivery stays queued as it was).
async fn run_attempt<'a>(
    inner: &'a Arc<Inner>,
    item: &Item,
    slot: &mut Option<tokio::sync::SemaphorePermit<'a>>,
    recent: &mut Recent,
) -> Option<Next> {
    let d = item.delivery;
    let event = match load_event(inner, item).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(delivery = %d.id, error = %e, "cannot load the event; the delivery stays queued");
            return None;
        }
    };
    let target = inner.subs.get(&d.subscription);
    let (Some(event), Some(target)) = (event, target) else {
        // The subscription was deleted (or, past retention, the event is gone): there is
        // nothing to send, so the delivery ends as a dead letter without an attempt.
        let ev = item.event.as_deref();
        let t = outcome::abandoned(
            &d,
            EventRef {
                id: ev.map_or("", |e| &e.id),
                event_type: ev.map_or("", |e| &e.event_type),
            },
        );
        item.record(&*inner.journal, t);
        finished(&inner.metrics, &d, &Next::Dead(DeadReason::Exhausted));
        return Some(Next::Dead(DeadReason::Exhausted));
    };
    let ev = EventRef {
        id: &event.id,
        event_type: &event.event_type,
    };
    let number = d.attempts + 1;
    let started_at_ms = now_ms();
    let ctx = AttemptCtx {
        delivery: d.id,
        attempt: number,
        timestamp_s: started_at_ms / 1000,
    };
    let sub = &target.sub;
    let cfg = &inner.cfg.delivery;
    let result: Attempt = match inner
        .subs
        .plan(&target)
        .and_then(|plan| plan.render(&event, &ctx))
    {
        Ok(req) => {
            let limits = SendLimits {
                timeout: sub.timeout.get().unwrap_or(cfg.timeout),
                connect_timeout: sub.connect_timeout.get().unwrap_or(cfg.connect_timeout),
                max_response_body: cfg.max_response_body_bytes,
            };
            // The origin's turn, held for the exchange; taken before the timeout starts. The
            // request is borrowed only in this block: a local borrowed anywhere keeps its own
            // room in the future (rustc does not see the borrow end), and this one would then
            // sit beside the exchange that takes it (+240 bytes of lane).
            let (turn, req) = {
                let req = req;
                (inner.origins.try_take(&req.uri, recent), req)
            };
            match turn {
                OriginTurn::Go(_turn) => {
                    inner.metrics.inflight.increment(1.0);
                    // Not boxed: the exchange lives in its lane's state, which is spawned once
                    // for a run of attempts, not once per attempt.
                    let a = inner.client.send(req, &limits).await;
                    inner.metrics.inflight.decrement(1.0);
                    a
                }
                OriginTurn::Wait(turns) => {
                    inner.metrics.origin_waits.increment(1);
                    // Boxed, the request with it: waits are rare, and the lane's future would
                    // otherwise keep room for the request beside the exchange's.
                    Box::pin(send_after_turn(inner, turns, slot, req, limits)).await
                }
            }
        }
        Err(e) => Attempt {
            class: AttemptClass::Refused,
            status: None,
            retry_after: None,
            duration: Duration::from_millis(now_ms().saturating_sub(started_at_ms) as u64),
            error: Some(format!("cannot render the request: {e}")),
            response_body: None,
        },
    };
    inner.metrics.attempt(result.class).increment(1);
    inner.metrics.duration.record(result.duration.as_secs_f64());
    let summary = AttemptSummary {
        class: result.class,
        status: result.status,
        retry_after: result.retry_after,
    };
    let record = AttemptRecord {
        attempt: number,
        started_at_ms,
        duration_us: result.duration.as_micros() as u64,
        class: result.class,
        status_code: result.status,
        error: result.error.clone(),
        response_body: if result.class == AttemptClass::Success {
            None
        } else {
            body_excerpt(&result.response_body)
        },
    };
    let policy = sub.retry.as_deref().unwrap_or(&cfg.retry);
    // The attempt's end, from its start and the duration the client measured: one clock read
    // less per attempt.
    let ended_at_ms = started_at_ms.saturating_add(record.duration_us as i64 / 1000);
    let (next, t) = outcome::after_attempt(
        &d,
        ev,
        record,
        &summary,
        policy,
        fastrand::f64(),
        ended_at_ms,
    );
    item.record(&*inner.journal, t);
    match &next {
        Next::Delivered => {
            tracing::debug!(delivery = %d.id, subscription = %d.subscription, attempt = number, "delivered");
        }
        Next::Retry(r) => {
            tracing::debug!(delivery = %d.id, subscription = %d.subscription, attempt = number, class = result.class.as_str(), status = ?result.status, due_in_ms = r.due_at_ms - now_ms(), "attempt failed; retry scheduled");
        }
        Next::Dead(reason) => {
            tracing::info!(delivery = %d.id, subscription = %d.subscription, attempts = number, reason = reason.as_str(), "delivery is a dead letter");
            if *reason == DeadReason::Gone {
                let subs = inner.subs.clone();
                let id = d.subscription;
                let disabled = inner.metrics.auto_disabled.clone();
                tokio::spawn(async move {
                    match subs.disable(&id, DeadReason::Gone.as_str()).await {
                        Ok(()) => {
                            disabled.increment(1);
                            tracing::warn!(subscription = %id, "target answered 410 Gone; subscription disabled");
                        }
                        Err(e) => {
                            tracing::warn!(subscription = %id, error = %e, "could not disable the subscription after 410 Gone")
                        }
                    }
                });
            }
        }
    }
    finished(&inner.metrics, &d, &next);
    Some(next)
}

/// Gauges and counters for a delivery leaving (or staying in) the queue.
fn finished(m: &DeliveryMetrics, d: &Delivery, next: &Next) {
    let was_retrying = d.attempts > 0;
    match next {
        Next::Retry(_) => {
            if !was_retrying {
                m.retry_depth.increment(1.0);
            }
        }
        Next::Delivered | Next::Dead(_) => {
            m.pending.decrement(1.0);
            if was_retrying {
                m.retry_depth.decrement(1.0);
            }
            // The dead-letter gauge belongs to the journal, which knows the exact count.
            if matches!(next, Next::Delivered) {
                m.delivered.increment(1);
            } else {
                m.dead.increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoints_room_is_its_window_while_the_budget_lasts() {
        let unasked =
            || -> usize { panic!("the endpoints are counted only once the budget is spent") };
        assert_eq!(room(0, 1024, 0, 262_144, unasked), 1024);
        assert_eq!(room(512, 1024, 100_000, 262_144, unasked), 512);
        assert_eq!(room(1024, 1024, 100_000, 262_144, unasked), 0);
        // Over the window (retries pushed back meanwhile).
        assert_eq!(room(2000, 1024, 100_000, 262_144, unasked), 0);
    }

    #[test]
    fn past_the_budget_an_endpoint_fills_its_fair_share() {
        // Budget 100 over 10 endpoints with work: a share of 10 each.
        assert_eq!(room(3, 1024, 100, 100, || 10), 7);
        assert_eq!(room(10, 1024, 100, 100, || 10), 0);
        assert_eq!(room(15, 1024, 150, 100, || 10), 0);
        // Some budget left: the larger of what is left and the share.
        assert_eq!(room(3, 1024, 95, 100, || 10), 7);
        assert_eq!(room(9, 1024, 80, 100, || 10), 20);
        // Never past the window.
        assert_eq!(room(3, 5, 100, 100, || 10), 2);
        // A share is at least one delivery, however many endpoints.
        assert_eq!(room(0, 1024, 100, 100, || 1_000_000), 1);
        assert_eq!(room(1, 1024, 100, 100, || 1_000_000), 0);
        assert_eq!(room(0, 1024, 100, 100, || 0), 100);
    }

    #[test]
    fn a_spilled_endpoint_refills_below_half_its_window_or_with_any_budget_room() {
        // The window alone (1024): below half of it.
        assert!(refill_due(511, 1024, 1024 - 511));
        assert!(!refill_due(512, 1024, 1024 - 512));
        // The budget leaves less than the window would: any room.
        assert!(refill_due(2, 1024, 1));
        assert!(refill_due(0, 1024, 1));
        assert!(!refill_due(2, 1024, 0));
        assert!(!refill_due(0, 1024, 0));
    }

    #[test]
    fn loaded_events_are_shared_while_held_and_forgotten_after() {
        let loaded = LoadedEvents::new();
        let event = |seq: u64| Event {
            seq,
            id: format!("e{seq}").into(),
            source: "s".into(),
            kind: crate::model::InputKind::Sitecore,
            event_type: "t".into(),
            time: None,
            received_at_ms: 0,
            attributes: Default::default(),
            payload: bytes::Bytes::from_static(b"{}"),
        };
        let mut loads = 0;
        let a = loaded.get_or_load(1, || {
            loads += 1;
            Some(event(1))
        });
        let b = loaded.get_or_load(1, || {
            loads += 1;
            Some(event(1))
        });
        assert_eq!(loads, 1, "the second is the first's copy");
        assert!(Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap()));
        // Gone from memory: loaded again.
        drop((a, b));
        let _c = loaded.get_or_load(1, || {
            loads += 1;
            Some(event(1))
        });
        assert_eq!(loads, 2);
        // An event that cannot be read is not remembered.
        assert!(loaded.get_or_load(2, || None).is_none());
        // Entries nobody holds are pruned as the map grows; held ones stay.
        let held: Vec<_> = (10..10 + LOADED_PRUNE_MIN as u64 / 2)
            .map(|s| loaded.get_or_load(s, || Some(event(s))).unwrap())
            .collect();
        for s in 100_000..100_000 + 4 * LOADED_PRUNE_MIN as u64 {
            drop(loaded.get_or_load(s, || Some(event(s))));
        }
        let map = loaded.lock();
        assert!(
            map.events.len() < 2 * LOADED_PRUNE_MIN,
            "{}",
            map.events.len()
        );
        assert!(held.iter().all(|e| map.events.contains_key(&e.seq)));
    }

    #[test]
    fn a_refill_reads_its_room_and_at_least_one_row() {
        assert_eq!(refill_rows(512, false, 512, false), 512);
        assert_eq!(refill_rows(512, true, 512, false), 512);
        // No room (retries pushed back meanwhile): still one row, so a pass ends.
        assert_eq!(refill_rows(0, false, 3, false), 1);
        // Held back by the budget, from the start: past what it holds, then its room.
        assert_eq!(refill_rows(1, true, 130, true), 131);
        assert_eq!(refill_rows(1, false, 130, true), 1);
    }

    #[test]
    fn queued_ids_are_the_ready_and_the_delayed() {
        let mut st = State::default();
        st.push(test_item(1), 0);
        let mut later = test_item(2);
        later.run_at_ms = 1_000;
        st.push(later, 0);
        st.inflight.insert(DeliveryId(3));
        let ids = st.queued_ids();
        assert!(ids.contains(&DeliveryId(1)) && ids.contains(&DeliveryId(2)));
        assert!(
            !ids.contains(&DeliveryId(3)),
            "in flight is a set of its own"
        );
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn only_a_full_quiet_pass_from_the_start_ends_a_spill() {
        // (from cursor, read all, skipped finished, nothing spilled meanwhile)
        //   → (restart from the start, spill over)
        let cases = [
            ((false, true, false, true), (true, true)),
            ((true, true, false, true), (true, false)),
            ((false, true, true, true), (true, false)),
            ((false, true, false, false), (true, false)),
            ((false, false, false, true), (false, false)),
            ((true, false, false, true), (false, false)),
        ];
        for ((c, r, f, q), want) in cases {
            assert_eq!(after_pass(c, r, f, q), want, "{c} {r} {f} {q}");
        }
    }

    fn test_item(id: u64) -> Item {
        Item {
            delivery: Delivery {
                id: DeliveryId(id),
                subscription: SubscriptionId::generate(),
                event_seq: 1,
                attempts: 0,
                cycle_start: 0,
                due_at_ms: 0,
                created_at_ms: 0,
            },
            run_at_ms: 0,
            event: None,
            gate: None,
        }
    }

    #[test]
    fn the_driver_is_woken_only_for_what_lanes_do_not_do() {
        let item = test_item;
        // (ready, lanes, delayed, spilled) with a limit of 2 → wake the driver
        let cases = [
            (0, 0, false, false, false),
            (1, 0, false, false, true),
            (1, 1, false, false, true),
            (1, 2, false, false, false),
            (3, 2, false, false, false),
            (0, 2, true, false, true),
            (0, 2, false, true, true),
            (1, 2, false, true, true),
        ];
        for (ready, lanes, delayed, spilled, want) in cases {
            let mut st = State {
                lanes,
                spilled,
                ..State::default()
            };
            for i in 0..ready {
                st.push(item(i), 0);
            }
            if delayed {
                st.push(
                    Item {
                        run_at_ms: 10,
                        ..item(99)
                    },
                    0,
                );
            }
            assert_eq!(
                driver_has_work(&st, 2),
                want,
                "{ready} {lanes} {delayed} {spilled}"
            );
        }
    }

    #[test]
    fn parked_lanes_take_ready_work_before_new_lanes_start() {
        // (ready, lanes, parked) with a limit of 4 → lanes to start
        let cases = [
            (0, 0, 0, 0),
            (3, 0, 0, 3),
            (6, 0, 0, 4),
            (3, 2, 2, 1),
            (2, 2, 2, 0),
            (1, 3, 3, 0),
            (9, 3, 1, 1),
            (5, 4, 0, 0),
        ];
        for (ready, lanes, parked, want) in cases {
            let mut st = State {
                lanes,
                parked,
                ..State::default()
            };
            for i in 0..ready {
                st.push(test_item(i), 0);
            }
            assert_eq!(
                lanes_to_start(&st, 4),
                want,
                "{ready} ready, {lanes} lanes, {parked} parked"
            );
            assert_eq!(
                driver_has_work(&st, 4),
                want > 0,
                "{ready} ready, {lanes} lanes, {parked} parked"
            );
        }
    }

    #[test]
    fn a_lane_parks_only_while_its_linger_lasts() {
        let idle = State::default();
        let mut busy = State::default();
        busy.push(test_item(1), 0);
        // (has ready work, stopping, linger left) → step
        let cases = [
            (&busy, false, true, LaneStep::Take),
            (&busy, false, false, LaneStep::Take),
            (&idle, false, true, LaneStep::Park),
            (&idle, false, false, LaneStep::Exit),
            (&busy, true, true, LaneStep::Exit),
            (&idle, true, true, LaneStep::Exit),
        ];
        for (st, stopping, linger_left, want) in cases {
            assert_eq!(
                lane_step(st, stopping, linger_left),
                want,
                "ready {} stopping {stopping} linger {linger_left}",
                st.ready.len()
            );
        }
    }

    fn output_size<A, B, F: std::future::Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A task copies its future whole when spawned and when it completes (4 KiB did show in
    /// profiles as memcpy when every attempt was a task). A lane holds one exchange in place;
    /// dialing, the rare and largest part of one, is boxed so that a lane stays small.
    #[test]
    fn a_lane_future_stays_under_3_kib() {
        let size = output_size(lane);
        assert!(size < 3 * 1024, "lane future is {size} bytes");
    }
}
