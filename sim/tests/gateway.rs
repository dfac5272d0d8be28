//! The traffic gateway routes as ingress-nginx and a Gateway API implementation would.

mod common;

use serde_json::{Value, json};
use sluice_sim::api;
use sluice_sim::store::ResKey;

use common::{get, sim, until};

fn create(sim: &sluice_sim::Sim, group: &str, plural: &str, object: Value) {
    let ty = sim
        .store()
        .registry()
        .find_plural(group, plural)
        .cloned()
        .expect("type");
    api::create(sim.store(), &ty, "default", object).expect("create");
}

/// Two Deployments (v1 stable, v2 canary) with a Service each, like a canary release.
async fn two_versions(sim: &sluice_sim::Sim) {
    for (name, version) in [("demo", "v1"), ("demo-canary", "v2")] {
        create(
            sim,
            "apps",
            "deployments",
            json!({
                "metadata": {"name": name},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "c", "image": format!("barnett/canarydemo:{version}")}]}}}
            }),
        );
        create(
            sim,
            "",
            "services",
            json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
        );
    }
    let store = sim.store().clone();
    until(sim, "four ready pods", || {
        let store = store.clone();
        async move {
            store
                .list(&ResKey::new("", "pods"), Some("default"))
                .items
                .iter()
                .filter(|p| p.pointer("/status/conditions/3/status") == Some(&json!("True")))
                .count()
                == 4
        }
    })
    .await;
}

fn ingress(name: &str, service: &str, annotations: Value) -> Value {
    json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "demo.com", "http": {"paths": [
            {"path": "/version", "pathType": "ImplementationSpecific", "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}
    })
}

#[tokio::test]
async fn header_and_cookie_routes_are_exact() {
    let sim = sim().await;
    two_versions(&sim).await;
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        ingress("demo", "demo", json!({})),
    );
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        ingress(
            "demo-canary",
            "demo-canary",
            json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
                "nginx.ingress.kubernetes.io/canary-by-header-value": "yes",
                "nginx.ingress.kubernetes.io/canary-by-cookie": "beta",
            }),
        ),
    );
    let url = format!("{}/version", sim.gateway_url());
    for _ in 0..20 {
        assert_eq!(
            get(&url, &[("host", "demo.com")]).await,
            (200, "Demo: V1\n".into())
        );
        assert_eq!(
            get(&url, &[("host", "demo.com"), ("x-canary", "yes")]).await,
            (200, "Demo: V2\n".into())
        );
        assert_eq!(
            get(&url, &[("host", "demo.com"), ("x-canary", "no")]).await,
            (200, "Demo: V1\n".into())
        );
        assert_eq!(
            get(&url, &[("host", "demo.com"), ("cookie", "beta=always")]).await,
            (200, "Demo: V2\n".into())
        );
        assert_eq!(
            get(&url, &[("host", "demo.com"), ("cookie", "beta=never")]).await,
            (200, "Demo: V1\n".into())
        );
    }
    assert_eq!(get(&url, &[("host", "other.com")]).await.0, 404);
    assert_eq!(
        get(
            &format!("{}/elsewhere", sim.gateway_url()),
            &[("host", "demo.com")]
        )
        .await
        .0,
        404
    );
}

/// Whether `hits` of `n` is inside the 99.9% interval of a binomial(n, p).
fn within_binomial(hits: u32, n: u32, p: f64) -> bool {
    let mean = f64::from(n) * p;
    let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
    (f64::from(hits) - mean).abs() <= 3.29 * sd
}

#[tokio::test]
async fn weights_split_traffic_as_asked() {
    let sim = sim().await;
    two_versions(&sim).await;
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        ingress("demo", "demo", json!({})),
    );
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        ingress(
            "demo-canary",
            "demo-canary",
            json!({
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "20",
            }),
        ),
    );
    let url = format!("{}/version", sim.gateway_url());
    let n = 1000;
    let mut v2 = 0;
    for _ in 0..n {
        if get(&url, &[("host", "demo.com")]).await.1 == "Demo: V2\n" {
            v2 += 1;
        }
    }
    assert!(
        within_binomial(v2, n, 0.2),
        "{v2} of {n} went to the canary at weight 20"
    );
}

#[tokio::test]
async fn httproute_backend_weights_and_header_matches() {
    let sim = sim().await;
    two_versions(&sim).await;
    create(
        &sim,
        "gateway.networking.k8s.io",
        "httproutes",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "demo"},
            "spec": {"hostnames": ["demo.com"], "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [{"name": "demo", "port": 80, "weight": 60}, {"name": "demo-canary", "port": 80, "weight": 40}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"type": "Exact", "name": "x-canary", "value": "yes"}]}],
                 "backendRefs": [{"name": "demo-canary", "port": 80}]}
            ]}
        }),
    );
    let url = format!("{}/version", sim.gateway_url());
    for _ in 0..20 {
        assert_eq!(
            get(&url, &[("host", "demo.com"), ("x-canary", "yes")])
                .await
                .1,
            "Demo: V2\n"
        );
    }
    let n = 1000;
    let mut v2 = 0;
    for _ in 0..n {
        if get(&url, &[("host", "demo.com")]).await.1 == "Demo: V2\n" {
            v2 += 1;
        }
    }
    assert!(
        within_binomial(v2, n, 0.4),
        "{v2} of {n} went to the canary at weight 40"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_version_and_code() {
    let sim = sim().await;
    two_versions(&sim).await;
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        ingress("demo", "demo", json!({})),
    );
    let url = format!("{}/version", sim.gateway_url());
    for _ in 0..7 {
        get(&url, &[("host", "demo.com")]).await;
    }
    let (code, text) = get(&format!("{}/metrics", sim.gateway_url()), &[]).await;
    assert_eq!(code, 200);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sim_gateway_requests_total{")
                && l.contains("service=\"demo\"")
                && l.contains("code=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter in\n{text}"));
    assert!(line.ends_with(" 7"), "{line}");
    assert!(
        text.contains("sim_gateway_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn error_rate_and_no_ready_pods() {
    let sim = sim().await;
    create(
        &sim,
        "apps",
        "deployments",
        json!({
            "metadata": {"name": "flaky"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "flaky"}},
                     "template": {"metadata": {"labels": {"app": "flaky"}},
                                  "spec": {"containers": [{"name": "c", "image": "flaky:v1", "env": [{"name": "SIM_ERROR_RATE", "value": "1.0"}]}]}}}
        }),
    );
    create(
        &sim,
        "",
        "services",
        json!({"metadata": {"name": "flaky"}, "spec": {"selector": {"app": "flaky"}, "ports": [{"port": 80}]}}),
    );
    create(
        &sim,
        "networking.k8s.io",
        "ingresses",
        json!({
            "metadata": {"name": "flaky"},
            "spec": {"rules": [{"host": "flaky.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "flaky", "port": {"number": 80}}}}]}}]}
        }),
    );
    let url = format!("{}/", sim.gateway_url());
    let first = get(&url, &[("host", "flaky.com")]).await.0;
    assert!(first == 503 || first == 500, "{first}");
    let store = sim.store().clone();
    until(&sim, "the pod is ready", || {
        let store = store.clone();
        async move {
            store
                .list(&ResKey::new("", "pods"), Some("default"))
                .items
                .iter()
                .any(|p| p.pointer("/status/conditions/3/status") == Some(&json!("True")))
        }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(get(&url, &[("host", "flaky.com")]).await.0, 500);
    }
}
