//! The HTTP API: one route table for ingest, the management dialects, health and metrics.
//!
//! `App` is what the listeners serve. It matches the path once (matchit), checks the token the
//! route needs (ingest tokens for ingest, admin tokens for management, none for `/healthz`,
//! `/readyz`, `/metrics`) and hands the request to the stage that owns it: ingest to
//! `crate::ingest`, management to the dialect modules here. Every error answer uses the
//! dialect's own error shape; the native one is in `error`.

pub mod auth;
pub mod contensis;
pub mod datocms;
pub mod error;
pub mod native;
pub mod sitecore;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::deliver::dispatch::Dispatcher;
use crate::ingest::accept::Ingest;
use crate::ingest::server::Handler;
use crate::journal::{Health, Journal};
use crate::model::{InputKind, Secret, Subscription, Tenant};
use crate::route::store::Subscriptions;
use crate::telemetry::metrics as m;
use error::{ApiError, Response, json_response};

/// Every route, matched once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Ingest(InputKind),
    Subscriptions,
    Subscription,
    SubscriptionEnable,
    SubscriptionDisable,
    Deliveries,
    Delivery,
    DeliveryRetry,
    DeadLetters,
    DeadLetterReplay,
    DeadLettersReplay,
    SubscriptionReplay,
    /// Sitecore Common Audit Log `/api/v1/eventConfigurations`.
    AuditConfigs,
    /// Sitecore Common Audit Log `/api/v1/eventConfigurations/{id}`.
    AuditConfig,
    DatoWebhooks,
    DatoWebhook,
    DatoCalls,
    DatoCall,
    DatoCallResend,
    Healthz,
    Readyz,
    Metrics,
    /// Contensis `…/projects/{project}/events/webhooks/subscriptions`.
    ContensisSubscriptions,
    /// Contensis `…/projects/{project}/events/webhooks/subscriptions/{id}`.
    ContensisSubscription,
}

/// The management dialect a route belongs to: its error shape and its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Native,
    SitecoreAudit,
    Contensis,
    DatoCms,
}

impl Family {
    fn of(route: Route) -> Family {
        match route {
            Route::DatoWebhooks
            | Route::DatoWebhook
            | Route::DatoCalls
            | Route::DatoCall
            | Route::DatoCallResend => Family::DatoCms,
            Route::AuditConfigs | Route::AuditConfig => Family::SitecoreAudit,
            Route::ContensisSubscriptions | Route::ContensisSubscription => Family::Contensis,
            _ => Family::Native,
        }
    }

    /// The `dialect` label of `herald_api_errors_total`.
    fn label(self) -> &'static str {
        match self {
            Family::Native => "native",
            Family::SitecoreAudit => sitecore::DIALECT,
            Family::Contensis => "contensis",
            Family::DatoCms => "datocms",
        }
    }

    /// The answer to a request without a valid token, in the family's error shape.
    fn unauthorized(self, e: auth::AuthError) -> Response {
        match self {
            Family::Native => ApiError::unauthorized(e.message()).into_response(),
            Family::SitecoreAudit => sitecore::unauthorized(e),
            Family::Contensis => contensis::unauthorized(e.message()),
            Family::DatoCms => datocms::unauthorized(e),
        }
    }
}

fn routes() -> matchit::Router<Route> {
    let mut r = matchit::Router::new();
    let table = [
        ("/v1/events", Route::Ingest(InputKind::CloudEvent)),
        ("/v1/ingest/sitecore", Route::Ingest(InputKind::Sitecore)),
        (
            "/v1/ingest/sitecore-audit",
            Route::Ingest(InputKind::SitecoreAudit),
        ),
        ("/v1/ingest/contensis", Route::Ingest(InputKind::Contensis)),
        ("/v1/ingest/datocms", Route::Ingest(InputKind::DatoCms)),
        ("/v1/subscriptions", Route::Subscriptions),
        ("/v1/subscriptions/{id}", Route::Subscription),
        ("/v1/subscriptions/{id}/enable", Route::SubscriptionEnable),
        ("/v1/subscriptions/{id}/disable", Route::SubscriptionDisable),
        ("/v1/deliveries", Route::Deliveries),
        ("/v1/deliveries/{id}", Route::Delivery),
        ("/v1/deliveries/{id}/retry", Route::DeliveryRetry),
        ("/v1/dead-letters", Route::DeadLetters),
        ("/v1/dead-letters/replay", Route::DeadLettersReplay),
        ("/v1/dead-letters/{id}/replay", Route::DeadLetterReplay),
        ("/v1/subscriptions/{id}/replay", Route::SubscriptionReplay),
        ("/api/v1/eventConfigurations", Route::AuditConfigs),
        ("/api/v1/eventConfigurations/{id}", Route::AuditConfig),
        ("/webhooks", Route::DatoWebhooks),
        ("/webhooks/{id}", Route::DatoWebhook),
        ("/webhook_calls", Route::DatoCalls),
        ("/webhook_calls/{id}", Route::DatoCall),
        ("/webhook_calls/{id}/resend_webhook", Route::DatoCallResend),
        ("/healthz", Route::Healthz),
        ("/readyz", Route::Readyz),
        ("/metrics", Route::Metrics),
        (
            "/api/management/projects/{project}/events/webhooks/subscriptions",
            Route::ContensisSubscriptions,
        ),
        // The seed's own example posts to the collection with a trailing slash.
        (
            "/api/management/projects/{project}/events/webhooks/subscriptions/",
            Route::ContensisSubscriptions,
        ),
        (
            "/api/management/projects/{project}/events/webhooks/subscriptions/{id}",
            Route::ContensisSubscription,
        ),
    ];
    for (path, route) in table {
        r.insert(path, route)
            .expect("the route table has no conflicts");
    }
    r
}

/// Whether a token scope covers a subscription's tenant. Names compare case-insensitively:
/// routing lower-cases the tenant attribute (`space`, `project`, `site`), so `Production` and
/// `production` are one tenant to Herald, and a scope must not tell them apart either.
fn same_tenant(scope: &Tenant, tenant: &Tenant) -> bool {
    scope.kind == tenant.kind
        && (scope.name == tenant.name || scope.name.to_lowercase() == tenant.name.to_lowercase())
}

/// The application the listeners serve.
pub struct App {
    router: matchit::Router<Route>,
    pub ingest: Ingest,
    pub subs: Arc<Subscriptions>,
    pub journal: Arc<dyn Journal>,
    pub dispatcher: Dispatcher,
    pub metrics: PrometheusHandle,
    /// Every management token: the full-access ones first, then the scoped ones.
    tokens: Vec<Secret>,
    /// For each entry of `tokens`: `None` (full access) or the tenants it is limited to.
    token_scopes: Vec<Option<Vec<Tenant>>>,
    pub max_body_bytes: usize,
    /// Set when a drain starts: `/readyz` fails so a load balancer stops sending.
    pub draining: AtomicBool,
    /// Serializes DatoCMS webhook writes (the unique-name check and its write).
    pub datocms_writes: tokio::sync::Mutex<()>,
}

/// One management request: who is asking and what they may see.
pub struct Ctx<'a> {
    pub app: &'a App,
    /// Recorded as `created_by` / `modified_by`.
    pub actor: &'a str,
    /// `None`: every tenant. Otherwise only subscriptions of these tenants.
    pub scopes: Option<&'a [Tenant]>,
}

impl<'a> Ctx<'a> {
    /// Whether the caller may create or manage subscriptions of `tenant` (`None`: untenanted,
    /// which only full-access tokens may touch).
    pub fn may_use(&self, tenant: Option<&Tenant>) -> bool {
        match (self.scopes, tenant) {
            (None, _) => true,
            (Some(scopes), Some(t)) => scopes.iter().any(|s| same_tenant(s, t)),
            (Some(_), None) => false,
        }
    }
}

impl Ctx<'_> {
    pub fn may_see(&self, sub: &Subscription) -> bool {
        match self.scopes {
            None => true,
            Some(scopes) => sub
                .tenant
                .as_ref()
                .is_some_and(|t| scopes.iter().any(|s| same_tenant(s, t))),
        }
    }

    pub fn scoped(&self) -> bool {
        self.scopes.is_some()
    }
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ingest: Ingest,
        subs: Arc<Subscriptions>,
        journal: Arc<dyn Journal>,
        dispatcher: Dispatcher,
        metrics: PrometheusHandle,
        auth: &crate::config::AuthConfig,
        max_body_bytes: usize,
    ) -> App {
        let mut tokens = auth.admin_tokens.clone();
        let mut token_scopes = vec![None; tokens.len()];
        for t in &auth.scoped_tokens {
            tokens.push(t.token.clone());
            token_scopes.push(Some(t.scopes.clone()));
        }
        App {
            router: routes(),
            ingest,
            subs,
            journal,
            dispatcher,
            metrics,
            tokens,
            token_scopes,
            max_body_bytes,
            draining: AtomicBool::new(false),
            datocms_writes: tokio::sync::Mutex::new(()),
        }
    }

    async fn dispatch(&self, req: http::Request<Incoming>) -> Response {
        let path = req.uri().path().to_owned();
        let Ok(matched) = self.router.at(&path) else {
            return ApiError::not_found(&format!("route `{path}`")).into_response();
        };
        let route = *matched.value;
        let id = matched.params.get("id").unwrap_or("").to_owned();
        let project = matched.params.get("project").unwrap_or("").to_owned();
        let method = req.method().clone();
        match route {
            Route::Ingest(kind) => {
                if method != Method::POST {
                    return ApiError::method_not_allowed("POST").into_response();
                }
                self.ingest.handle(kind, req).await
            }
            Route::Healthz => json_response(StatusCode::OK, &json!({"status": "ok"})),
            Route::Readyz => self.readyz(),
            Route::Metrics => self.render_metrics(),
            _ => self.manage(route, &id, &project, method, req).await,
        }
    }

    async fn manage(
        &self,
        route: Route,
        id: &str,
        project: &str,
        method: Method,
        req: http::Request<Incoming>,
    ) -> Response {
        let (actor, scopes) = match auth::check_bearer(
            req.headers().get(http::header::AUTHORIZATION),
            &self.tokens,
        ) {
            Ok(None) => ("api".to_string(), None),
            Ok(Some(i)) => (
                format!("token#{i}"),
                self.token_scopes.get(i).cloned().flatten(),
            ),
            Err(e) => {
                let family = Family::of(route);
                metrics::counter!(m::API_ERRORS, "dialect" => family.label(), "status" => "4xx")
                    .increment(1);
                return family.unauthorized(e);
            }
        };
        let ctx = Ctx {
            app: self,
            actor: &actor,
            scopes: scopes.as_deref(),
        };
        let query = req.uri().query().map(str::to_owned);
        let q = query.as_deref();
        use native::body::Mode;
        let resp = match (route, method) {
            (Route::Subscriptions, Method::POST) => native::create(&ctx, req).await,
            (Route::Subscriptions, Method::GET) => native::list(&ctx, q),
            (Route::Subscriptions, _) => ApiError::method_not_allowed("GET, POST").into_response(),
            (Route::Subscription, Method::GET) => native::get(&ctx, id),
            (Route::Subscription, Method::PUT) => {
                native::change(&ctx, id, Mode::Replace, req).await
            }
            (Route::Subscription, Method::PATCH) => {
                native::change(&ctx, id, Mode::Patch, req).await
            }
            (Route::Subscription, Method::DELETE) => native::delete(&ctx, id).await,
            (Route::Subscription, _) => {
                ApiError::method_not_allowed("GET, PUT, PATCH, DELETE").into_response()
            }
            (Route::SubscriptionEnable, Method::POST) => native::set_enabled(&ctx, id, true).await,
            (Route::SubscriptionDisable, Method::POST) => {
                native::set_enabled(&ctx, id, false).await
            }
            (Route::Deliveries, Method::GET) => native::deliveries::list(&ctx, q).await,
            (Route::Delivery, Method::GET) => native::deliveries::get(&ctx, id).await,
            (Route::DeliveryRetry, Method::POST) => native::deliveries::retry(&ctx, id).await,
            (Route::DeadLetters, Method::GET) => native::deliveries::dead_letters(&ctx, q).await,
            (Route::DeadLetterReplay, Method::POST) => native::replay::one(&ctx, id).await,
            (Route::DeadLettersReplay, Method::POST) => native::replay::many(&ctx, req).await,
            (Route::SubscriptionReplay, Method::POST) => {
                native::replay::subscription(&ctx, id, req).await
            }
            (Route::AuditConfigs, Method::POST) => sitecore::create(&ctx, req).await,
            (Route::AuditConfigs, Method::GET) => sitecore::list(&ctx, q),
            (Route::AuditConfig, Method::GET) => sitecore::get(&ctx, id),
            (Route::AuditConfig, Method::PATCH) => sitecore::patch(&ctx, id, req).await,
            (Route::AuditConfig, Method::DELETE) => sitecore::delete(&ctx, id).await,
            (Route::AuditConfigs, _) => sitecore::method_not_allowed("GET, POST"),
            (Route::AuditConfig, _) => sitecore::method_not_allowed("GET, PATCH, DELETE"),
            (Route::DatoWebhooks, m) => datocms::webhooks(&ctx, m, req).await,
            (Route::DatoWebhook, m) => datocms::webhook(&ctx, id, m, req).await,
            (Route::DatoCalls, m) => datocms::calls::calls(&ctx, m, q).await,
            (Route::DatoCall, m) => datocms::calls::call(&ctx, m, id).await,
            (Route::DatoCallResend, m) => datocms::calls::resend(&ctx, m, id).await,
            (Route::ContensisSubscriptions, m) => {
                contensis::collection(&ctx, project, m, req).await
            }
            (Route::ContensisSubscription, m) => contensis::item(&ctx, project, id, m, req).await,
            (Route::Deliveries | Route::Delivery | Route::DeadLetters, _) => {
                ApiError::method_not_allowed("GET").into_response()
            }
            _ => ApiError::method_not_allowed("POST").into_response(),
        };
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            let class = if status.is_client_error() {
                "4xx"
            } else {
                "5xx"
            };
            metrics::counter!(m::API_ERRORS, "dialect" => Family::of(route).label(), "status" => class)
                .increment(1);
        }
        resp
    }

    fn readyz(&self) -> Response {
        if self.draining.load(Ordering::SeqCst) {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "draining", "message": "Herald is shutting down"}),
            );
        }
        match self.journal.health() {
            Health::Ok => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Health::Failing(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "storage_failing", "message": reason}),
            ),
        }
    }

    fn render_metrics(&self) -> Response {
        let text = self.metrics.render();
        let mut resp = http::Response::new(Full::new(Bytes::from(text)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

impl Handler for App {
    async fn handle(self: Arc<Self>, req: http::Request<Incoming>) -> Response {
        self.dispatch(req).await
    }
}

/// Reads a management request body as JSON: size-capped, `application/json` (or a `+json`
/// type, or none), a clear `400` for anything else.
pub async fn read_json(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Result<Value, ApiError> {
    let body = read_body(ctx, req).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// Reads a management request body that should be JSON, without parsing it (dialects parse it
/// their own way): size-capped, `application/json` (or a `+json` type, or none).
pub async fn read_body(ctx: &Ctx<'_>, req: http::Request<Incoming>) -> Result<Bytes, ApiError> {
    let ct = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(ct) = ct
        && ct != "application/json"
        && !ct.ends_with("+json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("expected a JSON body (application/json), got `{ct}`"),
        ));
    }
    let max = ctx.app.max_body_bytes;
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {max} bytes"),
                )
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?
        .to_bytes();
    Ok(body)
}
