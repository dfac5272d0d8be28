//! The gateway's Prometheus metrics: requests and latency by service, version and code.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Namespace of the Service.
    pub namespace: String,
    /// The Service.
    pub service: String,
    /// `pod-template-hash` (or revision) of the pod that answered.
    pub version: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Namespace of the Service.
    pub namespace: String,
    /// The Service.
    pub service: String,
    /// Version of the pod that answered.
    pub version: String,
}

/// The metric families.
pub struct GatewayMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// Registers the families.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sim_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "requests",
            "Requests answered, by service, version and status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by service and version",
            latency.clone(),
        );
        GatewayMetrics {
            registry: Mutex::new(registry),
            requests,
            latency,
        }
    }

    /// Records one request.
    pub fn observe(
        &self,
        namespace: &str,
        service: &str,
        version: &str,
        code: u16,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                version: version.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                version: version.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition text.
    pub fn render(&self) -> Response {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    }
}
