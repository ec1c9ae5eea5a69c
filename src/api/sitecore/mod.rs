//! The Sitecore Common Audit Log webhook API (`/api/v1/eventConfigurations`, spec §3) over
//! Herald's one subscription model.
//!
//! Clients written against Sitecore's management API create, read, change and delete their
//! audit-log webhooks here unchanged; each webhook is a `Subscription` of dialect
//! `SitecoreAudit` (see `body` for the mapping), so it is also visible and manageable through the
//! native API. The other way round does not hold: a native subscription has no space, secret
//! header or audit-log format, so this dialect neither lists nor finds it.
//!
//! Tenancy: a webhook belongs to its `space`. A token limited to `space:NAME` scopes sees and
//! manages only the webhooks of those spaces (another space's webhook is `404`, creating one in
//! another space is `403`); a full-access token sees all.
//!
//! Handlers are thin, like the native ones: read the body, validate (`body`), call the store,
//! shape the answer; every error is an RFC 7807 problem (`problem`).

pub mod body;
pub mod problem;

use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::api::Ctx;
use crate::api::auth::AuthError;
use crate::api::error::{Response, empty_response, json_response};
use crate::model::{Dialect, SubscriptionId, now_ms};
use crate::route::store::{Target, UpdateError};
use problem::{AuditApiError, FieldErrors};

/// The dialect's label in metrics and logs.
pub const DIALECT: &str = "sitecore-audit";

/// The collection path, for `Link` headers.
const COLLECTION: &str = "/api/v1/eventConfigurations";

/// Default and largest page of `GET /api/v1/eventConfigurations`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `401` in this dialect's shape.
pub fn unauthorized(e: AuthError) -> Response {
    AuditApiError::Unauthorized(e).into_response()
}

/// `405` in this dialect's shape.
pub fn method_not_allowed(allowed: &'static str) -> Response {
    AuditApiError::MethodNotAllowed(allowed).into_response()
}

fn answer(result: Result<Response, AuditApiError>) -> Response {
    result.unwrap_or_else(AuditApiError::into_response)
}

/// Reads a request body as JSON, size-capped. Any media type that can carry JSON is taken —
/// none, `application/json`, `+json`, `text/plain` — and also `application/x-www-form-urlencoded`,
/// because that is what the seed's own `curl --data-raw` example sends without a `Content-Type`
/// header; the body must still parse as JSON.
async fn read_json(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Result<Value, AuditApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(ct) = ct
        && !(ct.is_empty()
            || ct == "application/json"
            || ct.ends_with("+json")
            || ct == "text/plain"
            || ct == "application/x-www-form-urlencoded")
    {
        return Err(AuditApiError::Request {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("expected a JSON body (application/json), got `{ct}`"),
        });
    }
    let max = ctx.app.max_body_bytes;
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AuditApiError::Request {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!("the body is larger than {max} bytes"),
                }
            } else {
                AuditApiError::Invalid(FieldErrors::one(
                    "$",
                    format!("could not read the request body: {e}"),
                ))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| AuditApiError::Invalid(FieldErrors::one("$", format!("not valid JSON: {e}"))))
}

/// The webhook `id` for this caller: a Sitecore audit subscription of a space the caller may
/// see. Everything else — a malformed id, a native subscription, another space — is `404`, so a
/// scoped token cannot probe which ids exist elsewhere.
fn lookup(ctx: &Ctx<'_>, id: &str) -> Result<Arc<Target>, AuditApiError> {
    let not_found = || AuditApiError::NotFound(id.to_string());
    let parsed: SubscriptionId = id.parse().map_err(|_| not_found())?;
    match ctx.app.subs.get(&parsed) {
        Some(t) if t.sub.dialect == Dialect::SitecoreAudit && ctx.may_see(&t.sub) => Ok(t),
        _ => Err(not_found()),
    }
}

#[derive(Serialize)]
struct Events<T> {
    events: Vec<T>,
}

/// `POST /api/v1/eventConfigurations` → `200 {"events": [{id, enabled, name, description}]}`.
pub async fn create(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Response {
    answer(create_inner(ctx, req).await)
}

async fn create_inner(
    ctx: &Ctx<'_>,
    req: http::Request<Incoming>,
) -> Result<Response, AuditApiError> {
    let json = read_json(ctx, req).await?;
    let config = body::parse_create(&json).map_err(AuditApiError::Invalid)?;
    if !ctx.may_use(Some(&config.tenant())) {
        return Err(AuditApiError::Forbidden(format!(
            "this token may not manage webhooks of space `{}`",
            config.space
        )));
    }
    let sub = config.into_subscription(SubscriptionId::generate(), ctx.actor, now_ms());
    let t = ctx
        .app
        .subs
        .create(sub)
        .await
        .map_err(|e| AuditApiError::from_store(e, ""))?;
    tracing::info!(subscription = %t.sub.id, dialect = DIALECT, "subscription created");
    Ok(json_response(
        StatusCode::OK,
        &Events {
            events: vec![body::summary(&t.sub)],
        },
    ))
}

/// `GET /api/v1/eventConfigurations?space=&limit=&after=` → `200 {"events": [<full object +
/// name, description>]}` in id order; a `Link: <…>; rel="next"` header when more may follow.
pub fn list(ctx: &Ctx<'_>, query: Option<&str>) -> Response {
    answer(list_inner(ctx, query))
}

fn list_inner(ctx: &Ctx<'_>, query: Option<&str>) -> Result<Response, AuditApiError> {
    let mut space = None;
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    let mut errors = FieldErrors::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            // An empty `space=` is no filter, as a form with an empty field means.
            "space" if v.trim().is_empty() => {}
            "space" => space = Some(body::space_tenant(&v).name),
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => errors.add("limit", format!("must be a number from 1 to {MAX_LIMIT}")),
            },
            "after" => match v.parse::<SubscriptionId>() {
                Ok(id) => after = Some(id),
                Err(_) => errors.add("after", "must be a webhook id"),
            },
            _ => {}
        }
    }
    errors.into_result(()).map_err(AuditApiError::Invalid)?;
    let page = ctx.app.subs.list(after, limit, |t| {
        t.sub.dialect == Dialect::SitecoreAudit
            && ctx.may_see(&t.sub)
            && space
                .as_deref()
                .is_none_or(|s| t.sub.tenant.as_ref().is_some_and(|tenant| tenant.name == s))
    });
    let events: Vec<body::ListItem<'_>> = page.iter().map(|t| body::list_item(&t.sub)).collect();
    let mut resp = json_response(StatusCode::OK, &Events { events });
    if page.len() == limit
        && let Some(last) = page.last()
    {
        let mut next = form_urlencoded::Serializer::new(String::new());
        next.append_pair("limit", &limit.to_string());
        next.append_pair("after", &last.sub.id.simple());
        if let Some(s) = &space {
            next.append_pair("space", s);
        }
        let link = format!("<{COLLECTION}?{}>; rel=\"next\"", next.finish());
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

/// `GET /api/v1/eventConfigurations/{id}` → `200` with the full object.
pub fn get(ctx: &Ctx<'_>, id: &str) -> Response {
    answer(lookup(ctx, id).map(|t| json_response(StatusCode::OK, &body::view(&t.sub))))
}

/// `PATCH /api/v1/eventConfigurations/{id}` → `200` with the full object.
pub async fn patch(ctx: &Ctx<'_>, id: &str, req: http::Request<Incoming>) -> Response {
    answer(patch_inner(ctx, id, req).await)
}

async fn patch_inner(
    ctx: &Ctx<'_>,
    id: &str,
    req: http::Request<Incoming>,
) -> Result<Response, AuditApiError> {
    let current = lookup(ctx, id)?;
    let json = read_json(ctx, req).await?;
    let result = ctx
        .app
        .subs
        .update(&current.sub.id, ctx.actor, |sub| {
            // Validated against the value being changed, not the one looked up: a change made
            // in between is what the read-only fields must repeat.
            let now = serde_json::to_value(body::view(sub)).unwrap_or(Value::Null);
            body::parse_patch(&json, &now)?.apply(sub);
            Ok(())
        })
        .await;
    match result {
        Ok(t) => Ok(json_response(StatusCode::OK, &body::view(&t.sub))),
        Err(UpdateError::Refused(errors)) => Err(AuditApiError::Invalid(errors)),
        Err(UpdateError::Store(e)) => Err(AuditApiError::from_store(e, id)),
    }
}

/// `DELETE /api/v1/eventConfigurations/{id}` → `204`.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Response {
    let result = async {
        let current = lookup(ctx, id)?;
        let t = ctx
            .app
            .subs
            .delete(&current.sub.id)
            .await
            .map_err(|e| AuditApiError::from_store(e, id))?;
        tracing::info!(subscription = %t.sub.id, dialect = DIALECT, "subscription deleted");
        Ok(empty_response(StatusCode::NO_CONTENT))
    }
    .await;
    answer(result)
}
