//! The shell commands of the README and the user guide, run as a reader would run
//! them, so a command that stops working fails the suite.
//!
//! Every ```sh block of a page becomes one shell script (`set -e`: the first
//! failing command fails the test), run in a scratch directory that looks like a
//! clone: `examples/` and `deploy/` from the repository, the `sluice` binary this
//! test was built with at `target/debug/sluice` and on `PATH`, and a home of its
//! own. What a reader's machine provides is provided as follows:
//!
//! - `cargo run -- ARGS` runs `sluice ARGS` (the binary cargo built for this test);
//!   `cargo build` has nothing left to do; `cargo xtask test` is the suite this test
//!   runs in, so it is not run again, nor `cargo xtask cluster` (the real control
//!   plane, which the real-cluster suite runs).
//! - A command that keeps running (`cargo run -- dev`, `sluice controller`) is
//!   started in the background, and the script goes on once it answers (the
//!   kubeconfig written and the API server up; `/readyz`), as a reader goes on in
//!   another terminal. It is stopped when the page is done.
//! - `my.wasm` (a strategy module of one's own) is the doubling example, and
//!   `target/wasm32-unknown-unknown/release/my.wasm` its core module.
//! - A block preceded by `<!-- doc-test: own cluster -->` is about a cluster of the
//!   reader's own: it runs after the rest of the page, against a simulator with
//!   nothing running on it, whose kubeconfig is `~/.kube/config`.

use std::path::{Path, PathBuf};
use std::process::Command;

const OWN_CLUSTER: &str = "<!-- doc-test: own cluster -->";

/// A ```sh block: where it starts, whether it wants a cluster of its own, its text.
struct Block {
    line: usize,
    own_cluster: bool,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut previous = "";
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```sh") => {
                current = Some(Block {
                    line: i + 1,
                    own_cluster: previous.trim() == OWN_CLUSTER,
                    text: String::new(),
                });
            }
            Some(_) if line.trim_start().starts_with("```") => out.extend(current.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None => {}
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    out
}

/// What every script starts with: the helpers that start a long-running command
/// and wait until it answers.
const PRELUDE: &str = r#"set -eu
# Stopped, and waited for, when the page is done: the next page may use its ports.
trap 'for p in $(cat .background 2>/dev/null); do kill $p 2>/dev/null || true; done; wait' EXIT
# Waits until `$@` succeeds, for at most a minute.
await() {
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "doc-test: never answered: $*" >&2; return 1
}
# A simulated cluster in the background: goes on when its kubeconfig works.
start_dev() {
  rm -f sluice-dev.kubeconfig
  sluice dev "$@" >dev.log 2>&1 &
  echo $! >>.background
  await test -s sluice-dev.kubeconfig
  await kubectl --kubeconfig sluice-dev.kubeconfig get --raw /version
}
# The controller in the background: goes on when it is ready.
start_controller() {
  sluice controller "$@" >controller.log 2>&1 &
  echo $! >>.background
  await curl -sf http://127.0.0.1:9090/readyz
}
"#;

/// The script for some blocks: each command as written, but for those the module
/// doc names.
fn script(blocks: &[&Block]) -> String {
    let mut out = String::from(PRELUDE);
    for block in blocks {
        out.push_str(&format!("echo '## block at line {}'\n", block.line));
        // A line ending in `\` goes on on the next.
        let joined = block.text.replace("\\\n", " ");
        for line in joined.lines() {
            let command = line.split(" #").next().unwrap_or("").trim();
            if command.is_empty() || command.starts_with('#') {
                continue;
            }
            let rewritten = if let Some(args) = command.strip_prefix("cargo run -- dev") {
                format!("start_dev{args}")
            } else if let Some(args) = command.strip_prefix("sluice controller") {
                format!("start_controller{args}")
            } else {
                command.to_owned()
            };
            out.push_str(&format!(
                "echo '$ {}'\n{rewritten}\n",
                command.replace('\'', "'\\''")
            ));
        }
    }
    out
}

/// A scratch directory that looks like a clone, with a home and a PATH of its own.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let at = |p: &str| dir.path().join(p);
        for shared in ["examples", "deploy"] {
            std::os::unix::fs::symlink(root.join(shared), at(shared)).expect("symlink");
        }
        for made in [
            "target/debug",
            "target/wasm32-unknown-unknown/release",
            "bin",
            "home/.kube",
        ] {
            std::fs::create_dir_all(at(made)).expect("mkdir");
        }
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
        std::os::unix::fs::symlink(&binary, at("target/debug/sluice")).expect("symlink");
        std::os::unix::fs::symlink(&binary, at("bin/sluice")).expect("symlink");
        std::fs::write(at("my.wasm"), sluice_test_guests::DOUBLING).expect("my.wasm");
        std::fs::copy(
            sluice_test_guests::DOUBLING_CORE_PATH,
            at("target/wasm32-unknown-unknown/release/my.wasm"),
        )
        .expect("the core module");
        let shim = at("bin/cargo");
        std::fs::write(
            &shim,
            r#"#!/bin/sh
# cargo, as the docs use it: the binary is built already (by the test's own build).
case "$1" in
  run) shift; [ "${1:-}" = "--" ] && shift; exec sluice "$@" ;;
  build) exit 0 ;;
  xtask)
    case "${2:-}" in
      # Its lines for the shell are none here: what they set is the real cluster's.
      cluster) echo "(cargo xtask cluster $3: the real control plane, which the real-cluster suite runs)" >&2 ;;
      *) echo "(cargo xtask test: the suite this runs in; not run again)" ;;
    esac
    exit 0 ;;
  *) echo "doc-test: cargo $* is not expected in the docs" >&2; exit 1 ;;
esac
"#,
        )
        .expect("shim");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Scratch { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Runs `script` here; fails the test with what it printed if a command fails.
    async fn run(&self, page: &str, script: String, kubeconfig: Option<PathBuf>) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env("HOME", self.path("home"))
            .env(
                "PATH",
                format!(
                    "{}:{}:{}",
                    self.path("bin").display(),
                    self.path("home/.local/bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("KUBECONFIG")
            .env("SLUICE_LOG", "warn");
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("sh runs"))
            .await
            .expect("join");
        let logs: String = ["dev.log", "controller.log"]
            .iter()
            .filter_map(|l| {
                std::fs::read_to_string(self.path(l))
                    .ok()
                    .map(|t| format!("--- {l}\n{t}"))
            })
            .collect();
        assert!(
            out.status.success(),
            "a command of {page} failed:\n{}\n{}\n{logs}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

async fn run_page(page: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let markdown = std::fs::read_to_string(root.join(page)).expect("the page");
    let all = blocks(&markdown);
    assert!(!all.is_empty(), "{page} has no sh block");
    let (own, shared): (Vec<&Block>, Vec<&Block>) = all.iter().partition(|b| b.own_cluster);
    if !shared.is_empty() {
        Scratch::new().run(page, script(&shared), None).await;
    }
    for block in own {
        let scratch = Scratch::new();
        let sim = sluice_testkit::sim().await;
        let kubeconfig = scratch.path("home/.kube/config");
        sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        scratch.run(page, script(&[block]), Some(kubeconfig)).await;
    }
}

/// One page after the other: the commands use the documented ports.
#[tokio::test]
async fn the_commands_of_the_readme_and_the_user_guide_work() {
    run_page("README.md").await;
    run_page("docs/user-guide.md").await;
}

#[test]
fn blocks_are_found_with_their_marks() {
    let page = "text\n\n```sh\necho one \\\n  two   # a comment\n```\n<!-- doc-test: own cluster -->\n\n```sh\nsluice controller --x\n```\n```yaml\nnot: run\n```\n";
    let found = blocks(page);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].line, found[0].own_cluster), (3, false));
    assert!(found[1].own_cluster);
    let s = script(&[&found[0], &found[1]]);
    assert!(s.contains("\necho one    two\n"), "{s}");
    assert!(s.contains("\nstart_controller --x\n"), "{s}");
    assert!(!s.contains("not: run"));
}
