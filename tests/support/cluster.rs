//! A simulated cluster with the Sluice controller running in it, for end-to-end tests.

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

/// The simulator, a client, and the controller.
pub struct Cluster {
    pub sim: Sim,
    pub client: kube::Client,
    controller: Option<LocalController>,
    metrics_addr: std::net::SocketAddr,
}

impl Cluster {
    /// A cluster whose pods are ready 20 ms after creation, with the controller running.
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| sluice::controller::ControllerConfig::default()).await
    }

    /// Like [`Cluster::start`], with the controller configured by `configure` once the
    /// simulator runs (so providers can point at it).
    pub async fn start_with(
        configure: impl FnOnce(&Sim) -> sluice::controller::ControllerConfig,
    ) -> Cluster {
        Cluster::start_sandboxed(super::sandbox_config(), configure).await
    }

    /// Like [`Cluster::start_with`], with the sandbox configured as `sandbox`.
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
        let sim = sluice_testkit::sim().await;
        Cluster::on(
            sim,
            super::sandbox_config(),
            sluice::controller::ControllerConfig::default(),
        )
        .await
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
            sim,
            client,
            controller: Some(controller),
            metrics_addr,
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
        if let Some(c) = self.controller.take() {
            c.stop().await;
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
            Api::namespaced_with(self.client.clone(), "default", &resource);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch {kind}/{name}: {e}"));
    }

    /// Approves the current step, as `kubectl-kruise rollout approve` and `vela workflow resume` do.
    pub async fn approve(&self, name: &str) {
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), "default");
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
        Api::<Rollout>::namespaced(self.client.clone(), "default")
            .get(name)
            .await
            .expect("rollout")
    }

    /// An object as JSON, if it exists.
    pub fn object(&self, group: &str, plural: &str, name: &str) -> Option<Value> {
        self.sim
            .store()
            .get(&ResKey::new(group, plural), "default", name)
            .map(|v| (*v).clone())
    }

    /// The traffic share of the canary Ingress `<ingress>-canary`, as ingress-nginx reads it.
    pub fn canary_weight(&self, ingress: &str) -> Option<String> {
        self.object(
            "networking.k8s.io",
            "ingresses",
            &format!("{ingress}-canary"),
        )?
        .pointer("/metadata/annotations/nginx.ingress.kubernetes.io~1canary-weight")?
        .as_str()
        .map(str::to_owned)
    }

    /// Objects of a kind, as JSON.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        self.sim
            .store()
            .list(&ResKey::new(group, plural), Some("default"))
            .items
            .iter()
            .map(|v| (**v).clone())
            .collect()
    }

    /// The Rollouts' canary Deployments.
    pub fn canary_deployments(&self) -> Vec<Value> {
        self.objects("apps", "deployments")
            .into_iter()
            .filter(|d| {
                d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                    .is_some()
            })
            .collect()
    }

    /// The Deployment.
    pub async fn deployment(&self, name: &str) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), "default")
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
        sluice_testkit::until(&self.sim, what, check).await;
    }

    /// Waits until the Rollout's status satisfies `check`.
    pub async fn until_rollout(&self, name: &str, what: &str, check: impl Fn(&Rollout) -> bool) {
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), "default");
        self.until(what, || {
            let api = api.clone();
            let check = &check;
            async move { api.get(name).await.is_ok_and(|r| check(&r)) }
        })
        .await;
    }

    /// Waits until the Rollout is in `step`, paused.
    pub async fn until_paused_at(&self, name: &str, step: i32) {
        self.until_rollout(name, &format!("step {step} paused"), |r| {
            r.status
                .as_ref()
                .and_then(|s| s.canary_status.as_ref())
                .is_some_and(|c| {
                    c.current_step_index == step && c.current_step_state == "StepPaused"
                })
        })
        .await;
    }

    /// Deletes the Rollout and waits until it is gone (its finalizer done).
    pub async fn delete_rollout(&self, name: &str) {
        Api::<Rollout>::namespaced(self.client.clone(), "default")
            .delete(name, &Default::default())
            .await
            .expect("delete");
        self.until(&format!("the rollout {name} is gone"), || async {
            self.object("rollouts.kruise.io", "rollouts", name)
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
                self.object(group, plural, name).is_some_and(|o| {
                    o.pointer("/metadata/labels/rollouts.kruise.io~1workload-type")
                        .is_some()
                })
            },
        )
        .await;
    }

    /// Waits until the Rollout is Healthy with its last release finished.
    pub async fn until_healthy(&self, name: &str) {
        self.until_rollout(name, "healthy", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Healthy")
                    && s.canary_status
                        .as_ref()
                        .is_some_and(|c| c.current_step_state == "Completed")
            })
        })
        .await;
    }

    /// GET through the traffic gateway; the body.
    pub async fn request(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let client: HttpClient<_, Full<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let mut req =
            hyper::Request::get(format!("{}{path}", self.sim.gateway_url())).header("host", host);
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
        let mut hits = 0;
        for _ in 0..n {
            if self.request(host, path, &[]).await == body {
                hits += 1;
            }
        }
        hits
    }

    /// Ready pods running `image`.
    pub fn ready_pods_with(&self, image: &str) -> usize {
        self.objects("", "pods")
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|p| {
                p.pointer("/spec/containers/0/image")
                    .and_then(Value::as_str)
                    == Some(image)
            })
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
