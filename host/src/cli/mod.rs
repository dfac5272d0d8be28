//! The command line: parsing, logging set-up, and dispatch to each command.

mod controller;
mod dev;
mod gateway;
pub mod rollout;
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
    /// Run the traffic gateway against a cluster: it routes HTTP requests by the
    /// cluster's Ingresses (ingress-nginx's canary annotations) and HTTPRoutes to
    /// the ready endpoints of their Services, whose pods answer per image. A
    /// stand-in for an ingress controller and the application where pods run
    /// nothing (KWOK); `sluice dev` runs one of its own.
    Gateway(gateway::GatewayArgs),
    /// Operate Rollouts: list, get, approve, resume, pause, promote, undo, restart,
    /// set image, status. Also runs as the kubectl plugin `kubectl sluice …` when
    /// this binary is on PATH as `kubectl-sluice`.
    Rollout(rollout::RolloutArgs),
    /// Print the CustomResourceDefinitions Sluice serves, as YAML.
    Crds,
    /// Print a shell completion script (for `sluice`, or with --plugin for `kubectl-sluice`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
        /// Complete the kubectl plugin's name (`kubectl-sluice`) instead.
        #[arg(long)]
        plugin: bool,
    },
    /// Write the man pages (one per command) into a directory.
    Man {
        /// Where to write them.
        #[arg(long, default_value = "man")]
        out_dir: PathBuf,
    },
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

/// The kubectl plugin: `kubectl sluice VERB …` runs `kubectl-sluice VERB …`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sluice",
    version,
    about = "Operate Sluice Rollouts (rollouts.kruise.io) from kubectl",
    bin_name = "kubectl sluice"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: rollout::RolloutArgs,
}

/// Whether this process was started as the kubectl plugin.
fn as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("kubectl-sluice"))
        })
        .unwrap_or(false)
}

/// The exit code of a command that could not do its work: 2, but 3 for the
/// rollout verbs, whose `status` gives 2 its own meaning (still progressing).
fn finish(result: anyhow::Result<ExitCode>, error_code: u8) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error_code)
        }
    }
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    // The rollout verbs exit 3 on a usage error too: 2 is `status`'s "still
    // progressing".
    let rollout_verbs = as_plugin() || std::env::args().nth(1).as_deref() == Some("rollout");
    let usage = |e: clap::Error| {
        let _ = e.print();
        match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ExitCode::SUCCESS
            }
            _ => ExitCode::from(if rollout_verbs { 3 } else { 2 }),
        }
    };
    if as_plugin() {
        let cli = match PluginCli::try_parse() {
            Ok(cli) => cli,
            Err(e) => return usage(e),
        };
        init_logging(LogFormat::Text);
        return finish(rollout::run(cli.args), 3);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(e),
    };
    if let Command::CompileModule(args) = &cli.command {
        // The helper speaks through its exit code, stdout and stderr only.
        let code = crate::strategy::compile::helper_main(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    init_logging(cli.log_format);
    let error_code = if matches!(cli.command, Command::Rollout(_)) {
        3
    } else {
        2
    };
    let result = match cli.command {
        Command::Strategy(cmd) => strategy::run(cmd, cli.cache_dir),
        Command::Dev(args) => dev::run(args, cli.cache_dir),
        Command::Controller(args) => controller::run(*args, cli.cache_dir),
        Command::Gateway(args) => gateway::run(args),
        Command::Rollout(args) => rollout::run(args),
        Command::Crds => controller::print_crds(),
        Command::Completions { shell, plugin } => {
            let (mut command, name) = if plugin {
                (
                    <PluginCli as clap::CommandFactory>::command(),
                    "kubectl-sluice",
                )
            } else {
                (<Cli as clap::CommandFactory>::command(), "sluice")
            };
            clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir } => write_man_pages(&out_dir),
        Command::CompileModule(_) => Ok(ExitCode::SUCCESS),
        Command::Demo {
            interactive,
            requests,
        } => run_demo(interactive, requests),
    };
    finish(result, error_code)
}

/// One page per command: `sluice.1`, `sluice-rollout.1`, `sluice-rollout-get.1`…
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    fn walk(
        command: clap::Command,
        name: String,
        dir: &std::path::Path,
        written: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let command = command.name(name.clone());
        let file = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        std::fs::write(&file, page).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file.display().to_string());
        for sub in command
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            walk(
                sub.clone(),
                format!("{name}-{}", sub.get_name()),
                dir,
                written,
            )?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    walk(command, "sluice".into(), dir, &mut written)?;
    println!(
        "{} man pages written to {} (man -l {}/sluice.1)",
        written.len(),
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
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
