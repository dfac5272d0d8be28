//! The traffic gateway: routes HTTP requests by Host and path through Ingress objects
//! (with ingress-nginx's canary annotations) and HTTPRoutes, to the ready endpoints of
//! a Service, whose simulated containers answer per version.
//!
//! It reads the cluster through [`Objects`]: the simulator's own store, or a
//! [`Mirror`] of a real API server that `sluice gateway` keeps from watches. On a real
//! cluster the endpoints are the Service's EndpointSlices, filled by Kubernetes'
//! EndpointSlice controller; the simulator has no such controller, and the ready pods
//! its selector matches stand for them.

mod dice;
mod metrics;
mod mirror;
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
pub use mirror::Mirror;
pub use route::{Backend, resolve};

/// The objects the gateway routes by, read as Kubernetes' JSON.
pub trait Objects: Send + Sync {
    /// One object (`ns` empty for a cluster-scoped kind).
    fn get(&self, res: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>>;
    /// The objects of a kind, in one namespace or all.
    fn list(&self, res: &ResKey, ns: Option<&str>) -> Vec<Arc<Value>>;
}

impl Objects for Store {
    fn get(&self, res: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        Store::get(self, res, ns, name)
    }

    fn list(&self, res: &ResKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        Store::list(self, res, ns).items
    }
}

/// Whether the gateway's view has caught up with the cluster: answered at
/// [`SYNCED_PATH`], so that a client measuring traffic knows every change it made
/// before is what the gateway routes by.
pub trait Synced: Send + Sync {
    /// Completes when the view holds every object as the API server does now, or
    /// says why it could not.
    fn synced(&self) -> futures::future::BoxFuture<'_, Result<(), String>>;
}

/// The gateway's own path: `GET` answers 200 once its view of the cluster has
/// caught up with the API server (at once on the simulator, whose store it reads).
pub const SYNCED_PATH: &str = "/.well-known/sluice-gateway/synced";

/// What the gateway's handler reaches.
#[derive(Clone)]
pub struct GatewayState {
    objects: Arc<dyn Objects>,
    synced: Option<Arc<dyn Synced>>,
    metrics: Arc<GatewayMetrics>,
    dice: Arc<Dice>,
}

/// The gateway's router over `objects`, its random choices made by `dice`.
pub fn router(objects: Arc<dyn Objects>, dice: Dice) -> Router {
    router_with(objects, None, dice)
}

/// Like [`router`], for a view that can lag behind the cluster: `synced` says
/// when it has caught up.
pub fn router_with(
    objects: Arc<dyn Objects>,
    synced: Option<Arc<dyn Synced>>,
    dice: Dice,
) -> Router {
    let state = GatewayState {
        objects,
        synced,
        metrics: Arc::new(GatewayMetrics::new()),
        dice: Arc::new(dice),
    };
    Router::new().fallback(handle).with_state(state)
}

async fn synced(state: &GatewayState) -> Response {
    match &state.synced {
        None => (StatusCode::OK, "synced\n").into_response(),
        Some(s) => match s.synced().await {
            Ok(()) => (StatusCode::OK, "synced\n").into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        },
    }
}

async fn handle(State(state): State<GatewayState>, request: Request<Body>) -> Response {
    // The gateway's own, before any route could claim it.
    if request.uri().path() == SYNCED_PATH {
        return synced(&state).await;
    }
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
    let Some(backend) = resolve(
        state.objects.as_ref(),
        &host,
        uri.path(),
        &headers,
        &state.dice,
    ) else {
        if uri.path() == "/metrics" {
            return state.metrics.render();
        }

        return (StatusCode::NOT_FOUND, "default backend - 404\n").into_response();
    };
    let endpoints = ready_endpoints(state.objects.as_ref(), &backend);
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

/// The pods behind the backend Service's ready endpoints: those its
/// EndpointSlices list as ready (what kube-proxy and ingress-nginx send traffic
/// to), or, where no EndpointSlice names the Service (the simulator makes none),
/// the ready pods its selector matches.
fn ready_endpoints(objects: &dyn Objects, backend: &Backend) -> Vec<Arc<Value>> {
    if let Some(names) = slice_endpoints(objects, &backend.namespace, &backend.service) {
        let pod_kind = ResKey::new("", "pods");
        let mut ready: Vec<Arc<Value>> = names
            .iter()
            .filter_map(|name| objects.get(&pod_kind, &backend.namespace, name))
            // A slice written before its pod went is not answered from.
            .filter(|p| pods::is_ready(p) && !pods::is_terminating(p))
            .collect();
        // One pod per endpoint, in a stable order: a seeded run picks the same.
        ready.sort_by(|a, b| Meta::of(a).name().cmp(Meta::of(b).name()));
        ready.dedup_by(|a, b| Meta::of(a).name() == Meta::of(b).name());
        return ready;
    }
    let Some(service) = objects.get(
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
    objects
        .list(&ResKey::new("", "pods"), Some(&backend.namespace))
        .into_iter()
        .filter(|p| {
            selector.matches(Meta::of(p).labels()) && pods::is_ready(p) && !pods::is_terminating(p)
        })
        .collect()
}

/// The pods the EndpointSlices of Service `ns/service` list as ready (a pod
/// endpoint whose `ready` is left out is ready; a terminating one never is), or
/// `None` where no EndpointSlice names the Service.
fn slice_endpoints(objects: &dyn Objects, ns: &str, service: &str) -> Option<Vec<String>> {
    let slices: Vec<Arc<Value>> = objects
        .list(&ResKey::new("discovery.k8s.io", "endpointslices"), Some(ns))
        .into_iter()
        .filter(|s| Meta::of(s).label(SERVICE_NAME_LABEL) == Some(service))
        .collect();
    if slices.is_empty() {
        return None;
    }
    Some(
        slices
            .iter()
            .flat_map(|s| {
                s.get("endpoints")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|e| {
                e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false)
                    && e.pointer("/conditions/terminating")
                        .and_then(Value::as_bool)
                        != Some(true)
                    && e.pointer("/targetRef/kind").and_then(Value::as_str) == Some("Pod")
            })
            .filter_map(|e| e.pointer("/targetRef/name")?.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The label an EndpointSlice names its Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Services of `objects` whose EndpointSlices do not list as ready exactly
/// the ready, running pods their selector matches (the EndpointSlice controller
/// has not caught up with a pod's change yet), as `namespace/name`.
pub fn unsettled_services(objects: &dyn Objects) -> Vec<String> {
    let mut out = Vec::new();
    for service in objects.list(&ResKey::new("", "services"), None) {
        let meta = Meta::of(&service);
        let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object) else {
            continue;
        };
        let selector = LabelSelector::from_map(selector);
        let ns = meta.namespace();
        let mut want: Vec<String> = objects
            .list(&ResKey::new("", "pods"), Some(ns))
            .into_iter()
            .filter(|p| {
                selector.matches(Meta::of(p).labels())
                    && pods::is_ready(p)
                    && !pods::is_terminating(p)
                    && p.pointer("/status/podIP").is_some()
            })
            .map(|p| Meta::of(&p).name().to_owned())
            .collect();
        let mut have = slice_endpoints(objects, ns, meta.name()).unwrap_or_default();
        want.sort();
        have.sort();
        have.dedup();
        if want != have {
            out.push(format!("{ns}/{}", meta.name()));
        }
    }
    out
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
