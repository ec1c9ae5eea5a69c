//! DatoCMS's error body (spec §1.7): a JSON:API document whose `data` is a list of `api_error`
//! resources.
//!
//! ```json
//! {"data": [{"id": "ce9dcb", "type": "api_error",
//!            "attributes": {"code": "INVALID_FIELD",
//!                           "doc_url": "https://www.datocms.com/docs/content-management-api/errors#INVALID_FIELD",
//!                           "details": {"field": "name", "code": "VALIDATION_UNIQUENESS"}}}]}
//! ```
//!
//! DatoCMS's pages do not print the HTTP status of each code; the mapping here is the spec's
//! [INFERRED] one (`docs/api-datocms.md` lists it). Clients read `code` (the JS client's
//! `ApiError.findError(code)`), so the codes are the contract; `details` carries the field and
//! validation code for `INVALID_FIELD`, and a `message` for a person everywhere.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::api::error::Response;

/// The DatoCMS error codes Herald answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A webhook attribute has a bad value (details: `field`, `code`, `message`).
    InvalidField,
    /// The document does not have the JSON:API shape or an attribute has the wrong JSON type
    /// (details: `messages`).
    InvalidFormat,
    /// `data.type` is not the resource type of the endpoint.
    InvalidType,
    /// The body is not JSON.
    InvalidJsonBody,
    /// The body is not `application/json` or `application/vnd.api+json`.
    InvalidContentTypeHeader,
    /// Missing, malformed or unknown bearer token.
    InvalidAuthorizationHeader,
    /// The token is valid but may not do this (a scoped token without exactly one site).
    InsufficientPermissions,
    /// No such webhook or webhook call (or not visible to this token).
    NotFound,
    /// The path does not serve this method.
    InvalidEndpoint,
    /// A `filter[...]` query parameter is unknown or has a bad value.
    InvalidFilterFieldsParam,
    /// `order_by` is not one of the documented values.
    InvalidOrdering,
    /// A `page[...]` query parameter is out of range.
    InvalidParams,
    /// The request cannot be served as it is (too large, a call already being sent).
    InvalidRequest,
    /// Herald's storage cannot be read or written right now (`transient`).
    ServiceUnavailable,
    /// Something failed inside Herald.
    Exception,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidField => "INVALID_FIELD",
            Code::InvalidFormat => "INVALID_FORMAT",
            Code::InvalidType => "INVALID_TYPE",
            Code::InvalidJsonBody => "INVALID_JSON_BODY",
            Code::InvalidContentTypeHeader => "INVALID_CONTENT_TYPE_HEADER",
            Code::InvalidAuthorizationHeader => "INVALID_AUTHORIZATION_HEADER",
            Code::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Code::NotFound => "NOT_FOUND",
            Code::InvalidEndpoint => "INVALID_ENDPOINT",
            Code::InvalidFilterFieldsParam => "INVALID_FILTER_FIELDS_PARAM",
            Code::InvalidOrdering => "INVALID_ORDERING",
            Code::InvalidParams => "INVALID_PARAMS",
            Code::InvalidRequest => "INVALID_REQUEST",
            Code::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Code::Exception => "EXCEPTION",
        }
    }

    /// The HTTP status of the code when nothing more specific applies.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidField
            | Code::InvalidFormat
            | Code::InvalidType
            | Code::InvalidFilterFieldsParam
            | Code::InvalidOrdering
            | Code::InvalidParams
            | Code::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
            Code::InvalidJsonBody | Code::InvalidContentTypeHeader => StatusCode::BAD_REQUEST,
            Code::InvalidAuthorizationHeader => StatusCode::UNAUTHORIZED,
            Code::InsufficientPermissions => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidEndpoint => StatusCode::METHOD_NOT_ALLOWED,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Exception => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The `details.code` values of `INVALID_FIELD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Required,
    Uniqueness,
    Format,
    Inclusion,
    Length,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Required => "VALIDATION_REQUIRED",
            Validation::Uniqueness => "VALIDATION_UNIQUENESS",
            Validation::Format => "VALIDATION_FORMAT",
            Validation::Inclusion => "VALIDATION_INCLUSION",
            Validation::Length => "VALIDATION_LENGTH",
        }
    }
}

/// One invalid webhook attribute: `field` is the attribute (`events`), `path` where inside it
/// (`events[0].filters[1].entity_ids`) when that says more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub path: Option<String>,
    pub code: Validation,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &'static str, code: Validation, message: impl Into<String>) -> Self {
        FieldProblem {
            field,
            path: None,
            code,
            message: message.into(),
        }
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

/// One `api_error` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    code: Code,
    details: Map<String, Value>,
}

/// An error answer of the DatoCMS API: a status and one or more `api_error`s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} ({})", .status, .entries.first().map_or("", |e| e.code.as_str()))]
pub struct DatoError {
    status: StatusCode,
    entries: Vec<Entry>,
    /// Sent as `transient: true`: the same request may succeed later.
    transient: bool,
}

impl DatoError {
    /// One error with `details: {"message": message}` and the code's usual status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        let mut details = Map::new();
        details.insert("message".into(), Value::String(message.into()));
        DatoError::with_details(code, details)
    }

    /// One error with these details and the code's usual status.
    pub fn with_details(code: Code, details: Map<String, Value>) -> Self {
        DatoError {
            status: code.status(),
            entries: vec![Entry { code, details }],
            transient: false,
        }
    }

    /// `INVALID_FORMAT` listing every shape problem of the document.
    pub fn format(messages: Vec<String>) -> Self {
        let mut details = Map::new();
        details.insert("messages".into(), Value::from(messages));
        DatoError::with_details(Code::InvalidFormat, details)
    }

    /// One `INVALID_FIELD` per problem (`422`).
    pub fn fields(problems: Vec<FieldProblem>) -> Self {
        let entries = problems
            .into_iter()
            .map(|p| {
                let mut details = Map::new();
                details.insert("field".into(), Value::from(p.field));
                details.insert("code".into(), Value::from(p.code.as_str()));
                details.insert("record_type".into(), Value::from("Webhook"));
                if let Some(path) = p.path {
                    details.insert("path".into(), Value::from(path));
                }
                details.insert("message".into(), Value::from(p.message));
                Entry {
                    code: Code::InvalidField,
                    details,
                }
            })
            .collect();
        DatoError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            entries,
            transient: false,
        }
    }

    pub fn not_found(resource: &str, id: &str) -> Self {
        let mut details = Map::new();
        details.insert("resource".into(), Value::from(resource));
        details.insert("id".into(), Value::from(id));
        details.insert(
            "message".into(),
            Value::from(format!("{resource} `{id}` not found")),
        );
        DatoError::with_details(Code::NotFound, details)
    }

    /// Storage trouble: `503`, `transient: true` (retrying later can help).
    pub fn unavailable(message: impl Into<String>) -> Self {
        DatoError::new(Code::ServiceUnavailable, message).transient()
    }

    /// Marks the error `transient: true`.
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Overrides the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn http_status(&self) -> StatusCode {
        self.status
    }

    /// The codes of every entry, in order (tests and logs).
    pub fn codes(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.code.as_str()).collect()
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let data: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut attributes = Map::new();
                attributes.insert("code".into(), Value::from(e.code.as_str()));
                attributes.insert(
                    "doc_url".into(),
                    Value::from(format!(
                        "https://www.datocms.com/docs/content-management-api/errors#{}",
                        e.code.as_str()
                    )),
                );
                attributes.insert("details".into(), Value::Object(e.details.clone()));
                if self.transient {
                    attributes.insert("transient".into(), Value::Bool(true));
                }
                json!({"id": error_id(), "type": "api_error", "attributes": attributes})
            })
            .collect();
        json!({ "data": data })
    }

    pub fn into_response(self) -> Response {
        respond(self.status, &self.body())
    }
}

/// A short random id per error entry, like DatoCMS's (`ce9dcb`): it only has to tell entries
/// apart in logs, so six hex digits are plenty.
fn error_id() -> String {
    format!("{:06x}", fastrand::u32(..0x0100_0000))
}

/// A JSON answer. Always `content-type: application/json`: DatoCMS's JS client retries (GET) or
/// throws (any other method) on a response whose content type lacks it.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = http::Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An answer without a body that still says `application/json` (see [`respond`]).
pub fn respond_empty(status: StatusCode) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_mapping() {
        let cases = [
            (Code::InvalidField, 422),
            (Code::InvalidFormat, 422),
            (Code::InvalidType, 422),
            (Code::InvalidJsonBody, 400),
            (Code::InvalidContentTypeHeader, 400),
            (Code::InvalidAuthorizationHeader, 401),
            (Code::InsufficientPermissions, 403),
            (Code::NotFound, 404),
            (Code::InvalidEndpoint, 405),
            (Code::InvalidFilterFieldsParam, 422),
            (Code::InvalidOrdering, 422),
            (Code::InvalidParams, 422),
            (Code::ServiceUnavailable, 503),
            (Code::Exception, 500),
        ];
        for (code, status) in cases {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn field_errors_have_the_api_error_shape() {
        let e = DatoError::fields(vec![
            FieldProblem::new("name", Validation::Uniqueness, "is taken"),
            FieldProblem::new("events", Validation::Inclusion, "bad").at("events[0]"),
        ]);
        assert_eq!(e.http_status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = e.body();
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["type"], "api_error");
        assert_eq!(data[0]["id"].as_str().unwrap().len(), 6);
        let a = &data[0]["attributes"];
        assert_eq!(a["code"], "INVALID_FIELD");
        assert_eq!(
            a["doc_url"],
            "https://www.datocms.com/docs/content-management-api/errors#INVALID_FIELD"
        );
        assert_eq!(a["details"]["field"], "name");
        assert_eq!(a["details"]["code"], "VALIDATION_UNIQUENESS");
        assert!(a.get("transient").is_none());
        assert_eq!(data[1]["attributes"]["details"]["path"], "events[0]");
    }

    #[test]
    fn transient_only_where_retrying_helps() {
        let body = DatoError::unavailable("disk").body();
        assert_eq!(body["data"][0]["attributes"]["transient"], true);
        let body = DatoError::new(Code::InvalidRequest, "busy")
            .status(StatusCode::CONFLICT)
            .transient()
            .body();
        assert_eq!(body["data"][0]["attributes"]["transient"], true);
        let body = DatoError::new(Code::NotFound, "x").body();
        assert!(body["data"][0]["attributes"].get("transient").is_none());
    }

    #[test]
    fn answers_are_always_json() {
        let r = DatoError::new(Code::NotFound, "x").into_response();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = respond_empty(StatusCode::NO_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
