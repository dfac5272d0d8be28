//! `sluice gateway`: the traffic gateway as a client of any API server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

/// Options of `sluice gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Kubeconfig to use; by default KUBECONFIG, ~/.kube/config, or the in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// The port to listen on (0: any free port, said at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Route by the objects of this namespace only (by default, all namespaces).
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Seed of the random choices (which endpoint answers, whether a weighted canary
    /// takes a request): the same seed and requests give the same answers.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = super::controller::client(args.kubeconfig.as_ref()).await?;
        let view = crate::gateway::ClusterView::start(client, args.namespace.as_deref());
        let router = sluice_sim::gateway::router_with(
            view.mirror(),
            Some(view.clone() as Arc<dyn sluice_sim::gateway::Synced>),
            sluice_sim::gateway::Dice::new(args.seed),
        );
        let addr = SocketAddr::new(args.address, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the traffic gateway"))?;
        let bound = listener.local_addr()?;
        eprintln!(
            "sluice gateway listening on {bound}, routing by the Ingresses, HTTPRoutes, Services, EndpointSlices and Pods of {}",
            args.namespace
                .as_deref()
                .map_or("every namespace".to_owned(), |ns| format!("namespace {ns}"))
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(super::controller::stop_signal())
            .await
            .context("the traffic gateway stopped")?;
        Ok(ExitCode::SUCCESS)
    })
}
