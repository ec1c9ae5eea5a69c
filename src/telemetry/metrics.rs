//! Metric names and their fixed label values.

/// Events accepted, by `source` (an `InputKind` label).
pub const EVENTS_RECEIVED: &str = "herald_events_received_total";
/// Inputs rejected, by `reason` (one of [`reject`]).
pub const EVENTS_REJECTED: &str = "herald_events_rejected_total";
/// Events acknowledged again because `(source, id)` was already accepted.
pub const EVENTS_DUPLICATE: &str = "herald_events_duplicate_total";
/// Deliveries finished, by `outcome` (`delivered`, `dead`).
pub const DELIVERIES: &str = "herald_deliveries_total";
/// Deliveries created at acceptance (one per matching subscription).
pub const DELIVERIES_CREATED: &str = "herald_deliveries_created_total";
/// Attempts, by `class` (`AttemptClass::as_str`).
pub const DELIVERY_ATTEMPTS: &str = "herald_delivery_attempts_total";
/// Attempt duration histogram, seconds.
pub const DELIVERY_DURATION: &str = "herald_delivery_duration_seconds";
/// Deliveries waiting for a retry (gauge).
pub const RETRY_QUEUE_DEPTH: &str = "herald_retry_queue_depth";
/// Dead letters kept (gauge).
pub const DEAD_LETTERS: &str = "herald_dead_letters";
/// Subscriptions known (gauge).
pub const SUBSCRIPTIONS: &str = "herald_subscriptions";
/// Attempts in flight right now (gauge).
pub const INFLIGHT_DELIVERIES: &str = "herald_inflight_deliveries";
/// Deliveries waiting in the queues, memory and disk (gauge).
pub const PENDING_DELIVERIES: &str = "herald_pending_deliveries";
/// Subscriptions disabled by Herald after a `410 Gone`.
pub const SUBSCRIPTIONS_AUTO_DISABLED: &str = "herald_subscriptions_auto_disabled_total";
/// Journal group commits, and the events per commit (histogram).
pub const JOURNAL_COMMITS: &str = "herald_journal_commits_total";
pub const JOURNAL_BATCH_EVENTS: &str = "herald_journal_batch_events";
/// Journal write failures, by `kind` (`io`, `full`).
pub const JOURNAL_ERRORS: &str = "herald_journal_errors_total";
/// 1 when the journal accepts writes, 0 when it is failing (disk full, I/O error).
pub const JOURNAL_HEALTHY: &str = "herald_journal_healthy";
/// Management API requests answered with an error, by `dialect` and `status` class.
pub const API_ERRORS: &str = "herald_api_errors_total";

/// `herald_events_rejected_total{reason}` values.
pub mod reject {
    pub const MALFORMED: &str = "malformed";
    pub const INVALID: &str = "invalid";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const TOO_LARGE: &str = "too_large";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const ALL: [&str; 6] = [
        MALFORMED,
        INVALID,
        CONTENT_TYPE,
        TOO_LARGE,
        UNAUTHORIZED,
        UNAVAILABLE,
    ];
}
