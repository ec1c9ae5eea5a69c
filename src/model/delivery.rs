//! Deliveries: one event for one subscription, and the record of what happened to it.
//!
//! A delivery moves `Pending → Attempted → {Delivered, Retrying, Dead}` (STYLE "States are
//! types"); the transitions are functions in `crate::outcome`. This module holds only the data the
//! journal stores and the API shows.

use serde::{Deserialize, Serialize};

use super::ids::{DeliveryId, SubscriptionId};

/// A delivery waiting for its next attempt. Durable in the journal's queue from the moment its
/// event is acknowledged until it is delivered or dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub subscription: SubscriptionId,
    pub event_seq: u64,
    /// Attempts already made (0 for a fresh delivery).
    pub attempts: u32,
    /// Attempts made before the current retry cycle began. A replay or a manual retry starts a
    /// new cycle, so the retry schedule restarts while attempt numbers keep counting up.
    pub cycle_start: u32,
    /// When the next attempt may start, ms since the epoch.
    pub due_at_ms: i64,
    pub created_at_ms: i64,
}

impl Delivery {
    /// A delivery just made: never attempted, in its first cycle, due when it was created.
    pub fn fresh(
        id: DeliveryId,
        subscription: SubscriptionId,
        event_seq: u64,
        created_at_ms: i64,
    ) -> Self {
        Delivery {
            id,
            subscription,
            event_seq,
            attempts: 0,
            cycle_start: 0,
            due_at_ms: created_at_ms,
            created_at_ms,
        }
    }
}

/// Where a delivery stands, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// Failed at least once; a retry is scheduled.
    Retrying,
    /// A 2xx arrived.
    Delivered,
    /// Retries ran out (or the subscription is gone): kept as a dead letter.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "retrying" => DeliveryStatus::Retrying,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

/// What one attempt ended with, in the small fixed set used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttemptClass {
    /// 2xx.
    Success,
    /// 3xx: redirects are not followed, so this is a failure.
    Redirect,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No response within the timeout.
    Timeout,
    /// DNS, TCP or TLS failure before a request could be sent.
    Connect,
    /// The target resolved to an address delivery may not reach (SSRF guard), or the URL is bad.
    Refused,
    /// The connection broke mid-request or the response was malformed.
    Io,
}

impl AttemptClass {
    pub const ALL: [AttemptClass; 8] = [
        AttemptClass::Success,
        AttemptClass::Redirect,
        AttemptClass::ClientError,
        AttemptClass::ServerError,
        AttemptClass::Timeout,
        AttemptClass::Connect,
        AttemptClass::Refused,
        AttemptClass::Io,
    ];

    /// The metric label (`herald_delivery_attempts_total{class}`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptClass::Success => "2xx",
            AttemptClass::Redirect => "3xx",
            AttemptClass::ClientError => "4xx",
            AttemptClass::ServerError => "5xx",
            AttemptClass::Timeout => "timeout",
            AttemptClass::Connect => "connect",
            AttemptClass::Refused => "refused",
            AttemptClass::Io => "io",
        }
    }

    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => AttemptClass::Success,
            300..=399 => AttemptClass::Redirect,
            400..=499 => AttemptClass::ClientError,
            _ => AttemptClass::ServerError,
        }
    }
}

/// One attempt as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based.
    pub attempt: u32,
    pub started_at_ms: i64,
    pub duration_us: u64,
    pub class: AttemptClass,
    pub status_code: Option<u16>,
    /// A short reason for failures that have no status (timeout, connect error, refused).
    pub error: Option<String>,
    /// The start of the response body, for failed attempts only (capped).
    pub response_body: Option<String>,
}

/// The delivery log entry: the latest state of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub subscription: SubscriptionId,
    pub event_seq: u64,
    /// The producer's event id and type, so the log reads without loading the event.
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: Option<i64>,
    /// The most recent attempt, if any (all attempts are kept separately).
    pub last_attempt: Option<AttemptRecord>,
}
