//! `sluice controller` and `sluice crds`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::config::OperatorConfig;
use crate::controller::leader::LeaseConfig;
use crate::controller::{ControllerConfig, run as run_controller};
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
    /// The admission webhooks.
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// How the admission webhooks are served (`sluice controller`).
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Serve no admission webhooks (workloads are then held only once the controller
    /// sees their new template, and invalid Rollouts are stored and reported).
    #[arg(long)]
    pub no_webhooks: bool,
    /// Where the webhooks listen (HTTPS).
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// The Service in front of the controller's pods that the API server calls,
    /// `NAMESPACE/NAME`; by default `sluice-webhook` in the controller's namespace.
    #[arg(long)]
    pub webhook_service: Option<String>,
    /// Call the webhooks at `https://HOST:<port>` instead of through a Service (an
    /// API server outside the cluster's network); the certificate names HOST.
    #[arg(long, conflicts_with = "webhook_service")]
    pub webhook_host: Option<String>,
    /// The Secret keeping the webhooks' certificates, `NAMESPACE/NAME`; by default
    /// `sluice-webhook-certs` in the controller's namespace.
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// A label workloads must carry for the webhooks to hold them (repeat), as
    /// KubeVela's addon asks for `kruise-rollout.oam.dev/webhook`.
    #[arg(long = "webhook-require-label")]
    pub require_labels: Vec<String>,
    /// The largest percentage of replicas a partition-style step with traffic may
    /// update (Kruise's `--partition-percent-limit`).
    #[arg(long, default_value_t = crate::kruise::validate::DEFAULT_PARTITION_LIMIT)]
    pub partition_percent_limit: i64,
}

fn split_ref(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    text.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("--{what} {text:?}: write it NAMESPACE/NAME"))
}

impl WebhookArgs {
    /// The webhooks' configuration for a controller in `namespace` (where its
    /// Service and Secret are), serving `scope` (one namespace, or all).
    pub fn config(
        &self,
        namespace: &str,
        scope: Option<&str>,
    ) -> anyhow::Result<Option<crate::admission::WebhookConfig>> {
        if self.no_webhooks {
            return Ok(None);
        }
        let endpoint = match (&self.webhook_host, &self.webhook_service) {
            (Some(host), _) => crate::admission::Endpoint::Host(host.clone()),
            (None, Some(service)) => {
                let (namespace, name) = split_ref(service, "webhook-service")?;
                crate::admission::Endpoint::Service {
                    namespace,
                    name,
                    port: 443,
                }
            }
            (None, None) => crate::admission::Endpoint::Service {
                namespace: namespace.to_owned(),
                name: "sluice-webhook".into(),
                port: 443,
            },
        };
        let (secret_namespace, secret_name) = match &self.webhook_secret {
            Some(secret) => split_ref(secret, "webhook-secret")?,
            None => (namespace.to_owned(), "sluice-webhook-certs".to_owned()),
        };
        Ok(Some(crate::admission::WebhookConfig {
            listen: self.webhook_addr,
            endpoint,
            secret_namespace,
            secret_name,
            selection: crate::admission::Selection {
                extra_object_selector: self
                    .require_labels
                    .iter()
                    .map(|key| serde_json::json!({"key": key, "operator": "Exists"}))
                    .collect(),
                namespace: scope.map(str::to_owned),
                excluded_namespaces: crate::admission::configuration::SYSTEM_NAMESPACES
                    .iter()
                    .map(|s| (*s).to_owned())
                    // The controller's own namespace, unless it shares `default`
                    // with workloads.
                    .chain((namespace != "default").then(|| namespace.to_owned()))
                    .collect(),
            },
            renewal_check: std::time::Duration::from_secs(3600),
        }))
    }

    /// What the Rollout rules are told.
    pub fn validation(&self) -> crate::kruise::validate::Options {
        crate::kruise::validate::Options {
            partition_limit: self.partition_percent_limit,
        }
    }
}

/// The operator's configuration and how modules are fetched: options of
/// `sluice controller` and `sluice dev` alike.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The operator's configuration file: sandbox ceilings and sizing, compilation,
    /// cache, and metric providers with the namespaces granted each
    /// (deploy/config.example.yaml shows every setting).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A metric provider every namespace may query: NAME=URL of a
    /// Prometheus-compatible API (repeat). Declare providers in --config to grant
    /// them to some namespaces only, with a token and a CA of their own.
    #[arg(long = "metric-provider")]
    pub providers: Vec<crate::providers::ProviderConfig>,
    /// How long one query to a --metric-provider may take.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub metric_timeout: std::time::Duration,
    /// CA certificates (PEM) trusted, beside the system's, for HTTPS and OCI module sources.
    #[arg(long)]
    pub module_ca_file: Option<PathBuf>,
    /// An OCI registry (host:port) reached over plain HTTP (repeat).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

impl SourceArgs {
    /// The configuration file (or the defaults), with the providers of the command line.
    pub fn operator_config(&self, cache_dir: Option<PathBuf>) -> anyhow::Result<OperatorConfig> {
        let mut operator = match &self.config {
            Some(path) => OperatorConfig::read(path)?,
            None => OperatorConfig::default(),
        };
        operator
            .metric_providers
            .extend(self.providers.iter().cloned().map(|mut p| {
                p.timeout = self.metric_timeout;
                p
            }));
        if cache_dir.is_some() {
            operator.cache.dir = cache_dir;
        }
        operator
            .check()
            .map_err(|e| anyhow::anyhow!("the controller's configuration: {e}"))?;
        Ok(operator)
    }

    /// Sets these options on a controller configuration.
    pub fn configure(&self, config: &mut ControllerConfig, operator: &OperatorConfig) {
        config.providers = operator.metric_providers.clone();
        config.module_ca = self.module_ca_file.clone();
        config.insecure_registries = self.insecure_registries.clone();
        config.download_dir = operator.cache.dir.as_ref().map(|d| d.join("modules"));
    }
}

/// The sandbox's configuration, compiling modules in a helper process (this binary).
pub fn runtime_config(operator: &OperatorConfig) -> anyhow::Result<RuntimeConfig> {
    let program = std::env::current_exe().context("finding this binary to compile modules")?;
    Ok(operator.runtime_config(Some(program)))
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

/// Runs the controller until Ctrl-C or SIGTERM, then releases its lease.
pub fn run(args: ControllerArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref()).await?;
        let operator = args.sources.operator_config(cache_dir)?;
        let strategies = Arc::new(Runtime::new(runtime_config(&operator)?)?);
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
            validation: args.webhooks.validation(),
            webhook: args
                .webhooks
                .config(&args.lease_namespace, args.namespace.as_deref())?,
            ..ControllerConfig::default()
        };
        args.sources.configure(&mut config, &operator);
        run_controller(client, config, strategies, stop_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes at Ctrl-C or SIGTERM (what the kubelet sends a container to stop it).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping at Ctrl-C only")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The CRDs as one YAML stream.
pub fn crds_yaml() -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in &crate::crds::all() {
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
