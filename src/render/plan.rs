//! The compiled form of a subscription ([`Plan`]) and the per-delivery render step.
//!
//! [`Plan::compile`] runs when a subscription is saved or loaded: it parses the URL, validates
//! and builds every header value (auth included), decodes the signing secret into an HMAC key and
//! picks the body builder, reporting every problem with the subscription field it came from.
//! [`Plan::render`] then does only what differs per delivery: the body, a templated URL (DatoCMS:
//! Mustache; Contensis: `{/pointer}`; checked per render to be an absolute http(s) URL, bytes a
//! URL cannot hold percent-encoded), templated Contensis header values, the three Standard
//! Webhooks headers and the signature. A plan is immutable and `Sync`, so the route and deliver
//! stages share one per subscription behind an `Arc`.
//!
//! The headers are compiled into a ready `HeaderMap` with empty placeholders for the
//! per-attempt values (`webhook-*` and `content-length`): rendering clones it and fills the
//! placeholders where they stand, in the map's order, hashing no name; the values share one
//! small allocation. The map has room to spare, since `HeaderMap::entry` (the client's and
//! hyper's checks) grows a full one before it looks.
//!
//! Headers go out in a fixed order: `content-type`, `user-agent`, `webhook-id`,
//! `webhook-timestamp`, `webhook-signature`, `content-length`, the subscription's headers,
//! auth, then `host` for a fixed URL (the client adds a templated URL's). A
//! subscription header named `content-type` or `user-agent` (or `accept`) replaces the default
//! instead of adding a second one. Contensis bodies go out as `application/json;
//! charset=utf-8` (spec §2.6). DatoCMS-dialect subscriptions send what DatoCMS sends
//! (`content-type: application/json`, `accept: */*`, `user-agent: DatoCMS (datocms.com)`, spec
//! §1.8). The Standard Webhooks `webhook-id` and `webhook-timestamp` go out on every dialect (a
//! documented Herald addition receivers may use to dedup); `webhook-signature` only when the
//! subscription has a signing secret, which the CMS dialects never set. `http` lower-cases header names; HTTP/1.1 and HTTP/2 treat them
//! case-insensitively, so the spelling the user chose is kept only in the stored subscription.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::model::{DeliveryId, Dialect, Event, HeaderSpec, Subscription, TargetAuth};

use super::Request;
use super::body::{BodyPlan, Ids, PayloadError, Scope};
use super::sign::{SIGNATURE_LEN, SecretProblem, Signer};
use super::syntax::SyntaxError;
use super::{datocms, mustache, pointer};

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
    #[error("this format cannot be rendered by this build of Herald")]
    FormatUnavailable,
    /// A body, URL or header template that does not parse.
    #[error("template syntax error at {0}")]
    Syntax(#[from] SyntaxError),
    /// A Contensis template key that is empty.
    #[error("a template key is `<resourceType>` or `<resourceType>.<contentTypeId>`")]
    TemplateKey,
    /// The same Contensis template key twice (keys compare case-insensitively).
    #[error("the same template key is given more than once")]
    DuplicateTemplateKey,
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
    pub(crate) fn new(field: impl Into<Box<str>>, problem: FieldProblem) -> Self {
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
    #[error("the event payload cannot be rendered as a `{format}` body: {source}")]
    Payload {
        format: &'static str,
        #[source]
        source: PayloadError,
    },
    /// A header value produced at render time is not a valid HTTP header value.
    #[error("{field}: the rendered value is not a valid HTTP header value")]
    HeaderValue { field: Box<str> },
    /// A templated URL rendered to something that is not an absolute http(s) URL.
    #[error("url: the rendered URL is invalid: {0}")]
    Url(FieldProblem),
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

/// Where requests go: a URL fixed at compile time, or a template rendered per attempt and
/// checked then (DatoCMS URLs may hold Mustache tags).
enum Target {
    Fixed(Uri),
    Mustache(mustache::Template),
    /// Contensis URLs may hold `{/pointer}` placeholders.
    Pointer(pointer::Template),
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
            Target::Mustache(t) => write_template(f, "mustache", t.source()),
            Target::Pointer(t) => write_template(f, "pointer", t.source()),
        }
    }
}

/// A URL template without its query string (it often carries keys).
fn write_template(f: &mut fmt::Formatter<'_>, kind: &str, src: &str) -> fmt::Result {
    let (path, query) = src.split_once('?').map_or((src, ""), |(p, _)| (p, "?***"));
    write!(f, "{kind}({path}{query})")
}

impl Target {
    fn compile(sub: &Subscription) -> Result<Target, FieldProblem> {
        if sub.dialect == Dialect::DatoCms {
            let template = mustache::Template::compile(&sub.url)?;
            return match template.as_plain_text() {
                Some(url) => Ok(Target::Fixed(parse_url(&url)?)),
                None => Ok(Target::Mustache(template)),
            };
        }
        if sub.dialect == Dialect::Contensis {
            let template = pointer::Template::compile_text(&sub.url)?;
            if template.has_placeholders() {
                return Ok(Target::Pointer(template));
            }
        }
        Ok(Target::Fixed(parse_url(&sub.url)?))
    }

    fn embeds_event(&self) -> bool {
        matches!(self, Target::Pointer(t) if t.embeds_event())
    }

    fn render(&self, scope: &mut Scope<'_>) -> Result<Uri, RenderError> {
        let rendered = match self {
            Target::Fixed(uri) => return Ok(uri.clone()),
            Target::Mustache(t) => {
                let data = scope
                    .datocms_data()
                    .map_err(|source| RenderError::Payload {
                        format: "mustache URL",
                        source,
                    })?;
                let mut out = Vec::with_capacity(t.source().len() + 64);
                t.render(data, &mut out)
                    .map_err(|source| RenderError::Payload {
                        format: "mustache URL",
                        source,
                    })?;
                out
            }
            Target::Pointer(t) => {
                let (doc, sub_id) = scope.contensis_context();
                let mut out = Vec::with_capacity(t.source().len() + 64);
                t.render(doc, sub_id, &mut out)
                    .map_err(|source| RenderError::Payload {
                        format: "contensis URL",
                        source,
                    })?;
                out
            }
        };
        parse_url(&percent_encode_invalid(&rendered)).map_err(RenderError::Url)
    }
}

/// `rendered` with every byte a URI cannot hold (spaces, quotes, non-ASCII…) percent-encoded and
/// everything else, `%` included, kept: a value spliced into a URL template comes out as a
/// browser would send it, and a URL that was already encoded is not encoded twice.
fn percent_encode_invalid(rendered: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(rendered.len());
    for &b in rendered {
        let keep = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// A subscription compiled for rendering. See the module docs.
pub struct Plan {
    method: Method,
    target: Target,
    /// Every header in send order, values final except the per-attempt placeholders
    /// (`webhook-*` and `content-length`). Secret values are marked sensitive: `Debug` shows
    /// `Sensitive` and HTTP/2 never indexes them.
    headers: HeaderMap,
    /// Where the per-attempt placeholders start in `headers`' order: right after the
    /// dialect's leading headers, each with one value.
    per_attempt_at: usize,
    /// Contensis header values with `{/pointer}` placeholders: rendered per attempt into their
    /// (empty) slot in `headers`.
    header_templates: Box<[HeaderTemplate]>,
    signer: Option<Signer>,
    body: BodyPlan,
    ids: Ids,
}

/// A templated header value and where it goes.
#[derive(Debug)]
struct HeaderTemplate {
    name: HeaderName,
    template: pointer::Template,
    sensitive: bool,
    /// `headers.<name as the user spelled it>`, for render errors.
    field: Box<str>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &self.headers)
            .field("templated_headers", &self.header_templates.len())
            .field("signed", &self.signer.is_some())
            .field("body", &self.body)
            .finish()
    }
}

impl Plan {
    /// Compiles a subscription, or lists every field that is wrong with it.
    pub fn compile(sub: &Subscription, defaults: &RenderDefaults) -> Result<Plan, RenderError> {
        let mut errors = Vec::new();

        let target = Target::compile(sub)
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

        let mut tail: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(sub.headers.len() + 1);
        let mut header_templates = Vec::new();
        for spec in &sub.headers {
            let compiled = if sub.dialect == Dialect::Contensis {
                compile_header_template(spec).map(|(h, t)| {
                    if let Some(template) = t {
                        header_templates.push(HeaderTemplate {
                            name: h.0.clone(),
                            template,
                            sensitive: spec.secret,
                            field: field_name(&spec.name).into(),
                        });
                    }
                    h
                })
            } else {
                compile_header(spec)
            };
            match compiled {
                Err(e) => errors.push(e),
                Ok(h) if tail.iter().any(|t| t.0 == h.0) => errors.push(FieldError::new(
                    field_name(&spec.name),
                    FieldProblem::DuplicateHeader,
                )),
                Ok(h) if auth.as_ref().is_some_and(|a| a.0 == h.0) => errors.push(FieldError::new(
                    field_name(&spec.name),
                    FieldProblem::ConflictsWithAuth,
                )),
                Ok(h) => tail.push(h),
            }
        }
        tail.extend(auth);

        let Some(body) = BodyPlan::compile(sub, &mut errors) else {
            return Err(RenderError::Invalid(errors.into()));
        };
        let mut take =
            |name: HeaderName, default: HeaderValue| match tail.iter().position(|h| h.0 == name) {
                Some(i) => tail.remove(i),
                None => (name, default),
            };
        let head: Vec<(HeaderName, HeaderValue)> = match sub.dialect {
            // What DatoCMS sends (spec §1.8), in its order after the content type.
            Dialect::DatoCms => vec![
                take(header::CONTENT_TYPE, body.content_type()),
                take(header::ACCEPT, HeaderValue::from_static("*/*")),
                take(
                    header::USER_AGENT,
                    HeaderValue::from_static(datocms::USER_AGENT),
                ),
            ],
            Dialect::Native | Dialect::SitecoreAudit | Dialect::Contensis => vec![
                take(header::CONTENT_TYPE, body.content_type()),
                take(header::USER_AGENT, defaults.user_agent.clone()),
            ],
        };
        let placeholder = HeaderValue::from_static("");
        let mut per_attempt = vec![WEBHOOK_ID, WEBHOOK_TIMESTAMP];
        if signer.is_some() {
            per_attempt.push(WEBHOOK_SIGNATURE);
        }
        per_attempt.push(header::CONTENT_LENGTH);
        let per_attempt_at = head.len();
        // A fixed URL's `Host` is known now (a header no subscription may set): in the plan,
        // the client finds it instead of adding it to each attempt's copy of the map, which
        // a clone holds at exactly its length, so that insert also grew it.
        let host = match &target {
            Some(Target::Fixed(uri)) => super::host_header(uri).ok(),
            _ => None,
        };
        // Headroom: `HeaderMap::entry` reserves a slot before it looks, and a clone keeps this
        // map's table, so a table exactly full grew on every attempt (at the client's `Host`
        // check, or hyper's `Transfer-Encoding` check).
        let mut headers =
            HeaderMap::with_capacity(head.len() + per_attempt.len() + tail.len() + 1 + 4);
        let all = head
            .into_iter()
            .chain(per_attempt.into_iter().map(|n| (n, placeholder.clone())))
            .chain(tail)
            .chain(host.map(|h| (header::HOST, h)));
        for (name, value) in all {
            headers.append(name, value);
        }

        match target {
            Some(target) if errors.is_empty() => {
                let mut ids = Ids::new(sub);
                ids.contensis_embeds_event = body.embeds_event()
                    || target.embeds_event()
                    || header_templates.iter().any(|h| h.template.embeds_event());
                Ok(Plan {
                    method: sub.method.to_http(),
                    target,
                    headers,
                    per_attempt_at,
                    header_templates: header_templates.into_boxed_slice(),
                    signer,
                    body,
                    ids,
                })
            }
            _ => Err(RenderError::Invalid(errors.into_boxed_slice())),
        }
    }

    /// Renders the request for one attempt of one delivery.
    pub fn render(&self, event: &Event, ctx: &AttemptCtx) -> Result<Request, RenderError> {
        let mut scope = Scope::new(event, ctx, &self.ids);
        let uri = self.target.render(&mut scope)?;
        let body = self
            .body
            .render(&mut scope)
            .map_err(|source| RenderError::Payload {
                format: self.body.name(),
                source,
            })?;

        // `webhook-id`, `webhook-timestamp`, the signature and `content-length`, written into
        // one buffer of the exact size and shared by the header values.
        let mut id = itoa::Buffer::new();
        let id = id.format(ctx.delivery.0).as_bytes();
        let mut timestamp = itoa::Buffer::new();
        let timestamp = timestamp.format(ctx.timestamp_s).as_bytes();
        let mut length = itoa::Buffer::new();
        let length = length.format(body.len()).as_bytes();
        let sig_len = if self.signer.is_some() {
            SIGNATURE_LEN
        } else {
            0
        };
        let mut values = Vec::with_capacity(id.len() + timestamp.len() + sig_len + length.len());
        values.extend_from_slice(id);
        values.extend_from_slice(timestamp);
        if let Some(signer) = &self.signer {
            values.extend_from_slice(&signer.sign(id, timestamp, &body));
        }
        values.extend_from_slice(length);
        let values = Bytes::from(values);
        let ts_end = id.len() + timestamp.len();
        let sig_end = ts_end + sig_len;
        let signature = self
            .signer
            .is_some()
            .then_some((WEBHOOK_SIGNATURE, ts_end..sig_end));
        let fill = [
            Some((WEBHOOK_ID, 0..id.len())),
            Some((WEBHOOK_TIMESTAMP, id.len()..ts_end)),
            signature,
            Some((header::CONTENT_LENGTH, sig_end..values.len())),
        ]
        .into_iter()
        .flatten()
        .map(
            |(name, range)| match HeaderValue::from_maybe_shared(values.slice(range)) {
                Ok(value) => Ok((name, value)),
                Err(_) => Err(RenderError::HeaderValue {
                    field: name.as_str().into(),
                }),
            },
        );

        // The placeholders are filled where they are, in the map's order: no name is hashed
        // or looked up again, and the map, a clone as long as the plan's, does not grow (as a
        // `content-length` added by hyper made it).
        let mut headers = self.headers.clone();
        let mut slots = headers.iter_mut().skip(self.per_attempt_at);
        let mut missed = Vec::new();
        for filled in fill {
            let (name, value) = filled?;
            match slots.next() {
                Some((slot_name, slot)) if *slot_name == name => *slot = value,
                _ => missed.push((name, value)),
            }
        }
        drop(slots);
        for (name, value) in missed {
            headers.insert(name, value);
        }
        for h in &*self.header_templates {
            let (doc, sub_id) = scope.contensis_context();
            let mut out = Vec::with_capacity(h.template.source().len() + 32);
            h.template
                .render(doc, sub_id, &mut out)
                .map_err(|source| RenderError::Payload {
                    format: "contensis header",
                    source,
                })?;
            let mut value = HeaderValue::from_maybe_shared(Bytes::from(out)).map_err(|_| {
                RenderError::HeaderValue {
                    field: h.field.clone(),
                }
            })?;
            value.set_sensitive(h.sensitive);
            headers.insert(h.name.clone(), value);
        }

        Ok(Request {
            method: self.method.clone(),
            uri,
            headers,
            body,
        })
    }
}

/// `headers.<name as the user spelled it>`.
fn field_name(name: &str) -> String {
    format!("headers.{name}")
}

/// Parses and checks a URL: absolute, http or https, a host, no user info.
fn parse_url(url: &str) -> Result<Uri, FieldProblem> {
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
        // `example.com/hook` fails to parse at all; saying what is missing helps more.
        if url.contains("://") {
            FieldProblem::UrlSyntax(e.to_string().into())
        } else {
            FieldProblem::UrlNotAbsolute
        }
    })?;
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
    Ok(uri)
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

fn compile_header(spec: &HeaderSpec) -> Result<(HeaderName, HeaderValue), FieldError> {
    let field = || field_name(&spec.name);
    let name = header_name(&spec.name).map_err(|p| FieldError::new(field(), p))?;
    let value =
        header_value(spec.value.expose(), spec.secret).map_err(|p| FieldError::new(field(), p))?;
    Ok((name, value))
}

/// A Contensis header: its value may hold `{/pointer}` placeholders. A templated value gets an
/// empty slot (filled per render) and its template; its literal parts are checked here.
fn compile_header_template(
    spec: &HeaderSpec,
) -> Result<((HeaderName, HeaderValue), Option<pointer::Template>), FieldError> {
    let field = || field_name(&spec.name);
    let template = pointer::Template::compile_text(spec.value.expose())
        .map_err(|e| FieldError::new(field(), FieldProblem::Syntax(e)))?;
    if !template.has_placeholders() {
        return compile_header(spec).map(|h| (h, None));
    }
    let name = header_name(&spec.name).map_err(|p| FieldError::new(field(), p))?;
    for literal in template.literals() {
        header_value(literal, false).map_err(|p| FieldError::new(field(), p))?;
    }
    let slot = header_value("", spec.secret).map_err(|p| FieldError::new(field(), p))?;
    Ok(((name, slot), Some(template)))
}

/// The auth header. Its value is always sensitive.
fn compile_auth(auth: &TargetAuth) -> Result<(HeaderName, HeaderValue), FieldError> {
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
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Format, HttpMethod, InputKind, Secret, Template};
    use crate::render::SyntaxProblem;
    use crate::render::fixtures::{
        CONTENSIS_CONTEXT, DATOCMS_ITEM_UPDATE, SEED_TEMPLATES, SITECORE_ITEM_ADDED, event,
        subscription,
    };

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn header(name: &str, value: &str, secret: bool) -> HeaderSpec {
        HeaderSpec {
            name: name.into(),
            value: Secret::new(value),
            secret,
        }
    }

    fn ctx(attempt: u32, timestamp_s: i64) -> AttemptCtx {
        AttemptCtx {
            delivery: DeliveryId(7_123_456_789_012_345),
            attempt,
            timestamp_s,
        }
    }

    fn compile(sub: &Subscription) -> Result<Plan, RenderError> {
        Plan::compile(sub, &RenderDefaults::default())
    }

    /// The signature computed from the documented formula with `ring` directly.
    fn expected_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("prefix"))
            .expect("base64");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let tag = ring::hmac::sign(&key, &signed);
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }

    #[test]
    fn every_header_present_in_order() {
        let mut sub = subscription(Format::Sitecore);
        sub.method = HttpMethod::Put;
        sub.signing_secret = Some(Secret::new(SECRET));
        sub.headers = vec![
            header("X-Api-Key", "k-123", true),
            header("X-Plain", "plain value", false),
        ]
        .into();
        sub.auth = Some(Box::new(TargetAuth::Bearer {
            token: Secret::new("tok-456"),
        }));
        let plan = compile(&sub).expect("compiles");
        let e = event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED);
        let req = plan.render(&e, &ctx(1, 1_714_557_600)).expect("renders");

        assert_eq!(req.method, Method::PUT);
        assert_eq!(req.uri, "https://hooks.example.com/in?key=abc");
        let got: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        let sig = expected_signature(SECRET, "7123456789012345", "1714557600", &req.body);
        let length = req.body.len().to_string();
        let ua = concat!("Herald/", env!("CARGO_PKG_VERSION"));
        let want = vec![
            ("content-type", "application/json"),
            ("user-agent", ua),
            ("webhook-id", "7123456789012345"),
            ("webhook-timestamp", "1714557600"),
            ("webhook-signature", sig.as_str()),
            ("content-length", length.as_str()),
            ("x-api-key", "k-123"),
            ("x-plain", "plain value"),
            ("authorization", "Bearer tok-456"),
            ("host", "hooks.example.com"),
        ];
        assert_eq!(got, want);
        // Secrets are marked sensitive (never HPACK-indexed, `Debug` shows `Sensitive`).
        let sensitive: Vec<&str> = req
            .headers
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(sensitive, ["x-api-key", "authorization"]);
    }

    #[test]
    fn signature_verifies_independently_and_follows_the_attempt() {
        for format in [Format::CloudEvents, Format::Raw, Format::Sitecore] {
            let mut sub = subscription(format);
            sub.signing_secret = Some(Secret::new(SECRET));
            let plan = compile(&sub).expect("compiles");
            let e = event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED);
            let first = plan.render(&e, &ctx(1, 1_700_000_000)).expect("renders");
            let retry = plan.render(&e, &ctx(2, 1_700_000_060)).expect("renders");
            for (req, ts) in [(&first, "1700000000"), (&retry, "1700000060")] {
                assert_eq!(req.headers[WEBHOOK_ID], "7123456789012345");
                assert_eq!(req.headers[WEBHOOK_TIMESTAMP], ts);
                let want = expected_signature(SECRET, "7123456789012345", ts, &req.body);
                assert_eq!(req.headers[WEBHOOK_SIGNATURE], want.as_str(), "{format:?}");
            }
            assert_eq!(first.body, retry.body);
            assert_ne!(
                first.headers[WEBHOOK_SIGNATURE],
                retry.headers[WEBHOOK_SIGNATURE]
            );
        }
    }

    #[test]
    fn unsigned_plans_send_no_signature() {
        let plan = compile(&subscription(Format::Raw)).expect("compiles");
        let req = plan
            .render(&event(InputKind::DatoCms, "item.update", "{}"), &ctx(1, 5))
            .expect("renders");
        assert!(!req.headers.contains_key(WEBHOOK_SIGNATURE));
        assert_eq!(req.headers[WEBHOOK_ID], "7123456789012345");
        assert_eq!(req.headers[WEBHOOK_TIMESTAMP], "5");
        assert_eq!(
            req.headers[header::CONTENT_LENGTH],
            req.body.len().to_string()
        );
        assert_eq!(req.headers.len(), 6);
        // Room left for the client's and hyper's `entry` checks: they would grow a full map.
        assert!(req.headers.capacity() > req.headers.len());
    }

    #[test]
    fn auth_headers() {
        let cases = [
            (
                // RFC 7617's example.
                TargetAuth::Basic {
                    username: "Aladdin".into(),
                    password: Secret::new("open sesame"),
                },
                "authorization",
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            ),
            (
                TargetAuth::Basic {
                    username: "".into(),
                    password: Secret::new("pässwörd:x"),
                },
                "authorization",
                "Basic OnDDpHNzd8O2cmQ6eA==",
            ),
            (
                TargetAuth::Bearer {
                    token: Secret::new("abc.def"),
                },
                "authorization",
                "Bearer abc.def",
            ),
            (
                TargetAuth::Header {
                    name: "X-Secret".into(),
                    value: Secret::new("s3"),
                },
                "x-secret",
                "s3",
            ),
        ];
        for (auth, name, value) in cases {
            let mut sub = subscription(Format::Raw);
            sub.auth = Some(Box::new(auth));
            let req = compile(&sub)
                .expect("compiles")
                .render(&event(InputKind::Sitecore, "a:b", "{}"), &ctx(1, 1))
                .expect("renders");
            assert_eq!(req.headers[name], value);
            assert!(req.headers[name].is_sensitive());
            assert_eq!(req.headers.len(), 7);
        }
    }

    #[test]
    fn subscription_headers_override_content_type_and_user_agent() {
        let mut sub = subscription(Format::CloudEvents);
        sub.headers = vec![
            header("User-Agent", "Mine/1", false),
            header("Content-Type", "application/json; charset=utf-8", false),
        ]
        .into();
        let req = compile(&sub)
            .expect("compiles")
            .render(&event(InputKind::Sitecore, "a:b", "{}"), &ctx(1, 1))
            .expect("renders");
        let names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "user-agent",
                "webhook-id",
                "webhook-timestamp",
                "content-length",
                "host"
            ]
        );
        assert_eq!(
            req.headers[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_eq!(req.headers[header::USER_AGENT], "Mine/1");
    }

    #[test]
    fn dialect_default_headers() {
        let ua = concat!("Herald/", env!("CARGO_PKG_VERSION"));
        type Edit = fn(&mut Subscription);
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Dialect, Format, Edit, Headers); 4] = [
            (
                Dialect::Native,
                Format::DatoCms,
                |_| {},
                &[("content-type", "application/json"), ("user-agent", ua)],
            ),
            (
                Dialect::DatoCms,
                Format::DatoCms,
                |_| {},
                &[
                    ("content-type", "application/json"),
                    ("accept", "*/*"),
                    ("user-agent", "DatoCMS (datocms.com)"),
                ],
            ),
            // DatoCMS lets `headers` set anything, these included; auth follows them.
            (
                Dialect::DatoCms,
                Format::DatoCms,
                |s| {
                    s.headers = vec![
                        header("X-Foo", "Bar", false),
                        header("Accept", "application/json", false),
                    ]
                    .into();
                    s.auth = Some(Box::new(TargetAuth::Basic {
                        username: "ciao".into(),
                        password: Secret::new("miao"),
                    }));
                },
                &[
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                    ("user-agent", "DatoCMS (datocms.com)"),
                    ("x-foo", "Bar"),
                    ("authorization", "Basic Y2lhbzptaWFv"),
                ],
            ),
            (
                Dialect::SitecoreAudit,
                Format::SitecoreAudit,
                |s| {
                    s.auth = Some(Box::new(TargetAuth::Header {
                        name: "X-Secret".into(),
                        value: Secret::new("s3cr3t"),
                    }))
                },
                &[
                    ("content-type", "application/json"),
                    ("user-agent", ua),
                    ("x-secret", "s3cr3t"),
                ],
            ),
        ];
        for (dialect, format, edit, want) in cases {
            let mut sub = subscription(format);
            sub.dialect = dialect;
            edit(&mut sub);
            let req = compile(&sub)
                .expect("compiles")
                .render(
                    &event(InputKind::DatoCms, "item.update", DATOCMS_ITEM_UPDATE),
                    &ctx(1, 1_700_000_000),
                )
                .expect("renders");
            // The Standard Webhooks id and timestamp go on every dialect (no secret: no
            // signature), and `Host` and `Content-Length` on every request; everything else is
            // the dialect's.
            let got: Vec<(&str, &str)> = header_list(&req)
                .into_iter()
                .filter(|(n, _)| !n.starts_with("webhook-") && *n != "host")
                .collect();
            assert_eq!(got, want, "{dialect:?}");
            assert_eq!(req.headers[WEBHOOK_ID], "7123456789012345");
            assert_eq!(req.headers[WEBHOOK_TIMESTAMP], "1700000000");
            assert!(!req.headers.contains_key(WEBHOOK_SIGNATURE));
        }
    }

    fn datocms_sub(template: Option<&str>, url: &str) -> Subscription {
        let mut sub = subscription(Format::DatoCms);
        sub.dialect = Dialect::DatoCms;
        sub.url = url.into();
        sub.template = template.map(|t| Box::new(Template::Mustache(t.into())));
        sub
    }

    #[test]
    fn datocms_custom_payload_and_url_templates() {
        // A section over `related_entities`, dotted names, an unescaped value, the per-attempt
        // members, and a URL built from the same data.
        let template = "{\n  \"event\": \"{{entity_type}}.{{event_type}}\",\n  \"name\": \"{{{entity.attributes.name}}}\",\n  \"call\": \"{{webhook_call_id}}\", \"retry\": {{attempted_auto_retries_count}},\n  \"webhook\": \"{{webhook_id}}\",\n  \"models\": [{{#related_entities}}\"{{attributes.api_key}}\"{{/related_entities}}]\n}\n";
        let url = "https://hooks.example.com/{{entity_type}}/{{entity.id}}?name={{entity.attributes.name}}&status={{entity.meta.status}}";
        let plan = compile(&datocms_sub(Some(template), url)).expect("compiles");
        let e = event(InputKind::DatoCms, "item.update", DATOCMS_ITEM_UPDATE);
        let req = plan.render(&e, &ctx(3, 1_700_000_000)).expect("renders");
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            "{\n  \"event\": \"item.update\",\n  \"name\": \"Mark Smith\",\n  \"call\": \"7123456789012345\", \"retry\": 2,\n  \"webhook\": \"95398c44f23241a8b9478aefec4ce6eb\",\n  \"models\": [\"author\"]\n}\n"
        );
        assert_eq!(
            req.uri,
            "https://hooks.example.com/item/39830648?name=Mark%20Smith&status=updated"
        );
        assert_eq!(req.headers[header::CONTENT_TYPE], "application/json");
        // A templated URL's `Host` is the client's to add; a fixed one's is in the plan, last.
        assert!(!req.headers.contains_key(header::HOST));
        let fixed = compile(&datocms_sub(None, "https://hooks.example.com:8443/in")).unwrap();
        let req = fixed.render(&e, &ctx(1, 1)).unwrap();
        assert_eq!(req.headers[header::HOST], "hooks.example.com:8443");
        assert_eq!(req.headers.keys().last(), Some(&header::HOST));
        // A URL without tags is fixed at compile time, like any other.
        let plan = compile(&datocms_sub(
            Some("{{event_type}}"),
            "https://a.example/{{! x }}in",
        ))
        .expect("compiles");
        let req = plan.render(&e, &ctx(1, 1)).expect("renders");
        assert_eq!(req.uri, "https://a.example/in");
        assert_eq!(&req.body[..], b"update");
        assert!(format!("{plan:?}").contains("a.example/in"));
    }

    #[test]
    fn template_compile_errors_name_the_field_and_position() {
        let cases: [(Subscription, &str, SyntaxError); 3] = [
            (
                datocms_sub(
                    Some("{\n  {{#entity}}\"id\": \"{{id}}\"\n}"),
                    "https://x.example/",
                ),
                "template",
                SyntaxError {
                    line: 2,
                    column: 3,
                    problem: SyntaxProblem::UnclosedSection("entity".into()),
                },
            ),
            (
                datocms_sub(None, "https://x.example/{{entity.id}"),
                "url",
                SyntaxError {
                    line: 1,
                    column: 19,
                    problem: SyntaxProblem::UnclosedTag("{{".into()),
                },
            ),
            (
                datocms_sub(Some("{{a}}{{/b}}"), "https://x.example/"),
                "template",
                SyntaxError {
                    line: 1,
                    column: 6,
                    problem: SyntaxProblem::UnopenedSection("b".into()),
                },
            ),
        ];
        for (sub, field, syntax) in cases {
            let err = compile(&sub).expect_err(field);
            let want = [FieldError::new(field, FieldProblem::Syntax(syntax.clone()))];
            assert_eq!(err.field_errors(), want, "{field}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{field}: template syntax error at {syntax}")),
                "{msg}"
            );
        }
        // Only DatoCMS URLs are templates: elsewhere the braces are part of the URL.
        let mut native = datocms_sub(None, "https://x.example/{{entity.id}}");
        native.dialect = Dialect::Native;
        let req = compile(&native)
            .expect("a URL")
            .render(
                &event(InputKind::DatoCms, "item.update", DATOCMS_ITEM_UPDATE),
                &ctx(1, 1),
            )
            .expect("renders");
        assert_eq!(req.uri, "https://x.example/{{entity.id}}");
    }

    #[test]
    fn rendered_urls_are_checked_at_render_time() {
        let e = event(InputKind::DatoCms, "item.update", DATOCMS_ITEM_UPDATE);
        let cases = [
            ("{{entity.attributes.name}}", FieldProblem::UrlNotAbsolute),
            (
                "ftp://{{entity.id}}.example/",
                FieldProblem::UrlScheme("ftp".into()),
            ),
            (
                "https://{{missing}}/x",
                FieldProblem::UrlSyntax("invalid format".into()),
            ),
        ];
        for (url, want) in cases {
            let plan = compile(&datocms_sub(None, url)).expect(url);
            match plan.render(&e, &ctx(1, 1)) {
                Err(e @ RenderError::Url(_)) => {
                    assert!(
                        matches!(&e, RenderError::Url(p) if *p == want),
                        "{url}: {e:?}"
                    );
                    assert!(
                        e.to_string()
                            .starts_with("url: the rendered URL is invalid: "),
                        "{e}"
                    );
                    assert!(e.field_errors().is_empty());
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    fn contensis_sub() -> Subscription {
        let mut sub = subscription(Format::Contensis);
        sub.dialect = Dialect::Contensis;
        sub.url = "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}".into();
        sub.headers = vec![
            header("target", "internal", false),
            header("department", "{/resource/department}", false),
            header("secretHeaderSet", "cs7vdsdvj~8", true),
        ]
        .into();
        sub.template = Some(Box::new(Template::Contensis(
            SEED_TEMPLATES
                .iter()
                .map(|(k, t)| (k.to_string(), t.to_string()))
                .collect(),
        )));
        sub
    }

    fn contensis_event(content_type: &str) -> Event {
        let mut e = event(InputKind::Contensis, "entry.published", CONTENSIS_CONTEXT);
        e.attributes = [("contenttype", content_type)]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        e
    }

    /// The headers but `content-length` (the body's, checked in
    /// `every_header_present_in_order`).
    fn header_list(req: &Request) -> Vec<(&str, &str)> {
        req.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .filter(|(n, _)| *n != "content-length")
            .collect()
    }

    #[test]
    fn contensis_requests_from_the_seed_subscription() {
        let plan = compile(&contensis_sub()).expect("compiles");
        let ua = concat!("Herald/", env!("CARGO_PKG_VERSION"));
        let want_headers = [
            ("content-type", "application/json; charset=utf-8"),
            ("user-agent", ua),
            ("webhook-id", "7123456789012345"),
            ("webhook-timestamp", "1700000000"),
            ("target", "internal"),
            ("department", "Films"),
            ("secretheaderset", "cs7vdsdvj~8"),
        ];

        // `entry.news` matches: its template; URL and header templated from the same context.
        let req = plan
            .render(&contensis_event("news"), &ctx(1, 1_700_000_000))
            .expect("renders");
        assert_eq!(req.method, Method::POST);
        assert_eq!(
            req.uri,
            "https://external.mywebsite.com/handlewebhooks/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad"
        );
        assert_eq!(header_list(&req), want_headers);
        assert!(req.headers["secretheaderset"].is_sensitive());
        assert_eq!(
            std::str::from_utf8(&req.body).expect("utf-8"),
            r#"{"event":"published","id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","title":"Fight \"Club\"","headline":"Soap & <more>"}"#
        );

        // No template for assets: the default request structure.
        let mut asset = contensis_event("image");
        asset.event_type = "asset.updated".into();
        let req = plan
            .render(&asset, &ctx(2, 1_700_000_000))
            .expect("renders");
        let body = std::str::from_utf8(&req.body).expect("utf-8");
        assert!(
            body.starts_with("{\n  \"eventId\": \"5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d\",\n  \"eventName\": \"published\",\n  \"subscriptionId\": \"95398c44-f232-41a8-b947-8aefec4ce6eb\","),
            "{body}"
        );
        assert!(body.contains("\"type\": \"asset\""), "{body}");
        assert_eq!(header_list(&req), want_headers);
    }

    #[test]
    fn contensis_content_type_override_and_xml_templates() {
        let mut sub = contensis_sub();
        sub.url = "https://x.example/in".into();
        sub.headers = vec![header("Content-Type", "application/xml", false)].into();
        sub.template = Some(Box::new(Template::Contensis(vec![(
            "entry".into(),
            "<entry id=\"{/resource/sys/id}\">{/resource/entryTitle}</entry>".into(),
        )])));
        let req = compile(&sub)
            .expect("compiles")
            .render(&contensis_event("news"), &ctx(1, 1))
            .expect("renders");
        assert_eq!(req.headers[header::CONTENT_TYPE], "application/xml");
        assert_eq!(
            &req.body[..],
            br#"<entry id="d69ad539-0e3a-4d7f-9c9d-1fad1b39faad">Fight "Club"</entry>"#
        );
        // Only Contensis headers and URLs are templates.
        let mut native = contensis_sub();
        native.dialect = Dialect::Native;
        native.url = "https://x.example/{/resource/sys.id}".into();
        let req = compile(&native)
            .expect("compiles")
            .render(&contensis_event("news"), &ctx(1, 1))
            .expect("renders");
        assert_eq!(req.uri, "https://x.example/{/resource/sys.id}");
        assert_eq!(req.headers["department"], "{/resource/department}");
    }

    #[test]
    fn contensis_compile_errors_name_the_field() {
        type Edit = fn(&mut Subscription);
        let at = |line, column, problem| {
            FieldProblem::Syntax(SyntaxError {
                line,
                column,
                problem,
            })
        };
        let cases: Vec<(Edit, &str, FieldProblem)> = vec![
            (
                |s| {
                    s.template = Some(Box::new(Template::Contensis(vec![
                        ("entry".into(), "{\"a\": \"{/event/name}\"}".into()),
                        (
                            "entry.news".into(),
                            "{\n\"id\": \"{/resource/sys/id\"\n}".into(),
                        ),
                    ])))
                },
                "template.entry.news",
                at(2, 8, SyntaxProblem::UnclosedPlaceholder),
            ),
            (
                |s| s.url = "https://x.example/{/resource/sys.id".into(),
                "url",
                at(1, 19, SyntaxProblem::UnclosedPlaceholder),
            ),
            (
                |s| s.headers = vec![header("department", "{/resource/~x}", false)].into(),
                "headers.department",
                at(1, 12, SyntaxProblem::PointerEscape),
            ),
            (
                |s| {
                    s.headers =
                        vec![header("department", "a\n{/resource/department}", false)].into()
                },
                "headers.department",
                FieldProblem::HeaderValue,
            ),
            (
                |s| s.headers = vec![header("Host", "{/resource/department}", false)].into(),
                "headers.Host",
                FieldProblem::ReservedHeader("host"),
            ),
            (
                |s| {
                    s.headers = vec![
                        header("x-dept", "{/resource/department}", false),
                        header("X-Dept", "{/resource/sys/id}", false),
                    ]
                    .into()
                },
                "headers.X-Dept",
                FieldProblem::DuplicateHeader,
            ),
            (
                |s| {
                    s.template = Some(Box::new(Template::Contensis(vec![(
                        "".into(),
                        "{}".into(),
                    )])))
                },
                "template.",
                FieldProblem::TemplateKey,
            ),
            (
                |s| {
                    s.template = Some(Box::new(Template::Contensis(vec![
                        ("entry".into(), "{}".into()),
                        ("Entry".into(), "[]".into()),
                    ])))
                },
                "template.Entry",
                FieldProblem::DuplicateTemplateKey,
            ),
        ];
        for (edit, field, problem) in cases {
            let mut sub = contensis_sub();
            edit(&mut sub);
            let err = compile(&sub).expect_err(field);
            assert_eq!(
                err.field_errors(),
                [FieldError::new(field, problem)],
                "{field}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn templated_header_values_are_checked_at_render_time() {
        let plan = compile(&contensis_sub()).expect("compiles");
        let e = event(
            InputKind::Contensis,
            "entry.published",
            r#"{"event":{"name":"published"},"resource":{"department":"a\r\nInjected: 1","sys":{"id":"x"}}}"#,
        );
        match plan.render(&e, &ctx(1, 1)) {
            Err(RenderError::HeaderValue { field }) => assert_eq!(&*field, "headers.department"),
            other => panic!("{other:?}"),
        }
    }

    /// Parsing happens in `compile` only: a template with a syntax error in any field never
    /// becomes a plan, so there is nothing to render and no render ever parses.
    #[test]
    fn syntax_errors_never_become_plans() {
        let subs = [
            datocms_sub(Some("{{#entity}}"), "https://x.example/"),
            datocms_sub(Some("{{=<% %>=}}<%#a%>"), "https://x.example/"),
            datocms_sub(None, "https://x.example/{{/a}}"),
            {
                let mut s = contensis_sub();
                s.template = Some(Box::new(Template::Contensis(vec![(
                    "entry".into(),
                    "{/a".into(),
                )])));
                s
            },
            {
                let mut s = contensis_sub();
                s.url = "https://x/{/a".into();
                s
            },
            {
                let mut s = contensis_sub();
                s.headers = vec![header("x", "{/a\\b}", true)].into();
                s
            },
        ];
        for sub in subs {
            let err = compile(&sub).expect_err("does not compile");
            assert!(
                err.field_errors()
                    .iter()
                    .any(|f| matches!(f.problem, FieldProblem::Syntax(_))),
                "{err}"
            );
        }
    }

    #[test]
    fn urls() {
        let good = [
            "https://hooks.example.com/in?key=abc",
            "http://10.0.0.1:8080",
            "HTTPS://Example.COM/a/b",
            "http://[::1]:9000/x",
        ];
        for url in good {
            let mut sub = subscription(Format::Raw);
            sub.url = url.into();
            assert!(compile(&sub).is_ok(), "{url}");
        }
        type Check = fn(&FieldProblem) -> bool;
        let bad: [(&str, Check); 8] = [
            ("", |p| *p == FieldProblem::UrlNotAbsolute),
            ("/relative/path", |p| *p == FieldProblem::UrlNotAbsolute),
            ("example.com/hook", |p| *p == FieldProblem::UrlNotAbsolute),
            ("ftp://example.com/x", |p| {
                *p == FieldProblem::UrlScheme("ftp".into())
            }),
            ("https://user:pw@example.com/", |p| {
                *p == FieldProblem::UrlUserinfo
            }),
            ("https://exa mple.com/", |p| {
                matches!(p, FieldProblem::UrlSyntax(_))
            }),
            ("https://example.com/a\nb", |p| {
                matches!(p, FieldProblem::UrlSyntax(_))
            }),
            ("https:///nohost", |p| {
                matches!(p, FieldProblem::UrlSyntax(_) | FieldProblem::UrlNotAbsolute)
            }),
        ];
        for (url, is_expected) in bad {
            let mut sub = subscription(Format::Raw);
            sub.url = url.into();
            let err = compile(&sub).expect_err(url);
            let fields = err.field_errors();
            assert_eq!(fields.len(), 1, "{url}: {err}");
            assert_eq!(&*fields[0].field, "url", "{url}");
            assert!(is_expected(&fields[0].problem), "{url}: {:?}", fields[0]);
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        type Edit = fn(&mut Subscription);
        let cases: Vec<(Edit, &str, FieldProblem)> = vec![
            (
                |s| s.headers = vec![header("Host", "x", false)].into(),
                "headers.Host",
                FieldProblem::ReservedHeader("host"),
            ),
            (
                |s| s.headers = vec![header("Content-Length", "1", false)].into(),
                "headers.Content-Length",
                FieldProblem::ReservedHeader("content-length"),
            ),
            (
                |s| s.headers = vec![header("Transfer-Encoding", "chunked", false)].into(),
                "headers.Transfer-Encoding",
                FieldProblem::ReservedHeader("transfer-encoding"),
            ),
            (
                |s| s.headers = vec![header("Connection", "close", false)].into(),
                "headers.Connection",
                FieldProblem::ReservedHeader("connection"),
            ),
            (
                |s| s.headers = vec![header("Webhook-Id", "x", false)].into(),
                "headers.Webhook-Id",
                FieldProblem::ReservedHeader("webhook-id"),
            ),
            (
                |s| s.headers = vec![header("webhook-timestamp", "1", false)].into(),
                "headers.webhook-timestamp",
                FieldProblem::ReservedHeader("webhook-timestamp"),
            ),
            (
                |s| s.headers = vec![header("WEBHOOK-SIGNATURE", "v1,x", false)].into(),
                "headers.WEBHOOK-SIGNATURE",
                FieldProblem::ReservedHeader("webhook-signature"),
            ),
            (
                |s| s.headers = vec![header("X Key", "v", false)].into(),
                "headers.X Key",
                FieldProblem::HeaderName,
            ),
            (
                |s| s.headers = vec![header("", "v", false)].into(),
                "headers.",
                FieldProblem::HeaderName,
            ),
            (
                |s| s.headers = vec![header("X-Ünicode", "v", false)].into(),
                "headers.X-Ünicode",
                FieldProblem::HeaderName,
            ),
            (
                |s| s.headers = vec![header("X-Key", "a\r\nInjected: 1", true)].into(),
                "headers.X-Key",
                FieldProblem::HeaderValue,
            ),
            (
                |s| s.headers = vec![header("X-Key", "nul\0", false)].into(),
                "headers.X-Key",
                FieldProblem::HeaderValue,
            ),
            (
                |s| {
                    s.headers =
                        vec![header("X-Key", "a", false), header("x-key", "b", false)].into()
                },
                "headers.x-key",
                FieldProblem::DuplicateHeader,
            ),
            (
                |s| {
                    s.headers = vec![header("Authorization", "Token x", true)].into();
                    s.auth = Some(Box::new(TargetAuth::Bearer {
                        token: Secret::new("t"),
                    }));
                },
                "headers.Authorization",
                FieldProblem::ConflictsWithAuth,
            ),
            (
                |s| {
                    s.headers = vec![header("X-Secret", "a", true)].into();
                    s.auth = Some(Box::new(TargetAuth::Header {
                        name: "x-secret".into(),
                        value: Secret::new("b"),
                    }));
                },
                "headers.X-Secret",
                FieldProblem::ConflictsWithAuth,
            ),
            (
                |s| {
                    s.auth = Some(Box::new(TargetAuth::Basic {
                        username: "a:b".into(),
                        password: Secret::new("p"),
                    }))
                },
                "auth.username",
                FieldProblem::UsernameColon,
            ),
            (
                |s| {
                    s.auth = Some(Box::new(TargetAuth::Bearer {
                        token: Secret::new("t\n"),
                    }))
                },
                "auth.token",
                FieldProblem::HeaderValue,
            ),
            (
                |s| {
                    s.auth = Some(Box::new(TargetAuth::Header {
                        name: "Host".into(),
                        value: Secret::new("v"),
                    }))
                },
                "auth.name",
                FieldProblem::ReservedHeader("host"),
            ),
            (
                |s| {
                    s.auth = Some(Box::new(TargetAuth::Header {
                        name: "X-Key".into(),
                        value: Secret::new("\u{7f}"),
                    }))
                },
                "auth.value",
                FieldProblem::HeaderValue,
            ),
            (
                |s| s.signing_secret = Some(Secret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                "signing_secret",
                FieldProblem::Secret(SecretProblem::MissingPrefix),
            ),
            (
                |s| s.signing_secret = Some(Secret::new("whsec_not base64!")),
                "signing_secret",
                FieldProblem::Secret(SecretProblem::NotBase64),
            ),
            (
                |s| s.signing_secret = Some(Secret::new("whsec_c2hvcnQ=")),
                "signing_secret",
                FieldProblem::Secret(SecretProblem::KeyLength(5)),
            ),
        ];
        for (edit, field, problem) in cases {
            let mut sub = subscription(Format::Raw);
            edit(&mut sub);
            let err = compile(&sub).expect_err(field);
            assert_eq!(
                err.field_errors(),
                [FieldError::new(field, problem)],
                "{field}"
            );
            // The message names the field and never echoes a value.
            let msg = err.to_string();
            assert!(msg.contains(field), "{msg}");
            for secret in ["Token x", "Injected", "c2hvcnQ", "MfKQ9r8G", "a:b"] {
                assert!(!msg.contains(secret), "{msg}");
            }
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut sub = subscription(Format::Raw);
        sub.url = "ftp://x".into();
        sub.headers = vec![header("Host", "x", false), header("X-Ok", "ok", false)].into();
        sub.signing_secret = Some(Secret::new("nope"));
        let err = compile(&sub).expect_err("invalid");
        let fields: Vec<&str> = err.field_errors().iter().map(|e| &*e.field).collect();
        assert_eq!(fields, ["url", "signing_secret", "headers.Host"]);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut sub = subscription(Format::Sitecore);
        sub.signing_secret = Some(Secret::new(SECRET));
        sub.headers = vec![
            header("X-Hidden", "hidden-value-1", true),
            header("X-Shown", "shown-value", false),
        ]
        .into();
        sub.auth = Some(Box::new(TargetAuth::Basic {
            username: "user".into(),
            password: Secret::new("pass-word-2"),
        }));
        let plan = compile(&sub).expect("compiles");
        let debug = format!("{plan:?}");
        let basic = STANDARD.encode("user:pass-word-2");
        for secret in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "hidden-value-1",
            "pass-word-2",
            basic.as_str(),
            "key=abc",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("shown-value"), "{debug}");
        assert!(debug.contains("hooks.example.com/in?***"), "{debug}");

        let mut bearer = subscription(Format::Raw);
        bearer.auth = Some(Box::new(TargetAuth::Bearer {
            token: Secret::new("tok-3"),
        }));
        let debug = format!("{:?}", compile(&bearer).expect("compiles"));
        assert!(!debug.contains("tok-3"), "{debug}");
    }

    #[test]
    fn plans_are_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Plan>();
    }

    #[test]
    fn payload_errors_name_the_format() {
        let plan = compile(&subscription(Format::Sitecore)).expect("compiles");
        let err = plan
            .render(
                &event(InputKind::Sitecore, "item:added", "not json"),
                &ctx(1, 1),
            )
            .expect_err("not an object");
        assert!(matches!(
            err,
            RenderError::Payload {
                format: "sitecore",
                ..
            }
        ));
        assert!(err.field_errors().is_empty());
    }
}
