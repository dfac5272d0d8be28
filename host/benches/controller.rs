//! Scale harness for the controller on the simulator.
//!
//! 1. Paused Rollouts: 100 releases paused in step 1, decided by a module that asks
//!    to be decided again every second (and changes its memo each time), then by the
//!    built-in `steps` waiting for approval. Decisions and API writes per second.
//! 2. Cost per reconcile with 1 and with 2,000 Rollouts in one namespace: one Rollout
//!    is made to reconcile again and again; the controller's own reconcile time and
//!    the API requests each reconcile makes.
//!
//! `cargo bench -p sluice --bench controller [-- paused|namespace [SIZE…]]`; figures in
//! docs/benchmarks.md.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sluice::local::{self, CONTROLLER_USER, LocalController};
use sluice_sim::Sim;
use sluice_sim::store::ResKey;

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // SLUICE_LOG=sluice=debug shows what the controller does under load.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| *w == name);
    if wants("paused") {
        paused(100).await?;
    }
    if wants("namespace") {
        let sizes = if sizes.is_empty() {
            vec![1, 2000]
        } else {
            sizes
        };
        for n in sizes {
            namespace(n).await?;
        }
    }
    Ok(())
}

struct Bench {
    sim: Sim,
    client: kube::Client,
    controller: LocalController,
}

impl Bench {
    async fn start() -> anyhow::Result<Bench> {
        let sim = sluice_testkit::sim().await;
        let client = sluice_testkit::client(&sim);
        let controller = local::start_controller_with(
            &sim,
            sluice::strategy::RuntimeConfig::default(),
            sluice::controller::ControllerConfig {
                metrics_addr: Some(([127, 0, 0, 1], 0).into()),
                webhook: Some(sluice::admission::WebhookConfig::local(0)),
                ..Default::default()
            },
        )
        .await?;
        Ok(Bench {
            sim,
            client,
            controller,
        })
    }

    /// A counter of the controller's /metrics, summed over its labels.
    async fn counter(&self, family: &str) -> f64 {
        self.metric(&format!("{family}_total")).await
    }

    /// A sample of the controller's /metrics (`name` up to the labels), summed.
    async fn metric(&self, name: &str) -> f64 {
        let addr = self.controller.metrics_addr().expect("metrics");
        let (_, text) = sluice_testkit::http_get(&format!("http://{addr}/metrics")).await;
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Requests the controller has made so far.
    fn controller_requests(&self) -> usize {
        self.sim
            .audit()
            .iter()
            .filter(|e| e.user == CONTROLLER_USER && e.verb != "watch")
            .count()
    }

    /// Applies `yaml(i)` for every `i` in `0..n`, a few at a time.
    async fn apply_all(&self, n: usize, yaml: impl Fn(usize) -> String) {
        stream::iter(0..n)
            .map(|i| {
                let doc = yaml(i);
                let client = self.client.clone();
                async move { sluice_testkit::apply(&client, &doc).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
    }

    /// Rollouts whose status satisfies `check`.
    fn rollouts_where(&self, check: impl Fn(&Value) -> bool) -> usize {
        self.sim
            .store()
            .list(
                &ResKey::new("rollouts.kruise.io", "rollouts"),
                Some("default"),
            )
            .items
            .iter()
            .filter(|r| check(r))
            .count()
    }

    /// Waits until `want` Rollouts satisfy `check` (counting at most every 50 ms).
    async fn until_rollouts(&self, want: usize, what: &str, check: impl Fn(&Value) -> bool) {
        let mut events = self.sim.store().subscribe();
        let limit = Instant::now() + Duration::from_secs(600);
        loop {
            let n = self.rollouts_where(&check);
            if n >= want {
                return;
            }
            assert!(Instant::now() < limit, "{n} of {want} Rollouts {what}");
            let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            while events.try_recv().is_ok() {}
        }
    }

    /// Waits until the controller has made fewer than ten reconciles in three
    /// seconds: the backlog of creating many Rollouts is done (idle Rollouts are still
    /// looked at every five minutes each).
    async fn until_quiet(&self) {
        let limit = Instant::now() + Duration::from_secs(900);
        loop {
            let before = self.counter("sluice_reconciles").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            if self.counter("sluice_reconciles").await - before < 10.0 {
                return;
            }
            assert!(Instant::now() < limit, "the controller never went quiet");
        }
    }

    /// Waits until the controller has taken up every Deployment `app-*` (labelled
    /// it for the admission webhook, which holds its next template for a release).
    async fn until_governed(&self, n: usize) {
        let limit = Instant::now() + Duration::from_secs(600);
        loop {
            let held = self
                .sim
                .store()
                .list(&ResKey::new("apps", "deployments"), Some("default"))
                .items
                .iter()
                .filter(|d| {
                    d.pointer("/metadata/labels/rollouts.kruise.io~1workload-type")
                        .is_some()
                })
                .count();
            if held >= n {
                return;
            }
            assert!(Instant::now() < limit, "{held} of {n} Deployments taken up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn app(i: usize, image: &str, replicas: u32) -> String {
    sluice_testkit::deployment_yaml(&format!("app-{i}"), image, replicas)
}

fn rollout(i: usize, annotations: &str) -> String {
    format!(
        "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {{name: app-{i}{annotations}}}\nspec:\n  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: app-{i}}}}}\n  strategy: {{canary: {{steps: [{{replicas: 1, pause: {{}}}}]}}}}\n"
    )
}

fn healthy(r: &Value) -> bool {
    r.pointer("/status/phase") == Some(&json!("Healthy"))
}

fn paused_at_step_1(r: &Value) -> bool {
    r.pointer("/status/canaryStatus/currentStepIndex") == Some(&json!(1))
        && r.pointer("/status/canaryStatus/currentStepState") == Some(&json!("StepPaused"))
}

/// Decisions and writes per second over `window`.
async fn rates(b: &Bench, window: Duration) -> (f64, f64, f64) {
    let (d0, w0, r0) = (
        b.counter("sluice_decisions").await,
        b.counter("sluice_api_writes").await,
        b.controller_requests(),
    );
    tokio::time::sleep(window).await;
    let (d1, w1, r1) = (
        b.counter("sluice_decisions").await,
        b.counter("sluice_api_writes").await,
        b.controller_requests(),
    );
    let s = window.as_secs_f64();
    ((d1 - d0) / s, (w1 - w0) / s, (r1 - r0) as f64 / s)
}

async fn paused(n: usize) -> anyhow::Result<()> {
    let b = Bench::start().await?;
    let module = sluice_test_guests::HOSTILE;
    sluice_testkit::apply(
        &b.client,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: countdown}}\nbinaryData: {{m.wasm: {}}}\n---\napiVersion: sluice.dev/v1alpha1\nkind: StrategyModule\nmetadata: {{name: countdown}}\nspec:\n  source: {{configMap: {{name: countdown, key: m.wasm}}}}\n",
            base64_encode(module)
        ),
    )
    .await;
    let countdown = ", annotations: {strategy.sluice.dev/module: countdown, strategy.sluice.dev/config: '\"countdown\"'}";
    b.apply_all(n, |i| app(i, "demo:v1", 2)).await;
    b.apply_all(n, |i| rollout(i, countdown)).await;
    b.until_rollouts(n, "healthy", healthy).await;
    b.until_governed(n).await;
    b.apply_all(n, |i| app(i, "demo:v2", 2)).await;
    b.until_rollouts(n, "paused in step 1", paused_at_step_1)
        .await;
    let window = Duration::from_secs(20);
    let (decisions, writes, requests) = rates(&b, window).await;
    println!(
        "{n} paused Rollouts, a module asking to be decided every second: {decisions:.1} decisions/s, {writes:.1} API writes/s, {requests:.1} API requests/s (over {window:?})"
    );

    // The same releases under the built-in steps, waiting for a person: nothing
    // changes, so nothing is decided or written until something does.
    stream::iter(0..n)
        .map(|i| {
            let api: Api<DynamicObject> =
                sluice_testkit::api_for(&b.client, "rollouts.kruise.io/v1alpha1", "Rollout", None);
            async move {
                api.patch(
                    &format!("app-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        "strategy.sluice.dev/module": null, "strategy.sluice.dev/config": null}}})),
                )
                .await
                .expect("patch")
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    b.until_rollouts(n, "decided by steps", |r| {
        paused_at_step_1(r) && r.pointer("/status/strategy/module") == Some(&json!("builtin:steps"))
    })
    .await;
    b.until_quiet().await;
    let (decisions, writes, requests) = rates(&b, window).await;
    println!(
        "{n} paused Rollouts waiting for approval (built-in steps): {decisions:.1} decisions/s, {writes:.1} API writes/s, {requests:.1} API requests/s (over {window:?})"
    );
    b.controller.stop().await;
    Ok(())
}

async fn namespace(n: usize) -> anyhow::Result<()> {
    let b = Bench::start().await?;
    let started = Instant::now();
    b.apply_all(n, |i| app(i, "demo:v1", 1)).await;
    b.apply_all(n, |i| rollout(i, "")).await;
    b.until_rollouts(n, "healthy", healthy).await;
    b.until_governed(n).await;
    let settled = started.elapsed();
    b.until_quiet().await;

    // One Rollout's spec changes (a pause's length: nothing moves in the cluster),
    // again and again; each change is reconciled when the status shows its generation.
    let api: Api<DynamicObject> =
        sluice_testkit::api_for(&b.client, "rollouts.kruise.io/v1alpha1", "Rollout", None);
    let rounds = 200;
    let (count0, sum0) = (
        b.metric("sluice_reconcile_duration_seconds_count").await,
        b.metric("sluice_reconcile_duration_seconds_sum").await,
    );
    let requests0 = b.controller_requests();
    let mut latencies = Vec::with_capacity(rounds);
    let timer = Instant::now();
    for round in 0..rounds {
        let mut events = b.sim.store().subscribe();
        let changed = Instant::now();
        let patched = api
            .patch(
                "app-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"strategy": {"canary": {"steps": [
                    {"replicas": 1, "pause": {"duration": 3600 + round}}]}}}})),
            )
            .await?;
        let generation = patched.metadata.generation.expect("generation");
        loop {
            let observed = b
                .sim
                .store()
                .get(
                    &ResKey::new("rollouts.kruise.io", "rollouts"),
                    "default",
                    "app-0",
                )
                .and_then(|r| {
                    r.pointer("/status/observedGeneration")
                        .and_then(Value::as_i64)
                });
            if observed == Some(generation) {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        }
        latencies.push(changed.elapsed());
    }
    let elapsed = timer.elapsed();
    let count = b.metric("sluice_reconcile_duration_seconds_count").await - count0;
    let sum = b.metric("sluice_reconcile_duration_seconds_sum").await - sum0;
    let requests = b.controller_requests() - requests0;
    latencies.sort();
    // What the API server's side of a reconcile costs here: one Rollout's pods by
    // label, as the controller lists them (the simulator scans the namespace, as
    // kube-apiserver's watch cache does for a label selector).
    let pods: Api<DynamicObject> = sluice_testkit::api_for(&b.client, "v1", "Pod", None);
    let mut lists = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = Instant::now();
        pods.list(&kube::api::ListParams::default().labels("app=app-0"))
            .await?;
        lists.push(t.elapsed());
    }
    lists.sort();
    println!(
        "{n} Rollouts in one namespace: a label-selected list of one Rollout's pods answered in {:.2} ms (median of 100)",
        1000.0 * lists[50].as_secs_f64()
    );
    println!(
        "{n} Rollouts in one namespace (all healthy after {:.1} s): one Rollout's spec change reconciled in {:.2} ms (median; p90 {:.2} ms); {count:.0} reconciles in the {:.1} s window, {:.2} ms each on average, {:.1} API requests each (watches aside)",
        settled.as_secs_f64(),
        1000.0 * latencies[latencies.len() / 2].as_secs_f64(),
        1000.0 * latencies[latencies.len() * 9 / 10].as_secs_f64(),
        elapsed.as_secs_f64(),
        1000.0 * sum / count.max(1.0),
        requests as f64 / count.max(1.0),
    );
    b.controller.stop().await;
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
