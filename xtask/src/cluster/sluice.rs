//! `cargo xtask cluster up --with-sluice`: Sluice on the local control plane as in
//! production — its CRDs and its ServiceAccount and RBAC from `deploy/`, the
//! controller as its own process with that ServiceAccount's credentials (a token
//! from the TokenRequest API), its admission webhooks reached by URL (there is no
//! Service routing without a node network) — and the traffic gateway beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Kubectl, Layout, free_port, http_ok, process, wait_for};

/// The processes `--with-sluice` adds.
pub const PROCESSES: &[&str] = &["sluice-controller", "sluice-gateway"];

/// What it started, for `status` and `env`.
pub struct Started {
    pub gateway: String,
    pub metrics: String,
}

/// Builds `sluice` (debug, as the tests do; release, as shipped, with `release`)
/// and says where it is.
fn build(layout: &Layout, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "xtask: building sluice{} …",
        if release {
            " (release: 15–25 minutes on 2 cores the first time)"
        } else {
            ""
        }
    );
    let mut args = vec!["build", "--locked", "-p", "sluice", "--bin", "sluice"];
    if release {
        args.push("--release");
    }
    let status = Command::new(cargo)
        .current_dir(&layout.root)
        .args(&args)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p sluice failed");
    }
    Ok(layout
        .target
        .join(if release { "release" } else { "debug" })
        .join("sluice"))
}

/// Installs Sluice and starts the controller and the gateway.
pub fn up(
    layout: &Layout,
    kubectl: &Kubectl,
    server: &str,
    release: bool,
) -> anyhow::Result<Started> {
    let sluice = build(layout, release)?;
    let deploy = layout.root.join("deploy");
    kubectl.run(&[
        "apply",
        "--server-side",
        "-f",
        &deploy.join("crds/crds.yaml").display().to_string(),
    ])?;
    kubectl.wait_established(&[
        "rollouts.rollouts.kruise.io",
        "strategymodules.sluice.dev",
        "clusterstrategymodules.sluice.dev",
    ])?;
    let manifest = std::fs::read_to_string(deploy.join("controller.yaml"))
        .context("reading deploy/controller.yaml")?;
    // Not the Deployment, its Service or its ConfigMap: the controller runs as a
    // process here, where KWOK pods would run nothing.
    kubectl.apply(&super::documents(&manifest, |kind| {
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind)
    }))?;
    let token = kubectl.run(&[
        "create",
        "token",
        "sluice-controller",
        "-n",
        "sluice-system",
        "--duration=48h",
    ])?;
    let controller_config = layout.state.join("sluice-controller.kubeconfig");
    std::fs::write(
        &controller_config,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: sluice-local
  cluster: {{server: {server}, certificate-authority: {ca}}}
users:
- name: sluice-controller
  user: {{token: {token}}}
contexts:
- name: sluice-controller
  context: {{cluster: sluice-local, user: sluice-controller, namespace: sluice-system}}
current-context: sluice-controller
",
            ca = layout.state.join("pki/ca.crt").display(),
            token = token.trim(),
        ),
    )?;
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let webhooks = format!("127.0.0.1:{}", free_port()?);
    process::spawn(
        &layout.state,
        "sluice-controller",
        Command::new(&sluice)
            .arg("--cache-dir")
            .arg(layout.state.join("sluice-cache"))
            .arg("controller")
            .arg("--kubeconfig")
            .arg(&controller_config)
            .args(["--lease-namespace", "sluice-system"])
            .args(["--metrics-addr", &metrics])
            .args(["--webhook-host", "127.0.0.1", "--webhook-addr", &webhooks])
            .env("SLUICE_LOG", "sluice=info")
            .env_remove("KUBECONFIG"),
    )?;
    let port: u16 = metrics.rsplit(':').next().unwrap_or("0").parse()?;
    // It serves its probes once its webhooks are configured.
    wait_for(
        layout,
        "sluice-controller",
        "the Sluice controller to be ready",
        Duration::from_secs(60),
        || http_ok(port, "/readyz"),
    )?;
    let gateway = format!("127.0.0.1:{}", free_port()?);
    let gateway_port: u16 = gateway.rsplit(':').next().unwrap_or("0").parse()?;
    process::spawn(
        &layout.state,
        "sluice-gateway",
        Command::new(&sluice)
            .arg("gateway")
            .arg("--kubeconfig")
            .arg(layout.kubeconfig())
            .args(["--port", &gateway_port.to_string()])
            .env_remove("KUBECONFIG"),
    )?;
    wait_for(
        layout,
        "sluice-gateway",
        "the traffic gateway to answer",
        Duration::from_secs(30),
        || http_ok(gateway_port, "/.well-known/sluice-gateway/synced"),
    )?;
    Ok(Started { gateway, metrics })
}

/// The Gateway API's standard CRDs, from the pinned module.
pub fn gateway_api_crds(root: &Path, kubectl: &Kubectl) -> anyhow::Result<()> {
    let dir =
        super::tools::module_dir(root, &super::tools::GATEWAY_API)?.join("config/crd/standard");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut yaml = String::new();
    for file in files {
        yaml.push_str("---\n");
        yaml.push_str(&std::fs::read_to_string(&file)?);
        yaml.push('\n');
    }
    kubectl.apply(&yaml)?;
    kubectl.wait_established(&["httproutes.gateway.networking.k8s.io"])?;
    Ok(())
}
