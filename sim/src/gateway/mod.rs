//! The traffic gateway: routes HTTP requests by Host and path through Ingress objects
//! (with ingress-nginx's canary annotations) and HTTPRoutes, to the ready pods behind
//! a Service, whose simulated containers answer per version.

mod dice;
mod metrics;
mod route;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::selector::LabelSelector;
use crate::object::Meta;
use crate::store::{ResKey, Store};
use crate::workloads::pods;

pub use dice::Dice;
pub use metrics::GatewayMetrics;
pub use route::{Backend, resolve};

/// What the gateway's handler reaches.
#[derive(Clone)]
pub struct GatewayState {
    store: Arc<Store>,
    metrics: Arc<GatewayMetrics>,
    dice: Arc<Dice>,
}

/// The gateway's router, its random choices made by `dice`.
pub fn router(store: Arc<Store>, dice: Dice) -> Router {
    let state = GatewayState {
        store,
        metrics: Arc::new(GatewayMetrics::new()),
        dice: Arc::new(dice),
    };
    Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<GatewayState>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let uri: Uri = request.uri().clone();
    let headers: HeaderMap = request.headers().clone();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            })
        })
        .unwrap_or("")
        .to_owned();
    let Some(backend) = resolve(&state.store, &host, uri.path(), &headers, &state.dice) else {
        if uri.path() == "/metrics" {
            return state.metrics.render();
        }
        return (StatusCode::NOT_FOUND, "default backend - 404\n").into_response();
    };
    let endpoints = ready_pods(&state.store, &backend);
    if endpoints.is_empty() {
        state.metrics.observe(
            &backend.namespace,
            &backend.service,
            "none",
            503,
            started.elapsed(),
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable\n",
        )
            .into_response();
    }
    let pod = &endpoints[state.dice.index(endpoints.len())];
    let version = version_of(pod);
    let latency = pods::env(pod, "SIM_LATENCY_MS")
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let error_rate = pods::env(pod, "SIM_ERROR_RATE")
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap_or(0.0);
    let (code, body) = if state.dice.unit() < error_rate {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error\n".to_owned(),
        )
    } else {
        (StatusCode::OK, answer(pod))
    };
    state.metrics.observe(
        &backend.namespace,
        &backend.service,
        &version,
        code.as_u16(),
        started.elapsed(),
    );
    (
        code,
        [
            ("x-sim-pod", Meta::of(pod).name().to_owned()),
            ("x-sim-version", version),
        ],
        body,
    )
        .into_response()
}

/// Ready pods selected by the backend Service, in its namespace.
fn ready_pods(store: &Store, backend: &Backend) -> Vec<Arc<Value>> {
    let Some(service) = store.get(
        &ResKey::new("", "services"),
        &backend.namespace,
        &backend.service,
    ) else {
        return Vec::new();
    };
    let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object) else {
        return Vec::new();
    };
    let selector = LabelSelector::from_map(selector);
    store
        .list(&ResKey::new("", "pods"), Some(&backend.namespace))
        .items
        .into_iter()
        .filter(|p| {
            selector.matches(Meta::of(p).labels()) && pods::is_ready(p) && !pods::is_terminating(p)
        })
        .collect()
}

/// The version label metrics use: the pod's template hash or revision.
fn version_of(pod: &Value) -> String {
    let meta = Meta::of(pod);
    meta.label("pod-template-hash")
        .or_else(|| meta.label("controller-revision-hash"))
        .unwrap_or("unknown")
        .to_owned()
}

/// What a simulated container answers: the demo image says its version.
pub fn answer(pod: &Value) -> String {
    let image = pods::image(pod);
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    if repo.ends_with("canarydemo") {
        return format!("Demo: {}\n", tag.to_uppercase());
    }
    format!("{image} {}\n", Meta::of(pod).name())
}
