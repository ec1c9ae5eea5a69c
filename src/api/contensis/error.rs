//! The Contensis Error body (spec §2.7), for every answer on the Contensis routes:
//!
//! ```json
//! {"logId": "63cb1df0-b82a-459e-accc-635e187f3b8b", "message": "Subscription not found",
//!  "data": {"projectId": "movies", "subscriptionId": "…"}, "type": "error"}
//! ```
//!
//! Validation errors have `type: "Validation"` and `data: [{field, message}]` listing every
//! invalid field. `logId` is a fresh GUID per error answer, logged with the error so an operator
//! can find it, which is what Contensis's own log search does with it.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;

use crate::api::error::{FieldError, Response};
use crate::journal::JournalError;

use super::json::{Json, object};

/// `content-type` of every Contensis answer with a body.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Why a Contensis request failed. Each variant has one status and one `type`.
#[derive(Debug, thiserror::Error)]
pub enum ContensisError {
    /// `401`: no or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// `403`: the token is limited to other projects.
    #[error("The token is not authorised for project `{project}`")]
    Forbidden { project: String },
    /// `400` `Validation`: every invalid field.
    #[error("{}", validation_message(.0))]
    Validation(Vec<FieldError>),
    /// The body could not be read (`400` not JSON, `413` too large, `415` not JSON typed).
    #[error("{message}")]
    Request { status: StatusCode, message: String },
    /// `404`: no such subscription in this project.
    #[error("Subscription not found")]
    NotFound { project: String, id: String },
    /// `409`: the PUT was based on another version than the stored one.
    #[error(
        "The subscription has changed: versionNo {} was sent but the current version is {}; GET it again and reapply the change",
        super::body::version_text(*.sent),
        super::body::version_text(*.current)
    )]
    Conflict {
        project: String,
        id: String,
        sent: u64,
        current: u64,
    },
    /// `405`.
    #[error("This route accepts {0}")]
    MethodNotAllowed(&'static str),
    /// `503`: the journal refused the write (disk full, I/O error, shutting down); nothing was
    /// changed and the request can be retried.
    #[error("The subscription could not be saved: {0}")]
    Unavailable(#[source] JournalError),
    /// `500`: anything else on Herald's side.
    #[error("An error occurred on the server: {0}")]
    Internal(String),
}

fn validation_message(fields: &[FieldError]) -> String {
    match fields {
        [one] if one.field.is_empty() => format!("There are validation errors: {}", one.message),
        [one] => format!(
            "There are validation errors: {}: {}",
            one.field, one.message
        ),
        many => format!(
            "There are validation errors: {} fields are invalid",
            many.len()
        ),
    }
}

impl ContensisError {
    pub fn status(&self) -> StatusCode {
        match self {
            ContensisError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ContensisError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ContensisError::Validation(_) => StatusCode::BAD_REQUEST,
            ContensisError::Request { status, .. } => *status,
            ContensisError::NotFound { .. } => StatusCode::NOT_FOUND,
            ContensisError::Conflict { .. } => StatusCode::CONFLICT,
            ContensisError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ContensisError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ContensisError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `type` member: `Validation` for field errors, `error` for everything else (the
    /// only value the Contensis docs show besides `Validation`).
    pub fn kind(&self) -> &'static str {
        match self {
            ContensisError::Validation(_) => "Validation",
            _ => "error",
        }
    }

    /// The `data` member: the invalid fields, or the identifiers the error is about.
    fn data(&self) -> Json {
        let s = |v: &str| Json::from(v);
        match self {
            ContensisError::Validation(fields) => Json::Array(
                fields
                    .iter()
                    .map(|f| object([("field", s(&f.field)), ("message", s(&f.message))]))
                    .collect(),
            ),
            ContensisError::Forbidden { project } => object([("projectId", s(project))]),
            ContensisError::NotFound { project, id } => {
                object([("projectId", s(project)), ("subscriptionId", s(id))])
            }
            ContensisError::Conflict {
                project,
                id,
                sent,
                current,
            } => object([
                ("projectId", s(project)),
                ("subscriptionId", s(id)),
                ("versionNo", Json::String(super::body::version_text(*sent))),
                (
                    "currentVersionNo",
                    Json::String(super::body::version_text(*current)),
                ),
            ]),
            _ => Json::Object(Vec::new()),
        }
    }

    /// The answer, logged with its `logId`.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let log_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::warn!(log_id = %log_id, status = status.as_u16(), error = %message, "contensis API error");
        } else {
            tracing::debug!(log_id = %log_id, status = status.as_u16(), error = %message, "contensis API request refused");
        }
        let body = object([
            ("logId", Json::String(log_id)),
            ("message", Json::String(message)),
            ("data", self.data()),
            ("type", Json::from(self.kind())),
        ]);
        let mut resp = json_response(status, &body);
        if let ContensisError::MethodNotAllowed(allowed) = self {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        resp
    }
}

/// A Contensis JSON answer.
pub fn json_response(status: StatusCode, body: &Json) -> Response {
    let mut resp = http::Response::new(Full::new(Bytes::from(body.to_vec())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(e: ContensisError) -> (u16, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], JSON_UTF8);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_has_the_contensis_shape() {
        let cases = [
            (
                ContensisError::Validation(vec![FieldError::new("url", "is required")]),
                400,
                "Validation",
            ),
            (ContensisError::Unauthorized("missing"), 401, "error"),
            (
                ContensisError::Forbidden {
                    project: "p".into(),
                },
                403,
                "error",
            ),
            (
                ContensisError::NotFound {
                    project: "p".into(),
                    id: "x".into(),
                },
                404,
                "error",
            ),
            (
                ContensisError::Conflict {
                    project: "p".into(),
                    id: "x".into(),
                    sent: 1,
                    current: 2,
                },
                409,
                "error",
            ),
            (ContensisError::MethodNotAllowed("GET, POST"), 405, "error"),
            (
                ContensisError::Unavailable(JournalError::Closed),
                503,
                "error",
            ),
            (ContensisError::Internal("boom".into()), 500, "error"),
        ];
        for (e, status, kind) in cases {
            let (got, body) = body_of(e).await;
            assert_eq!(got, status);
            assert_eq!(body["type"], kind, "{body}");
            let log_id = body["logId"].as_str().unwrap();
            assert!(uuid::Uuid::parse_str(log_id).is_ok(), "{log_id}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(body.get("data").is_some());
        }
        let (_, v) = body_of(ContensisError::Validation(vec![
            FieldError::new("url", "is required"),
            FieldError::new("topics", "is required"),
        ]))
        .await;
        assert_eq!(
            v["data"],
            serde_json::json!([{"field": "url", "message": "is required"}, {"field": "topics", "message": "is required"}])
        );
        assert_eq!(
            v["message"],
            "There are validation errors: 2 fields are invalid"
        );
        let (_, v) = body_of(ContensisError::Conflict {
            project: "p".into(),
            id: "x".into(),
            sent: 1,
            current: 2,
        })
        .await;
        assert_eq!(v["data"]["currentVersionNo"], "2.0");
        assert_eq!(v["data"]["versionNo"], "1.0");
    }
}
