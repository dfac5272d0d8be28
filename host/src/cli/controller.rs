//! `sluice controller` and `sluice crds`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kube::CustomResourceExt;

use crate::controller::leader::LeaseConfig;
use crate::controller::{ControllerConfig, run as run_controller};
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::{Runtime, RuntimeConfig};

/// Options of `sluice controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Kubeconfig to use; by default KUBECONFIG, ~/.kube/config, or the in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Only serve Rollouts of this namespace.
    #[arg(long, short)]
    pub namespace: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Run without leader election (only one replica may run).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "sluice-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where modules come from and what they may query.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// How modules are fetched and which metric providers they may query: options of
/// `sluice controller` and `sluice dev` alike.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A metric provider modules may query: NAME=URL of a Prometheus-compatible API (repeat).
    #[arg(long = "metric-provider")]
    pub providers: Vec<crate::providers::ProviderConfig>,
    /// How long one metric query may take.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub metric_timeout: std::time::Duration,
    /// A bearer token for the providers, read from this file (e.g. a mounted Secret).
    #[arg(long)]
    pub metric_token_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted, beside the system's, for HTTPS and OCI module sources.
    #[arg(long)]
    pub module_ca_file: Option<PathBuf>,
    /// An OCI registry (host:port) reached over plain HTTP (repeat).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

impl SourceArgs {
    /// Sets these options on a controller configuration.
    pub fn configure(&self, config: &mut ControllerConfig) -> anyhow::Result<()> {
        let token = match &self.metric_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        config.providers = self
            .providers
            .iter()
            .cloned()
            .map(|mut p| {
                p.timeout = self.metric_timeout;
                p.token = token.clone();
                p
            })
            .collect();
        config.module_ca = self.module_ca_file.clone();
        config.insecure_registries = self.insecure_registries.clone();
        Ok(())
    }
}

/// A kube client from a kubeconfig file, or inferred.
pub async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Runs the controller until Ctrl-C.
pub fn run(args: ControllerArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref()).await?;
        let download_dir = cache_dir.as_ref().map(|d| d.join("modules"));
        let strategies = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir,
            ..RuntimeConfig::default()
        })?);
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", std::process::id()));
        let mut config = ControllerConfig {
            namespace: args.namespace.clone(),
            lease: (!args.no_leader_election)
                .then(|| LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity)),
            metrics_addr: Some(args.metrics_addr),
            reporter: "sluice".into(),
            download_dir,
            ..ControllerConfig::default()
        };
        args.sources.configure(&mut config)?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        run_controller(client, config, strategies, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The CRDs as one YAML stream.
pub fn crds_yaml() -> anyhow::Result<String> {
    let crds = [
        Rollout::crd(),
        crate::modules::StrategyModule::crd(),
        crate::modules::ClusterStrategyModule::crd(),
    ];
    let mut out = String::new();
    for crd in &crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(crd)?);
    }
    Ok(out)
}

/// `sluice crds`.
pub fn print_crds() -> anyhow::Result<ExitCode> {
    print!("{}", crds_yaml()?);
    Ok(ExitCode::SUCCESS)
}
