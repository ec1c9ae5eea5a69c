//! DatoCMS's webhook management API (spec §1) over Herald's one subscription model.
//!
//! `/webhooks` (create, list, get, update, delete) and `/webhook_calls` (the delivery log: list,
//! get, resend), JSON:API in and out, errors as DatoCMS `api_error` lists, so scripts and the
//! official clients work unchanged with their base URL pointed at Herald. Handlers are thin:
//! `webhook` turns documents into subscription changes and subscriptions into resources,
//! `calls` turns delivery-log records into `webhook_call`s, `error` owns the error body.
//!
//! Tenancy: a token limited to exactly one `site:ID` scope creates webhooks of that site (their
//! filters require the event's `site` attribute, which the DatoCMS decoder fills from `site_id`)
//! and sees only that site's webhooks; a full-access token creates untenanted webhooks that
//! take events of any site. Only DatoCMS-dialect subscriptions are served here; native ones are
//! not listed (they may use filters and formats DatoCMS cannot express).
//!
//! Writes are serialized by `App::datocms_writes` so that the name-uniqueness check and the
//! write it guards cannot interleave with another DatoCMS write.

pub mod calls;
pub mod error;
pub mod webhook;

use std::sync::Arc;

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::api::Ctx;
use crate::api::auth::AuthError;
use crate::api::error::Response;
use crate::journal::{Journal, JournalError};
use crate::model::{
    DeliveryRecord, Dialect, Subscription, SubscriptionId, Tenant, TenantKind, now_ms,
};
use crate::route::store::{StoreError, Target, UpdateError};
use error::{Code, DatoError, FieldProblem, Validation, respond};
use webhook::{Mode, parse_webhook_id};

/// Most webhooks `GET /webhooks` returns (DatoCMS's list has no paging). Sites hold a handful;
/// the cap only bounds the answer.
const MAX_LISTED: usize = 10_000;

/// The answer to a request without a valid token, in DatoCMS's shape.
pub fn unauthorized(e: AuthError) -> Response {
    DatoError::new(Code::InvalidAuthorizationHeader, e.message()).into_response()
}

/// A method the route does not serve: `405` with `Allow`.
pub fn method_not_allowed(allowed: &'static str) -> Response {
    let mut resp = DatoError::new(
        Code::InvalidEndpoint,
        format!("this endpoint accepts {allowed}"),
    )
    .into_response();
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
    resp
}

fn answer(result: Result<(StatusCode, Value), DatoError>) -> Response {
    match result {
        Ok((status, body)) => respond(status, &body),
        Err(e) => e.into_response(),
    }
}

/// `/webhooks`
pub async fn webhooks(ctx: &Ctx<'_>, method: Method, req: http::Request<Incoming>) -> Response {
    match method {
        Method::POST => answer(create(ctx, req).await),
        Method::GET => answer(Ok((StatusCode::OK, list(ctx)))),
        _ => method_not_allowed("GET, POST"),
    }
}

/// `/webhooks/{id}`
pub async fn webhook(
    ctx: &Ctx<'_>,
    id: &str,
    method: Method,
    req: http::Request<Incoming>,
) -> Response {
    match method {
        Method::GET => answer(lookup(ctx, id).map(|t| (StatusCode::OK, one(&t.sub)))),
        Method::PUT => answer(update(ctx, id, req).await),
        Method::DELETE => answer(delete(ctx, id).await),
        _ => method_not_allowed("GET, PUT, DELETE"),
    }
}

fn one(sub: &Subscription) -> Value {
    json!({ "data": webhook::view(sub) })
}

/// The tenant of webhooks this caller creates: its one site, or none for a full-access token.
fn creating_tenant(ctx: &Ctx<'_>) -> Result<Option<Tenant>, DatoError> {
    let Some(scopes) = ctx.scopes else {
        return Ok(None);
    };
    let mut sites = scopes.iter().filter(|t| t.kind == TenantKind::Site);
    match (sites.next(), sites.next()) {
        (Some(site), None) => Ok(Some(site.clone())),
        _ => Err(DatoError::new(
            Code::InsufficientPermissions,
            "a token limited to tenants creates DatoCMS webhooks only when it is limited to exactly one `site:ID`",
        )),
    }
}

/// A DatoCMS webhook the caller may see.
fn lookup(ctx: &Ctx<'_>, id: &str) -> Result<Arc<Target>, DatoError> {
    let not_found = || DatoError::not_found("webhook", id);
    let sid = parse_webhook_id(id).ok_or_else(not_found)?;
    match ctx.app.subs.get(&sid) {
        Some(t) if t.sub.dialect == Dialect::DatoCms && ctx.may_see(&t.sub) => Ok(t),
        _ => Err(not_found()),
    }
}

/// The DatoCMS webhook a delivery belongs to, if the caller may see it.
fn lookup_record_target(ctx: &Ctx<'_>, record: &DeliveryRecord) -> Option<Arc<Target>> {
    ctx.app
        .subs
        .get(&record.subscription)
        .filter(|t| t.sub.dialect == Dialect::DatoCms && ctx.may_see(&t.sub))
}

/// Every DatoCMS webhook the caller may see, oldest first.
pub fn visible(ctx: &Ctx<'_>) -> Vec<Arc<Target>> {
    let mut all = ctx.app.subs.list(None, MAX_LISTED, |t| {
        t.sub.dialect == Dialect::DatoCms && ctx.may_see(&t.sub)
    });
    all.sort_by_key(|t| (t.sub.version.created_at_ms, t.sub.id));
    all
}

/// `GET /webhooks`
fn list(ctx: &Ctx<'_>) -> Value {
    let data: Vec<Value> = visible(ctx).iter().map(|t| webhook::view(&t.sub)).collect();
    json!({ "data": data })
}

/// `INVALID_FIELD`/`VALIDATION_UNIQUENESS` when another DatoCMS webhook of the same tenant has
/// this name.
fn check_unique(ctx: &Ctx<'_>, sub: &Subscription) -> Result<(), DatoError> {
    let clash = ctx.app.subs.list(None, 1, |t| {
        t.sub.id != sub.id
            && t.sub.dialect == Dialect::DatoCms
            && t.sub.tenant == sub.tenant
            && t.sub.name == sub.name
    });
    if clash.is_empty() {
        Ok(())
    } else {
        Err(DatoError::fields(vec![FieldProblem::new(
            "name",
            Validation::Uniqueness,
            format!("another webhook is already named `{}`", sub.name),
        )]))
    }
}

fn store_error(e: StoreError) -> DatoError {
    match e {
        StoreError::Render(r) => {
            let problems = webhook::render_problems(r.field_errors());
            if r.field_errors().iter().any(|f| &*f.field == "format") {
                DatoError::new(
                    Code::Exception,
                    "this build of Herald cannot render DatoCMS deliveries",
                )
            } else if problems.is_empty() {
                DatoError::fields(vec![FieldProblem::new(
                    "base",
                    Validation::Format,
                    r.to_string(),
                )])
            } else {
                DatoError::fields(problems)
            }
        }
        StoreError::NotFound => DatoError::new(Code::NotFound, "the webhook was deleted meanwhile"),
        StoreError::Journal(j) => DatoError::unavailable(format!("{j}; the change was not saved")),
    }
}

/// `POST /webhooks`: `200` with the new webhook (the documented status).
async fn create(
    ctx: &Ctx<'_>,
    req: http::Request<Incoming>,
) -> Result<(StatusCode, Value), DatoError> {
    let tenant = creating_tenant(ctx)?;
    let body = read_body(ctx, req).await?;
    let attrs = webhook::parse(&body, Mode::Create)?;
    let mut sub = webhook::blank(SubscriptionId::generate(), tenant, ctx.actor, now_ms());
    attrs.apply(&mut sub);
    let _writes = ctx.app.datocms_writes.lock().await;
    check_unique(ctx, &sub)?;
    let t = ctx.app.subs.create(sub).await.map_err(store_error)?;
    tracing::info!(subscription = %t.sub.id, name = %t.sub.name, "DatoCMS webhook created");
    Ok((StatusCode::OK, one(&t.sub)))
}

/// `PUT /webhooks/{id}`: every attribute optional, merged onto the stored webhook.
async fn update(
    ctx: &Ctx<'_>,
    id: &str,
    req: http::Request<Incoming>,
) -> Result<(StatusCode, Value), DatoError> {
    let current = lookup(ctx, id)?;
    let body = read_body(ctx, req).await?;
    let attrs = webhook::parse(&body, Mode::Update(current.sub.id))?;
    let _writes = ctx.app.datocms_writes.lock().await;
    let result = ctx
        .app
        .subs
        .update(&current.sub.id, ctx.actor, |sub| {
            attrs.apply(sub);
            check_unique(ctx, sub)
        })
        .await;
    match result {
        Ok(t) => Ok((StatusCode::OK, one(&t.sub))),
        Err(UpdateError::Refused(e)) => Err(e),
        Err(UpdateError::Store(e)) => Err(store_error(e)),
    }
}

/// `DELETE /webhooks/{id}`: `200` with the deleted webhook.
async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<(StatusCode, Value), DatoError> {
    let current = lookup(ctx, id)?;
    let _writes = ctx.app.datocms_writes.lock().await;
    let t = ctx
        .app
        .subs
        .delete(&current.sub.id)
        .await
        .map_err(store_error)?;
    tracing::info!(subscription = %t.sub.id, "DatoCMS webhook deleted");
    Ok((StatusCode::OK, one(&t.sub)))
}

/// Reads a request body as JSON: `application/json` or `application/vnd.api+json` (any
/// `+json` type, or no content type), at most `[server] max_body_bytes`.
async fn read_body(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Result<Value, DatoError> {
    let ct = req.headers().get(http::header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if let Some(ct) = ct
        && ct != "application/json"
        && !ct.ends_with("+json")
    {
        let shown: String = ct.chars().take(100).collect();
        return Err(DatoError::new(
            Code::InvalidContentTypeHeader,
            format!("expected application/vnd.api+json or application/json, got `{shown}`"),
        ));
    }
    let max = ctx.app.max_body_bytes;
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                DatoError::new(
                    Code::InvalidRequest,
                    format!("the body is larger than {max} bytes"),
                )
                .status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                DatoError::new(
                    Code::InvalidRequest,
                    format!("could not read the request body: {e}"),
                )
                .status(StatusCode::BAD_REQUEST)
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        let mut details = Map::new();
        details.insert(
            "message".into(),
            Value::from(format!("the body is not valid JSON: {e}")),
        );
        DatoError::with_details(Code::InvalidJsonBody, details)
    })
}

fn journal_error(e: JournalError) -> DatoError {
    DatoError::unavailable(format!("cannot read the delivery log: {e}"))
}

/// Runs a journal read on the blocking pool after a barrier (read-your-writes, as the native
/// delivery log does: a resend must show up in the next read).
async fn read<T: Send + 'static>(
    ctx: &Ctx<'_>,
    f: impl FnOnce(&dyn Journal) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, DatoError> {
    ctx.app
        .journal
        .barrier()
        .await
        .map_err(|_| journal_error(JournalError::Closed))?
        .map_err(journal_error)?;
    let journal = ctx.app.journal.clone();
    tokio::task::spawn_blocking(move || f(journal.as_ref()))
        .await
        .map_err(|_| DatoError::new(Code::Exception, "the journal read was cancelled"))?
        .map_err(journal_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_is_a_datocms_error() {
        let r = unauthorized(AuthError::Missing);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/json");
        let r = method_not_allowed("GET, POST");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[http::header::ALLOW], "GET, POST");
    }

    #[test]
    fn the_id_function_is_the_one_the_view_uses() {
        let id = SubscriptionId::generate();
        let sub = webhook::blank(id, None, "t", 0);
        assert_eq!(webhook::view(&sub)["id"], webhook::webhook_id(&id));
    }
}
