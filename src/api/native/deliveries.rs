//! The delivery log and dead letters: `GET /v1/deliveries`, `GET /v1/deliveries/{id}`,
//! `POST /v1/deliveries/{id}/retry`, `GET /v1/dead-letters`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::api::Ctx;
use crate::api::error::{ApiError, Response, json_response};
use crate::deliver::dispatch::RetryNow;
use crate::journal::{DeliveryQuery, JournalError};
use crate::model::{AttemptRecord, DeliveryId, DeliveryRecord, DeliveryStatus, SubscriptionId};

fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub fn attempt_view(a: &AttemptRecord) -> Value {
    json!({
        "attempt": a.attempt,
        "started_at": time_text(a.started_at_ms),
        "duration_ms": a.duration_us as f64 / 1000.0,
        "class": a.class.as_str(),
        "status_code": a.status_code,
        "error": a.error,
        "response_body": a.response_body,
    })
}

pub fn record_view(r: &DeliveryRecord) -> Value {
    json!({
        "id": r.id.to_string(),
        "subscription": r.subscription.to_string(),
        "event_id": r.event_id,
        "event_type": r.event_type,
        "status": r.status.as_str(),
        "attempts": r.attempts,
        "created_at": time_text(r.created_at_ms),
        "next_attempt_at": r.next_attempt_at_ms.map(time_text),
        "last_attempt": r.last_attempt.as_ref().map(attempt_view),
    })
}

fn journal_error(e: JournalError) -> ApiError {
    ApiError::unavailable(format!("cannot read the delivery log: {e}"))
}

/// Runs a journal read on the blocking pool, after a barrier: the delivery log is written
/// asynchronously, and an operator who just retried a delivery must see that retry in the next
/// read (read-your-writes), not the state from before it.
pub async fn read<T: Send + 'static>(
    ctx: &Ctx<'_>,
    f: impl FnOnce(&dyn crate::journal::Journal) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, ApiError> {
    ctx.app
        .journal
        .barrier()
        .await
        .map_err(|_| journal_error(JournalError::Closed))?
        .map_err(journal_error)?;
    let journal = ctx.app.journal.clone();
    tokio::task::spawn_blocking(move || f(journal.as_ref()))
        .await
        .map_err(|_| ApiError::internal("the journal read was cancelled"))?
        .map_err(journal_error)
}

/// Parses the shared query of the log and dead-letter listings.
fn query(ctx: &Ctx<'_>, q: Option<&str>, status_allowed: bool) -> Result<DeliveryQuery, ApiError> {
    let mut out = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match &*k {
            "subscription" => {
                let id: SubscriptionId = v.parse().map_err(|_| {
                    ApiError::bad_request("`subscription` must be a subscription id")
                })?;
                match ctx.app.subs.get(&id) {
                    Some(t) if !ctx.may_see(&t.sub) => {
                        return Err(ApiError::not_found(&format!("subscription `{id}`")));
                    }
                    _ => {}
                }
                out.subscription = Some(id);
            }
            "status" if status_allowed => {
                out.status = Some(DeliveryStatus::parse(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        "`status` must be one of pending, retrying, delivered, dead",
                    )
                })?)
            }
            "limit" => {
                out.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request("`limit` must be a number from 1 to 1000")
                    })?
            }
            "before" => {
                out.before = Some(v.parse().map(DeliveryId).map_err(|_| {
                    ApiError::bad_request("`before` must be a delivery id (a paging cursor)")
                })?)
            }
            "since" | "until" => {
                let ms = parse_time(&v).ok_or_else(|| {
                    ApiError::bad_request(format!("`{k}` must be an RFC 3339 time"))
                })?;
                if k == "since" {
                    out.since_ms = Some(ms)
                } else {
                    out.until_ms = Some(ms)
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    if out.subscription.is_none() && ctx.scoped() {
        return Err(ApiError::bad_request(
            "a token limited to tenants must name a `subscription`",
        ));
    }
    Ok(out)
}

pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// A page of records, newest first, with the cursor for the next page.
fn page(records: &[DeliveryRecord], limit: usize) -> Value {
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    json!({
        "data": records.iter().map(record_view).collect::<Vec<_>>(),
        "next_before": next,
    })
}

/// `GET /v1/deliveries?subscription=&status=&limit=&before=&since=&until=`
pub async fn list(ctx: &Ctx<'_>, q: Option<&str>) -> Response {
    let query = match query(ctx, q, true) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let limit = query.limit;
    match read(ctx, move |j| j.deliveries(&query)).await {
        Ok(records) => json_response(StatusCode::OK, &page(&records, limit)),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/dead-letters?subscription=&limit=&before=&since=&until=`
pub async fn dead_letters(ctx: &Ctx<'_>, q: Option<&str>) -> Response {
    let mut query = match query(ctx, q, false) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    query.status = Some(DeliveryStatus::Dead);
    let limit = query.limit;
    match read(ctx, move |j| j.deliveries(&query)).await {
        Ok(records) => json_response(StatusCode::OK, &page(&records, limit)),
        Err(e) => e.into_response(),
    }
}

async fn find(ctx: &Ctx<'_>, id: &str) -> Result<DeliveryRecord, ApiError> {
    let not_found = || ApiError::not_found(&format!("delivery `{id}`"));
    let id: DeliveryId = id.parse().map_err(|_| not_found())?;
    let record = read(ctx, move |j| j.delivery(id))
        .await?
        .ok_or_else(not_found)?;
    match ctx.app.subs.get(&record.subscription) {
        Some(t) if !ctx.may_see(&t.sub) => Err(not_found()),
        None if ctx.scoped() => Err(not_found()),
        _ => Ok(record),
    }
}

/// `GET /v1/deliveries/{id}`: the record and every attempt.
pub async fn get(ctx: &Ctx<'_>, id: &str) -> Response {
    let record = match find(ctx, id).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let rid = record.id;
    let attempts = match read(ctx, move |j| j.attempts(rid)).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut v = record_view(&record);
    v["attempt_log"] = Value::from(attempts.iter().map(attempt_view).collect::<Vec<_>>());
    json_response(StatusCode::OK, &v)
}

/// `POST /v1/deliveries/{id}/retry`: run it again now.
pub async fn retry(ctx: &Ctx<'_>, id: &str) -> Response {
    let record = match find(ctx, id).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if ctx.app.subs.get(&record.subscription).is_none() {
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the delivery's subscription was deleted; there is nowhere to send it",
        )
        .into_response();
    }
    match ctx.app.dispatcher.retry_now(&record).await {
        Ok(RetryNow::Queued) => json_response(
            StatusCode::ACCEPTED,
            &json!({"id": record.id.to_string(), "status": "queued"}),
        ),
        Ok(RetryNow::InFlight) => ApiError::new(
            StatusCode::CONFLICT,
            "in_flight",
            "an attempt of this delivery is running right now",
        )
        .into_response(),
        Err(e) => journal_error(e).into_response(),
    }
}
