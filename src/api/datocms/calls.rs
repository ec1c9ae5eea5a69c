//! `webhook_call`s (spec §1.5–1.6): Herald's delivery log seen as DatoCMS's webhook activity.
//!
//! `GET /webhook_calls` (filters, `order_by`, offset paging, `meta.total_count`, `included`
//! webhooks), `GET /webhook_calls/{id}` and `POST /webhook_calls/{id}/resend_webhook`.
//!
//! A call is one delivery (`DeliveryRecord`) of a DatoCMS webhook; its id is the delivery id.
//! The log keeps each delivery's state and attempts but not the request bytes, so
//! `request_url`, `request_headers` and `request_payload` are rendered again from the stored
//! event with the webhook's *current* settings and the last attempt's number and time — the
//! request the last attempt sent, unless the webhook changed since (then it is the request a
//! resend would send, which is what DatoCMS's resend uses too).
//!
//! Work per request is bounded: the journal pages by delivery id, so the list reads a window —
//! the newest calls of each visible webhook, `WINDOW_PER_WEBHOOK` each and `WINDOW_TOTAL` in all,
//! narrowed first by `filter[fields][webhook_id]` and the `created_at` bounds, which the
//! journal applies itself — then filters, orders and pages inside it. `meta.total_count` counts
//! the window, so DatoCMS's paged iterators stop at its end. `filter[ids]` reads the named calls
//! directly, wherever they are.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};

use super::error::{Code, DatoError, respond, respond_empty};
use super::webhook::{self, parse_webhook_id, webhook_id};
use super::{lookup_record_target, method_not_allowed, read, visible};
use crate::api::Ctx;
use crate::api::error::Response;
use crate::deliver::dispatch::RetryNow;
use crate::journal::DeliveryQuery;
use crate::model::event::split_type;
use crate::model::{DeliveryId, DeliveryRecord, DeliveryStatus, Event, SubscriptionId};
use crate::render::AttemptCtx;
use crate::route::store::{Subscriptions, Target};

/// `page[limit]` default and maximum (DatoCMS's).
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 500;
/// Most ids `filter[ids]` may name.
const MAX_IDS: usize = 500;
/// The window a listing filters, orders and pages over (see the module docs).
const WINDOW_PER_WEBHOOK: usize = 1_000;
const WINDOW_TOTAL: usize = 20_000;

/// DatoCMS's call status of a delivery.
pub fn status_text(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Retrying => "rescheduled",
        DeliveryStatus::Delivered => "success",
        DeliveryStatus::Dead => "failed",
    }
}

fn parse_status(s: &str) -> Option<DeliveryStatus> {
    Some(match s {
        "pending" => DeliveryStatus::Pending,
        "rescheduled" => DeliveryStatus::Retrying,
        "success" => DeliveryStatus::Delivered,
        "failed" => DeliveryStatus::Dead,
        _ => return None,
    })
}

/// When the next automatic retry runs: only a rescheduled call has one.
fn next_retry_ms(r: &DeliveryRecord) -> Option<i64> {
    (r.status == DeliveryStatus::Retrying)
        .then_some(r.next_attempt_at_ms)
        .flatten()
}

fn last_sent_ms(r: &DeliveryRecord) -> Option<i64> {
    r.last_attempt.as_ref().map(|a| a.started_at_ms)
}

/// Exclusive time bounds, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub gt: Option<i64>,
    pub lt: Option<i64>,
}

impl Range {
    fn admits(&self, t: Option<i64>) -> bool {
        if self.gt.is_none() && self.lt.is_none() {
            return true;
        }
        t.is_some_and(|t| self.gt.is_none_or(|g| t > g) && self.lt.is_none_or(|l| t < l))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderKey {
    WebhookId,
    #[default]
    CreatedAt,
    LastSentAt,
    NextRetryAt,
}

/// A parsed `GET /webhook_calls` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallQuery {
    /// `filter[ids]`: ids that are not delivery ids cannot match and are dropped.
    pub ids: Option<Vec<DeliveryId>>,
    /// `filter[fields][webhook_id][eq]`: `None` inside when it names no webhook (matches nothing).
    pub webhook: Option<Option<SubscriptionId>>,
    pub entity_type: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub created_at: Range,
    pub last_sent_at: Range,
    pub next_retry_at: Range,
    pub order: OrderKey,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

impl Default for CallQuery {
    fn default() -> Self {
        CallQuery {
            ids: None,
            webhook: None,
            entity_type: None,
            event_type: None,
            status: None,
            created_at: Range::default(),
            last_sent_at: Range::default(),
            next_retry_at: Range::default(),
            order: OrderKey::CreatedAt,
            descending: true,
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    // A bare date means its midnight, UTC.
    let d: jiff::civil::Date = s.parse().ok()?;
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// Parses the query string (bracket keys, as DatoCMS clients encode them).
pub fn parse_query(q: Option<&str>) -> Result<CallQuery, DatoError> {
    let mut out = CallQuery::default();
    let bad_filter = |m: String| DatoError::new(Code::InvalidFilterFieldsParam, m);
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match &*k {
            "filter[ids]" => {
                let ids: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if ids.len() > MAX_IDS {
                    return Err(bad_filter(format!(
                        "`filter[ids]` names at most {MAX_IDS} ids"
                    )));
                }
                out.ids = Some(ids.iter().filter_map(|s| s.parse().ok()).collect());
            }
            "order_by" => {
                let (key, desc) = match &*v {
                    "webhook_id_asc" => (OrderKey::WebhookId, false),
                    "webhook_id_desc" => (OrderKey::WebhookId, true),
                    "created_at_asc" => (OrderKey::CreatedAt, false),
                    "created_at_desc" => (OrderKey::CreatedAt, true),
                    "last_sent_at_asc" => (OrderKey::LastSentAt, false),
                    "last_sent_at_desc" => (OrderKey::LastSentAt, true),
                    "next_retry_at_asc" => (OrderKey::NextRetryAt, false),
                    "next_retry_at_desc" => (OrderKey::NextRetryAt, true),
                    other => {
                        return Err(DatoError::new(
                            Code::InvalidOrdering,
                            format!(
                                "`order_by` `{}` is not one of webhook_id, created_at, last_sent_at, next_retry_at with _asc or _desc",
                                other.chars().take(64).collect::<String>()
                            ),
                        ));
                    }
                };
                out.order = key;
                out.descending = desc;
            }
            "page[offset]" => {
                out.offset = v.parse().map_err(|_| {
                    DatoError::new(
                        Code::InvalidParams,
                        "`page[offset]` must be a number from 0",
                    )
                })?
            }
            "page[limit]" => {
                out.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        DatoError::new(
                            Code::InvalidParams,
                            format!("`page[limit]` must be a number from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            key if key.starts_with("filter[fields]") => {
                let rest = &key["filter[fields]".len()..];
                let parts: Vec<&str> = rest
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .map(|r| r.split("][").collect())
                    .unwrap_or_default();
                let (field, op) = match parts.as_slice() {
                    [field, op] => (*field, *op),
                    _ => {
                        return Err(bad_filter(format!(
                            "`{key}`: expected filter[fields][<field>][<operator>]"
                        )));
                    }
                };
                let time = |range: &mut Range| -> Result<(), DatoError> {
                    let t = parse_time(&v).ok_or_else(|| {
                        bad_filter(format!("`{key}` must be an ISO 8601 date-time"))
                    })?;
                    match op {
                        "gt" => range.gt = Some(t),
                        "lt" => range.lt = Some(t),
                        _ => {
                            return Err(bad_filter(format!(
                                "`{field}` takes the operators gt and lt"
                            )));
                        }
                    }
                    Ok(())
                };
                match field {
                    "created_at" => time(&mut out.created_at)?,
                    "last_sent_at" => time(&mut out.last_sent_at)?,
                    "next_retry_at" => time(&mut out.next_retry_at)?,
                    "webhook_id" | "entity_type" | "event_type" | "status" if op != "eq" => {
                        return Err(bad_filter(format!("`{field}` takes the operator eq")));
                    }
                    "webhook_id" => out.webhook = Some(parse_webhook_id(&v)),
                    "entity_type" => out.entity_type = Some(v.into_owned()),
                    "event_type" => out.event_type = Some(v.into_owned()),
                    "status" => {
                        out.status = Some(parse_status(&v).ok_or_else(|| {
                            bad_filter(
                                "`status` is one of pending, success, failed, rescheduled".into(),
                            )
                        })?)
                    }
                    other => {
                        return Err(bad_filter(format!(
                            "`{other}` cannot be filtered on; fields are webhook_id, entity_type, event_type, status, created_at, last_sent_at, next_retry_at"
                        )));
                    }
                }
            }
            key if key.starts_with("filter") || key.starts_with("page") => {
                return Err(bad_filter(format!(
                    "unknown query parameter `{}`",
                    key.chars().take(64).collect::<String>()
                )));
            }
            // Other parameters (a client's cache buster, say) do not change the answer.
            _ => {}
        }
    }
    Ok(out)
}

/// Whether `r` passes every filter of `q`.
fn admits(q: &CallQuery, r: &DeliveryRecord) -> bool {
    let (entity_type, event_type) = split_type(&r.event_type);
    q.ids.as_ref().is_none_or(|ids| ids.contains(&r.id))
        && q.webhook.is_none_or(|w| w == Some(r.subscription))
        && q.entity_type.as_deref().is_none_or(|e| e == entity_type)
        && q.event_type.as_deref().is_none_or(|e| e == event_type)
        && q.status.is_none_or(|s| s == r.status)
        && q.created_at.admits(Some(r.created_at_ms))
        && q.last_sent_at.admits(last_sent_ms(r))
        && q.next_retry_at.admits(next_retry_ms(r))
}

/// Compares by the order key; calls without a value for the key (never sent, no retry due) go
/// last in both directions, ties go by call id in the same direction.
fn compare(q: &CallQuery, a: &DeliveryRecord, b: &DeliveryRecord) -> Ordering {
    let by = |x: Option<(u128, i64)>, y: Option<(u128, i64)>| match (x, y) {
        (Some(x), Some(y)) if q.descending => y.cmp(&x),
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    // Webhook ids order as their hex text does, i.e. as the UUID's 128-bit value.
    let key = |r: &DeliveryRecord| -> Option<(u128, i64)> {
        match q.order {
            OrderKey::WebhookId => Some((r.subscription.0.as_u128(), 0)),
            OrderKey::CreatedAt => Some((0, r.created_at_ms)),
            OrderKey::LastSentAt => last_sent_ms(r).map(|t| (0, t)),
            OrderKey::NextRetryAt => next_retry_ms(r).map(|t| (0, t)),
        }
    };
    by(key(a), key(b)).then_with(|| {
        if q.descending {
            b.id.cmp(&a.id)
        } else {
            a.id.cmp(&b.id)
        }
    })
}

/// Filters, orders and pages `records`: `(total matching, the page)`. Pure.
pub fn select(mut records: Vec<DeliveryRecord>, q: &CallQuery) -> (usize, Vec<DeliveryRecord>) {
    records.retain(|r| admits(q, r));
    records.sort_by(|a, b| compare(q, a, b));
    records.dedup_by_key(|r| r.id);
    let total = records.len();
    let page = records.into_iter().skip(q.offset).take(q.limit).collect();
    (total, page)
}

/// `2016-09-20T18:50:24.914Z`, DatoCMS's time format.
fn time_text(ms: i64) -> Value {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| Value::from(format!("{t:.3}")))
        .unwrap_or(Value::Null)
}

/// `user-agent` → `User-Agent`, as DatoCMS shows request headers.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

fn headers_object(h: &HeaderMap) -> Value {
    let mut m = Map::new();
    for (name, value) in h {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match m.get_mut(&title_case(name.as_str())) {
            // A repeated header shows as one comma-joined value, as HTTP allows.
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                m.insert(title_case(name.as_str()), Value::from(v));
            }
        }
    }
    Value::Object(m)
}

/// The `webhook_call` resource: `event` is the stored event (gone after retention: the request
/// fields are then `null`), `target` the webhook as it is now.
pub fn view(
    subs: &Subscriptions,
    r: &DeliveryRecord,
    target: &Target,
    event: Option<&Event>,
) -> Value {
    let (entity_type, event_type) = split_type(&r.event_type);
    let last_sent = last_sent_ms(r);
    let request = event.and_then(|e| {
        let ctx = AttemptCtx {
            delivery: r.id,
            attempt: r.attempts.max(1),
            timestamp_s: last_sent.unwrap_or_else(crate::model::now_ms) / 1000,
        };
        subs.plan(target).ok()?.render(e, &ctx).ok()
    });
    let (url, headers, payload) = match &request {
        Some(req) => (
            Value::from(req.uri.to_string()),
            headers_object(&req.headers),
            Value::from(String::from_utf8_lossy(&req.body).into_owned()),
        ),
        None => (Value::Null, Value::Null, Value::Null),
    };
    let last = r.last_attempt.as_ref();
    json!({
        "type": "webhook_call",
        "id": r.id.to_string(),
        "attributes": {
            "entity_type": entity_type,
            "event_type": event_type,
            "created_at": time_text(r.created_at_ms),
            "request_url": url,
            "request_headers": headers,
            "request_payload": payload,
            "response_status": last.and_then(|a| a.status_code),
            "response_headers": Value::Null,
            "response_payload": last.and_then(|a| a.response_body.clone()),
            "attempted_auto_retries_count": r.attempts.saturating_sub(1),
            "last_sent_at": last_sent.map_or(Value::Null, time_text),
            "next_retry_at": next_retry_ms(r).map_or(Value::Null, time_text),
            "status": status_text(r.status),
        },
        "relationships": {
            "webhook": {"data": {"type": "webhook", "id": webhook_id(&r.subscription)}}
        }
    })
}

/// `/webhook_calls`
pub async fn calls(ctx: &Ctx<'_>, method: Method, q: Option<&str>) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    match list(ctx, q).await {
        Ok(v) => respond(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

/// `/webhook_calls/{id}`
pub async fn call(ctx: &Ctx<'_>, method: Method, id: &str) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    match get(ctx, id).await {
        Ok(v) => respond(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

/// `/webhook_calls/{id}/resend_webhook`
pub async fn resend(ctx: &Ctx<'_>, method: Method, id: &str) -> Response {
    if method != Method::POST {
        return method_not_allowed("POST");
    }
    match resend_now(ctx, id).await {
        Ok(()) => respond_empty(StatusCode::NO_CONTENT),
        Err(e) => e.into_response(),
    }
}

async fn list(ctx: &Ctx<'_>, q: Option<&str>) -> Result<Value, DatoError> {
    let query = parse_query(q)?;
    let targets: HashMap<SubscriptionId, Arc<Target>> =
        visible(ctx).into_iter().map(|t| (t.sub.id, t)).collect();
    // The webhooks whose logs are read: the one filtered on, or every visible one.
    let scan: Vec<SubscriptionId> = match query.webhook {
        Some(Some(w)) if targets.contains_key(&w) => vec![w],
        Some(_) => Vec::new(),
        None => targets.keys().copied().collect(),
    };
    let subs = ctx.app.subs.clone();
    let (data, included, total) = read(ctx, move |j| {
        let mut records = Vec::new();
        if let Some(ids) = &query.ids {
            for id in ids {
                if let Some(r) = j.delivery(*id)?
                    && targets.contains_key(&r.subscription)
                {
                    records.push(r);
                }
            }
        } else if !scan.is_empty() {
            let per = (WINDOW_TOTAL / scan.len()).clamp(1, WINDOW_PER_WEBHOOK);
            for sub in &scan {
                records.extend(j.deliveries(&DeliveryQuery {
                    subscription: Some(*sub),
                    status: None,
                    before: None,
                    since_ms: query.created_at.gt.map(|t| t.saturating_add(1)),
                    until_ms: query.created_at.lt,
                    limit: per,
                })?);
            }
        }
        let (total, page) = select(records, &query);
        let mut data = Vec::with_capacity(page.len());
        let mut included: Vec<Value> = Vec::new();
        let mut seen: Vec<SubscriptionId> = Vec::new();
        for r in &page {
            let Some(t) = targets.get(&r.subscription) else {
                continue;
            };
            let event = j.event(r.event_seq)?;
            data.push(view(&subs, r, t, event.as_ref()));
            if !seen.contains(&r.subscription) {
                seen.push(r.subscription);
                included.push(webhook::view(&t.sub));
            }
        }
        Ok((data, included, total))
    })
    .await?;
    Ok(json!({"data": data, "meta": {"total_count": total}, "included": included}))
}

/// A call of a DatoCMS webhook the caller may see, with that webhook.
async fn find(ctx: &Ctx<'_>, id: &str) -> Result<(DeliveryRecord, Arc<Target>), DatoError> {
    let not_found = || DatoError::not_found("webhook_call", id);
    let did: DeliveryId = id.parse().map_err(|_| not_found())?;
    let record = read(ctx, move |j| j.delivery(did))
        .await?
        .ok_or_else(not_found)?;
    let target = lookup_record_target(ctx, &record).ok_or_else(not_found)?;
    Ok((record, target))
}

async fn get(ctx: &Ctx<'_>, id: &str) -> Result<Value, DatoError> {
    let (record, target) = find(ctx, id).await?;
    let seq = record.event_seq;
    let event = read(ctx, move |j| j.event(seq)).await?;
    Ok(json!({
        "data": view(&ctx.app.subs, &record, &target, event.as_ref()),
        "included": [webhook::view(&target.sub)],
    }))
}

/// Runs the call again now, with the webhook's current settings (`Dispatcher::retry_now`).
async fn resend_now(ctx: &Ctx<'_>, id: &str) -> Result<(), DatoError> {
    let (record, _) = find(ctx, id).await?;
    match ctx.app.dispatcher.retry_now(&record).await {
        Ok(RetryNow::Queued) => {
            tracing::info!(delivery = %record.id, subscription = %record.subscription, "DatoCMS webhook call resent");
            Ok(())
        }
        Ok(RetryNow::InFlight) => Err(DatoError::new(
            Code::InvalidRequest,
            "this call is being sent right now; resend it once that attempt is over",
        )
        .status(StatusCode::CONFLICT)
        .transient()),
        Err(e) => Err(DatoError::unavailable(format!(
            "cannot queue the call again: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptClass, AttemptRecord};

    fn record(
        id: u64,
        sub: u128,
        ty: &str,
        status: DeliveryStatus,
        created: i64,
    ) -> DeliveryRecord {
        DeliveryRecord {
            id: DeliveryId(id),
            subscription: SubscriptionId(uuid::Uuid::from_u128(sub)),
            event_seq: id,
            event_id: format!("e{id}"),
            event_type: ty.into(),
            status,
            attempts: 0,
            created_at_ms: created,
            next_attempt_at_ms: None,
            last_attempt: None,
        }
    }

    fn sent(mut r: DeliveryRecord, at: i64, attempts: u32, next: Option<i64>) -> DeliveryRecord {
        r.attempts = attempts;
        r.next_attempt_at_ms = next;
        r.last_attempt = Some(AttemptRecord {
            attempt: attempts,
            started_at_ms: at,
            duration_us: 10,
            class: AttemptClass::ServerError,
            status_code: Some(500),
            error: None,
            response_body: Some("boom".into()),
        });
        r
    }

    fn sample() -> Vec<DeliveryRecord> {
        use DeliveryStatus::*;
        vec![
            record(1, 1, "item.update", Pending, 100),
            sent(
                record(2, u128::MAX - 1, "item.create", Delivered, 200),
                210,
                1,
                None,
            ),
            sent(
                record(3, 1, "upload.create", Retrying, 300),
                320,
                2,
                Some(900),
            ),
            sent(
                record(4, u128::MAX - 1, "item.update", Dead, 400),
                450,
                8,
                None,
            ),
            sent(
                record(5, 1, "item.update", Retrying, 500),
                510,
                1,
                Some(700),
            ),
        ]
    }

    fn ids(q: &str) -> (usize, Vec<u64>) {
        let q = parse_query(Some(q)).unwrap();
        let (total, page) = select(sample(), &q);
        (total, page.iter().map(|r| r.id.0).collect())
    }

    #[test]
    fn filters_order_and_pages() {
        let w1 = SubscriptionId(uuid::Uuid::from_u128(1)).simple();
        let cases: Vec<(String, (usize, Vec<u64>))> = vec![
            (String::new(), (5, vec![5, 4, 3, 2, 1])),
            ("order_by=created_at_asc".into(), (5, vec![1, 2, 3, 4, 5])),
            ("filter%5Bids%5D=2,4,zz".into(), (2, vec![4, 2])),
            (
                format!("filter[fields][webhook_id][eq]={w1}"),
                (3, vec![5, 3, 1]),
            ),
            (
                "filter[fields][webhook_id][eq]=nope".into(),
                (0, vec![]),
            ),
            (
                "filter[fields][entity_type][eq]=item".into(),
                (4, vec![5, 4, 2, 1]),
            ),
            (
                "filter[fields][event_type][eq]=create".into(),
                (2, vec![3, 2]),
            ),
            (
                "filter[fields][status][eq]=rescheduled".into(),
                (2, vec![5, 3]),
            ),
            ("filter[fields][status][eq]=failed".into(), (1, vec![4])),
            ("filter[fields][status][eq]=success".into(), (1, vec![2])),
            ("filter[fields][status][eq]=pending".into(), (1, vec![1])),
            (
                "filter[fields][created_at][gt]=1970-01-01T00:00:00.200Z&filter[fields][created_at][lt]=1970-01-01T00:00:00.500Z".into(),
                (2, vec![4, 3]),
            ),
            (
                "filter[fields][last_sent_at][gt]=1970-01-01T00:00:00.300Z".into(),
                (3, vec![5, 4, 3]),
            ),
            (
                "filter[fields][next_retry_at][lt]=1970-01-01T00:00:00.800Z".into(),
                (1, vec![5]),
            ),
            // Nulls last in both directions.
            (
                "order_by=next_retry_at_asc".into(),
                (5, vec![5, 3, 1, 2, 4]),
            ),
            (
                "order_by=next_retry_at_desc".into(),
                (5, vec![3, 5, 4, 2, 1]),
            ),
            (
                "order_by=last_sent_at_desc".into(),
                (5, vec![5, 4, 3, 2, 1]),
            ),
            (
                "order_by=last_sent_at_asc".into(),
                (5, vec![2, 3, 4, 5, 1]),
            ),
            ("order_by=webhook_id_asc".into(), (5, vec![1, 3, 5, 2, 4])),
            ("order_by=webhook_id_desc".into(), (5, vec![4, 2, 5, 3, 1])),
            ("page[offset]=1&page[limit]=2".into(), (5, vec![4, 3])),
            ("page[offset]=9".into(), (5, vec![])),
        ];
        for (q, want) in cases {
            assert_eq!(ids(&q), want, "{q}");
        }
    }

    #[test]
    fn bad_queries_name_their_code() {
        let cases = [
            ("order_by=name_asc", "INVALID_ORDERING"),
            ("page[limit]=501", "INVALID_PARAMS"),
            ("page[limit]=0", "INVALID_PARAMS"),
            ("page[offset]=-1", "INVALID_PARAMS"),
            (
                "filter[fields][status][eq]=done",
                "INVALID_FILTER_FIELDS_PARAM",
            ),
            (
                "filter[fields][status][gt]=x",
                "INVALID_FILTER_FIELDS_PARAM",
            ),
            (
                "filter[fields][created_at][eq]=2024-01-01",
                "INVALID_FILTER_FIELDS_PARAM",
            ),
            (
                "filter[fields][created_at][gt]=yesterday",
                "INVALID_FILTER_FIELDS_PARAM",
            ),
            ("filter[fields][url][eq]=x", "INVALID_FILTER_FIELDS_PARAM"),
            (
                "filter[fields][status]=failed",
                "INVALID_FILTER_FIELDS_PARAM",
            ),
            ("filter[type]=x", "INVALID_FILTER_FIELDS_PARAM"),
        ];
        for (q, code) in cases {
            let e = parse_query(Some(q)).unwrap_err();
            assert_eq!(e.codes(), [code], "{q}");
        }
        assert_eq!(parse_query(Some("page[limit]=500&x=1")).unwrap().limit, 500);
        assert_eq!(parse_query(None).unwrap(), CallQuery::default());
        let d = parse_query(Some("filter[fields][created_at][gt]=2024-08-26")).unwrap();
        assert_eq!(d.created_at.gt, parse_time("2024-08-26T00:00:00Z"));
    }

    #[test]
    fn statuses_map_both_ways() {
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Retrying,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ] {
            assert_eq!(parse_status(status_text(s)), Some(s));
        }
    }

    #[test]
    fn formats_like_datocms() {
        assert_eq!(time_text(1_474_397_424_914), "2016-09-20T18:50:24.914Z");
        assert_eq!(time_text(1_474_397_424_000), "2016-09-20T18:50:24.000Z");
        assert_eq!(title_case("user-agent"), "User-Agent");
        assert_eq!(title_case("x-foo"), "X-Foo");
        let mut h = HeaderMap::new();
        h.append("accept", "*/*".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        assert_eq!(headers_object(&h), json!({"Accept": "*/*", "X-A": "1, 2"}));
    }
}
