//! Plain data shared by every stage: events, subscriptions, filters, deliveries, ids.
//! No I/O here; the pure matching rule lives in `filter`.

pub mod delivery;
pub mod event;
pub mod exact;
pub mod filter;
pub mod ids;
pub mod secret;
pub mod subscription;

pub use delivery::{AttemptClass, AttemptRecord, Delivery, DeliveryRecord, DeliveryStatus};
pub use event::{Attributes, Event, InputKind};
pub use filter::{AttributeMatch, Filter, TypePattern};
pub use ids::{DeliveryId, SeqGen, SubscriptionId};
pub use secret::Secret;
pub use subscription::{
    Dialect, ExtrasValue, Format, HeaderSpec, HttpMethod, OptDuration, OptText, RetryPolicy,
    Subscription, TargetAuth, Template, Tenant, TenantKind, Version,
};

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (wall clock; used for timestamps people read).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
