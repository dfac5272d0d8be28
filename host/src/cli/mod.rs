//! The command line: parsing, logging set-up, and dispatch to each command.

mod controller;
mod dev;
mod strategy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Sluice: progressive delivery for Kubernetes, decided by WebAssembly strategy modules.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Directory for compiled strategy modules (reused across runs).
    #[arg(long, global = true, env = "SLUICE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with strategy modules: inspect, validate configuration, test against scenarios.
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
    /// Run a simulated cluster (API server, workloads, traffic gateway) on this machine.
    Dev(dev::DevArgs),
    /// Run the controller against a cluster (kubeconfig or in-cluster).
    Controller(Box<controller::ControllerArgs>),
    /// Print the CustomResourceDefinitions Sluice serves, as YAML.
    Crds,
    /// The compiler's helper process (started by the controller itself).
    #[command(name = "__compile-module", hide = true)]
    CompileModule(crate::strategy::compile::HelperArgs),
    /// Replay KubeVela's Kruise Rollout walk-through on the embedded simulator, narrated.
    Demo {
        /// Wait for Enter before rolling back and before approving.
        #[arg(long)]
        interactive: bool,
        /// Requests sent to measure the canary's share of traffic.
        #[arg(long, default_value_t = 1000)]
        requests: u32,
    },
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompileModule(args) = &cli.command {
        // The helper speaks through its exit code, stdout and stderr only.
        let code = crate::strategy::compile::helper_main(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd, cli.cache_dir),
        Command::Dev(args) => dev::run(args, cli.cache_dir),
        Command::Controller(args) => controller::run(*args, cli.cache_dir),
        Command::Crds => controller::print_crds(),
        Command::CompileModule(_) => Ok(ExitCode::SUCCESS),
        Command::Demo {
            interactive,
            requests,
        } => run_demo(interactive, requests),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_demo(interactive: bool, requests: u32) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(crate::demo::run(
        crate::demo::DemoOptions {
            requests,
            interactive,
        },
        &mut std::io::stdout(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
