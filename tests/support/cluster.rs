//! A cluster with the Sluice controller running in it, for end-to-end tests: the
//! simulator with the controller in the test's process (the default), or a real
//! API server (`SLUICE_TEST_BACKEND=real`, `SLUICE_TEST_KUBECONFIG`) with the
//! controller as its own process, using its ServiceAccount's credentials, in a
//! namespace of the test's own. Tests written against [`Cluster`] run on both.

use std::future::Future;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use sluice::kruise::v1alpha1::Rollout;
use sluice::local::{self, LocalController};
use sluice_sim::Sim;
use sluice_sim::store::ResKey;
use sluice_testkit::real::{self, BackendKind, Real};
use sluice_testkit::{Changes, Daemon, Kubectl};

/// Where the cluster is.
enum Backend {
    Sim(Sim),
    Real(Box<Real>),
}

/// How the controller runs.
enum Controller {
    /// In the test's process, on the simulator.
    Local(LocalController),
    /// As its own process, against a real API server.
    Process(Box<Daemon>),
}

/// The cluster, a client, and the controller.
pub struct Cluster {
    pub client: kube::Client,
    // A real namespace is deleted while the controller still runs to let its
    // Rollouts go (`Drop`).
    backend: Backend,
    controller: Option<Controller>,
    metrics_addr: std::net::SocketAddr,
    namespace: String,
}

/// A cluster whose controller is not started yet.
pub enum Pending {
    Sim(Sim),
    Real(Box<Real>),
}

impl Pending {
    /// Where the traffic gateway listens.
    pub fn gateway_addr(&self) -> std::net::SocketAddr {
        match self {
            Pending::Sim(sim) => sim.gateway_addr(),
            Pending::Real(real) => real.gateway_addr(),
        }
    }

    /// Whether it is a real API server.
    pub fn is_real(&self) -> bool {
        matches!(self, Pending::Real(_))
    }

    /// An admin client, in the test's namespace.
    pub fn client(&self) -> kube::Client {
        match self {
            Pending::Sim(sim) => local::client(sim).expect("client"),
            Pending::Real(real) => real.client.clone(),
        }
    }

    /// On a real cluster, forgets what earlier tests' controllers left (webhook
    /// configurations, Lease, certificates): the controller starts as on a first
    /// install. A new simulator has none.
    pub async fn forget_controller_state(&self) {
        if let Pending::Real(real) = self {
            real.forget_controller_state().await;
        }
    }

    /// The cluster with no controller: the test starts its own processes
    /// ([`Cluster::controller_process`]).
    pub fn without_controller(self) -> Cluster {
        let (backend, client, namespace) = match self {
            Pending::Sim(sim) => {
                let client = local::client(&sim).expect("client");
                (Backend::Sim(sim), client, "default".to_owned())
            }
            Pending::Real(real) => {
                let (client, namespace) = (real.client.clone(), real.namespace.clone());
                (Backend::Real(real), client, namespace)
            }
        };
        Cluster {
            client,
            backend,
            controller: None,
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            namespace,
        }
    }

    /// Starts the controller, configured as `config` (with the webhooks).
    pub async fn start(self, config: sluice::controller::ControllerConfig) -> Cluster {
        let config = with_webhooks(config);
        match self {
            Pending::Sim(sim) => Cluster::on(sim, super::sandbox_config(), config).await,
            Pending::Real(real) => Cluster::on_real(*real, config).await,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Backend::Real(real) = &self.backend {
            real.delete_namespace(self.controller.is_some());
        }
        // A controller process stops as the kubelet stops it, SIGTERM, and
        // releases its lease for the next test's.
        if let Some(Controller::Process(daemon)) = &self.controller
            && let Some(pid) = daemon.pid()
        {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)).expect("a pid"),
                rustix::process::Signal::TERM,
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while std::path::Path::new(&format!("/proc/{pid}")).exists()
                && std::time::Instant::now() < deadline
            {
                // The child is reaped by its owner, once dropped: a zombie counts as gone.
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// The name of the test running on this thread (libtest names its threads
/// after their tests).
fn test_name() -> String {
    std::thread::current()
        .name()
        .and_then(|n| n.rsplit("::").next())
        .unwrap_or("test")
        .to_owned()
}

impl Cluster {
    /// A cluster whose pods are ready at once, with the controller running.
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| sluice::controller::ControllerConfig::default()).await
    }

    /// Like [`Cluster::start`], with the controller configured by `configure`
    /// (given the simulator, on the simulated backend, so providers can point at it).
    pub async fn start_with(
        configure: impl FnOnce(Option<&Sim>) -> sluice::controller::ControllerConfig,
    ) -> Cluster {
        match real::backend() {
            BackendKind::Sim => {
                Cluster::start_sandboxed(super::sandbox_config(), |sim| configure(Some(sim))).await
            }
            BackendKind::Real => Cluster::start_real(with_webhooks(configure(None))).await,
        }
    }

    /// On the simulator always, with the sandbox configured as `sandbox`.
    pub async fn start_sandboxed(
        sandbox: sluice::strategy::RuntimeConfig,
        configure: impl FnOnce(&Sim) -> sluice::controller::ControllerConfig,
    ) -> Cluster {
        let sim = sluice_testkit::sim().await;
        let config = with_webhooks(configure(&sim));
        Cluster::on(sim, sandbox, config).await
    }

    /// A cluster whose controller serves no admission webhooks: what the controller
    /// does where none is installed.
    pub async fn start_without_webhooks() -> Cluster {
        match real::backend() {
            BackendKind::Sim => {
                let sim = sluice_testkit::sim().await;
                Cluster::on(
                    sim,
                    super::sandbox_config(),
                    sluice::controller::ControllerConfig::default(),
                )
                .await
            }
            BackendKind::Real => {
                Cluster::start_real(sluice::controller::ControllerConfig::default()).await
            }
        }
    }

    /// The controller, configured as `config`, started on a running simulator.
    pub async fn on(
        sim: Sim,
        sandbox: sluice::strategy::RuntimeConfig,
        mut config: sluice::controller::ControllerConfig,
    ) -> Cluster {
        let client = local::client(&sim).expect("client");
        // The controller binds free ports itself and says which.
        config.metrics_addr = Some(([127, 0, 0, 1], 0).into());
        let controller = local::start_controller_with(&sim, sandbox, config)
            .await
            .expect("controller");
        let metrics_addr = controller
            .metrics_addr()
            .expect("the controller serves metrics");
        Cluster {
            backend: Backend::Sim(sim),
            client,
            controller: Some(Controller::Local(controller)),
            metrics_addr,
            namespace: "default".into(),
        }
    }

    /// The cluster without its controller yet, for a test that must point
    /// something at the traffic gateway first (a Prometheus scraping it).
    pub async fn prepare() -> Pending {
        match real::backend() {
            BackendKind::Sim => Pending::Sim(sluice_testkit::sim().await),
            BackendKind::Real => {
                let sluice = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
                Pending::Real(Box::new(Real::start(sluice, &test_name()).await))
            }
        }
    }

    /// A namespace of the real cluster for this test, with `sluice controller`
    /// running as a process with the ServiceAccount of deploy/controller.yaml.
    async fn start_real(config: sluice::controller::ControllerConfig) -> Cluster {
        let sluice = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
        let real = Real::start(sluice, &test_name()).await;
        Cluster::on_real(real, config).await
    }

    async fn on_real(real: Real, config: sluice::controller::ControllerConfig) -> Cluster {
        let sluice = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
        if config.webhook.is_none() {
            real.remove_webhook_configurations().await;
        }
        let args = controller_args(&real, &config);
        let daemon = real::start_controller(&real, sluice, &test_name(), &args).await;
        let metrics_addr = daemon.addr.parse().expect("the controller's address");
        Cluster {
            client: real.client.clone(),
            namespace: real.namespace.clone(),
            backend: Backend::Real(Box::new(real)),
            controller: Some(Controller::Process(Box::new(daemon))),
            metrics_addr,
        }
    }

    /// On a real cluster, the resource requests `user` made since `since` as the
    /// API server's audit log recorded them, and those it refused.
    pub async fn audited(
        &self,
        user: &str,
        since: k8s_openapi::jiff::Timestamp,
    ) -> (Vec<sluice_sim::api::audit::AuditEntry>, Vec<String>) {
        match &self.backend {
            Backend::Real(real) => real.audited(user, since).await,
            Backend::Sim(_) => panic!("the simulator's audit is `sim().audit()`"),
        }
    }

    /// Where controller processes keep their Lease: `default` on the simulator
    /// (whose kubeconfig has no namespace of the controller's), `sluice-system` on
    /// a real cluster (deploy/controller.yaml's Role grants it there).
    pub fn lease_namespace(&self) -> &'static str {
        if self.is_real() {
            "sluice-system"
        } else {
            "default"
        }
    }

    /// Starts a `sluice controller` process identified as `identity`, with the
    /// cluster's credentials for it (on a real cluster, its ServiceAccount's); ready
    /// once it serves its probes.
    pub async fn controller_process(&self, identity: &str) -> Daemon {
        let sluice = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
        match &self.backend {
            Backend::Real(real) => real::start_controller(real, sluice, identity, &[]).await,
            Backend::Sim(sim) => {
                let dir = tempfile::tempdir().expect("tempdir");
                let kubeconfig = dir.path().join("kubeconfig");
                sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
                let mut command = tokio::process::Command::new(sluice);
                command
                    .args(["--log-format", "json", "controller", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .args(["--metrics-addr", "127.0.0.1:0", "--identity", identity])
                    .args(["--lease-namespace", "default"])
                    // The simulated API server is on this machine: it calls the
                    // webhooks here.
                    .args([
                        "--webhook-host",
                        "127.0.0.1",
                        "--webhook-addr",
                        "127.0.0.1:0",
                    ])
                    .env("SLUICE_LOG", "sluice=info")
                    .env_remove("KUBECONFIG");
                let daemon = Daemon::start(
                    command,
                    identity,
                    // The line saying where the probes are served (its fields in
                    // either order).
                    r#"serving /metrics.*"addr":"(127\.0\.0\.1:\d+)"|"addr":"(127\.0\.0\.1:\d+)".*serving /metrics"#,
                    "the sluice binary is built by cargo test",
                )
                .await;
                // The kubeconfig is read at start; the folder may go.
                drop(dir);
                daemon
            }
        }
    }

    /// Whether this cluster is a real API server.
    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real(_))
    }

    /// The simulator, for what only it can do (its store's events, its audit, its
    /// faults): a test calling this runs on the simulator only.
    pub fn sim(&self) -> &Sim {
        match &self.backend {
            Backend::Sim(sim) => sim,
            Backend::Real(_) => panic!(
                "this test drives the simulator itself (its store, audit or faults): it runs on the simulated backend only"
            ),
        }
    }

    /// The test's namespace: `default` on the simulator, one of its own on a real
    /// cluster.
    pub fn ns(&self) -> &str {
        &self.namespace
    }

    /// kubectl pointed at this cluster, in the test's namespace.
    pub fn kubectl(&self) -> Kubectl {
        match &self.backend {
            Backend::Sim(sim) => Kubectl::new(sim),
            Backend::Real(real) => Kubectl::with_kubeconfig(&real.namespaced_kubeconfig()),
        }
    }

    /// `http://HOST:PORT` of the traffic gateway.
    pub fn gateway_url(&self) -> String {
        match &self.backend {
            Backend::Sim(sim) => sim.gateway_url(),
            Backend::Real(real) => real.gateway_url(),
        }
    }

    /// Where the controller serves /metrics, /healthz, /readyz.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
    }

    /// A counter of the controller's `/metrics` (`sluice_api_writes`, …), summed over
    /// its labels.
    pub async fn counter(&self, family: &str) -> f64 {
        let (code, text) = http_get(&format!("http://{}/metrics", self.metrics_addr)).await;
        assert_eq!(code, 200, "{text}");
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}_total")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops the controller (to check what it leaves behind).
    pub async fn stop_controller(&mut self) {
        match self.controller.take() {
            Some(Controller::Local(c)) => {
                tokio::time::timeout(sluice_testkit::PATIENCE, c.stop())
                    .await
                    .expect("the controller stops when told to");
            }
            Some(Controller::Process(daemon)) => {
                let daemon = *daemon;
                let pid = daemon.pid().expect("running");
                let pid =
                    rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
                // SIGTERM, as the kubelet stops a container: the controller ends
                // its reconciles and releases its lease.
                rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
                daemon.wait().await;
            }
            None => {}
        }
    }

    /// Applies YAML documents (server-side apply).
    pub async fn apply(&self, yaml: &str) {
        sluice_testkit::apply(&self.client, yaml).await;
    }

    /// Merge-patches an object.
    pub async fn patch(&self, api_version: &str, kind: &str, name: &str, patch: Value) {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch {kind}/{name}: {e}"));
    }

    /// Approves the current step, as `kubectl-kruise rollout approve` and `vela workflow resume` do.
    pub async fn approve(&self, name: &str) {
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), &self.namespace);
        let current = api.get_status(name).await.expect("rollout");
        let state = current
            .status
            .and_then(|s| s.canary_status)
            .map(|c| c.current_step_state)
            .unwrap_or_default();
        assert_eq!(state, "StepPaused", "only a paused step can be approved");
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"canaryStatus": {"currentStepState": "StepReady"}}})),
        )
        .await
        .expect("approve");
    }

    /// The Rollout.
    pub async fn rollout(&self, name: &str) -> Rollout {
        Api::<Rollout>::namespaced(self.client.clone(), &self.namespace)
            .get(name)
            .await
            .expect("rollout")
    }

    /// An object of the test's namespace as JSON, if it exists: from the
    /// simulator's store, or read from the API server (a consistent read).
    pub async fn object(&self, group: &str, plural: &str, name: &str) -> Option<Value> {
        self.object_in(&self.namespace, group, plural, name).await
    }

    /// Like [`Cluster::object`], in namespace `ns` (empty for a cluster-scoped kind).
    pub async fn object_in(
        &self,
        ns: &str,
        group: &str,
        plural: &str,
        name: &str,
    ) -> Option<Value> {
        match &self.backend {
            Backend::Sim(sim) => sim
                .store()
                .get(&ResKey::new(group, plural), ns, name)
                .map(|v| (*v).clone()),
            Backend::Real(_) => {
                real::dynamic(&self.client, group, plural, (!ns.is_empty()).then_some(ns))
                    .get_opt(name)
                    .await
                    .unwrap_or_else(|e| panic!("reading {plural} {name}: {e}"))
                    .map(|o| serde_json::to_value(o).expect("json"))
            }
        }
    }

    /// The traffic share of the canary Ingress `<ingress>-canary`, as ingress-nginx reads it.
    pub async fn canary_weight(&self, ingress: &str) -> Option<String> {
        self.object(
            "networking.k8s.io",
            "ingresses",
            &format!("{ingress}-canary"),
        )
        .await?
        .pointer("/metadata/annotations/nginx.ingress.kubernetes.io~1canary-weight")?
        .as_str()
        .map(str::to_owned)
    }

    /// Objects of a kind in the test's namespace, as JSON.
    pub async fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        match &self.backend {
            Backend::Sim(sim) => sim
                .store()
                .list(&ResKey::new(group, plural), Some(&self.namespace))
                .items
                .iter()
                .map(|v| (**v).clone())
                .collect(),
            Backend::Real(_) => real::dynamic(&self.client, group, plural, Some(&self.namespace))
                .list(&Default::default())
                .await
                .unwrap_or_else(|e| panic!("listing {plural}: {e}"))
                .items
                .into_iter()
                .map(|o| serde_json::to_value(o).expect("json"))
                .collect(),
        }
    }

    /// The Rollouts' canary Deployments.
    pub async fn canary_deployments(&self) -> Vec<Value> {
        self.objects("apps", "deployments")
            .await
            .into_iter()
            .filter(|d| {
                d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                    .is_some()
            })
            .collect()
    }

    /// The Deployment.
    pub async fn deployment(&self, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .get(name)
            .await
            .expect("deployment")
    }

    /// Waits until `check` holds, re-checking after every change in the cluster (and
    /// every second, for time-based steps).
    pub async fn until<F, Fut>(&self, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        sluice_testkit::until_changed(self.changes(), what, check).await;
    }

    /// What wakes the waits: the simulator's store events, or the watches of the
    /// test's namespace.
    pub fn changes(&self) -> Changes {
        match &self.backend {
            Backend::Sim(sim) => Changes::Sim(sim.store().subscribe()),
            Backend::Real(real) => Changes::Real(real.changes()),
        }
    }

    /// Waits until the Rollout's status satisfies `check`.
    pub async fn until_rollout(&self, name: &str, what: &str, check: impl Fn(&Rollout) -> bool) {
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), &self.namespace);
        self.until(what, || {
            let api = api.clone();
            let check = &check;
            async move { api.get(name).await.is_ok_and(|r| check(&r)) }
        })
        .await;
    }

    /// Waits until a release runs and waits in `step`, paused. (The phase too: a
    /// release rolled back keeps its step's state, as Kruise's does.)
    pub async fn until_paused_at(&self, name: &str, step: i32) {
        self.until_rollout(name, &format!("step {step} paused"), |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Progressing")
                    && s.canary_status.as_ref().is_some_and(|c| {
                        c.current_step_index == step && c.current_step_state == "StepPaused"
                    })
            })
        })
        .await;
    }

    /// Deletes the Rollout and waits until it is gone (its finalizer done).
    pub async fn delete_rollout(&self, name: &str) {
        Api::<Rollout>::namespaced(self.client.clone(), &self.namespace)
            .delete(name, &Default::default())
            .await
            .expect("delete");
        self.until(&format!("the rollout {name} is gone"), || async {
            self.object("rollouts.kruise.io", "rollouts", name)
                .await
                .is_none()
        })
        .await;
    }

    /// Waits until the Rollout reports `ready` ready canary pods.
    pub async fn until_canary_ready(&self, name: &str, ready: i32) {
        self.until_rollout(name, &format!("{ready} ready canary pods"), |r| {
            r.status
                .as_ref()
                .and_then(|s| s.canary_status.as_ref())
                .is_some_and(|c| c.canary_ready_replicas == ready)
        })
        .await;
    }

    /// Waits until the workload `name` carries the label the admission webhooks
    /// select workloads by (the controller gives it at its first look).
    pub async fn until_governed(&self, group: &str, plural: &str, name: &str) {
        self.until(
            &format!("{plural} {name} carries the workload-type label"),
            || async {
                self.object(group, plural, name).await.is_some_and(|o| {
                    o.pointer("/metadata/labels/rollouts.kruise.io~1workload-type")
                        .is_some()
                })
            },
        )
        .await;
    }

    /// Waits until the Rollout is Healthy with its last release finished: no
    /// `Progressing` condition still true. (Not the step's state: a release rolled
    /// back keeps the state its step had, as Kruise's does.)
    pub async fn until_healthy(&self, name: &str) {
        self.until_rollout(name, "healthy", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Healthy")
                    && s.canary_status.is_some()
                    && !s
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Progressing" && c.status == "True")
            })
        })
        .await;
    }

    /// Waits until the gateway routes by what the API server holds now (at once on
    /// the simulator, whose store it reads).
    pub async fn gateway_synced(&self) {
        if let Backend::Real(real) = &self.backend {
            real.gateway_synced().await;
        }
    }

    /// GET through the traffic gateway, once it routes by what the cluster holds
    /// now; the body.
    pub async fn request(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        self.gateway_synced().await;
        self.request_now(host, path, headers).await
    }

    /// GET through the traffic gateway as it routes at this moment; the body.
    pub async fn request_now(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let client: HttpClient<_, Full<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let mut req =
            hyper::Request::get(format!("{}{path}", self.gateway_url())).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client
            .request(req.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).trim().to_owned()
    }

    /// How many of `n` requests answered `body`.
    pub async fn share(&self, host: &str, path: &str, n: u32, body: &str) -> u32 {
        self.gateway_synced().await;
        let mut hits = 0;
        for _ in 0..n {
            if self.request_now(host, path, &[]).await == body {
                hits += 1;
            }
        }
        hits
    }

    /// The pods running `image` and not on their way out.
    pub async fn pods_with(&self, image: &str) -> Vec<Value> {
        self.objects("", "pods")
            .await
            .into_iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|p| {
                p.pointer("/spec/containers/0/image")
                    .and_then(Value::as_str)
                    == Some(image)
            })
            .collect()
    }

    /// Ready pods running `image`.
    pub async fn ready_pods_with(&self, image: &str) -> usize {
        self.pods_with(image)
            .await
            .iter()
            .filter(|p| {
                p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count()
    }
}

/// Whether `hits` of `n` is inside the 99.9% interval of a binomial(n, p).
pub fn within_binomial(hits: u32, n: u32, p: f64) -> bool {
    let mean = f64::from(n) * p;
    let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
    (f64::from(hits) - mean).abs() <= 3.29 * sd
}

pub use sluice_testkit::{deployment_yaml, http_get};

/// The `sluice controller` options that give a controller process `config`. A
/// test whose configuration has no command-line form (a manual clock) runs on the
/// simulator only.
fn controller_args(real: &Real, config: &sluice::controller::ControllerConfig) -> Vec<String> {
    assert!(
        !format!("{:?}", config.clock).contains("Manual"),
        "this test moves the controller's clock by hand: it runs on the simulated backend only"
    );
    let mut args = Vec::new();
    match &config.webhook {
        None => args.push("--no-webhooks".to_owned()),
        // The certificates elsewhere than the controller's namespace (where
        // deploy/ keeps them, and where the local default would put them).
        Some(w) if w.secret_namespace != "sluice-system" && w.secret_namespace != "default" => {
            args.push("--webhook-secret".to_owned());
            args.push(format!("{}/{}", w.secret_namespace, w.secret_name));
        }
        Some(_) => {}
    }
    if let Some(ca) = &config.module_ca {
        args.push("--module-ca-file".to_owned());
        args.push(ca.display().to_string());
    }
    for registry in &config.insecure_registries {
        args.push("--insecure-registry".to_owned());
        args.push(registry.clone());
    }
    if !config.providers.is_empty() {
        let providers: Vec<Value> = config
            .providers
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "url": p.url,
                    "timeout": format!("{}ms", p.timeout.as_millis()),
                    "tokenFile": p.token_file,
                    "caFile": p.ca_file,
                    "namespaces": serde_json::to_value(&p.namespaces).expect("json"),
                })
            })
            .collect();
        let path = real.cache_dir().with_file_name("config.yaml");
        std::fs::write(
            &path,
            serde_yaml_ng::to_string(&json!({"metricProviders": providers})).expect("yaml"),
        )
        .expect("writing the controller's configuration");
        args.push("--config".to_owned());
        args.push(path.display().to_string());
    }
    args
}

/// `config` with the admission webhooks a cluster runs, served on a free port of
/// this machine (the simulated API server calls them there).
pub fn with_webhooks(
    mut config: sluice::controller::ControllerConfig,
) -> sluice::controller::ControllerConfig {
    if config.webhook.is_none() {
        config.webhook = Some(sluice::admission::WebhookConfig::local(0));
    }
    config
}

/// The Service `echo` and an Ingress sending `echo.example.com/` to it.
pub const SERVICE_AND_INGRESS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo}
spec:
  rules:
  - host: echo.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
"#;

/// A Rollout's condition of `type_`: its status and reason.
pub fn condition(r: &sluice::kruise::v1alpha1::Rollout, type_: &str) -> Option<(String, String)> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// `text` with `from` replaced by `to`; `from` must be there, or a test would lose
/// its premise without a word.
pub fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in\n{text}");
    text.replace(from, to)
}
