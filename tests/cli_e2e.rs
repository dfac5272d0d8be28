//! The operator's CLI as kubectl runs it: the `sluice` binary on PATH as
//! `kubectl-sluice`, driven through a five-step release on the simulator with the
//! controller running — approve, pause, resume, promote, set image, undo, and
//! `status` exit codes in a shell pipeline.

mod support;

use std::path::PathBuf;

use sluice_testkit::Kubectl;
use support::cluster::Cluster;
use support::echo;

const STEPS: &str = "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}, {weight: 100}]";

/// The echo application with a five-step Rollout.
fn app(image: &str) -> String {
    format!("{}---{}", echo::app(image, 5), echo::rollout(STEPS))
}

/// kubectl with the `sluice` binary on its PATH as the plugin `kubectl-sluice`.
struct Plugin {
    kubectl: Kubectl,
    _dir: tempfile::TempDir,
}

impl Plugin {
    fn new(c: &Cluster) -> Plugin {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
        std::os::unix::fs::symlink(&binary, dir.path().join("kubectl-sluice")).expect("symlink");
        Plugin {
            kubectl: c.kubectl().with_path(dir.path()),
            _dir: dir,
        }
    }

    async fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["sluice"];
        all.extend(args);
        self.kubectl.run(&all, "").await
    }

    async fn fails(&self, args: &[&str]) -> String {
        let mut all = vec!["sluice"];
        all.extend(args);
        self.kubectl.fails(&all, "").await
    }

    /// `kubectl sluice status echo ARGS; echo $?` in a shell: what it printed and
    /// its exit code.
    async fn status(&self, args: &str) -> (String, i32) {
        let out = self
            .kubectl
            .shell(&format!(
                "kubectl sluice status echo {args}; echo \"exit=$?\""
            ))
            .await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("exit="))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no exit code in {stdout}"));
        (stdout, code)
    }
}

async fn image_of(c: &Cluster) -> String {
    c.object("apps", "deployments", "echo")
        .await
        .and_then(|d| {
            d.pointer("/spec/template/spec/containers/0/image")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

async fn spec_paused(c: &Cluster) -> bool {
    c.object("rollouts.kruise.io", "rollouts", "echo")
        .await
        .and_then(|r| r.pointer("/spec/strategy/paused").and_then(|p| p.as_bool()))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_five_step_release_operated_from_kubectl() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1")).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    let k = Plugin::new(&c);

    let listed = k.run(&["list"]).await;
    let row = listed
        .lines()
        .find(|l| l.starts_with("echo"))
        .expect(&listed);
    assert!(
        row.contains("Healthy") && row.contains("builtin:steps"),
        "{listed}"
    );
    assert_eq!(k.status("").await.1, 0);

    // A new image, through the plugin: the release starts and waits at step 1.
    let out = k
        .run(&["set", "image", "echo", "echo=barnett/canarydemo:v2"])
        .await;
    assert!(
        out.contains("rollout.rollouts.kruise.io/echo image updated"),
        "{out}"
    );
    assert_eq!(image_of(&c).await, "barnett/canarydemo:v2");
    c.until_paused_at("echo", 1).await;
    let (said, code) = k.status("").await;
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("progressing: Rollout is in step(1/5)"),
        "{said}"
    );
    let tree = k.run(&["get", "echo"]).await;
    let marked = tree.lines().find(|l| l.contains('▶')).expect(&tree);
    assert!(
        marked.contains("1. weight 20%") && marked.contains("StepPaused"),
        "{tree}"
    );
    let canary = tree.lines().find(|l| l.contains("Canary")).expect(&tree);
    assert!(
        canary.contains("deployment/echo-") && canary.contains("1/1 ready"),
        "{tree}"
    );

    // A dry run is checked by the server and changes nothing.
    let before = c
        .object("rollouts.kruise.io", "rollouts", "echo")
        .await
        .unwrap();
    let out = k.run(&["approve", "echo", "--dry-run"]).await;
    assert!(out.contains("approved (server dry run)"), "{out}");
    let after = c
        .object("rollouts.kruise.io", "rollouts", "echo")
        .await
        .unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );

    k.run(&["approve", "echo"]).await;
    c.until_paused_at("echo", 2).await;

    // Paused, the release holds; resume unpauses and approves, as vela's resume.
    k.run(&["pause", "echo"]).await;
    assert!(spec_paused(&c).await);
    let err = k.fails(&["pause", "echo"]).await;
    assert!(err.contains("already paused"), "{err}");
    let out = k.run(&["resume", "echo"]).await;
    assert!(out.contains("resumed"), "{out}");
    assert!(!spec_paused(&c).await);
    c.until_paused_at("echo", 3).await;

    k.run(&["promote", "echo"]).await;
    c.until_paused_at("echo", 4).await;

    // Back to v1: the template of the previous revision; the Rollout cancels.
    let out = k.run(&["undo", "echo"]).await;
    assert!(out.contains("rolled back to revision 1"), "{out}");
    assert_eq!(image_of(&c).await, "barnett/canarydemo:v1");
    let (said, code) = k.status("--watch --timeout 60s").await;
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("healthy: Rollout progressing has been canceled"),
        "{said}"
    );

    // Nothing waits (the canceled release's step keeps its StepPaused, as
    // Kruise's does): approve and promote are refused and say why.
    let err = k.fails(&["approve", "echo"]).await;
    assert!(
        err.contains(
            "does not allow to approve, because no release is in progress (phase 'Healthy')"
        ),
        "{err}"
    );
    let err = k.fails(&["promote", "echo"]).await;
    assert!(err.contains("nothing to promote"), "{err}");
}

#[tokio::test]
async fn status_times_out_with_exit_code_2_and_names_what_is_missing() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1")).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    let k = Plugin::new(&c);
    k.run(&["restart", "echo"]).await;
    let template = c.object("apps", "deployments", "echo").await.unwrap();
    assert!(
        template
            .pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
            .is_some(),
        "{template}"
    );
    c.until_paused_at("echo", 1).await;
    // The release waits for an approval nobody gives: the watch ends at its timeout.
    let (said, code) = k.status("--watch --timeout 1s").await;
    assert_eq!(code, 2, "{said}");

    // An error is exit 3, whatever the verb: 2 is "still progressing".
    for command in [
        "kubectl sluice approve nope",
        "kubectl sluice status echo --timeout 10",
    ] {
        let out = k
            .kubectl
            .shell(&format!("{command}; echo \"exit=$?\""))
            .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().last(), Some("exit=3"), "{command}: {stdout}");
    }
    let err = k.fails(&["get", "nope"]).await;
    assert!(
        err.contains(&format!(
            "rollout \"nope\" not found in namespace \"{}\"",
            c.ns()
        )),
        "{err}"
    );
    let err = k.fails(&["set", "image", "echo", "web=x:1"]).await;
    assert!(err.contains("no container \"web\" (it has: echo)"), "{err}");
    let err = k.fails(&["undo", "echo", "--to-revision", "7"]).await;
    assert!(err.contains("unable to find specified revision 7"), "{err}");

    let json = k.run(&["get", "echo", "-o", "json"]).await;
    let r: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(r["status"]["canaryStatus"]["currentStepIndex"], 1);
    let yaml = k.run(&["list", "-A", "-o", "yaml"]).await;
    assert!(
        yaml.contains("kind: List") || yaml.contains("kind: Rollout"),
        "{yaml}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    for (args, name) in [
        (vec!["completions", "bash"], "sluice"),
        (vec!["completions", "zsh", "--plugin"], "kubectl-sluice"),
        (vec!["completions", "fish"], "sluice"),
    ] {
        let out = std::process::Command::new(sluice)
            .args(&args)
            .output()
            .expect("sluice runs");
        assert!(out.status.success(), "{args:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains(name) && script.contains("approve") && script.contains("undo"),
            "{args:?}: {script}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(sluice)
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("sluice runs");
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.path().join("sluice-rollout-status.1"))
        .expect("a page per verb");
    assert!(page.contains("2 still progressing"), "{page}");
    assert!(!dir.path().join("sluice-help.1").exists());
}

async fn canaries(c: &Cluster) -> usize {
    c.objects("apps", "deployments")
        .await
        .into_iter()
        .filter(|d| {
            d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                .is_some()
        })
        .count()
}

/// `sluice strategy test MODULE --scenario FILE`: its exit code and output.
fn strategy_test(module: &str, file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["strategy", "test", module, "--scenario"])
        .arg(file)
        .output()
        .expect("run sluice strategy test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `explain --scenario` writes the release's decisions; `sluice strategy test`
/// replays each on its recorded observation and makes the same decision. An edited
/// decision or observation fails the replay.
async fn replay_gives_the_same_decisions(k: &Plugin, decisions: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("replay.yaml");
    let path = file.to_str().expect("utf-8 path");
    let err = k
        .fails(&["explain", "echo", "-o", "json", "--scenario", path])
        .await;
    assert!(err.contains("cannot be used with"), "{err}");
    k.run(&["explain", "echo", "--scenario", path]).await;
    let (passed, report) = strategy_test("builtin:steps", &file);
    assert!(passed, "{report}");
    // Every decision recorded replays the same; the release may have decided again
    // (a paused step is looked at again) since `explain` listed `decisions`.
    let summary = regex::Regex::new(r"(\d+) decisions; (\d+) passed, 0 failed")
        .expect("a pattern")
        .captures(&report)
        .unwrap_or_else(|| panic!("no summary in {report}"));
    let (recorded, passed): (usize, usize) = (
        summary[1].parse().expect("a count"),
        summary[2].parse().expect("a count"),
    );
    assert_eq!(recorded, passed, "{report}");
    assert!(recorded >= decisions, "{recorded} < {decisions}: {report}");

    let text = std::fs::read_to_string(&file).expect("read the scenario");
    let recorded: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let edit = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut v = recorded.clone();
        change(&mut v["replay"][0]);
        let edited = dir.path().join("edited.yaml");
        std::fs::write(&edited, serde_yaml_ng::to_string(&v).expect("YAML")).expect("write");
        strategy_test("builtin:steps", &edited)
    };
    let (passed, report) = edit(&|r| r["expect"]["action"] = "abort".into());
    assert!(!passed, "{report}");
    assert!(report.contains("action: expected abort"), "{report}");
    let (passed, report) = edit(&|r| {
        let now = r["observation"]["now"].as_u64().expect("now");
        r["observation"]["now"] = (now + 1).into();
    });
    assert!(!passed, "{report}");
    assert!(
        report.contains("this is not the observation the decision was made on"),
        "{report}"
    );
}

#[tokio::test]
async fn abort_retry_and_promote_full_on_a_five_step_release() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1")).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    let k = Plugin::new(&c);
    let err = k.fails(&["abort", "echo"]).await;
    assert!(err.contains("nothing to abort"), "{err}");

    k.run(&["set", "image", "echo", "echo=barnett/canarydemo:v2"])
        .await;
    c.until_paused_at("echo", 1).await;
    k.run(&["approve", "echo"]).await;
    c.until_paused_at("echo", 2).await;

    // explain: the release's decisions, each with what it saw and its observation.
    let explained = k.run(&["explain", "echo"]).await;
    let rows: Vec<&str> = explained.lines().skip(1).collect();
    assert!(!rows.is_empty(), "{explained}");
    assert!(
        rows.iter()
            .any(|r| r.contains("pause") && r.contains("builtin:steps@sha256:")),
        "{explained}"
    );
    assert!(
        explained
            .lines()
            .next()
            .unwrap_or("")
            .contains("OBSERVATION")
    );

    replay_gives_the_same_decisions(&k, rows.len()).await;

    // Abort: traffic back to stable, the canary gone, the release held; status says 1.
    let out = k.run(&["abort", "echo"]).await;
    assert!(
        out.contains("abort requested") && out.contains("aborted:"),
        "{out}"
    );
    c.until_rollout("echo", "aborted", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.reason == "Aborted")
        })
    })
    .await;
    let (said, code) = k.status("").await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("aborted by request"), "{said}");
    assert_eq!(canaries(&c).await, 0);
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none()
    );
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 0);
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v1").await, 5);
    let err = k.fails(&["abort", "echo"]).await;
    assert!(err.contains("nothing to abort"), "{err}");

    // Retry: the same release again from step 1.
    let out = k.run(&["retry", "echo"]).await;
    assert!(out.contains("retried"), "{out}");
    c.until_paused_at("echo", 1).await;
    assert_eq!(canaries(&c).await, 1);

    // Promote in full: the remaining steps skipped, the release completes.
    k.run(&["promote", "echo", "--full"]).await;
    c.until_healthy("echo").await;
    let (said, code) = k.status("").await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("completed"), "{said}");
    c.until("every pod on v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5 && canaries(&c).await == 0
    })
    .await;
    let err = k.fails(&["retry", "echo"]).await;
    assert!(err.contains("nothing to retry"), "{err}");

    // history: the aborted release, then the retried one that completed.
    let history = k.run(&["history", "echo"]).await;
    let outcomes: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| {
            ["Aborted", "Succeeded", "Canceled", "Replaced", "running"]
                .into_iter()
                .find(|o| l.contains(o))
        })
        .collect();
    assert_eq!(outcomes, ["Aborted", "Succeeded"], "{history}");
    assert!(history.contains("echo=barnett/canarydemo:v2"), "{history}");
}

#[test]
fn lint_checks_manifests_offline_with_the_modules_own_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("doubling.wasm");
    std::fs::write(&module, sluice_test_guests::DOUBLING).expect("module");
    let manifest = |config: &str| {
        format!(
            "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: echo\n  annotations:\n    strategy.sluice.dev/module: doubling\n    strategy.sluice.dev/config: '{config}'\nspec:\n  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: echo}}}}\n  strategy: {{canary: {{steps: [{{weight: 20}}]}}}}\n"
        )
    };
    let lint = |file: &std::path::Path, with_module: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["rollout", "lint"]).arg(file);
        if with_module {
            cmd.arg("--module")
                .arg(format!("doubling={}", module.display()));
        }
        let out = cmd.output().expect("sluice runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, manifest(r#"{"start": 10}"#)).expect("write");
    let (code, out, err) = lint(&good, true);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 rollout(s) checked: no findings"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, manifest(r#"{"start": "ten"}"#)).expect("write");
    let (code, out, err) = lint(&bad, true);
    assert_eq!(code, Some(1), "{out}{err}");
    let expected = format!(
        "{}:5: rollout default/echo: strategy.sluice.dev/config: module doubling refuses it",
        bad.display()
    );
    assert!(out.contains(&expected), "{out}");

    // Without the module, its configuration is not asked about, and that is said.
    let (code, out, err) = lint(&bad, false);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(
            "module doubling not asked about its configuration: pass --module doubling=FILE"
        ),
        "{err}"
    );
}
