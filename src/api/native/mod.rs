//! Herald's own management API (`/v1/...`): subscriptions, the delivery log, dead letters.
//!
//! Handlers are thin: parse the body (`body`), call the store or the journal, shape the answer.
//! Journal reads can touch the disk, so they run on the blocking pool, never on a worker thread
//! that is also serving ingest.

pub mod body;
pub mod deliveries;
pub mod replay;

use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use crate::api::error::{ApiError, FieldError, Response, empty_response, json_response};
use crate::api::{Ctx, read_json};
use crate::model::{Dialect, Subscription, SubscriptionId, Version, now_ms};
use crate::model::{OptDuration, OptText};
use crate::route::store::{StoreError, Target, UpdateError};
use body::Mode;

/// Maps a store error onto the native error body.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Render(r) => {
            let fields: Vec<FieldError> = r
                .field_errors()
                .iter()
                .map(|f| FieldError::new(f.field.to_string(), f.problem.to_string()))
                .collect();
            if fields.is_empty() {
                ApiError::validation(vec![FieldError::new("", r.to_string())])
            } else {
                ApiError::validation(fields)
            }
        }
        StoreError::NotFound => ApiError::not_found("subscription"),
        StoreError::Journal(j) => ApiError::unavailable(format!("{j}; the change was not saved")),
    }
}

pub fn parse_id(s: &str) -> Result<SubscriptionId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found(&format!("subscription `{s}`")))
}

fn view(t: &Target) -> Value {
    body::view(&t.sub)
}

/// `POST /v1/subscriptions`
pub async fn create(ctx: &Ctx<'_>, req: http::Request<hyper::body::Incoming>) -> Response {
    if ctx.scoped() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a token limited to tenants creates subscriptions through its CMS dialect's API",
        )
        .into_response();
    }
    let body = match read_json(ctx, req).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let fields = match body::parse(&body, Mode::Create, None) {
        Ok(f) => f,
        Err(errs) => return ApiError::validation(errs).into_response(),
    };
    let now = now_ms();
    let mut sub = Subscription {
        id: SubscriptionId::generate(),
        dialect: Dialect::Native,
        tenant: None,
        name: Box::default(),
        description: OptText::NONE,
        enabled: true,
        url: Box::default(),
        method: Default::default(),
        filters: Box::default(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format: Default::default(),
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: ctx.actor.into(),
            created_at_ms: now,
            modified_by: ctx.actor.into(),
            modified_at_ms: now,
            version_no: 1,
        },
    };
    fields.apply(&mut sub);
    match ctx.app.subs.create(sub).await {
        Ok(t) => {
            tracing::info!(subscription = %t.sub.id, name = %t.sub.name, "subscription created");
            let mut resp = json_response(StatusCode::CREATED, &view(&t));
            if let Ok(v) = http::HeaderValue::from_str(&format!("/v1/subscriptions/{}", t.sub.id)) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            resp
        }
        Err(e) => store_error(e).into_response(),
    }
}

/// `GET /v1/subscriptions?limit=&after=&enabled=`
pub fn list(ctx: &Ctx<'_>, query: Option<&str>) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return ApiError::bad_request("`limit` must be a number from 1 to 1000")
                .into_response();
        }
    };
    let after = match get("after").map(str::parse::<SubscriptionId>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return ApiError::bad_request("`after` must be a subscription id").into_response();
        }
    };
    let enabled = match get("enabled") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return ApiError::bad_request("`enabled` must be true or false").into_response(),
    };
    let page = ctx.app.subs.list(after, limit, |t| {
        enabled.is_none_or(|e| t.sub.enabled == e) && ctx.may_see(&t.sub)
    });
    let next = (page.len() == limit)
        .then(|| page.last().map(|t| t.sub.id.to_string()))
        .flatten();
    let data: Vec<Value> = page.iter().map(|t| view(t)).collect();
    json_response(StatusCode::OK, &json!({"data": data, "next_after": next}))
}

/// Looks a subscription up for the caller (a scoped token sees only its tenants).
pub fn lookup(ctx: &Ctx<'_>, id: &str) -> Result<Arc<Target>, ApiError> {
    let id = parse_id(id)?;
    match ctx.app.subs.get(&id) {
        Some(t) if ctx.may_see(&t.sub) => Ok(t),
        _ => Err(ApiError::not_found(&format!("subscription `{id}`"))),
    }
}

/// `GET /v1/subscriptions/{id}`
pub fn get(ctx: &Ctx<'_>, id: &str) -> Response {
    match lookup(ctx, id) {
        Ok(t) => json_response(StatusCode::OK, &view(&t)),
        Err(e) => e.into_response(),
    }
}

/// `PUT` and `PATCH /v1/subscriptions/{id}`
pub async fn change(
    ctx: &Ctx<'_>,
    id: &str,
    mode: Mode,
    req: http::Request<hyper::body::Incoming>,
) -> Response {
    let current = match lookup(ctx, id) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = match read_json(ctx, req).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let result = ctx
        .app
        .subs
        .update(&current.sub.id, ctx.actor, |sub| {
            let fields = body::parse(&body, mode, Some(&*sub))?;
            fields.apply(sub);
            if sub.enabled {
                sub.disabled_reason = OptText::NONE;
            }
            Ok(())
        })
        .await;
    match result {
        Ok(t) => json_response(StatusCode::OK, &view(&t)),
        Err(e) => update_error(e).into_response(),
    }
}

fn update_error(e: UpdateError<Vec<FieldError>>) -> ApiError {
    match e {
        UpdateError::Refused(fields) => ApiError::validation(fields),
        UpdateError::Store(e) => store_error(e),
    }
}

/// `POST /v1/subscriptions/{id}/enable|disable`
pub async fn set_enabled(ctx: &Ctx<'_>, id: &str, enabled: bool) -> Response {
    let current = match lookup(ctx, id) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let result = ctx
        .app
        .subs
        .update(&current.sub.id, ctx.actor, |sub| {
            sub.enabled = enabled;
            if enabled {
                sub.disabled_reason = OptText::NONE;
            }
            Ok(())
        })
        .await;
    match result {
        Ok(t) => json_response(StatusCode::OK, &view(&t)),
        Err(e) => update_error(e).into_response(),
    }
}

/// `DELETE /v1/subscriptions/{id}`
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let current = match lookup(ctx, id) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match ctx.app.subs.delete(&current.sub.id).await {
        Ok(t) => {
            tracing::info!(subscription = %t.sub.id, "subscription deleted");
            empty_response(StatusCode::NO_CONTENT)
        }
        Err(e) => store_error(e).into_response(),
    }
}
