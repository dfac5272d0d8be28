//! API errors as Kubernetes `Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered as a `Status` with its HTTP code and reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// Kubernetes' reason, e.g. `NotFound`.
    pub reason: String,
    /// The message.
    pub message: String,
    /// `details`, if any.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String, details: Option<Value>) -> Self {
        ApiError {
            code,
            reason: reason.to_owned(),
            message,
            details,
        }
    }

    fn qualified(plural: &str, group: &str) -> String {
        if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        }
    }

    /// 404 for an object.
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        let kind = Self::qualified(plural, group);
        ApiError::new(
            404,
            "NotFound",
            format!("{kind} \"{name}\" not found"),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }

    /// 404 for a resource type.
    pub fn not_found_resource(group: &str, plural: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({})",
                Self::qualified(plural, group)
            ),
            None,
        )
    }

    /// 404 for a path that is no resource.
    pub fn no_route(path: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            None,
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        let kind = Self::qualified(plural, group);
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{kind} \"{name}\" already exists"),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(plural: &str, group: &str, name: &str) -> Self {
        let kind = Self::qualified(plural, group);
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    }

    /// 410 Gone for a watch from a resourceVersion no longer kept.
    pub fn gone(rv: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {rv}"),
            None,
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message.into(), None)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message.into(), None)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
            None,
        )
    }

    /// 413, as the API server answers a request body over its limit.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        )
    }

    /// 504, standing for an answer lost after the request was carried out (a fault
    /// a test armed).
    pub fn lost_answer() -> Self {
        ApiError::new(
            504,
            "Timeout",
            "the answer to this request was lost (a fault injected by the simulator); the request was carried out".to_owned(),
            None,
        )
    }

    /// 500: something the server relies on failed.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message.into(), None)
    }

    /// A refusal with the code and reason an admission webhook gave.
    pub fn refused(code: u16, reason: &str, message: String) -> Self {
        ApiError::new(code, reason, message, None)
    }

    /// 422 Invalid, with a cause per field.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(&str, String)>) -> Self {
        let summary = causes
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
            Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>(),
            })),
        )
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}
