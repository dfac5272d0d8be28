//! kubectl 1.32 as an independent client of the simulator or of a real cluster: a kubeconfig of its
//! own, a home of its own (no cache shared between tests), and a `PATH` that can
//! carry plugins.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sluice_sim::Sim;

/// kubectl pointed at one simulator.
pub struct Kubectl {
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    path: Option<OsString>,
}

impl Kubectl {
    /// kubectl for `sim`.
    pub fn new(sim: &Sim) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Kubectl {
            kubeconfig,
            dir,
            path: None,
        }
    }

    /// kubectl with a copy of `kubeconfig` (a real cluster's).
    pub fn with_kubeconfig(kubeconfig: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("kubeconfig");
        std::fs::copy(kubeconfig, &copy)
            .unwrap_or_else(|e| panic!("copying {}: {e}", kubeconfig.display()));
        Kubectl {
            kubeconfig: copy,
            dir,
            path: None,
        }
    }

    /// Puts `dir` first on kubectl's `PATH` (where it finds plugins).
    pub fn with_path(mut self, dir: &Path) -> Self {
        let mut path = OsString::from(dir);
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        self.path = Some(path);
        self
    }

    /// The kubeconfig it uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn envs(&self) -> Vec<(OsString, OsString)> {
        let mut envs = vec![
            (
                "KUBECONFIG".into(),
                self.kubeconfig.clone().into_os_string(),
            ),
            ("HOME".into(), self.dir.path().as_os_str().to_owned()),
        ];
        if let Some(path) = &self.path {
            envs.push(("PATH".into(), path.clone()));
        }
        envs
    }

    /// The command, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .envs(self.envs())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a shell script (`sh -c`) with kubectl's environment: a pipeline as an
    /// operator would type it. Whatever its outcome.
    pub async fn shell(&self, script: &str) -> Output {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script).envs(self.envs());
        tokio::task::spawn_blocking(move || sh.output().expect("sh runs"))
            .await
            .expect("join")
    }

    /// Runs kubectl (off the async runtime) with `stdin`, whatever its outcome.
    pub async fn output(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command(args);
        let stdin = stdin.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .spawn()
                .expect("kubectl is installed (kubectl 1.32 is part of this project's machines)");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(stdin.as_bytes())
                .expect("write stdin");
            child.wait_with_output().expect("kubectl runs")
        })
        .await
        .expect("join")
    }

    /// Runs kubectl with `stdin` and returns its stdout; fails the test if kubectl fails.
    pub async fn run(&self, args: &[&str], stdin: &str) -> String {
        let out = self.output(args, stdin).await;
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting it to fail, and returns its stderr.
    pub async fn fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.output(args, stdin).await;
        assert!(
            !out.status.success(),
            "kubectl {} should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl … -o json`, parsed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&all, "").await).expect("json output")
    }
}
