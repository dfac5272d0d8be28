//! `sluice dev`: a simulated cluster to use with kubectl and curl.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_sim::{PodBehaviour, Sim, SimConfig};

/// Options of `sluice dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the Kubernetes API server (plain HTTP on 127.0.0.1).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Port of the traffic gateway (the simulated ingress controller).
    #[arg(long, default_value_t = 8080)]
    pub gateway_port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "sluice-dev.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Milliseconds from a pod's creation to its readiness.
    #[arg(long, default_value_t = 500)]
    pub pod_ready_ms: u64,
    /// Port of the controller's admission webhooks (HTTPS on 127.0.0.1).
    #[arg(long, default_value_t = 9443)]
    pub webhook_port: u16,
    /// Seed of the gateway's random choices (which pod answers, whether a weighted
    /// canary takes a request): the same seed and requests give the same answers.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where modules come from and what they may query, as for `sluice controller`.
    #[command(flatten)]
    pub sources: super::controller::SourceArgs,
}

/// Runs the simulator until Ctrl-C.
pub fn run(args: DevArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let sim = Sim::start(SimConfig {
            api_addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], args.gateway_port)),
            pods: PodBehaviour {
                ready_delay: Duration::from_millis(args.pod_ready_ms),
                ..PodBehaviour::default()
            },
            install_crds: true,
            seed: args.seed,
        })
        .await?;
        sim.write_kubeconfig(&args.kubeconfig)?;
        let operator = args.sources.operator_config(cache_dir)?;
        let mut config = crate::controller::ControllerConfig {
            webhook: Some(crate::admission::WebhookConfig::local(args.webhook_port)),
            ..crate::controller::ControllerConfig::default()
        };
        args.sources.configure(&mut config, &operator);
        // The same lease as any controller: a `sluice controller` pointed at this
        // cluster stands by instead of writing beside the embedded one.
        config.lease = Some(crate::controller::leader::LeaseConfig::new(
            "default",
            "sluice-controller",
            &format!("sluice-dev-{}", std::process::id()),
        ));
        let controller = crate::local::start_controller_with(
            &sim,
            super::controller::runtime_config(&operator)?,
            config,
        )
        .await?;
        let kubeconfig = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());
        println!("Simulated cluster running (not a real Kubernetes: an in-memory API server with simulated workloads),");
        println!("with the Sluice controller serving rollouts.kruise.io Rollouts.");
        println!();
        println!("  API server:       {}", sim.api_url());
        println!("  traffic gateway:  {}", sim.gateway_url());
        println!("  kubeconfig:       {}", kubeconfig.display());
        println!();
        println!("Try:");
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  kubectl apply -f examples/canary-demo/v1.yaml -f examples/canary-demo/rollout.yaml");
        println!("  kubectl get deploy,pods,svc,ingress");
        println!("  curl -H 'Host: canary-demo.com' {}/version", sim.gateway_url());
        println!("  kubectl apply -f examples/canary-demo/v2.yaml      # a release: 1 pod of 5, 20% of the traffic");
        println!("  kubectl get rollout canary-demo");
        println!("  kubectl patch rollout canary-demo --subresource=status --type=merge -p '{{\"status\":{{\"canaryStatus\":{{\"currentStepState\":\"StepReady\"}}}}}}'");
        println!("  curl {}/metrics", sim.gateway_url());
        println!();
        println!("Press Ctrl-C to stop.");
        super::controller::stop_signal().await;
        controller.stop().await;
        sim.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
