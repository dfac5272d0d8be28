//! End-to-end with a real Prometheus (Debian's `prometheus`) scraping the traffic
//! gateway while traffic flows: a metrics-gated strategy promotes a healthy v2 and
//! rolls back one that answers 30% errors, by itself.

mod support;

use std::time::Duration;

use base64::Engine as _;
use sluice::providers::ProviderConfig;
use support::cluster::Cluster;

/// A Prometheus server scraping the simulator's gateway every second, on a port it chose.
struct Prometheus {
    _daemon: sluice_testkit::Daemon,
    _dir: tempfile::TempDir,
}

async fn start_prometheus(gateway: std::net::SocketAddr) -> (Prometheus, ProviderConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: sim\n    static_configs: [{{targets: ['{gateway}']}}]\n"
        ),
    )
    .expect("config");
    let mut command = tokio::process::Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0");
    // It names the address it bound once it serves its API.
    let daemon = sluice_testkit::Daemon::start(
        command,
        "prometheus",
        r#"msg="Listening on" address=(127\.0\.0\.1:\d+)"#,
        "install Debian's prometheus (.ci/run does: apt-get install prometheus)",
    )
    .await;
    let provider: ProviderConfig = format!("prometheus=http://{}", daemon.addr)
        .parse()
        .expect("provider");
    (
        Prometheus {
            _daemon: daemon,
            _dir: dir,
        },
        provider,
    )
}

/// Requests through the gateway, about 100 a second, until dropped (at most two minutes).
struct Traffic(tokio::task::JoinHandle<()>);

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn traffic(gateway: String) -> Traffic {
    Traffic(tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while tokio::time::Instant::now() < deadline {
            tick.tick().await;
            let _ = sluice_testkit::http_get_host(&format!("{gateway}/"), "echo.example.com").await;
        }
    }))
}

fn deployment(image: &str, error_rate: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: echo
        image: "{image}"
        env: [{{name: SIM_ERROR_RATE, value: "{error_rate}"}}]
"#
    )
}

const SUCCESS: &str = r#"sum(rate(sim_gateway_requests_total{service=\"echo-canary\",code=\"200\"}[5s])) / sum(rate(sim_gateway_requests_total{service=\"echo-canary\"}[5s]))"#;

fn setup() -> String {
    let module = base64::engine::general_purpose::STANDARD.encode(sluice_test_guests::METRICS_GATE);
    let modules = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: metrics-gate}}
binaryData: {{module.wasm: {module}}}
---
apiVersion: sluice.dev/v1alpha1
kind: StrategyModule
metadata: {{name: metrics-gate}}
spec:
  source: {{configMap: {{name: metrics-gate, key: module.wasm}}}}
  capabilities: {{log: true, metrics: {{providers: [prometheus]}}}}
"#
    );
    let config = format!(
        r#"{{"successRate": "{SUCCESS}", "minSuccessRate": 0.9, "interval": 4, "failureLimit": 2}}"#
    );
    format!(
        "{modules}---\n{}",
        support::modules::rollout_yaml(
            "metrics-gate",
            Some(&config),
            "[{weight: 50}, {weight: 100}]"
        )
    )
}

async fn cluster_with_prometheus() -> (Cluster, Prometheus) {
    let pending = Cluster::prepare().await;
    let (prometheus, provider) = start_prometheus(pending.gateway_addr()).await;
    let c = pending
        .start(sluice::controller::ControllerConfig {
            providers: vec![provider],
            ..Default::default()
        })
        .await;
    (c, prometheus)
}

async fn v1_then(c: &Cluster, v2_error_rate: &str) -> Traffic {
    c.apply(&deployment("barnett/canarydemo:v1", "0")).await;
    c.apply(&setup()).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    let flow = traffic(c.gateway_url());
    c.apply(&deployment("barnett/canarydemo:v2", v2_error_rate))
        .await;
    flow
}

#[tokio::test]
async fn a_v2_answering_30_percent_errors_is_rolled_back_by_itself() {
    let (c, _prometheus) = cluster_with_prometheus().await;
    let _flow = v1_then(&c, "0.3").await;
    c.until_rollout("echo", "aborted by the strategy", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|x| x.type_ == "Progressing" && x.reason == "Aborted")
        })
    })
    .await;
    let r = c.rollout("echo").await;
    let status = r.status.clone().unwrap();
    assert_eq!(
        status.strategy.as_ref().map(|s| s.last_action.as_str()),
        Some("abort")
    );
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none(),
        "traffic back to stable"
    );
    c.until("canary pods gone", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 0
    })
    .await;
    assert_eq!(
        c.deployment("echo").await.spec.paused,
        Some(true),
        "v2 is held, not rolled out"
    );
    assert_eq!(c.share("echo.example.com", "/", 30, "Demo: V1").await, 30);
    the_abort_replays_with_the_recorded_answers(&r);
}

/// The decision log keeps each decision's metric answers: `explain --scenario`'s
/// replay of the module gives the same decisions, the abort included.
fn the_abort_replays_with_the_recorded_answers(r: &sluice::kruise::v1alpha1::Rollout) {
    let (replay, skipped) = sluice::scenario::replay::from_rollout(r).expect("a replay");
    assert_eq!(skipped, [], "every decision replays");
    assert_eq!(
        replay
            .replay
            .last()
            .and_then(|d| d.expect.action.as_deref()),
        Some("abort")
    );
    let answered: Vec<f64> = replay
        .replay
        .iter()
        .flat_map(|d| d.metrics.values().filter_map(|v| v.as_f64()))
        .collect();
    assert!(
        answered.iter().any(|rate| *rate < 0.9),
        "the failing success rate is recorded: {answered:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("metrics-gate.wasm");
    std::fs::write(&module, sluice_test_guests::METRICS_GATE).expect("write");
    let file = dir.path().join("replay.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&replay).expect("YAML")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("strategy")
        .arg("test")
        .arg(&module)
        .arg("--scenario")
        .arg(&file)
        .output()
        .expect("sluice strategy test");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    let n = replay.replay.len();
    assert!(
        report.contains(&format!("{n} decisions; {n} passed, 0 failed")),
        "{report}"
    );
}

#[tokio::test]
async fn a_healthy_v2_is_promoted_by_itself() {
    let (c, _prometheus) = cluster_with_prometheus().await;
    let _flow = v1_then(&c, "0").await;
    c.until_rollout("echo", "promoted", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been completed")
    })
    .await;
    c.until("all v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 4
    })
    .await;
}

/// A Prometheus-compatible HTTPS API answering `up` with 1 to requests that carry
/// the bearer token in `expected`, 401 to others; it records the tokens it saw.
async fn https_provider(
    expected: std::sync::Arc<std::sync::Mutex<String>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> support::sources::HttpsServer {
    sluice_testkit::https_server(support::sources::answer(move |req| {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned();
        seen.lock().expect("seen").push(token.clone());
        if token != *expected.lock().expect("expected") || req.uri().path() != "/api/v1/query" {
            return (401, bytes::Bytes::from_static(b"secret server detail"));
        }
        (
            200,
            bytes::Bytes::from_static(
                br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#,
            ),
        )
    }))
    .await
}

#[tokio::test]
async fn an_https_provider_uses_its_own_ca_and_a_token_file_read_again_when_it_changes() {
    use sluice::strategy::{MetricsError, MetricsSource};
    let expected = std::sync::Arc::new(std::sync::Mutex::new("first".to_owned()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = https_provider(expected.clone(), seen.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").expect("token");
    let with_ca = ProviderConfig {
        token_file: Some(token.clone()),
        ca_file: Some(server.ca_file.path().to_path_buf()),
        ..format!("secure={}", server.url).parse().expect("provider")
    };
    let without_ca = ProviderConfig {
        name: "untrusted".into(),
        ca_file: None,
        ..with_ca.clone()
    };
    let providers = std::sync::Arc::new(
        sluice::providers::Providers::new(vec![with_ca, without_ca]).expect("providers"),
    );
    let query = |name: &'static str| {
        let providers = providers.clone();
        async move {
            // A fresh reconcile each time: answers are cached per reconcile only.
            sluice::providers::ProviderMetrics::new(providers)
                .query(name, "up")
                .await
        }
    };
    assert_eq!(query("secure").await, Ok(1.0));
    // The Secret is updated in place: the next query sends the new token.
    std::fs::write(&token, "second-token-longer\n").expect("token");
    *expected.lock().expect("expected") = "second-token-longer".to_owned();
    assert_eq!(query("secure").await, Ok(1.0));
    assert_eq!(
        seen.lock().expect("seen").as_slice(),
        ["first", "second-token-longer"]
    );
    // The server's refusal is reported by status, without what it said.
    std::fs::write(&token, "stale-and-wrong\n").expect("token");
    match query("secure").await {
        Err(MetricsError::Failed(m)) => {
            assert!(m.contains("secure answered 401"), "{m}");
            assert!(!m.contains("secret server detail"), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Without its CA the same server is not trusted, and no token is sent.
    let before = seen.lock().expect("seen").len();
    match query("untrusted").await {
        Err(MetricsError::Failed(m)) => assert!(m.contains("untrusted"), "{m}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert_eq!(
        seen.lock().expect("seen").len(),
        before,
        "no request reached the server"
    );
}
