//! End-to-end with a real Prometheus (Debian's `prometheus`) scraping the simulator's
//! gateway while traffic flows: a metrics-gated strategy promotes a healthy v2 and
//! rolls back one that answers 30% errors, by itself.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use sluice::providers::ProviderConfig;
use support::cluster::Cluster;

/// A Prometheus server scraping the simulator's gateway every second.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn start_prometheus(gateway: std::net::SocketAddr) -> (Prometheus, ProviderConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: sim\n    static_configs: [{{targets: ['{gateway}']}}]\n"
        ),
    )
    .expect("config");
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "Debian's prometheus is installed (.ci/run installs it: apt-get install prometheus)",
        );
    let provider: ProviderConfig = format!("prometheus=http://127.0.0.1:{port}")
        .parse()
        .expect("provider");
    (Prometheus { child, _dir: dir }, provider)
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
            let _ =
                support::cluster::http_get_host(&format!("{gateway}/"), "echo.example.com").await;
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
    let mut prometheus = None;
    let c = Cluster::start_with(|sim| {
        let (p, provider) = start_prometheus(sim.gateway_addr());
        prometheus = Some(p);
        sluice::controller::ControllerConfig {
            providers: vec![provider],
            ..Default::default()
        }
    })
    .await;
    (c, prometheus.expect("prometheus"))
}

async fn v1_then(c: &Cluster, v2_error_rate: &str) -> Traffic {
    c.apply(&deployment("barnett/canarydemo:v1", "0")).await;
    c.apply(&setup()).await;
    c.until_healthy("echo").await;
    c.until("held", || async {
        c.deployment("echo").await.spec.paused == Some(true)
    })
    .await;
    let flow = traffic(c.sim.gateway_url());
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
    let status = r.status.unwrap();
    assert_eq!(
        status.strategy.as_ref().map(|s| s.last_action.as_str()),
        Some("abort")
    );
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .is_none(),
        "traffic back to stable"
    );
    c.until("canary pods gone", || async {
        c.ready_pods_with("barnett/canarydemo:v2") == 0
    })
    .await;
    assert_eq!(
        c.deployment("echo").await.spec.paused,
        Some(true),
        "v2 is held, not rolled out"
    );
    assert_eq!(c.share("echo.example.com", "/", 30, "Demo: V1").await, 30);
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
        c.ready_pods_with("barnett/canarydemo:v2") == 4
    })
    .await;
}
