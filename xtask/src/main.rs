//! `cargo xtask test`: provisions what the test suite needs on this machine, then
//! runs it (`cargo test --workspace --locked`, with any further arguments).
//!
//! The suite drives real programs: kubectl 1.32 (an independent client of the
//! simulator), Debian's `prometheus` and `docker-registry`, Node.js with npm and
//! Python 3 with venv (which build the JavaScript and Python example strategies).
//! What is missing is installed with apt-get when this user may (root, or sudo
//! without a password); otherwise the task stops at once and prints the command to
//! run. The wasm targets come with the toolchain (`rust-toolchain.toml`).

mod cluster;
mod oracle;
mod real_suite;
mod scale;

use std::process::{Command, ExitCode, Stdio};

use clap::{Parser, Subcommand};

/// A program the tests run, and the Debian packages that provide it.
struct Need {
    what: &'static str,
    present: fn() -> bool,
    packages: &'static [&'static str],
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const NEEDS: &[Need] = &[
    Need {
        what: "prometheus (the metrics-driven strategy's tests query a real one)",
        present: || runs("prometheus", &["--version"]),
        packages: &["prometheus"],
    },
    Need {
        what: "docker-registry (modules are pulled from an OCI registry)",
        present: || runs("docker-registry", &["--version"]),
        packages: &["docker-registry"],
    },
    Need {
        what: "Node.js and npm (the JavaScript example strategy is built with jco)",
        present: || runs("npm", &["--version"]) && runs("node", &["--version"]),
        packages: &["nodejs", "npm"],
    },
    Need {
        what: "Python 3 with venv (the Python example strategy is built with componentize-py)",
        present: || runs("python3", &["-c", "import venv, ensurepip"]),
        packages: &["python3", "python3-venv"],
    },
];

/// The project's own tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Provision what the tests need, then run the whole suite: `cargo test
    /// --workspace --locked ARGS…` on the simulator, then the tests of
    /// tests/real-cluster.list on a real control plane (a fresh `cargo xtask
    /// cluster up`, or the cluster SLUICE_TEST_KUBECONFIG names).
    Test {
        /// Leave out the real-cluster suite (it says what it leaves out).
        #[arg(long, conflicts_with = "real_cluster_only")]
        no_real_cluster: bool,
        /// Run the real-cluster suite only (it says that the simulator's is left out).
        #[arg(long, conflicts_with = "args")]
        real_cluster_only: bool,
        /// Passed to `cargo test` (then only the simulator's suite runs).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A local Kubernetes control plane of upstream binaries (etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler, KWOK).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// OpenKruise Rollouts v0.6.2 as the oracle: each scenario of
    /// tests/fixtures/oracle/ runs under Kruise and under Sluice, each on a fresh
    /// local control plane, and the states after each action are compared. Exit 0
    /// when every difference is listed as kept (tests/fixtures/oracle/kept.yaml).
    Oracle(oracle::OracleArgs),
    /// Sluice, OpenKruise Rollouts and Argo Rollouts side by side at N Rollouts
    /// each (memory, CPU, API requests, reaction times), each on a fresh local
    /// control plane; results in target/scale/results.jsonl.
    Scale(scale::ScaleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Test {
            no_real_cluster,
            real_cluster_only,
            args,
        } => test(args, no_real_cluster, real_cluster_only),
        Task::Cluster(command) => cluster::run(command).map(|()| ExitCode::SUCCESS),
        Task::Oracle(args) => oracle::run(args),
        Task::Scale(args) => scale::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How packages can be installed here: `apt-get`, under `sudo` when needed.
fn installer() -> Option<Vec<&'static str>> {
    if !runs("apt-get", &["--version"]) {
        return None;
    }
    if is_root() {
        Some(vec!["apt-get"])
    } else if runs("sudo", &["-n", "true"]) {
        Some(vec!["sudo", "-n", "apt-get"])
    } else {
        None
    }
}

fn apt(prefix: &[&str], args: &[&str]) -> anyhow::Result<bool> {
    let (program, rest) = prefix.split_first().expect("a program");
    Ok(Command::new(program)
        .args(rest)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?
        .success())
}

fn provision() -> anyhow::Result<()> {
    if !runs("kubectl", &["version", "--client"]) {
        anyhow::bail!(
            "kubectl is missing: the simulator's tests drive it as an independent client. Install kubectl 1.32 (https://kubernetes.io/docs/tasks/tools/), then run `cargo xtask test` again"
        );
    }
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        eprintln!("xtask: kubectl, prometheus, docker-registry, Node.js and Python 3 are here");
        return Ok(());
    }
    let packages: Vec<&str> = missing
        .iter()
        .flat_map(|n| n.packages.iter().copied())
        .collect();
    for need in &missing {
        eprintln!("xtask: missing {}", need.what);
    }
    let command = format!(
        "sudo apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    let Some(prefix) = installer() else {
        anyhow::bail!(
            "cannot install packages as this user; run `{command}`, then `cargo xtask test` again"
        );
    };
    eprintln!("xtask: installing {} with apt-get …", packages.join(" "));
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&packages);
    if !apt(&prefix, &install)? {
        // A fresh machine's package lists may be empty or stale.
        eprintln!("xtask: updating the package lists …");
        if !apt(&prefix, &["update"])? || !apt(&prefix, &install)? {
            anyhow::bail!(
                "apt-get could not install {}; run `{command}` and look at its output",
                packages.join(" ")
            );
        }
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        anyhow::bail!("still missing after the install: {}", still.join("; "));
    }
    Ok(())
}

fn test(
    extra: Vec<String>,
    no_real_cluster: bool,
    real_cluster_only: bool,
) -> anyhow::Result<ExitCode> {
    provision()?;
    let layout = cluster::Layout::new()?;
    let given = std::env::var_os("SLUICE_TEST_KUBECONFIG").filter(|k| !k.is_empty());
    let real = if no_real_cluster {
        eprintln!(
            "xtask: --no-real-cluster: the {} tests of {} are not run against a real control plane",
            real_suite::read(&layout.root)?
                .values()
                .map(Vec::len)
                .sum::<usize>(),
            real_suite::LIST
        );
        false
    } else if !extra.is_empty() {
        eprintln!(
            "xtask: arguments for cargo test given: only the simulator's suite runs (the real-cluster suite runs without them)"
        );
        false
    } else {
        // Before the long simulator suite: a control plane that cannot be had
        // stops the run now, saying how to get one.
        if given.is_none() {
            cluster::build(false).map_err(|e| {
                anyhow::anyhow!("{e:#}\n(or run `cargo xtask test --no-real-cluster` to leave the real-cluster suite out)")
            })?;
        }
        true
    };
    let mut failed = false;
    if real_cluster_only {
        eprintln!(
            "xtask: --real-cluster-only: the simulator's suite (cargo test --workspace) is left out"
        );
    } else {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("xtask: cargo test --workspace --locked {}", extra.join(" "));
        let status = Command::new(&cargo)
            .args(["test", "--workspace", "--locked"])
            .args(&extra)
            .status()?;
        failed = !status.success();
    }
    if real {
        let failures = match &given {
            Some(kubeconfig) => real_suite::run(&layout.root, std::path::Path::new(kubeconfig))?,
            None => {
                cluster::fresh_up()?;
                let result = real_suite::run(&layout.root, &layout.kubeconfig());
                cluster::stop()?;
                result?
            }
        };
        if !failures.is_empty() {
            eprintln!(
                "xtask: the real-cluster suite failed in {} (logs of the control plane: {})",
                failures.join(", "),
                layout.state.join("logs").display()
            );
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
