//! The Contensis Management API's webhook subscriptions (spec §2), served over Herald's one
//! subscription model:
//!
//! ```text
//! POST   /api/management/projects/{projectId}/events/webhooks/subscriptions        201 + subscription
//! GET    /api/management/projects/{projectId}/events/webhooks/subscriptions        200 + [subscription]
//! GET    /api/management/projects/{projectId}/events/webhooks/subscriptions/{id}   200 + subscription
//! PUT    /api/management/projects/{projectId}/events/webhooks/subscriptions/{id}   200 + subscription
//! DELETE /api/management/projects/{projectId}/events/webhooks/subscriptions/{id}   204
//! ```
//!
//! A Contensis subscription is a [`Subscription`] with `dialect: Contensis`, `tenant:
//! Project(projectId)`, filters compiled from its topics (each carrying `project = projectId`,
//! which is what isolates projects from each other), `format: Contensis` (the default request
//! structure) with its `templates`, a 10 s timeout and Contensis's retry schedule
//! ([`retry_policy`]). The native API sees and manages the same record. Handlers are thin:
//! `body` validates and shapes, `topics` owns the catalogue, the store does the rest; every
//! failure is answered in the Contensis Error shape (`error`).

pub mod body;
pub mod error;
pub mod json;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use hyper::body::Incoming;

use crate::api::Ctx;
use crate::api::error::{FieldError, Response, empty_response};
use crate::journal::JournalError;
use crate::model::{
    Dialect, Format, RetryPolicy, Subscription, SubscriptionId, Tenant, TenantKind, Version, now_ms,
};
use crate::model::{OptDuration, OptText};
use crate::render::FieldProblem;
use crate::route::store::{StoreError, Target, UpdateError};

pub use error::ContensisError;
use json::Json;

/// Contensis gives up on a request after 10 s (spec §2.6).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The first retry delay; each next one doubles.
const FIRST_RETRY: Duration = Duration::from_secs(150);
/// Contensis makes 9 more attempts after a failure (10 in all).
const RETRIES: u32 = 9;
/// ±10 %: spreads retries of many deliveries to one recovering receiver.
const RETRY_JITTER: f64 = 0.1;

/// Longest accepted `projectId`.
const MAX_PROJECT_ID: usize = 128;

/// Subscriptions read per store call when listing a project.
const LIST_PAGE: usize = 512;

/// Contensis's retry behaviour (spec §2.6): 9 retries, exponential, within 24 h. The delays
/// double from 2 m 30 s: 2m30s, 5m, 10m, 20m, 40m, 1h20m, 2h40m, 5h20m, 10h40m — the last
/// attempt 21 h 17 m 30 s after the first, and still under 24 h with every delay +10 %.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        schedule: (0..RETRIES).map(|n| FIRST_RETRY * (1 << n)).collect(),
        jitter: RETRY_JITTER,
    }
}

/// `401` in the Contensis shape (the route table calls this for a missing or wrong token).
pub fn unauthorized(message: &'static str) -> Response {
    ContensisError::Unauthorized(message).into_response()
}

/// `…/subscriptions`: `POST` creates, `GET` lists.
pub async fn collection(
    ctx: &Ctx<'_>,
    project: &str,
    method: Method,
    req: http::Request<Incoming>,
) -> Response {
    let result = match authorize(ctx, project) {
        Err(e) => Err(e),
        Ok(tenant) => match method {
            Method::POST => create(ctx, tenant, req).await,
            Method::GET => Ok(list(ctx, &tenant)),
            _ => Err(ContensisError::MethodNotAllowed("GET, POST")),
        },
    };
    result.unwrap_or_else(ContensisError::into_response)
}

/// `…/subscriptions/{id}`: `GET`, `PUT`, `DELETE`.
pub async fn item(
    ctx: &Ctx<'_>,
    project: &str,
    id: &str,
    method: Method,
    req: http::Request<Incoming>,
) -> Response {
    let result = match authorize(ctx, project) {
        Err(e) => Err(e),
        Ok(tenant) => match method {
            Method::GET => lookup(ctx, &tenant, id).map(|t| respond(StatusCode::OK, &t.sub)),
            Method::PUT => replace(ctx, &tenant, id, req).await,
            Method::DELETE => delete(ctx, &tenant, id).await,
            _ => Err(ContensisError::MethodNotAllowed("GET, PUT, DELETE")),
        },
    };
    result.unwrap_or_else(ContensisError::into_response)
}

/// Checks the `projectId` and that the token may use it; returns the tenant.
fn authorize(ctx: &Ctx<'_>, project: &str) -> Result<Tenant, ContensisError> {
    if let Err(message) = check_project_id(project) {
        return Err(ContensisError::Validation(vec![FieldError::new(
            "projectId",
            message,
        )]));
    }
    let tenant = Tenant {
        kind: TenantKind::Project,
        name: project.to_string(),
    };
    if ctx.may_use(Some(&tenant)) {
        Ok(tenant)
    } else {
        Err(ContensisError::Forbidden {
            project: project.to_string(),
        })
    }
}

/// A project id as Contensis writes them (`movieDb`, `website`): letters, digits, `-`, `_`,
/// `.`. The path is taken as is (no percent-decoding), so anything else is refused here rather
/// than stored in an encoded spelling.
fn check_project_id(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > MAX_PROJECT_ID {
        return Err(format!("must be 1 to {MAX_PROJECT_ID} characters"));
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only letters, digits, `-`, `_` and `.`".into());
    }
    Ok(())
}

fn in_project(sub: &Subscription, tenant: &Tenant) -> bool {
    sub.tenant.as_deref() == Some(tenant)
}

fn respond(status: StatusCode, sub: &Subscription) -> Response {
    error::json_response(status, &body::view(sub))
}

/// Reads the body as order-keeping JSON.
async fn read(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Result<Json, ContensisError> {
    let bytes = crate::api::read_body(ctx, req)
        .await
        .map_err(|e| ContensisError::Request {
            status: e.status,
            message: e.message,
        })?;
    Json::parse(&bytes).map_err(|e| ContensisError::Request {
        status: StatusCode::BAD_REQUEST,
        message: format!("The body is not valid JSON: {e}"),
    })
}

/// `POST …/subscriptions`
async fn create(
    ctx: &Ctx<'_>,
    tenant: Tenant,
    req: http::Request<Incoming>,
) -> Result<Response, ContensisError> {
    let body = read(ctx, req).await?;
    let fields = body::parse(&body, &tenant.name, None).map_err(ContensisError::Validation)?;
    let now = now_ms();
    let mut sub = Subscription {
        id: SubscriptionId::generate(),
        dialect: Dialect::Contensis,
        tenant: Some(Box::new(tenant)),
        name: Box::default(),
        description: OptText::NONE,
        enabled: true,
        url: Box::default(),
        method: Default::default(),
        filters: Box::default(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format: Format::Contensis,
        retry: Some(Box::new(retry_policy())),
        timeout: TIMEOUT.into(),
        connect_timeout: OptDuration::NONE,
        template: None,
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: ctx.actor.into(),
            created_at_ms: now,
            modified_by: ctx.actor.into(),
            modified_at_ms: now,
            version_no: 1,
        },
        extras: Default::default(),
    };
    fields.apply(&mut sub);
    let t = ctx.app.subs.create(sub).await.map_err(store_error)?;
    tracing::info!(subscription = %t.sub.id, project = %project_name(&t.sub), "contensis subscription created");
    Ok(respond(StatusCode::CREATED, &t.sub))
}

fn project_name(sub: &Subscription) -> &str {
    body::project_of(sub).unwrap_or("")
}

/// `GET …/subscriptions`: every subscription of the project, as a bare array.
fn list(ctx: &Ctx<'_>, tenant: &Tenant) -> Response {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = ctx
            .app
            .subs
            .list(after, LIST_PAGE, |t| in_project(&t.sub, tenant));
        out.extend(page.iter().map(|t| body::view(&t.sub)));
        match page.last() {
            Some(last) if page.len() == LIST_PAGE => after = Some(last.sub.id),
            _ => break,
        }
    }
    error::json_response(StatusCode::OK, &Json::Array(out))
}

/// The subscription `id` of `tenant`; anything else (a malformed id, another project's or a
/// native subscription) is "Subscription not found".
fn lookup(ctx: &Ctx<'_>, tenant: &Tenant, id: &str) -> Result<Arc<Target>, ContensisError> {
    let not_found = || ContensisError::NotFound {
        project: tenant.name.clone(),
        id: id.to_string(),
    };
    let sid: SubscriptionId = id.parse().map_err(|_| not_found())?;
    match ctx.app.subs.get(&sid) {
        Some(t) if in_project(&t.sub, tenant) => Ok(t),
        _ => Err(not_found()),
    }
}

/// `PUT …/subscriptions/{id}`: a full replacement based on the current `version.versionNo`.
/// Validation and the version check run under the store's write lock, so two PUTs based on the
/// same version cannot both succeed.
async fn replace(
    ctx: &Ctx<'_>,
    tenant: &Tenant,
    id: &str,
    req: http::Request<Incoming>,
) -> Result<Response, ContensisError> {
    let current = lookup(ctx, tenant, id)?;
    let body = read(ctx, req).await?;
    let result = ctx
        .app
        .subs
        .update(&current.sub.id, ctx.actor, |sub| {
            let fields =
                body::parse(&body, &tenant.name, Some(sub)).map_err(ContensisError::Validation)?;
            if fields.version_no != Some(sub.version.version_no) {
                return Err(ContensisError::Conflict {
                    project: tenant.name.clone(),
                    id: sub.id.to_string(),
                    sent: fields.version_no.unwrap_or(0),
                    current: sub.version.version_no,
                });
            }
            fields.apply(sub);
            Ok(())
        })
        .await;
    match result {
        Ok(t) => Ok(respond(StatusCode::OK, &t.sub)),
        Err(UpdateError::Refused(e)) => Err(e),
        Err(UpdateError::Store(StoreError::NotFound)) => Err(ContensisError::NotFound {
            project: tenant.name.clone(),
            id: id.to_string(),
        }),
        Err(UpdateError::Store(e)) => Err(store_error(e)),
    }
}

/// `DELETE …/subscriptions/{id}`
async fn delete(ctx: &Ctx<'_>, tenant: &Tenant, id: &str) -> Result<Response, ContensisError> {
    let current = lookup(ctx, tenant, id)?;
    match ctx.app.subs.delete(&current.sub.id).await {
        Ok(t) => {
            tracing::info!(subscription = %t.sub.id, project = %tenant.name, "contensis subscription deleted");
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        Err(StoreError::NotFound) => Err(ContensisError::NotFound {
            project: tenant.name.clone(),
            id: id.to_string(),
        }),
        Err(e) => Err(store_error(e)),
    }
}

/// Maps a store failure: a subscription the renderer refuses is a `Validation` error on the
/// Contensis field it came from; a journal that cannot write is `503` (nothing changed, try
/// again); a corrupt record or a build that cannot render Contensis bodies is `500`.
fn store_error(e: StoreError) -> ContensisError {
    match e {
        StoreError::Render(r) => {
            let errors = r.field_errors();
            if errors
                .iter()
                .any(|f| f.problem == FieldProblem::FormatUnavailable)
            {
                return ContensisError::Internal(
                    "this build of Herald cannot render Contensis deliveries".into(),
                );
            }
            let fields: Vec<FieldError> = errors
                .iter()
                .map(|f| FieldError::new(contensis_field(&f.field), f.problem.to_string()))
                .collect();
            if fields.is_empty() {
                ContensisError::Validation(vec![FieldError::new("", r.to_string())])
            } else {
                ContensisError::Validation(fields)
            }
        }
        StoreError::NotFound => ContensisError::Internal("the subscription disappeared".into()),
        StoreError::Journal(j @ JournalError::Corrupt(_)) => {
            ContensisError::Internal(j.to_string())
        }
        StoreError::Journal(j) => ContensisError::Unavailable(j),
    }
}

/// A render field path (`url`, `headers.X`, `template…`) in the Contensis body's terms
/// (`templates…`).
fn contensis_field(field: &str) -> String {
    match field
        .strip_prefix("templates")
        .or_else(|| field.strip_prefix("template"))
    {
        Some(rest) => format!("templates{rest}"),
        None => field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedule_is_nine_doublings_within_a_day() {
        let p = retry_policy();
        assert_eq!(p.schedule.len(), 9);
        assert_eq!(p.schedule[0], Duration::from_secs(150));
        assert_eq!(p.schedule[8], Duration::from_secs(10 * 3600 + 40 * 60));
        for w in p.schedule.windows(2) {
            assert_eq!(w[1], w[0] * 2);
        }
        let total: Duration = p.schedule.iter().sum();
        assert_eq!(total, Duration::from_secs(21 * 3600 + 17 * 60 + 30));
        let worst = total.mul_f64(1.0 + p.jitter);
        assert!(worst < Duration::from_secs(24 * 3600), "{worst:?}");
    }

    #[test]
    fn project_ids() {
        for ok in ["movies", "movieDb", "web-site_2.0"] {
            assert!(check_project_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_PROJECT_ID + 1);
        for bad in ["", "a b", "a%20b", "ünï", long.as_str()] {
            assert!(check_project_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_failures_map_to_contensis_errors() {
        use crate::render::{FieldError as RenderField, RenderError};
        let invalid = |fields: Vec<(&str, FieldProblem)>| {
            StoreError::Render(RenderError::Invalid(
                fields
                    .into_iter()
                    .map(|(f, problem)| RenderField {
                        field: f.into(),
                        problem,
                    })
                    .collect(),
            ))
        };
        let cases: Vec<(StoreError, u16, &str)> = vec![
            (
                invalid(vec![
                    ("url", FieldProblem::UrlNotAbsolute),
                    ("headers.X", FieldProblem::HeaderValue),
                ]),
                400,
                "Validation",
            ),
            (
                invalid(vec![("format", FieldProblem::FormatUnavailable)]),
                500,
                "error",
            ),
            (
                StoreError::Journal(JournalError::DiskFull {
                    path: "/d".into(),
                    free_bytes: 1,
                    min_free_bytes: 2,
                }),
                503,
                "error",
            ),
            (
                StoreError::Journal(JournalError::Io("eio".into())),
                503,
                "error",
            ),
            (StoreError::Journal(JournalError::Closed), 503, "error"),
            (
                StoreError::Journal(JournalError::Corrupt("bad".into())),
                500,
                "error",
            ),
        ];
        for (e, status, kind) in cases {
            let text = e.to_string();
            let mapped = store_error(e);
            assert_eq!(mapped.status().as_u16(), status, "{text}");
            assert_eq!(mapped.kind(), kind, "{text}");
        }
        let ContensisError::Validation(fields) =
            store_error(invalid(vec![("headers.X", FieldProblem::HeaderValue)]))
        else {
            panic!("not a validation error")
        };
        assert_eq!(fields[0].field, "headers.X");
    }

    #[test]
    fn render_fields_map_to_contensis_fields() {
        let cases = [
            ("url", "url"),
            ("headers.X-Key", "headers.X-Key"),
            ("template", "templates"),
            ("template.entry.news", "templates.entry.news"),
            ("templates.entry", "templates.entry"),
        ];
        for (from, to) in cases {
            assert_eq!(contensis_field(from), to);
        }
    }
}
