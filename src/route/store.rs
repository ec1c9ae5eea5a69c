//! The subscription store: the durable copy in the journal, the compiled render plan beside
//! each subscription, and the topic index that routes on them — kept in step.
//!
//! Every change goes journal first, index second: a subscription is visible to routing only once
//! it is durable, so an event is never matched against something a crash would forget. Changes
//! are serialized by one async mutex (they are rare); reads (routing, `get`) never take it.
//! Compiling the plan here means a subscription the renderer cannot use is refused when it is
//! saved, never discovered at delivery time.

use std::sync::Arc;

use once_cell::race::OnceBox;

use crate::journal::{Journal, JournalError};
use crate::model::{Event, Subscription, SubscriptionId, now_ms};
use crate::render::{Plan, RenderDefaults, RenderError};
use crate::route::TopicIndex;
use crate::telemetry::metrics as m;

/// A subscription with what delivery needs precomputed.
///
/// The render plan is compiled when the subscription is saved (that is where a bad one is
/// refused) and kept; subscriptions loaded at start-up compile it on their first delivery
/// instead. A plan costs over a kilobyte, and with a million subscriptions most of them may
/// never receive an event in a process's lifetime — memory is spent only on those that do.
/// The cell is a `OnceBox` (one pointer) rather than a `OnceLock<Box<_>>` (two words): with the
/// compact fields of `Subscription` (boxed slices and strings, 8-byte optional timeouts and
/// texts, boxed rarely-set parts), that keeps an `Arc<Target>` within mimalloc's 256-byte size
/// class (issue 5; the next class is 320). A test pins it.
#[derive(Debug)]
pub struct Target {
    pub sub: Subscription,
    plan: OnceBox<Plan>,
}

impl Target {
    fn new(sub: Subscription, plan: Option<Plan>) -> Target {
        let cell = OnceBox::new();
        if let Some(p) = plan {
            let _ = cell.set(Box::new(p));
        }
        Target { sub, plan: cell }
    }

    /// The compiled plan, compiled now if this is the first time it is needed.
    pub fn plan(&self, defaults: &RenderDefaults) -> Result<&Plan, RenderError> {
        if let Some(p) = self.plan.get() {
            return Ok(p);
        }
        let compiled = Plan::compile(&self.sub, defaults)?;
        // Two first deliveries may race to compile; either result is the same plan (the loser's
        // is dropped).
        Ok(self.plan.get_or_init(|| Box::new(compiled)))
    }
}

impl AsRef<Subscription> for Target {
    fn as_ref(&self) -> &Subscription {
        &self.sub
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The subscription cannot be rendered (bad URL, header, secret).
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("subscription not found")]
    NotFound,
}

/// Why an update did not happen: the store failed, or the caller's change refused it (a
/// validation error, a version conflict), carrying the caller's own error type.
#[derive(Debug)]
pub enum UpdateError<E> {
    Store(StoreError),
    Refused(E),
}

impl<E> From<StoreError> for UpdateError<E> {
    fn from(e: StoreError) -> Self {
        UpdateError::Store(e)
    }
}

pub struct Subscriptions {
    index: TopicIndex<Target>,
    journal: Arc<dyn Journal>,
    defaults: RenderDefaults,
    writes: tokio::sync::Mutex<()>,
}

impl Subscriptions {
    /// Builds the store from what the journal recovered. A stored subscription that no longer
    /// compiles (say, a newer validation rule) stays listed and manageable; its deliveries fail
    /// with the render error in the delivery log until it is fixed.
    pub fn load(
        journal: Arc<dyn Journal>,
        stored: Vec<Subscription>,
        defaults: RenderDefaults,
    ) -> Subscriptions {
        let index = TopicIndex::new();
        // Stored subscriptions were validated when they were saved; their plans are compiled on
        // first use (see `Target`), which keeps start-up and memory proportional to what is used.
        let targets: Vec<Arc<Target>> = stored
            .into_iter()
            .map(|sub| Arc::new(Target::new(sub, None)))
            .collect();
        // One batch: a million single upserts would each copy index paths.
        index.upsert_many(targets);
        let store = Subscriptions {
            index,
            journal,
            defaults,
            writes: tokio::sync::Mutex::new(()),
        };
        store.update_gauge();
        store
    }

    fn update_gauge(&self) {
        metrics::gauge!(m::SUBSCRIPTIONS).set(self.index.len() as f64);
    }

    pub fn get(&self, id: &SubscriptionId) -> Option<Arc<Target>> {
        self.index.get(id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscriptions in id order after `after`, at most `limit`, that satisfy `keep`.
    pub fn list(
        &self,
        after: Option<SubscriptionId>,
        limit: usize,
        keep: impl Fn(&Target) -> bool,
    ) -> Vec<Arc<Target>> {
        self.index.list(after, limit, keep)
    }

    /// The enabled subscriptions matching `event`, appended to `out`.
    pub fn route(&self, event: &Event, out: &mut Vec<Arc<Target>>) {
        self.index.route(event, out)
    }

    /// The plan of `t`, compiled on first use.
    pub fn plan<'a>(&self, t: &'a Target) -> Result<&'a Plan, RenderError> {
        t.plan(&self.defaults)
    }

    /// Checks that `sub` compiles, without storing it.
    pub fn compile(&self, sub: &Subscription) -> Result<Plan, RenderError> {
        Plan::compile(sub, &self.defaults)
    }

    /// Stores a new subscription. Creates do not take the write lock: a new id cannot race with
    /// another change of itself, so many creates share one group commit instead of waiting for
    /// each other's fsync.
    pub async fn create(&self, sub: Subscription) -> Result<Arc<Target>, StoreError> {
        let plan = self.compile(&sub)?;
        self.save(Target::new(sub, Some(plan))).await
    }

    /// Changes a stored subscription with `change`, which sees the current value and may refuse
    /// with its own error. Bumps the version and the modification stamp.
    pub async fn update<E>(
        &self,
        id: &SubscriptionId,
        modified_by: &str,
        change: impl FnOnce(&mut Subscription) -> Result<(), E>,
    ) -> Result<Arc<Target>, UpdateError<E>> {
        let _guard = self.writes.lock().await;
        let current = self.index.get(id).ok_or(StoreError::NotFound)?;
        let mut sub = current.sub.clone();
        change(&mut sub).map_err(UpdateError::Refused)?;
        sub.id = current.sub.id;
        sub.version.version_no = current.sub.version.version_no + 1;
        sub.version.modified_at_ms = now_ms();
        sub.version.modified_by = modified_by.into();
        let plan = self.compile(&sub).map_err(StoreError::from)?;
        Ok(self.save(Target::new(sub, Some(plan))).await?)
    }

    async fn save(&self, target: Target) -> Result<Arc<Target>, StoreError> {
        self.journal
            .save_subscription(&target.sub)
            .await
            .map_err(|_| JournalError::Closed)??;
        let target = Arc::new(target);
        self.index.upsert(target.clone());
        self.update_gauge();
        Ok(target)
    }

    /// Removes a subscription; returns what was removed.
    pub async fn delete(&self, id: &SubscriptionId) -> Result<Arc<Target>, StoreError> {
        let _guard = self.writes.lock().await;
        let current = self.index.get(id).ok_or(StoreError::NotFound)?;
        self.journal
            .delete_subscription(*id)
            .await
            .map_err(|_| JournalError::Closed)??;
        self.index.remove(id);
        self.update_gauge();
        Ok(current)
    }

    /// Herald's own disabling of a subscription (a `410 Gone`).
    pub async fn disable(&self, id: &SubscriptionId, reason: &str) -> Result<(), StoreError> {
        let result = self
            .update(id, "herald", |sub| {
                sub.enabled = false;
                sub.disabled_reason = reason.into();
                Ok::<(), std::convert::Infallible>(())
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(UpdateError::Store(e)) => Err(e),
            Err(UpdateError::Refused(never)) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    /// mimalloc's size classes around here are 256 and 320 bytes: a field more that crosses 256
    /// costs 64 bytes per subscription, over 60 MB at a million (issue 5).
    #[test]
    fn a_shared_target_fits_the_256_byte_size_class() {
        // An `Arc`'s allocation: the two reference counts, then the value.
        let arc_inner = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<super::Target>();
        assert!(arc_inner <= 256, "Arc<Target> allocates {arc_inner} bytes");
    }
}
