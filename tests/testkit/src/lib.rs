//! Test support shared by the simulator's tests (`sim/tests`) and the end-to-end
//! tests (`tests/`): a simulator whose pods are ready at once and whose gateway is
//! seeded, waiting on the simulator's changes instead of on the clock, applying
//! manifests, plain HTTP calls, and helper programs (a registry, Prometheus, a
//! controller) that bind their own port and say which.

mod daemon;
mod http;
pub mod https;
mod kubectl;
pub mod real;

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;
use sluice_sim::{PodBehaviour, Sim, SimConfig};

pub use daemon::Daemon;
pub use http::{http_get, http_get_host, http_get_with};
pub use https::{HttpsServer, https_server};
pub use kubectl::Kubectl;

/// The seed of the gateway's random choices in tests: a traffic share measured in
/// one run is measured the same in the next.
pub const SEED: u64 = 0x5eed;

/// How long a wait may take before the test fails: a safety net, not a clock.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A simulator for tests: pods ready 20 ms after creation, a seeded gateway.
pub async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
}

/// Like [`sim`], from `config` (its pods and seed replaced by the tests' own).
pub async fn sim_with(config: SimConfig) -> Sim {
    Sim::start(SimConfig {
        pods: PodBehaviour {
            ready_delay: Duration::from_millis(20),
            restart_every: Duration::from_millis(50),
        },
        seed: Some(SEED),
        ..config
    })
    .await
    .expect("the simulator starts")
}

/// A kube client for the simulator.
pub fn client(sim: &Sim) -> kube::Client {
    let config = kube::Config::new(sim.api_url().parse().expect("the simulator's URL"));
    kube::Client::try_from(config).expect("a client")
}

/// Waits until `check` holds, checking again after every change in the simulator's
/// store (and every second, for what time alone moves). Fails the test, naming
/// `what`, after [`PATIENCE`].
pub async fn until<F, Fut>(sim: &Sim, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_changed(Changes::Sim(sim.store().subscribe()), what, check).await;
}

/// What wakes a wait: the simulator's store events, or the watches of a real
/// cluster's namespace (a counter of their events).
pub enum Changes {
    /// The simulator's events.
    Sim(tokio::sync::broadcast::Receiver<std::sync::Arc<sluice_sim::store::Event>>),
    /// A real cluster's.
    Real(tokio::sync::watch::Receiver<u64>),
}

impl Changes {
    /// Completes at the next change (never, once the source is gone).
    async fn next(&mut self) {
        match self {
            Changes::Sim(events) => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
                    std::future::pending::<()>().await;
                }
            }
            Changes::Real(counter) => {
                if counter.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Like [`until`], woken by `changes`.
pub async fn until_changed<F, Fut>(mut changes: Changes, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let limit = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        tokio::select! {
            () = changes.next() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = tokio::time::sleep_until(limit) => panic!("timed out waiting until {what}"),
        }
    }
}

/// The workspace's root folder.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace")
        .to_owned()
}

/// Applies YAML documents that must be refused; the API server's message.
pub async fn refused(client: &kube::Client, yaml: &str) -> String {
    match try_apply(client, yaml).await {
        Ok(()) => panic!("applied, though it must be refused:\n{yaml}"),
        Err(kube::Error::Api(status)) => status.message,
        Err(e) => panic!("the apply failed without an answer: {e}"),
    }
}

/// Applies YAML documents (server-side apply, forced); the first error.
pub async fn try_apply(client: &kube::Client, yaml: &str) -> Result<(), kube::Error> {
    for doc in yaml
        .split("\n---")
        .filter(|d| !d.trim().trim_start_matches("---").trim().is_empty())
    {
        let value: Value = serde_yaml_ng::from_str(doc).expect("YAML");
        let api_version = value["apiVersion"].as_str().expect("apiVersion");
        let kind = value["kind"].as_str().expect("kind");
        let name = value["metadata"]["name"].as_str().expect("name").to_owned();
        let api = api_for(
            client,
            api_version,
            kind,
            value["metadata"]["namespace"].as_str(),
        );
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&value),
        )
        .await?;
    }
    Ok(())
}

/// Applies YAML documents (server-side apply, forced), each in its own namespace or
/// the client's default one.
pub async fn apply(client: &kube::Client, yaml: &str) {
    for doc in yaml
        .split("\n---")
        .filter(|d| !d.trim().trim_start_matches("---").trim().is_empty())
    {
        let value: Value = serde_yaml_ng::from_str(doc).expect("YAML");
        let api_version = value["apiVersion"].as_str().expect("apiVersion");
        let kind = value["kind"].as_str().expect("kind");
        let name = value["metadata"]["name"].as_str().expect("name").to_owned();
        let api = api_for(
            client,
            api_version,
            kind,
            value["metadata"]["namespace"].as_str(),
        );
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    }
}

/// An API for `kind` of `api_version`: cluster-scoped for the cluster-scoped kinds
/// the tests use, otherwise in `namespace` (or the client's default namespace).
pub fn api_for(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    if matches!(
        kind,
        "Namespace"
            | "ClusterStrategyModule"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "IngressClass"
            | "Node"
    ) {
        Api::all_with(client.clone(), &resource)
    } else if let Some(ns) = namespace {
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::default_namespaced_with(client.clone(), &resource)
    }
}

/// A Deployment manifest of `replicas` pods of `image`, labelled `app: <name>`.
pub fn deployment_yaml(name: &str, image: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: "{image}"}}]
"#
    )
}
