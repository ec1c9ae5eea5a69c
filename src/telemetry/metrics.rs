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
/// Reads of a spilled endpoint's queue back from the store (its backlog outgrew
/// `[storage] memory_window`), and the queue rows they read.
pub const DELIVERY_REFILLS: &str = "herald_delivery_refills_total";
pub const DELIVERY_REFILL_ROWS: &str = "herald_delivery_refill_rows_total";
/// Delivery connections open (in use, idle or closing), gauge; and how often an attempt had to
/// wait for one because `[delivery] max_connections` were open (`crate::fds`).
pub const DELIVERY_CONNECTIONS: &str = "herald_delivery_connections";
pub const DELIVERY_CONNECTION_WAITS: &str = "herald_delivery_connection_waits_total";
/// How often an attempt waited because its origin had `[delivery] max_in_flight_per_origin`
/// attempts in flight.
pub const DELIVERY_ORIGIN_WAITS: &str = "herald_delivery_origin_waits_total";
/// How often the server waited to accept because `[server] max_connections` were open.
pub const SERVER_CONNECTION_WAITS: &str = "herald_server_connection_waits_total";
/// Deliveries held in memory by the dispatcher (gauge; at most about `[storage]
/// memory_budget`).
pub const DELIVERIES_IN_MEMORY: &str = "herald_deliveries_in_memory";
/// Endpoints with deliveries on disk waiting for room in `[storage] memory_budget` (gauge).
pub const ENDPOINTS_AWAITING_MEMORY: &str = "herald_endpoints_awaiting_memory";
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
/// How long applying one group commit took (journal write and memtables), and one fsync
/// (histograms, seconds): the two halves of an ingest acknowledgement's wait.
pub const JOURNAL_COMMIT_SECONDS: &str = "herald_journal_commit_seconds";
pub const JOURNAL_SYNC_SECONDS: &str = "herald_journal_sync_seconds";
/// How long a caller waited for room on the writer's full channel (histogram, seconds), by
/// `channel` (`commands`: appends and other requests; `transitions`: delivery outcomes): the
/// journal's backpressure, observed only when it happens.
pub const JOURNAL_BACKPRESSURE_SECONDS: &str = "herald_journal_backpressure_seconds";
/// Queue entries of fresh deliveries written after their append, because the delivery was
/// still open a second after its event arrived or a refill was about to read the queue
/// (`journal/embedded/deferred.rs`): the rest were never written.
pub const JOURNAL_DEFERRED_WRITTEN: &str = "herald_journal_deferred_written_total";
/// Journal write failures, by `kind` (`io`, `full`).
pub const JOURNAL_ERRORS: &str = "herald_journal_errors_total";
/// 1 when the journal accepts writes, 0 when it is failing (disk full, I/O error).
pub const JOURNAL_HEALTHY: &str = "herald_journal_healthy";
/// 1 when the data directory's filesystem discards freed blocks online (ext4 or XFS mounted
/// with `discard`), which makes fsyncs wait for TRIMs (`journal/embedded/mount.rs`).
pub const JOURNAL_ONLINE_DISCARD: &str = "herald_journal_online_discard";
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

/// Installs the process-wide Prometheus recorder and registers every metric with its help text
/// and, for labelled counters, every label value at zero — so a dashboard sees each series from
/// the first scrape instead of only after the first event of its kind.
pub fn install() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DELIVERY_DURATION.to_string()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(JOURNAL_BATCH_EVENTS.to_string()),
                &[
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ],
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(JOURNAL_COMMIT_SECONDS.to_string()),
                JOURNAL_SECONDS_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(JOURNAL_SYNC_SECONDS.to_string()),
                JOURNAL_SECONDS_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(JOURNAL_BACKPRESSURE_SECONDS.to_string()),
                JOURNAL_SECONDS_BUCKETS,
            )
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

/// Journal commit and sync times: a healthy disk syncs in a few ms; a stall shows up high.
const JOURNAL_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0,
];

fn describe() {
    use crate::model::{AttemptClass, InputKind};
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_RECEIVED,
        "Events accepted (acknowledged with 202), by input source."
    );
    describe_counter!(EVENTS_REJECTED, "Ingest requests refused, by reason.");
    describe_counter!(
        EVENTS_DUPLICATE,
        "Events acknowledged again without redelivery (dedup)."
    );
    describe_counter!(
        DELIVERIES,
        "Deliveries finished, by outcome (delivered, dead)."
    );
    describe_counter!(
        DELIVERIES_CREATED,
        "Deliveries created by matching subscriptions."
    );
    describe_counter!(DELIVERY_ATTEMPTS, "Delivery attempts, by result class.");
    describe_counter!(
        DELIVERY_REFILLS,
        "Reads of a spilled endpoint's queue back from the store (its backlog outgrew the memory window)."
    );
    describe_counter!(
        DELIVERY_REFILL_ROWS,
        "Queue rows read back from the store for spilled endpoints."
    );
    describe_histogram!(
        DELIVERY_DURATION,
        Unit::Seconds,
        "Duration of one delivery attempt."
    );
    describe_gauge!(
        DELIVERIES_IN_MEMORY,
        "Deliveries held in memory by the dispatcher (ready, in flight, waiting for a retry)."
    );
    describe_gauge!(
        ENDPOINTS_AWAITING_MEMORY,
        "Endpoints with deliveries on disk waiting for room in the memory budget."
    );
    describe_gauge!(
        DELIVERY_CONNECTIONS,
        "Delivery connections open (in use, idle or closing)."
    );
    describe_counter!(
        DELIVERY_CONNECTION_WAITS,
        "Delivery attempts that waited for a connection because [delivery] max_connections were open."
    );
    describe_counter!(
        DELIVERY_ORIGIN_WAITS,
        "Delivery attempts that waited because their origin had [delivery] max_in_flight_per_origin attempts in flight."
    );
    describe_counter!(
        SERVER_CONNECTION_WAITS,
        "Times the server waited to accept because [server] max_connections were open."
    );
    describe_gauge!(
        RETRY_QUEUE_DEPTH,
        "Deliveries waiting for a retry after a failure."
    );
    describe_gauge!(DEAD_LETTERS, "Dead letters kept.");
    describe_gauge!(SUBSCRIPTIONS, "Subscriptions stored.");
    describe_gauge!(INFLIGHT_DELIVERIES, "Delivery attempts in flight.");
    describe_gauge!(
        PENDING_DELIVERIES,
        "Deliveries queued (memory and disk), not yet finished."
    );
    describe_counter!(
        SUBSCRIPTIONS_AUTO_DISABLED,
        "Subscriptions disabled after 410 Gone."
    );
    describe_counter!(JOURNAL_COMMITS, "Journal group commits.");
    describe_histogram!(JOURNAL_BATCH_EVENTS, "Events per journal group commit.");
    describe_histogram!(
        JOURNAL_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to apply one journal group commit (write and memtables)."
    );
    describe_histogram!(
        JOURNAL_SYNC_SECONDS,
        Unit::Seconds,
        "Time of one journal fsync."
    );
    describe_histogram!(
        JOURNAL_BACKPRESSURE_SECONDS,
        Unit::Seconds,
        "Time a caller waited for room on the journal writer's full channel, by channel."
    );
    describe_counter!(
        JOURNAL_DEFERRED_WRITTEN,
        "Queue entries of fresh deliveries written after their append (still open after 1 s, or before a refill)."
    );
    describe_counter!(JOURNAL_ERRORS, "Journal write failures, by kind.");
    describe_gauge!(
        JOURNAL_HEALTHY,
        "1 when the journal accepts writes, 0 when failing."
    );
    describe_gauge!(
        JOURNAL_ONLINE_DISCARD,
        "1 when the data directory's filesystem discards freed blocks online (fsyncs wait for TRIMs)."
    );
    describe_counter!(
        API_ERRORS,
        "Management API error answers, by dialect and status class."
    );
    for k in InputKind::ALL {
        metrics::counter!(EVENTS_RECEIVED, "source" => k.as_str()).absolute(0);
    }
    for r in reject::ALL {
        metrics::counter!(EVENTS_REJECTED, "reason" => r).absolute(0);
    }
    for o in ["delivered", "dead"] {
        metrics::counter!(DELIVERIES, "outcome" => o).absolute(0);
    }
    for c in AttemptClass::ALL {
        metrics::counter!(DELIVERY_ATTEMPTS, "class" => c.as_str()).absolute(0);
    }
    metrics::counter!(EVENTS_DUPLICATE).absolute(0);
    metrics::counter!(DELIVERIES_CREATED).absolute(0);
    metrics::counter!(SUBSCRIPTIONS_AUTO_DISABLED).absolute(0);
    metrics::counter!(DELIVERY_REFILLS).absolute(0);
    metrics::counter!(DELIVERY_REFILL_ROWS).absolute(0);
    metrics::counter!(JOURNAL_DEFERRED_WRITTEN).absolute(0);
    metrics::counter!(DELIVERY_CONNECTION_WAITS).absolute(0);
    metrics::counter!(SERVER_CONNECTION_WAITS).absolute(0);
    for g in [
        DELIVERY_CONNECTIONS,
        DELIVERIES_IN_MEMORY,
        ENDPOINTS_AWAITING_MEMORY,
        RETRY_QUEUE_DEPTH,
        DEAD_LETTERS,
        INFLIGHT_DELIVERIES,
        PENDING_DELIVERIES,
    ] {
        metrics::gauge!(g).set(0.0);
    }
}

/// Handles to the delivery metrics, registered once: the hot path then updates an atomic instead
/// of looking each metric up by name and labels per attempt.
pub struct DeliveryMetrics {
    /// Indexed by `AttemptClass as usize` (the order of `AttemptClass::ALL`).
    attempts: Vec<metrics::Counter>,
    pub duration: metrics::Histogram,
    pub inflight: metrics::Gauge,
    pub pending: metrics::Gauge,
    pub retry_depth: metrics::Gauge,
    pub delivered: metrics::Counter,
    pub dead: metrics::Counter,
    pub created: metrics::Counter,
    pub auto_disabled: metrics::Counter,
    pub refills: metrics::Counter,
    pub refill_rows: metrics::Counter,
    pub connection_waits: metrics::Counter,
    pub origin_waits: metrics::Counter,
}

impl DeliveryMetrics {
    pub fn new() -> DeliveryMetrics {
        use crate::model::AttemptClass;
        DeliveryMetrics {
            attempts: AttemptClass::ALL
                .iter()
                .map(|c| metrics::counter!(DELIVERY_ATTEMPTS, "class" => c.as_str()))
                .collect(),
            duration: metrics::histogram!(DELIVERY_DURATION),
            inflight: metrics::gauge!(INFLIGHT_DELIVERIES),
            pending: metrics::gauge!(PENDING_DELIVERIES),
            retry_depth: metrics::gauge!(RETRY_QUEUE_DEPTH),
            delivered: metrics::counter!(DELIVERIES, "outcome" => "delivered"),
            dead: metrics::counter!(DELIVERIES, "outcome" => "dead"),
            created: metrics::counter!(DELIVERIES_CREATED),
            auto_disabled: metrics::counter!(SUBSCRIPTIONS_AUTO_DISABLED),
            refills: metrics::counter!(DELIVERY_REFILLS),
            refill_rows: metrics::counter!(DELIVERY_REFILL_ROWS),
            connection_waits: metrics::counter!(DELIVERY_CONNECTION_WAITS),
            origin_waits: metrics::counter!(DELIVERY_ORIGIN_WAITS),
        }
    }

    pub fn attempt(&self, class: crate::model::AttemptClass) -> &metrics::Counter {
        &self.attempts[class as usize]
    }
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::AttemptClass;

    #[test]
    fn attempt_classes_index_in_declaration_order() {
        for (i, c) in AttemptClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
    }
}
