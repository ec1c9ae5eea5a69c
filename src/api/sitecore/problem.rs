//! Error answers of the Sitecore audit API: RFC 7807 problem details in ASP.NET Core's shape.
//!
//! Sitecore does not document its error body (spec §3.2, [INFERRED]). Its management API is an
//! ASP.NET service, so a client written against it most likely copes with ASP.NET's defaults:
//! `application/problem+json` with `type` (the RFC 9110 section of the status), `title`,
//! `status`, `traceId` (a W3C `traceparent`), and for request validation `errors` — each invalid
//! field mapped to its messages. Herald adds `detail`, a sentence saying what went wrong.
//!
//! ```json
//! {"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
//!  "title": "One or more validation errors occurred.", "status": 400,
//!  "detail": "destinationSystem.targetUrl: must be an absolute http or https URL",
//!  "traceId": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
//!  "errors": {"destinationSystem.targetUrl": ["must be an absolute http or https URL"]}}
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::api::auth::AuthError;
use crate::api::error::Response;
use crate::route::store::StoreError;

/// `content-type` of every error answer.
const PROBLEM_JSON: &str = "application/problem+json";

/// At most this many fields are reported in one answer; a body with thousands of unknown keys
/// gets the first ones, which is enough to fix it, and a bounded answer.
const MAX_FIELD_ERRORS: usize = 32;

/// Invalid fields of a request body: the field path as the client wrote it
/// (`destinationSystem.targetUrl`, `$` for the body itself) → what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        FieldErrors::default()
    }

    /// Records one problem with `field` (dropped once [`MAX_FIELD_ERRORS`] fields are listed).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.0.len() >= MAX_FIELD_ERRORS && !self.0.contains_key(&field) {
            return;
        }
        self.0.entry(field).or_default().push(message.into());
    }

    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, message);
        e
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The fields that have errors, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `Ok(v)` when nothing was recorded.
    pub fn into_result<T>(self, v: T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(v) } else { Err(self) }
    }

    /// One line for `detail`: the single problem, or how many fields are wrong.
    fn summary(&self) -> String {
        let mut out = String::new();
        match self.0.iter().next() {
            Some((field, messages)) if self.0.len() == 1 => {
                let _ = write!(out, "{field}: {}", messages.join("; "));
            }
            _ => {
                let _ = write!(out, "{} fields are invalid", self.0.len());
            }
        }
        out
    }
}

/// Everything the Sitecore audit API can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AuditApiError {
    /// The request body (or query) is invalid: `400` with every bad field.
    #[error("{}", .0.summary())]
    Invalid(FieldErrors),
    /// No configuration with this id that the caller may see.
    #[error("no webhook with id `{0}`")]
    NotFound(String),
    /// A scoped token asked for a space it is not limited to.
    #[error("{0}")]
    Forbidden(String),
    #[error("{}", .0.message())]
    Unauthorized(AuthError),
    #[error("this route accepts {0}")]
    MethodNotAllowed(&'static str),
    /// The body could not be read as asked (too large, a non-JSON media type).
    #[error("{message}")]
    Request { status: StatusCode, message: String },
    /// The store could not save the change.
    #[error("the change was not saved: {0}")]
    Store(#[source] StoreError),
}

impl AuditApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuditApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuditApiError::NotFound(_) => StatusCode::NOT_FOUND,
            AuditApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuditApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuditApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AuditApiError::Request { status, .. } => *status,
            AuditApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem-details answer.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let detail = self.to_string();
        let trace_id = trace_id();
        tracing::debug!(status = status.as_u16(), trace_id = %trace_id, detail = %detail, "sitecore audit API error");
        let empty = FieldErrors::new();
        let errors = match &self {
            AuditApiError::Invalid(errors) => errors,
            _ => &empty,
        };
        let body = ProblemBody {
            kind: type_uri(status),
            title: title(status, matches!(self, AuditApiError::Invalid(_))),
            status: status.as_u16(),
            detail: &detail,
            trace_id: &trace_id,
            errors: &errors.0,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = http::Response::new(Full::new(Bytes::from(bytes)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            AuditApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AuditApiError::MethodNotAllowed(allowed) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            _ => {}
        }
        resp
    }
}

impl AuditApiError {
    /// A store error of a request about configuration `id` (empty on create). Compile errors
    /// name model fields (`url`, `auth.value`); they are reported under the Sitecore field they
    /// came from.
    pub fn from_store(e: StoreError, id: &str) -> Self {
        match e {
            StoreError::Render(r) if !r.field_errors().is_empty() => {
                let mut errors = FieldErrors::new();
                for f in r.field_errors() {
                    errors.add(sitecore_field(&f.field), f.problem.to_string());
                }
                AuditApiError::Invalid(errors)
            }
            StoreError::Render(r) => AuditApiError::Invalid(FieldErrors::one("$", r.to_string())),
            StoreError::NotFound => AuditApiError::NotFound(id.to_string()),
            e @ StoreError::Journal(_) => AuditApiError::Store(e),
        }
    }
}

/// The Sitecore field a subscription field comes from.
fn sitecore_field(model_field: &str) -> &str {
    match model_field {
        "url" => "destinationSystem.targetUrl",
        f if f.starts_with("auth.") => "destinationSystem.secret",
        other => other,
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(rename = "traceId")]
    trace_id: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    errors: &'a BTreeMap<String, Vec<String>>,
}

/// ASP.NET Core's `type` for a status: the RFC 9110 section that defines it.
fn type_uri(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        401 => "https://tools.ietf.org/html/rfc9110#section-15.5.2",
        403 => "https://tools.ietf.org/html/rfc9110#section-15.5.4",
        404 => "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        405 => "https://tools.ietf.org/html/rfc9110#section-15.5.6",
        413 => "https://tools.ietf.org/html/rfc9110#section-15.5.14",
        415 => "https://tools.ietf.org/html/rfc9110#section-15.5.16",
        500 => "https://tools.ietf.org/html/rfc9110#section-15.6.1",
        503 => "https://tools.ietf.org/html/rfc9110#section-15.6.4",
        _ => "about:blank",
    }
}

/// ASP.NET Core's `title`: its fixed sentence for validation failures, else the reason phrase.
fn title(status: StatusCode, validation: bool) -> &'static str {
    if validation {
        "One or more validation errors occurred."
    } else {
        status.canonical_reason().unwrap_or("Error")
    }
}

/// A fresh W3C trace context id, `00-<trace id>-<span id>-00`, as ASP.NET writes `traceId`;
/// logged with the error so an operator can find the request a client reports.
fn trace_id() -> String {
    format!(
        "00-{:032x}-{:016x}-00",
        fastrand::u128(1..),
        fastrand::u64(1..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{FieldError, FieldProblem, RenderError};
    use http_body_util::BodyExt;

    async fn body_of(resp: Response) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn statuses_titles_and_bodies() {
        type Case = (AuditApiError, u16, &'static str, bool);
        let cases: Vec<Case> = vec![
            (
                AuditApiError::Invalid(FieldErrors::one("space", "required")),
                400,
                "One or more validation errors occurred.",
                true,
            ),
            (
                AuditApiError::NotFound("abc".into()),
                404,
                "Not Found",
                false,
            ),
            (
                AuditApiError::Forbidden("no".into()),
                403,
                "Forbidden",
                false,
            ),
            (
                AuditApiError::Unauthorized(AuthError::Missing),
                401,
                "Unauthorized",
                false,
            ),
            (
                AuditApiError::MethodNotAllowed("GET, POST"),
                405,
                "Method Not Allowed",
                false,
            ),
            (
                AuditApiError::Request {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    message: "expected JSON".into(),
                },
                415,
                "Unsupported Media Type",
                false,
            ),
            (
                AuditApiError::Store(StoreError::Journal(crate::journal::JournalError::Closed)),
                503,
                "Service Unavailable",
                false,
            ),
        ];
        for (err, status, want_title, has_errors) in cases {
            let what = format!("{err:?}");
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            let v = body_of(resp).await;
            assert_eq!(v["status"], status, "{what}");
            assert_eq!(v["title"], want_title, "{what}");
            assert!(
                v["type"].as_str().unwrap().starts_with("https://"),
                "{what}"
            );
            assert!(!v["detail"].as_str().unwrap().is_empty(), "{what}");
            let trace = v["traceId"].as_str().unwrap();
            assert_eq!(trace.len(), 55, "{trace}");
            assert!(
                trace.starts_with("00-") && trace.ends_with("-00"),
                "{trace}"
            );
            assert_eq!(v.get("errors").is_some(), has_errors, "{what}");
        }
    }

    #[test]
    fn store_field_errors_are_named_as_in_sitecore() {
        let render = RenderError::Invalid(
            vec![
                FieldError {
                    field: "url".into(),
                    problem: FieldProblem::UrlUserinfo,
                },
                FieldError {
                    field: "auth.value".into(),
                    problem: FieldProblem::HeaderValue,
                },
            ]
            .into(),
        );
        let AuditApiError::Invalid(errors) =
            AuditApiError::from_store(StoreError::Render(render), "")
        else {
            panic!("not a validation error");
        };
        let fields: Vec<&str> = errors.fields().collect();
        assert_eq!(
            fields,
            ["destinationSystem.secret", "destinationSystem.targetUrl"]
        );
    }

    #[test]
    fn field_errors_are_bounded_and_summarized() {
        let mut e = FieldErrors::new();
        for i in 0..100 {
            e.add(format!("f{i:03}"), "unknown field");
        }
        e.add("f000", "second message for a listed field");
        assert_eq!(e.len(), MAX_FIELD_ERRORS);
        assert_eq!(
            e.summary(),
            format!("{MAX_FIELD_ERRORS} fields are invalid")
        );
        assert_eq!(
            FieldErrors::one("space", "is required").summary(),
            "space: is required"
        );
    }
}
