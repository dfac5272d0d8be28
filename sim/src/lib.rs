//! An in-memory Kubernetes API server with workload and traffic simulation.
//!
//! It is what Sluice's demo, dev loop and end-to-end tests run against: it speaks the
//! Kubernetes REST protocol well enough for `kube::Client` and `kubectl`, simulates
//! what Deployments, ReplicaSets, StatefulSets, CloneSets and pods do, and routes HTTP
//! requests through Ingresses and HTTPRoutes as ingress-nginx and a Gateway would.
//! It is test and demo infrastructure, honestly labelled: not a Kubernetes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = sluice_sim::Sim::start(sluice_sim::SimConfig::default()).await?;
//! println!("kubectl --server {}", sim.api_url());
//! # Ok(()) }
//! ```

pub mod api;
pub mod crds;
pub mod error;
pub mod gateway;
pub mod object;
mod protobuf;
pub mod resources;
pub mod store;
pub mod workloads;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use store::Store;
pub use workloads::PodBehaviour;

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where the API server listens (port 0 picks a free one).
    pub api_addr: SocketAddr,
    /// Where the traffic gateway listens.
    pub gateway_addr: SocketAddr,
    /// How simulated pods behave.
    pub pods: PodBehaviour,
    /// Install the CRDs of the kinds the simulator drives (OpenKruise CloneSet,
    /// Gateway API HTTPRoute) at start.
    pub install_crds: bool,
    /// Seeds the gateway's random choices (which pod answers, whether a weighted
    /// canary takes a request, simulated errors) so that a run can be repeated
    /// exactly; `None` seeds from the operating system.
    pub seed: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pods: PodBehaviour::default(),
            install_crds: true,
            seed: None,
        }
    }
}

/// A running simulator. Dropping it stops it.
pub struct Sim {
    api_addr: SocketAddr,
    gateway_addr: SocketAddr,
    store: Arc<Store>,
    audit: Arc<api::audit::AuditLog>,
    faults: Arc<api::faults::Faults>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Starts the API server, the gateway and the simulated controllers.
    pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
        let store = Store::new();
        seed(&store, config.install_crds)?;
        let api = TcpListener::bind(config.api_addr)
            .await
            .with_context(|| format!("cannot listen on {} for the API server", config.api_addr))?;
        let gateway = TcpListener::bind(config.gateway_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for the traffic gateway",
                    config.gateway_addr
                )
            })?;
        let (api_addr, gateway_addr) = (api.local_addr()?, gateway.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let audit = Arc::new(api::audit::AuditLog::default());
        let faults = Arc::new(api::faults::Faults::default());
        let tasks = vec![
            tokio::spawn(workloads::run(store.clone(), config.pods.clone())),
            serve(
                api,
                api::router(store.clone(), audit.clone(), faults.clone()),
                stopped.clone(),
            ),
            serve(
                gateway,
                gateway::router(store.clone(), gateway::Dice::new(config.seed)),
                stopped,
            ),
        ];
        tracing::info!(api = %api_addr, gateway = %gateway_addr, "simulator started");
        Ok(Sim {
            api_addr,
            gateway_addr,
            store,
            audit,
            faults,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:<port>` of the API server.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The API server's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// `http://127.0.0.1:<port>` of the traffic gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    /// The gateway's address.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway_addr
    }

    /// The store, for tests that look behind the API.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every resource request the API server has served, with who asked.
    pub fn audit(&self) -> Vec<api::audit::AuditEntry> {
        self.audit.entries()
    }

    /// Faults to make, for tests of what survives them.
    pub fn faults(&self) -> &api::faults::Faults {
        &self.faults
    }

    /// A kubeconfig for kubectl and kube-rs (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-sim\n  cluster:\n    server: {}\ncontexts:\n- name: sluice-sim\n  context:\n    cluster: sluice-sim\n    user: sluice-sim\n    namespace: default\ncurrent-context: sluice-sim\nusers:\n- name: sluice-sim\n  user: {{}}\n",
            self.api_url()
        )
    }

    /// Writes [`Sim::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Stops serving and waits for the servers to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "simulator server stopped");
        }
    })
}

/// What a new cluster has: the system namespaces, the nginx IngressClass, and the
/// CRDs of the kinds the simulator drives.
fn seed(store: &Store, install_crds: bool) -> anyhow::Result<()> {
    let registry = store.registry();
    let ty = |group: &str, plural: &str| {
        registry
            .find_plural(group, plural)
            .cloned()
            .with_context(|| format!("built-in {plural}"))
    };
    let namespaces = ty("", "namespaces")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        api::create(store, &namespaces, "", json!({"metadata": {"name": ns}}))?;
    }
    api::create(
        store,
        &ty("networking.k8s.io", "ingressclasses")?,
        "",
        json!({"metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
               "spec": {"controller": "k8s.io/ingress-nginx"}}),
    )?;
    if install_crds {
        let crd = ty("apiextensions.k8s.io", "customresourcedefinitions")?;
        for definition in [crds::cloneset(), crds::httproute()] {
            api::create(store, &crd, "", definition)?;
        }
    }
    Ok(())
}
