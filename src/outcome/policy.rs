//! Retry policy: what to do after one attempt. Pure functions, no clock, no randomness of their
//! own (the caller passes a uniform random number), so every rule is table-tested below.
//!
//! The rules (DESIGN §4): a 2xx is delivered; `410 Gone` ends the delivery and disables the
//! subscription; `429` and `503` honour `Retry-After` (capped, so a hostile endpoint cannot park a
//! delivery for a year); everything else — other statuses, timeouts, connection failures — is
//! retried after the next delay of the schedule, with jitter, until the schedule runs out and the
//! delivery becomes a dead letter.

use std::time::Duration;

use crate::model::{AttemptClass, RetryPolicy};

/// The longest `Retry-After` Herald honours. Longer values are clamped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one attempt ended with, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptSummary {
    pub class: AttemptClass,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
}

/// Why a delivery was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Every retry of the schedule failed.
    Exhausted,
    /// The target answered `410 Gone`: the subscription is disabled.
    Gone,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Exhausted => "retries exhausted",
            DeadReason::Gone => "target answered 410 Gone; subscription disabled",
        }
    }
}

/// The policy's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again after `delay` (from the end of this attempt).
    Retry {
        delay: Duration,
    },
    Dead(DeadReason),
}

/// Decides what follows an attempt. `retries_done` counts the retries already made in this
/// cycle (0 after the first attempt). `unit` is a uniform random number in `[0, 1)` for jitter.
pub fn decide(
    attempt: &AttemptSummary,
    retries_done: u32,
    policy: &RetryPolicy,
    unit: f64,
) -> Decision {
    if attempt.class == AttemptClass::Success {
        return Decision::Delivered;
    }
    if attempt.status == Some(410) {
        return Decision::Dead(DeadReason::Gone);
    }
    let Some(&base) = policy.schedule.get(retries_done as usize) else {
        return Decision::Dead(DeadReason::Exhausted);
    };
    let honours_retry_after = matches!(attempt.status, Some(429) | Some(503));
    let delay = match attempt.retry_after {
        Some(ra) if honours_retry_after => ra.min(MAX_RETRY_AFTER),
        _ => jittered(base, policy.jitter, unit),
    };
    Decision::Retry { delay }
}

/// `base` scaled by a factor uniformly spread over `[1 - jitter, 1 + jitter]`.
pub fn jittered(base: Duration, jitter: f64, unit: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    base.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            jitter: 0.2,
        }
    }

    fn summary(class: AttemptClass, status: Option<u16>, ra: Option<u64>) -> AttemptSummary {
        AttemptSummary {
            class,
            status,
            retry_after: ra.map(Duration::from_secs),
        }
    }

    #[test]
    fn decision_table() {
        use AttemptClass::*;
        let secs = |s: u64| Decision::Retry {
            delay: Duration::from_secs(s),
        };
        let cases = [
            (
                summary(Success, Some(200), None),
                0,
                0.5,
                Decision::Delivered,
            ),
            (
                summary(Success, Some(204), None),
                5,
                0.5,
                Decision::Delivered,
            ),
            (summary(ServerError, Some(500), None), 0, 0.5, secs(5)),
            (summary(ServerError, Some(500), None), 1, 0.5, secs(300)),
            (
                summary(ServerError, Some(500), None),
                2,
                0.5,
                Decision::Dead(DeadReason::Exhausted),
            ),
            (summary(Timeout, None, None), 0, 0.5, secs(5)),
            (summary(Connect, None, None), 1, 0.5, secs(300)),
            (summary(ClientError, Some(404), None), 0, 0.5, secs(5)),
            (summary(Redirect, Some(301), None), 0, 0.5, secs(5)),
            (
                summary(ClientError, Some(410), None),
                0,
                0.5,
                Decision::Dead(DeadReason::Gone),
            ),
            // Retry-After is honoured for 429 and 503 only.
            (summary(ClientError, Some(429), Some(42)), 0, 0.5, secs(42)),
            (summary(ServerError, Some(503), Some(7)), 1, 0.5, secs(7)),
            (summary(ServerError, Some(500), Some(42)), 0, 0.5, secs(5)),
            // …but not past the end of the schedule…
            (
                summary(ClientError, Some(429), Some(1)),
                2,
                0.5,
                Decision::Dead(DeadReason::Exhausted),
            ),
            // …and never for longer than the cap.
            (
                summary(ClientError, Some(429), Some(10 * 24 * 3600)),
                0,
                0.5,
                Decision::Retry {
                    delay: MAX_RETRY_AFTER,
                },
            ),
        ];
        for (i, (s, done, unit, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(&s, done, &policy(), unit), want, "case {i}: {s:?}");
        }
    }

    #[test]
    fn jitter_spans_the_configured_band() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 0.2, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(base, 0.2, 0.5), Duration::from_secs(100));
        assert!(jittered(base, 0.2, 0.999_999) <= Duration::from_secs(120));
        assert_eq!(jittered(base, 0.0, 0.9), base);
    }

    #[test]
    fn empty_schedule_means_no_retries() {
        let p = RetryPolicy {
            schedule: vec![],
            jitter: 0.2,
        };
        let s = summary(AttemptClass::ServerError, Some(500), None);
        assert_eq!(
            decide(&s, 0, &p, 0.5),
            Decision::Dead(DeadReason::Exhausted)
        );
    }
}
