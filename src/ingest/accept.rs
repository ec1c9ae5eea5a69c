//! Accepting events: auth, body limits, decode, route, journal, then `202`.
//!
//! The order is the delivery promise (DESIGN §4): an event is routed *before* it is journaled,
//! so the journal stores the event together with the exact set of deliveries it created, in one
//! atomic write; the producer gets its `202` only when that write is durable. The deliveries
//! do not wait for that: those of an event the journal is sure to accept (not a duplicate)
//! start as soon as the append is sent, the others once the writer has decided
//! (`Journal::append_staged`). A bad request is refused before anything is written, so it
//! cannot disturb what was accepted earlier, and a batch is all or nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use crate::api::auth;
use crate::api::error::{ApiError, ItemError, Response, json_response};
use crate::decode::{self, DecodeError};
use crate::deliver::dispatch::Dispatcher;
use crate::journal::{AppendStatus, Journal, JournalError, NewEvent};
use crate::model::event::attr;
use crate::model::{Delivery, DeliveryId, Event, InputKind, Secret, SeqGen, now_ms};
use crate::route::store::{Subscriptions, Target};
use crate::telemetry::metrics::{self as m, reject};

/// Everything ingest needs, built once by the daemon.
pub struct Ingest {
    pub limits: decode::Limits,
    pub max_body_bytes: usize,
    pub tokens: Vec<Secret>,
    pub journal: Arc<dyn Journal>,
    pub subs: Arc<Subscriptions>,
    pub dispatcher: Dispatcher,
    pub ids: Arc<SeqGen>,
}

#[derive(Serialize)]
struct Accepted<'a> {
    accepted: usize,
    ids: Vec<&'a str>,
    /// Ids acknowledged again without being delivered again (`(source, id)` seen before).
    duplicates: Vec<&'a str>,
}

fn rejected(reason: &'static str, err: ApiError) -> Response {
    metrics::counter!(m::EVENTS_REJECTED, "reason" => reason).increment(1);
    tracing::debug!(reason, status = err.status.as_u16(), message = %err.message, "ingest request rejected");
    err.into_response()
}

fn decode_error(e: &DecodeError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut err = ApiError::new(status, e.reason(), e.to_string());
    err.items = e
        .items()
        .iter()
        .map(|i| ItemError {
            index: i.index,
            reason: i.reason.clone(),
        })
        .collect();
    err
}

impl Ingest {
    /// Handles one ingest request of the given input kind.
    pub async fn handle(&self, kind: InputKind, req: http::Request<Incoming>) -> Response {
        if let Err(e) =
            auth::check_bearer(req.headers().get(http::header::AUTHORIZATION), &self.tokens)
        {
            return rejected(reject::UNAUTHORIZED, ApiError::unauthorized(e.message()));
        }
        let too_large = || {
            rejected(
                reject::TOO_LARGE,
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    reject::TOO_LARGE,
                    format!(
                        "the body is larger than the {}-byte limit ([server] max_body_bytes)",
                        self.max_body_bytes
                    ),
                ),
            )
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return too_large();
        }
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let space = match kind {
            InputKind::SitecoreAudit => query_param(req.uri().query(), "space"),
            _ => None,
        };
        let body: Bytes = match Limited::new(req.into_body(), self.max_body_bytes)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) => {
                return rejected(
                    reject::MALFORMED,
                    ApiError::bad_request(format!("could not read the request body: {e}")),
                );
            }
        };
        let received_at_ms = now_ms();
        let mut events = match decode::decode(
            kind,
            content_type.as_deref(),
            &body,
            &self.limits,
            received_at_ms,
        ) {
            Ok(ev) => ev,
            Err(e) => return rejected(e.reason(), decode_error(&e)),
        };
        if kind == InputKind::SitecoreAudit {
            let value = audit_space(space.as_deref());
            for e in &mut events {
                e.attributes.push((attr::SPACE.into(), value.clone()));
            }
        }
        self.accept(kind, events).await
    }

    /// Routes, journals and hands over decoded events.
    async fn accept(&self, kind: InputKind, events: Vec<Event>) -> Response {
        let mut batch = Vec::with_capacity(events.len());
        let mut matched: Vec<Arc<Target>> = Vec::new();
        for mut event in events {
            matched.clear();
            self.subs.route(&event, &mut matched);
            // The event's sequence number, then its deliveries' ids, consecutive: the journal
            // finds a delivery's event from its id (see `codec::encode_event_with`).
            event.seq = self.ids.next_block(1 + matched.len() as u64);
            let deliveries = matched
                .iter()
                .zip(event.seq + 1..)
                .map(|(t, id)| {
                    Delivery::fresh(DeliveryId(id), t.sub.id, event.seq, event.received_at_ms)
                })
                .collect();
            batch.push(NewEvent {
                event: Arc::new(event),
                deliveries,
            });
        }
        let handoff = batch.clone();
        let staged = self.journal.append_staged(batch);
        // The events the journal is sure to accept start now, before the writer has taken
        // them (their transitions wait in the gate until it has); the others once it has
        // answered. Either way the `202` below waits for the sync (at-least-once).
        let mut started = false;
        for (ne, &sure) in handoff.iter().zip(&staged.sure) {
            if sure && !ne.deliveries.is_empty() {
                self.dispatcher
                    .enqueue(&ne.event, &ne.deliveries, staged.gate.as_ref());
                started = true;
            }
        }
        let statuses = match staged.written.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return rejected(reject::UNAVAILABLE, unavailable(&e, started)),
            Err(_) => {
                let e = JournalError::Closed;
                return rejected(reject::UNAVAILABLE, unavailable(&e, started));
            }
        };
        let mut ids = Vec::with_capacity(handoff.len());
        let mut duplicates = Vec::new();
        let mut accepted = 0u64;
        let mut created = 0u64;
        for ((ne, status), &sure) in handoff.iter().zip(&statuses).zip(&staged.sure) {
            ids.push(&*ne.event.id);
            match status {
                AppendStatus::Accepted => {
                    accepted += 1;
                    created += ne.deliveries.len() as u64;
                    if !sure && !ne.deliveries.is_empty() {
                        self.dispatcher.enqueue(&ne.event, &ne.deliveries, None);
                    }
                }
                AppendStatus::Duplicate { .. } => {
                    debug_assert!(!sure, "an event sure to be accepted was a duplicate");
                    duplicates.push(&*ne.event.id);
                }
            }
        }
        match staged.durable.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return rejected(reject::UNAVAILABLE, not_durable(&e)),
            Err(_) => return rejected(reject::UNAVAILABLE, not_durable(&JournalError::Closed)),
        }
        metrics::counter!(m::EVENTS_RECEIVED, "source" => kind.as_str()).increment(accepted);
        metrics::counter!(m::DELIVERIES_CREATED).increment(created);
        if !duplicates.is_empty() {
            metrics::counter!(m::EVENTS_DUPLICATE).increment(duplicates.len() as u64);
        }
        json_response(
            StatusCode::ACCEPTED,
            &Accepted {
                accepted: ids.len(),
                ids,
                duplicates,
            },
        )
    }
}

/// The batch could not be written. `started`: deliveries of its events had started (the
/// journal was sure of them); they may be made again when the batch is sent again.
fn unavailable(e: &JournalError, started: bool) -> ApiError {
    if started {
        ApiError::unavailable(format!(
            "{e}; nothing was stored, send it again later (some deliveries had started and \
             may be made twice)"
        ))
    } else {
        ApiError::unavailable(format!("{e}; nothing was accepted, send it again later"))
    }
}

/// The batch was written but its sync failed: it may be delivered, but it is not known to be
/// durable, so the sender must send it again (a copy that was kept is then a duplicate, not a
/// second delivery).
fn not_durable(e: &JournalError) -> ApiError {
    ApiError::unavailable(format!(
        "{e}; the events were written but not confirmed on disk: send them again later \
         (copies already stored are recognized as duplicates and not delivered twice)"
    ))
}

/// The `space` attribute of a forwarded audit log: the `?space=` value lower-cased (filters
/// compare lower-case), or [`ALL_SPACES`] when the query names none (or an empty one). A Sitecore
/// audit configuration's filter accepts its own space and `*`, so a log that names no space
/// reaches every space's configurations, and one that names a space reaches only that space's.
pub fn audit_space(space: Option<&str>) -> Box<str> {
    match space.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_lowercase().into(),
        _ => ALL_SPACES.into(),
    }
}

/// The `space` value of an audit log sent without `?space=`: it is for every space.
pub const ALL_SPACES: &str = "*";

/// The first value of `name` in a query string, form-decoded (`%20` and `+` are spaces).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_space_table() {
        let cases = [
            (Some("Production"), "production"),
            (Some(" prod "), "prod"),
            (Some("Développement"), "développement"),
            (Some(""), ALL_SPACES),
            (Some("  "), ALL_SPACES),
            (None, ALL_SPACES),
            (Some("*"), ALL_SPACES),
        ];
        for (space, want) in cases {
            assert_eq!(&*audit_space(space), want, "{space:?}");
        }
    }

    #[test]
    fn query_params() {
        let cases = [
            (Some("space=Production"), "space", Some("Production")),
            (Some("a=1&space=My%20Space"), "space", Some("My Space")),
            (Some("space=a+b"), "space", Some("a b")),
            (Some("spaces=x"), "space", None),
            (None, "space", None),
            (Some("space"), "space", Some("")),
        ];
        for (q, name, want) in cases {
            assert_eq!(query_param(q, name).as_deref(), want, "{q:?}");
        }
    }
}
