//! Replay: dead letters queued again, and journaled events delivered again to one subscription.
//!
//! `POST /v1/dead-letters/{id}/replay`, `POST /v1/dead-letters/replay` (optionally filtered by
//! subscription and time range) and `POST /v1/subscriptions/{id}/replay {"since", "until"}`.
//! Both bulk forms walk the journal a page at a time, so a replay of a million records holds one
//! page in memory; the dispatcher's window spills the rest to disk as usual.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use crate::api::error::{ApiError, Response, json_response};
use crate::api::native::deliveries::{parse_time, read};
use crate::api::native::lookup;
use crate::api::{Ctx, read_json};
use crate::journal::DeliveryQuery;
use crate::model::{DeliveryId, DeliveryStatus, Event, SubscriptionId, now_ms};

/// Records per journal page.
const PAGE: usize = 500;

fn body_time(v: &Value, key: &str) -> Result<Option<i64>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be an RFC 3339 time"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "`{key}` must be an RFC 3339 time string"
        ))),
    }
}

async fn optional_json(
    ctx: &Ctx<'_>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Value, ApiError> {
    let empty = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v == "0");
    if empty {
        return Ok(json!({}));
    }
    let v = read_json(ctx, req).await?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request("the body must be a JSON object"))
    }
}

/// `POST /v1/dead-letters/{id}/replay`
pub async fn one(ctx: &Ctx<'_>, id: &str) -> Response {
    let not_found = || ApiError::not_found(&format!("dead letter `{id}`"));
    let Ok(did) = id.parse::<DeliveryId>() else {
        return not_found().into_response();
    };
    let record = match read(ctx, move |j| j.delivery(did)).await {
        Ok(Some(r)) if r.status == DeliveryStatus::Dead => r,
        Ok(_) => return not_found().into_response(),
        Err(e) => return e.into_response(),
    };
    match ctx.app.subs.get(&record.subscription) {
        Some(t) if ctx.may_see(&t.sub) => {}
        Some(_) => return not_found().into_response(),
        None => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the dead letter's subscription was deleted; there is nowhere to send it",
            )
            .into_response();
        }
    }
    match ctx.app.dispatcher.retry_now(&record).await {
        Ok(_) => json_response(
            StatusCode::ACCEPTED,
            &json!({"id": record.id.to_string(), "status": "queued"}),
        ),
        Err(e) => ApiError::unavailable(e.to_string()).into_response(),
    }
}

/// `POST /v1/dead-letters/replay {"subscription", "since", "until"}` (all optional).
pub async fn many(ctx: &Ctx<'_>, req: http::Request<hyper::body::Incoming>) -> Response {
    let body = match optional_json(ctx, req).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut query = DeliveryQuery {
        status: Some(DeliveryStatus::Dead),
        limit: PAGE,
        ..Default::default()
    };
    if let Some(obj) = body.as_object() {
        for k in obj.keys() {
            if !["subscription", "since", "until"].contains(&k.as_str()) {
                return ApiError::bad_request(format!("unknown field `{k}`")).into_response();
            }
        }
    }
    match body.get("subscription") {
        None | Some(Value::Null) => {
            if ctx.scoped() {
                return ApiError::bad_request(
                    "a token limited to tenants must name a `subscription`",
                )
                .into_response();
            }
        }
        Some(Value::String(s)) => match lookup(ctx, s) {
            Ok(t) => query.subscription = Some(t.sub.id),
            Err(e) => return e.into_response(),
        },
        Some(_) => {
            return ApiError::bad_request("`subscription` must be a subscription id")
                .into_response();
        }
    }
    match (body_time(&body, "since"), body_time(&body, "until")) {
        (Ok(s), Ok(u)) => {
            query.since_ms = s;
            query.until_ms = u;
        }
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    }
    let (mut replayed, mut skipped) = (0u64, 0u64);
    loop {
        let q = query.clone();
        let page = match read(ctx, move |j| j.deliveries(&q)).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let full = page.len() == PAGE;
        query.before = page.last().map(|r| r.id);
        for record in &page {
            if ctx.app.subs.get(&record.subscription).is_none() {
                skipped += 1;
                continue;
            }
            match ctx.app.dispatcher.retry_now(record).await {
                Ok(_) => replayed += 1,
                Err(e) => return ApiError::unavailable(e.to_string()).into_response(),
            }
        }
        if !full {
            break;
        }
    }
    tracing::info!(replayed, skipped, "dead letters replayed");
    json_response(
        StatusCode::ACCEPTED,
        &json!({"replayed": replayed, "skipped_deleted_subscription": skipped}),
    )
}

/// `POST /v1/subscriptions/{id}/replay {"since": …, "until": …}`: every journaled event received
/// in `[since, until)` that the subscription's filters match is delivered to it again.
pub async fn subscription(
    ctx: &Ctx<'_>,
    id: &str,
    req: http::Request<hyper::body::Incoming>,
) -> Response {
    let target = match lookup(ctx, id) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if !target.sub.enabled {
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the subscription is disabled; enable it before replaying to it",
        )
        .into_response();
    }
    let body = match optional_json(ctx, req).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let since = match body_time(&body, "since") {
        Ok(Some(s)) => s,
        Ok(None) => {
            return ApiError::bad_request("`since` is required (an RFC 3339 time)").into_response();
        }
        Err(e) => return e.into_response(),
    };
    let until = match body_time(&body, "until") {
        Ok(u) => u.unwrap_or_else(|| now_ms() + 1),
        Err(e) => return e.into_response(),
    };
    if until <= since {
        return ApiError::bad_request("`until` must be after `since`").into_response();
    }
    let sub_id: SubscriptionId = target.sub.id;
    let mut after = None;
    let mut replayed = 0usize;
    loop {
        let page = match read(ctx, move |j| j.events_between(since, until, after, PAGE)).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let full = page.len() == PAGE;
        after = page.last().map(|e| e.seq);
        let wanted: Vec<Arc<Event>> = page
            .into_iter()
            .filter(|e| target.sub.wants(e, &e.event_type.to_ascii_lowercase()))
            .map(Arc::new)
            .collect();
        match ctx
            .app
            .dispatcher
            .redeliver(sub_id, wanted, &ctx.app.ingest.ids)
            .await
        {
            Ok(n) => replayed += n,
            Err(e) => return ApiError::unavailable(e.to_string()).into_response(),
        }
        if !full {
            break;
        }
    }
    tracing::info!(subscription = %sub_id, replayed, "events replayed to a subscription");
    json_response(StatusCode::ACCEPTED, &json!({"replayed": replayed}))
}
