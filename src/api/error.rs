//! The native API's error body, one shape for every route (ingest included):
//!
//! ```json
//! {"error": "validation_failed", "message": "2 fields are invalid",
//!  "fields": [{"field": "url", "message": "must be an absolute http or https URL"}]}
//! ```
//!
//! `error` is a stable machine code, `message` a sentence for a person; `fields` (request body
//! validation) and `items` (batch ingest: index and reason per bad event) appear when they apply.
//! The CMS dialects have their own error shapes in their own modules.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

pub type Response = http::Response<Full<Bytes>>;

/// One invalid field of a request body. `field` is a path such as `filters[0].types[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One bad item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    pub index: usize,
    pub reason: String,
}

/// An error answer of the native API.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemError>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            message: message.into(),
            fields: Vec::new(),
            items: Vec::new(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route accepts {allowed}"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// `422` listing every invalid field.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = match fields.len() {
            1 => format!("{}: {}", fields[0].field, fields[0].message),
            n => format!("{n} fields are invalid"),
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: "validation_failed",
            message,
            fields,
            items: Vec::new(),
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status;
        json_response(status, &self)
    }
}

/// A JSON answer.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = http::Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An answer with no body (`204`).
pub fn empty_response(status: StatusCode) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
