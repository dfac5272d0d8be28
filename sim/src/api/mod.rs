//! The Kubernetes REST API over HTTP: discovery, CRUD, watch, patch, subresources.

pub mod admission;
pub mod audit;
mod discovery;
pub mod faults;
mod handlers;
mod patch;
mod path;
pub mod selector;
mod table;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::store::Store;

pub use handlers::create;
pub use patch::{PatchKind, apply_patch};

/// The largest request body the API server reads (kube-apiserver's default).
pub const MAX_REQUEST_BYTES: usize = 3 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The objects.
    pub store: Arc<Store>,
    /// Who asked for what.
    pub audit: Arc<audit::AuditLog>,
    /// Faults tests armed.
    pub faults: Arc<faults::Faults>,
}

/// The router of the API server.
pub fn router(
    store: Arc<Store>,
    audit: Arc<audit::AuditLog>,
    faults: Arc<faults::Faults>,
) -> Router {
    let state = ApiState {
        store,
        audit,
        faults,
    };
    Router::new()
        .route("/version", get(discovery::version))
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .route("/livez", get(ok))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::groups))
        .route("/openapi/v3", get(discovery::openapi_root))
        .route("/openapi/v3/{*rest}", get(discovery::openapi_group_version))
        .fallback(dispatch)
        // The API server's own limit applies instead, answered as a Status.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok"
}

/// Routes every resource path by hand: Kubernetes paths are ambiguous for a static
/// router (`/api/v1/namespaces/x` is a namespace, `/api/v1/namespaces/x/pods` a list).
async fn dispatch(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_REQUEST_BYTES {
        return ApiError::too_large(MAX_REQUEST_BYTES).into_response();
    }
    let request = Request {
        method,
        path: uri.path().to_owned(),
        query,
        headers,
        body,
    };
    let create_of = (request.method == Method::POST)
        .then(|| request.path.rsplit('/').next().unwrap_or("").to_owned());
    let response = match handlers::handle(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if let Some(resource) = create_of
        && response.status().is_success()
        && state.faults.create_answer_lost(&resource)
    {
        return ApiError::lost_answer().into_response();
    }
    response
}

/// A request as the handlers see it.
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Request {
    /// A header as a string, or empty.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A query flag such as `watch=true`, `watch=1` or `watch=True` (Python's
    /// client): what Go's `strconv.ParseBool` reads as true.
    pub fn flag(&self, name: &str) -> bool {
        matches!(
            self.query.get(name).map(String::as_str),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    /// The `labelSelector` and `fieldSelector` of a list or watch.
    pub fn selectors(
        &self,
        ty: &crate::resources::ResourceType,
    ) -> Result<(selector::LabelSelector, selector::FieldSelector), ApiError> {
        let get = |k: &str| self.query.get(k).map_or("", String::as_str);
        Ok((
            selector::LabelSelector::parse(get("labelSelector"))?,
            selector::FieldSelector::parse(get("fieldSelector"), &ty.group, &ty.kind)?,
        ))
    }

    /// Whether the client asked for a `Table` (as `kubectl get` does).
    pub fn wants_table(&self) -> bool {
        self.header("accept").contains("as=Table")
    }
}

/// A JSON response.
pub fn json_response(code: axum::http::StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Parses a request body: JSON or YAML.
pub fn parse_body(request: &Request) -> Result<serde_json::Value, ApiError> {
    let content_type = request.header("content-type");
    if content_type.contains("protobuf") {
        return crate::protobuf::decode(&request.body);
    }
    if request.body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("yaml") {
        serde_yaml_ng::from_slice(&request.body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
    }
}
