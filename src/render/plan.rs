//! The compiled form of a subscription ([`Plan`]) and the per-delivery render step.
//!
//! [`Plan::compile`] runs when a subscription is saved or loaded: it parses the URL, validates
//! and builds every header value (auth included), decodes the signing secret into an HMAC key and
//! picks the body builder, reporting every problem with the subscription field it came from.
//! [`Plan::render`] then does only what differs per delivery: the body, the three Standard
//! Webhooks headers and the signature. A plan is immutable and `Sync`, so the route and deliver
//! stages share one per subscription behind an `Arc`.
//!
//! Headers go out in a fixed order: `content-type`, `user-agent`, `webhook-id`,
//! `webhook-timestamp`, `webhook-signature`, the subscription's headers, then auth. A
//! subscription header named `content-type` or `user-agent` replaces the default instead of
//! adding a second one. `http` lower-cases header names; HTTP/1.1 and HTTP/2 treat them
//! case-insensitively, so the spelling the user chose is kept only in the stored subscription.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::model::{DeliveryId, Event, HeaderSpec, Subscription, TargetAuth};

use super::Request;
use super::body::BodyPlan;
use super::json::ScanError;
use super::sign::{SecretProblem, Signer};

pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Header names a subscription may not set: the client owns framing and connection management,
/// and Herald owns the Standard Webhooks headers (a receiver must be able to trust them).
pub const RESERVED_HEADERS: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Daemon-wide settings every plan uses.
#[derive(Debug, Clone)]
pub struct RenderDefaults {
    /// `user-agent` of every outbound request (a subscription header may override it).
    pub user_agent: HeaderValue,
}

impl Default for RenderDefaults {
    fn default() -> Self {
        RenderDefaults {
            user_agent: HeaderValue::from_static(concat!("Herald/", env!("CARGO_PKG_VERSION"))),
        }
    }
}

/// What changes between attempts of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptCtx {
    /// Sent as `webhook-id` (decimal): the same on every retry so receivers can dedup.
    pub delivery: DeliveryId,
    /// 1-based attempt number (for templates that show it).
    pub attempt: u32,
    /// Unix seconds, sent as `webhook-timestamp` and signed.
    pub timestamp_s: i64,
}

/// What is wrong with one subscription field. Carries no field value, so secrets stay out of
/// error messages and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("not a valid URL ({0})")]
    UrlSyntax(Box<str>),
    #[error("must be an absolute http:// or https:// URL with a host")]
    UrlNotAbsolute,
    #[error("scheme `{0}` is not allowed; use http or https")]
    UrlScheme(Box<str>),
    #[error("must not contain user:password@; use basic auth instead")]
    UrlUserinfo,
    #[error("not a valid HTTP header name")]
    HeaderName,
    #[error("not a valid HTTP header value (no control characters or line breaks)")]
    HeaderValue,
    #[error("`{0}` is set by Herald and cannot be set by a subscription")]
    ReservedHeader(&'static str),
    #[error("the same header is given more than once")]
    DuplicateHeader,
    #[error("the same header is also set by auth; set it in one place")]
    ConflictsWithAuth,
    #[error("must not contain `:` (basic auth joins user and password with it)")]
    UsernameColon,
    #[error(transparent)]
    Secret(#[from] SecretProblem),
}

/// One invalid subscription field, named by its path: `url`, `headers.X-Key`, `auth.token`,
/// `signing_secret`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: Box<str>,
    pub problem: FieldProblem,
}

impl FieldError {
    fn new(field: impl Into<Box<str>>, problem: FieldProblem) -> Self {
        FieldError {
            field: field.into(),
            problem,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The subscription cannot be compiled; every bad field is listed (never empty).
    #[error("invalid subscription: {}", list(.0))]
    Invalid(Box<[FieldError]>),
    /// The event's payload does not have the structure the body shape needs (a Sitecore body
    /// that is not a JSON object, say). Retrying will not help.
    #[error("the event payload cannot be rendered as a `{format}` body")]
    Payload {
        format: &'static str,
        #[source]
        source: ScanError,
    },
    /// A header value produced at render time is not a valid HTTP header value.
    #[error("{field}: the rendered value is not a valid HTTP header value")]
    HeaderValue { field: Box<str> },
}

impl RenderError {
    /// The invalid fields of a compile error (empty for render-time errors).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            RenderError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where requests go. One variant today; templated URLs become a second.
#[derive(Clone)]
enum Target {
    Fixed(Uri),
}

impl fmt::Debug for Target {
    /// Scheme, host and path only: query strings often carry keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fixed(uri) => {
                let scheme = uri.scheme_str().unwrap_or("");
                let authority = uri.authority().map_or("", |a| a.as_str());
                let query = if uri.query().is_some() { "?***" } else { "" };
                write!(f, "{scheme}://{authority}{}{query}", uri.path())
            }
        }
    }
}

/// One header a plan sends. Templated values become a second [`HeaderValuePlan`] variant.
#[derive(Clone)]
struct HeaderPlan {
    name: HeaderName,
    value: HeaderValuePlan,
}

#[derive(Clone)]
enum HeaderValuePlan {
    /// Built once; secret values are marked sensitive, so `Debug` (theirs and `http`'s) shows
    /// `Sensitive` and HTTP/2 never puts them in the HPACK table.
    Fixed(HeaderValue),
}

impl fmt::Debug for HeaderPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            HeaderValuePlan::Fixed(v) if v.is_sensitive() => write!(f, "{}: ***", self.name),
            HeaderValuePlan::Fixed(v) => write!(f, "{}: {v:?}", self.name),
        }
    }
}

/// A subscription compiled for rendering. See the module docs.
pub struct Plan {
    method: Method,
    target: Target,
    /// `content-type` and `user-agent`: the defaults or the subscription's overrides.
    head: [HeaderPlan; 2],
    /// The subscription's other headers, then auth.
    tail: Box<[HeaderPlan]>,
    signer: Option<Signer>,
    body: BodyPlan,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .field("signed", &self.signer.is_some())
            .field("body", &self.body)
            .finish()
    }
}

impl Plan {
    /// Compiles a subscription, or lists every field that is wrong with it.
    pub fn compile(sub: &Subscription, defaults: &RenderDefaults) -> Result<Plan, RenderError> {
        let mut errors = Vec::new();

        let target = compile_url(&sub.url)
            .map_err(|p| errors.push(FieldError::new("url", p)))
            .ok();

        let signer = match &sub.signing_secret {
            None => None,
            Some(secret) => Signer::from_secret(secret.expose())
                .map_err(|p| errors.push(FieldError::new("signing_secret", p.into())))
                .ok(),
        };

        let auth = sub
            .auth
            .as_ref()
            .and_then(|a| compile_auth(a).map_err(|e| errors.push(e)).ok());

        let mut tail: Vec<HeaderPlan> = Vec::with_capacity(sub.headers.len() + 1);
        for spec in &sub.headers {
            match compile_header(spec) {
                Err(e) => errors.push(e),
                Ok(h) if tail.iter().any(|t| t.name == h.name) => errors.push(FieldError::new(
                    field_name(&spec.name),
                    FieldProblem::DuplicateHeader,
                )),
                Ok(h) if auth.as_ref().is_some_and(|a| a.name == h.name) => errors.push(
                    FieldError::new(field_name(&spec.name), FieldProblem::ConflictsWithAuth),
                ),
                Ok(h) => tail.push(h),
            }
        }
        tail.extend(auth);

        let body = BodyPlan::compile(sub);
        let mut take = |name: &HeaderName, default: HeaderValue| {
            let value = match tail.iter().position(|h| &h.name == name) {
                Some(i) => tail.remove(i).value,
                None => HeaderValuePlan::Fixed(default),
            };
            HeaderPlan {
                name: name.clone(),
                value,
            }
        };
        let head = [
            take(&header::CONTENT_TYPE, body.content_type()),
            take(&header::USER_AGENT, defaults.user_agent.clone()),
        ];

        match target {
            Some(target) if errors.is_empty() => Ok(Plan {
                method: sub.method.to_http(),
                target,
                head,
                tail: tail.into_boxed_slice(),
                signer,
                body,
            }),
            _ => Err(RenderError::Invalid(errors.into_boxed_slice())),
        }
    }

    /// Renders the request for one attempt of one delivery.
    pub fn render(&self, event: &Event, ctx: &AttemptCtx) -> Result<Request, RenderError> {
        let body = self
            .body
            .render(event)
            .map_err(|source| RenderError::Payload {
                format: self.body.name(),
                source,
            })?;

        let mut headers = HeaderMap::with_capacity(self.head.len() + self.tail.len() + 3);
        for h in &self.head {
            append(&mut headers, h);
        }
        let id = HeaderValue::from(ctx.delivery.0);
        let timestamp = HeaderValue::from(ctx.timestamp_s);
        let signature = match &self.signer {
            None => None,
            Some(signer) => {
                let sig = signer.sign(id.as_bytes(), timestamp.as_bytes(), &body);
                Some(
                    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&sig)).map_err(|_| {
                        RenderError::HeaderValue {
                            field: WEBHOOK_SIGNATURE.as_str().into(),
                        }
                    })?,
                )
            }
        };
        headers.append(WEBHOOK_ID, id);
        headers.append(WEBHOOK_TIMESTAMP, timestamp);
        if let Some(sig) = signature {
            headers.append(WEBHOOK_SIGNATURE, sig);
        }
        for h in &self.tail {
            append(&mut headers, h);
        }

        let uri = match &self.target {
            Target::Fixed(uri) => uri.clone(),
        };
        Ok(Request {
            method: self.method.clone(),
            uri,
            headers,
            body,
        })
    }
}

fn append(headers: &mut HeaderMap, h: &HeaderPlan) {
    match &h.value {
        HeaderValuePlan::Fixed(v) => {
            headers.append(h.name.clone(), v.clone());
        }
    }
}

/// `headers.<name as the user spelled it>`.
fn field_name(name: &str) -> String {
    format!("headers.{name}")
}

fn compile_url(url: &str) -> Result<Target, FieldProblem> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| FieldProblem::UrlSyntax(e.to_string().into()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(FieldProblem::UrlScheme(other.into())),
        None => return Err(FieldProblem::UrlNotAbsolute),
    }
    let authority = uri.authority().ok_or(FieldProblem::UrlNotAbsolute)?;
    if authority.as_str().contains('@') {
        return Err(FieldProblem::UrlUserinfo);
    }
    if authority.host().is_empty() {
        return Err(FieldProblem::UrlNotAbsolute);
    }
    Ok(Target::Fixed(uri))
}

/// Parses a header name and refuses the reserved ones.
fn header_name(name: &str) -> Result<HeaderName, FieldProblem> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| FieldProblem::HeaderName)?;
    match RESERVED_HEADERS.iter().find(|r| **r == parsed.as_str()) {
        Some(r) => Err(FieldProblem::ReservedHeader(r)),
        None => Ok(parsed),
    }
}

fn header_value(value: &str, sensitive: bool) -> Result<HeaderValue, FieldProblem> {
    let mut v = HeaderValue::from_str(value).map_err(|_| FieldProblem::HeaderValue)?;
    v.set_sensitive(sensitive);
    Ok(v)
}

fn compile_header(spec: &HeaderSpec) -> Result<HeaderPlan, FieldError> {
    let field = || field_name(&spec.name);
    let name = header_name(&spec.name).map_err(|p| FieldError::new(field(), p))?;
    let value =
        header_value(spec.value.expose(), spec.secret).map_err(|p| FieldError::new(field(), p))?;
    Ok(HeaderPlan {
        name,
        value: HeaderValuePlan::Fixed(value),
    })
}

/// The auth header. Its value is always sensitive.
fn compile_auth(auth: &TargetAuth) -> Result<HeaderPlan, FieldError> {
    let (name, value) = match auth {
        TargetAuth::Basic { username, password } => {
            if username.contains(':') {
                return Err(FieldError::new(
                    "auth.username",
                    FieldProblem::UsernameColon,
                ));
            }
            let mut credentials = Vec::with_capacity(username.len() + password.expose().len() + 1);
            credentials.extend_from_slice(username.as_bytes());
            credentials.push(b':');
            credentials.extend_from_slice(password.expose().as_bytes());
            let mut value = String::from("Basic ");
            STANDARD.encode_string(&credentials, &mut value);
            credentials.fill(0);
            let value =
                header_value(&value, true).map_err(|p| FieldError::new("auth.password", p))?;
            (header::AUTHORIZATION, value)
        }
        TargetAuth::Bearer { token } => {
            let value = header_value(&format!("Bearer {}", token.expose()), true)
                .map_err(|p| FieldError::new("auth.token", p))?;
            (header::AUTHORIZATION, value)
        }
        TargetAuth::Header { name, value } => {
            let name = header_name(name).map_err(|p| FieldError::new("auth.name", p))?;
            let value =
                header_value(value.expose(), true).map_err(|p| FieldError::new("auth.value", p))?;
            (name, value)
        }
    };
    Ok(HeaderPlan {
        name,
        value: HeaderValuePlan::Fixed(value),
    })
}
