//! What the controller serves over HTTP: `/metrics`, `/healthz`, and `/readyz`,
//! which answers once the controller can serve (its CRDs are there) — leading or
//! standing by, so that a standby replica is Ready too.

use std::sync::Arc;

use super::metrics::ControllerMetrics;

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<ControllerMetrics>,
    ready: tokio::sync::watch::Receiver<bool>,
) {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = *ready.borrow();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}
