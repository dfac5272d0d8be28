//! The peers on the local control plane: OpenKruise Rollouts v0.6.2
//! (`--with-kruise`) and Argo Rollouts v1.9.2 (`--with-argo`), each built from
//! its module (see [`super::tools`]) and run as a process with the admin
//! kubeconfig, installed from its module's own manifests.

use std::process::Command;
use std::time::Duration;

use super::{Kubectl, Layout, free_port, http_ok, process, tools, wait_for};

/// The processes the peers run as.
pub const PROCESSES: &[&str] = &["kruise-rollout", "argo-rollouts"];

/// Installs OpenKruise Rollouts from its module's `config/default` (rendered by
/// kubectl's kustomize: its CRDs with their conversion webhooks, RBAC and webhook
/// configurations; not its Deployment or Services) and starts it with its
/// webhooks at `https://127.0.0.1:PORT` (`WEBHOOK_HOST`), which it writes into
/// the configurations and the CRDs' conversion itself. It reads its Lua scripts
/// from the folder it runs in: the module's.
pub fn kruise(layout: &Layout, kubectl: &Kubectl) -> anyhow::Result<String> {
    let bin = tools::ensure(&layout.root, &tools::KRUISE_ROLLOUTS)?;
    let module = tools::module_dir(&layout.root, &tools::KRUISE_ROLLOUTS)?;
    let rendered = kubectl.run(&[
        "kustomize",
        &module.join("config/default").display().to_string(),
    ])?;
    kubectl.apply(&super::documents(&rendered, |kind| {
        !["Deployment", "Service", "Secret"].contains(&kind)
    }))?;
    kubectl.wait_established(&[
        "rollouts.rollouts.kruise.io",
        "batchreleases.rollouts.kruise.io",
    ])?;
    let metrics = free_port()?;
    let health = free_port()?;
    let webhook = free_port()?;
    let certs = layout.state.join("kruise-certs");
    std::fs::create_dir_all(&certs)?;
    process::spawn(
        &layout.state,
        "kruise-rollout",
        Command::new(bin.join("kruise-rollout"))
            .current_dir(&module)
            .env("WEBHOOK_HOST", "127.0.0.1")
            .env("WEBHOOK_PORT", webhook.to_string())
            .env("WEBHOOK_CERT_DIR", &certs)
            .env("POD_NAMESPACE", "kruise-rollout")
            .env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", layout.kubeconfig().display()))
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics}"))
            .arg(format!("--health-probe-bind-address=127.0.0.1:{health}"))
            // Kruise's own manifests turn it on: the in-place ("partition")
            // Deployment releases need it.
            .arg("--feature-gates=AdvancedDeployment=true"),
    )?;
    wait_for(
        layout,
        "kruise-rollout",
        "OpenKruise Rollouts to be ready",
        Duration::from_secs(90),
        || http_ok(health, "/readyz"),
    )?;
    Ok(format!("127.0.0.1:{metrics}"))
}

/// Installs Argo Rollouts' CRDs from its module's `manifests/crds` and starts its
/// controller (no leader election; its namespace `argo-rollouts`).
pub fn argo(layout: &Layout, kubectl: &Kubectl) -> anyhow::Result<String> {
    let bin = tools::ensure(&layout.root, &tools::ARGO_ROLLOUTS)?;
    let module = tools::module_dir(&layout.root, &tools::ARGO_ROLLOUTS)?;
    let crds = kubectl.run(&[
        "kustomize",
        &module.join("manifests/crds").display().to_string(),
    ])?;
    kubectl.apply(&crds)?;
    kubectl.wait_established(&["rollouts.argoproj.io", "analysistemplates.argoproj.io"])?;
    kubectl.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: argo-rollouts}\n")?;
    let metrics = free_port()?;
    let health = free_port()?;
    process::spawn(
        &layout.state,
        "argo-rollouts",
        Command::new(bin.join("rollouts-controller"))
            .env("POD_NAMESPACE", "argo-rollouts")
            .env_remove("KUBECONFIG")
            .arg(format!("--kubeconfig={}", layout.kubeconfig().display()))
            .arg("--leader-elect=false")
            .arg(format!("--metricsPort={metrics}"))
            .arg(format!("--healthzPort={health}"))
            .arg("--logformat=json"),
    )?;
    wait_for(
        layout,
        "argo-rollouts",
        "Argo Rollouts to be healthy",
        Duration::from_secs(90),
        || http_ok(health, "/healthz"),
    )?;
    Ok(format!("127.0.0.1:{metrics}"))
}
