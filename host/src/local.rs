//! The controller running in-process beside the simulator: what `sluice dev`,
//! `sluice demo` and the end-to-end tests use.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use sluice_sim::Sim;
use tokio::task::JoinHandle;

use crate::controller::{ControllerConfig, run};
use crate::strategy::{Runtime, RuntimeConfig};

/// A controller task; stop it with [`LocalController::stop`].
pub struct LocalController {
    stop: Option<futures::channel::oneshot::Sender<()>>,
    task: JoinHandle<()>,
    metrics_addr: Option<std::net::SocketAddr>,
}

impl LocalController {
    /// Where it serves `/metrics`, `/healthz` and `/readyz`, when asked to.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Stops the controller and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for LocalController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The user the controller runs as in a cluster: its ServiceAccount (deploy/).
pub const CONTROLLER_USER: &str = "system:serviceaccount:sluice-system:sluice-controller";

/// A kube client for the simulator.
pub fn client(sim: &Sim) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(sim.api_url().parse().context("simulator URL")?);
    Ok(kube::Client::try_from(config)?)
}

/// A kube client for the simulator that acts as the controller's ServiceAccount, so
/// the simulator's audit log tells the controller's requests apart.
pub fn controller_client(sim: &Sim) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(sim.api_url().parse().context("simulator URL")?);
    config.auth_info.impersonate = Some(CONTROLLER_USER.to_owned());
    Ok(kube::Client::try_from(config)?)
}

/// Installs Sluice's CRDs.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crds::all() {
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("installing the CRDs"),
        }
    }
    Ok(())
}

/// Installs the CRDs and starts the controller against the simulator, with its
/// admission webhooks on a free port, compiling modules in this process (trusted
/// modules only: the demo's).
pub async fn start_controller(
    sim: &Sim,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<LocalController> {
    start_controller_with(
        sim,
        RuntimeConfig {
            cache_dir,
            ..RuntimeConfig::default()
        },
        ControllerConfig {
            webhook: Some(crate::admission::WebhookConfig::local(0)),
            ..ControllerConfig::default()
        },
    )
    .await
}

/// Like [`start_controller`], with this sandbox and this configuration.
pub async fn start_controller_with(
    sim: &Sim,
    runtime: RuntimeConfig,
    config: ControllerConfig,
) -> anyhow::Result<LocalController> {
    install_crds(&client(sim)?).await?;
    let client = controller_client(sim)?;
    let mut config = config;
    let (serving_tx, mut serving) = tokio::sync::mpsc::unbounded_channel();
    let serves = config.metrics_addr.is_some();
    config.on_serving = Some(serving_tx);
    let runtime = Arc::new(Runtime::new(runtime)?);
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = run(client, config, runtime, shutdown).await {
            tracing::error!(error = %e, "controller stopped");
        }
    });
    // The port it bound (port 0 asks for any): known before anyone connects.
    let metrics_addr = if serves {
        Some(
            serving
                .recv()
                .await
                .context("the controller stopped before serving its endpoints (see its log)")?,
        )
    } else {
        None
    };
    Ok(LocalController {
        stop: Some(stop),
        task,
        metrics_addr,
    })
}
