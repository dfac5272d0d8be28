//! Rollouts that name a strategy module, and what the tests read back.

use serde_json::Value;
use sluice::kruise::v1alpha1::Rollout;

use crate::support::cluster::Cluster;

/// A Deployment `echo` (v1, 5 pods), its Service and Ingress, and a Rollout of
/// `steps` that names `module` with `config`.
pub fn app_and_rollout(module: &str, config: Option<&str>, steps: &str) -> String {
    format!(
        "{}\n---\n{}",
        crate::support::cluster::deployment_yaml("echo", "barnett/canarydemo:v1", 5),
        rollout_yaml(module, config, steps)
    )
}

/// The Service and Ingress of `echo`, and a Rollout of `steps` that names `module`
/// with `config`.
pub fn rollout_yaml(module: &str, config: Option<&str>, steps: &str) -> String {
    let config = config
        .map(|c| format!("\n    strategy.sluice.dev/config: '{c}'"))
        .unwrap_or_default();
    let service_and_ingress = crate::support::cluster::SERVICE_AND_INGRESS.trim();
    format!(
        r#"
{service_and_ingress}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: echo
  annotations:
    strategy.sluice.dev/module: {module}{config}
spec:
  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: echo}}}}
  strategy:
    canary:
      steps: {steps}
      trafficRoutings: [{{service: echo, gracePeriodSeconds: 0, ingress: {{name: echo}}}}]
"#
    )
}

/// A ConfigMap `ns/name` holding `bytes` under the key `module.wasm`.
pub fn configmap(ns: &str, name: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\nbinaryData:\n  module.wasm: {}\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A StrategyModule `ns/name` reading the ConfigMap `configmap`, pinned when `pin`
/// is given, granted `log`.
pub fn module(ns: &str, name: &str, configmap: &str, pin: Option<&str>) -> String {
    let pin = pin
        .map(|p| format!(", sha256: \"{p}\""))
        .unwrap_or_default();
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: StrategyModule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  source: {{configMap: {{name: {configmap}, key: module.wasm}}{pin}}}\n  capabilities: {{log: true}}\n"
    )
}

/// A StrategyModule `name` downloaded from `url`, pinned to `pin`, granted `log`.
pub fn url_module(name: &str, url: &str, pin: &str) -> String {
    module_from(name, &format!("url: \"{url}\""), pin)
}

/// A StrategyModule `name` pulled from the OCI `reference`, pinned to `pin`, granted `log`.
pub fn oci_module(name: &str, reference: &str, pin: &str) -> String {
    module_from(name, &format!("oci: \"{reference}\""), pin)
}

fn module_from(name: &str, source: &str, pin: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: StrategyModule\nmetadata: {{name: {name}}}\nspec:\n  source: {{{source}, sha256: \"{pin}\"}}\n  capabilities: {{log: true}}\n"
    )
}

/// Waits until the module `default/name` is ready and has described itself (its
/// describe call waits its turn in the sandbox, so it may come a little later).
pub async fn until_module_ready(c: &Cluster, name: &str) {
    c.until(&format!("module {name} is ready"), || async {
        let status = module_status(c, c.ns(), name).await;
        status["ready"] == true && status["describesAs"].is_string()
    })
    .await;
}

/// A module's digest, as pins and statuses write it.
pub fn sha(bytes: &[u8]) -> String {
    sluice::strategy::cache::sha256_hex(bytes)
}

/// The status of the StrategyModule `ns/name`, or null.
pub async fn module_status(c: &Cluster, ns: &str, name: &str) -> Value {
    c.object_in(ns, "sluice.dev", "strategymodules", name)
        .await
        .and_then(|m| m.get("status").cloned())
        .unwrap_or(Value::Null)
}

/// The Rollout's `StrategyReady` condition: status, reason, message.
pub fn strategy_condition(r: &Rollout) -> Option<(String, String, String)> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "StrategyReady")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The module name and digest of the Rollout's last decision.
pub fn strategy_status(r: &Rollout) -> (String, String) {
    r.status
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .map(|s| (s.module.clone(), s.digest.clone()))
        .unwrap_or_default()
}

/// Waits for the first release to settle, then releases v2.
pub async fn release_v2(c: &Cluster) {
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&crate::support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v2",
        5,
    ))
    .await;
}

/// Sets the Rollout `echo`'s module configuration.
pub async fn set_config(c: &Cluster, config: &str) {
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        serde_json::json!({"metadata": {"annotations": {"strategy.sluice.dev/config": config}}}),
    )
    .await;
}
