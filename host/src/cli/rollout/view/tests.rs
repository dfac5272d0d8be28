use serde_json::json;

use super::*;

/// A Rollout of five steps, from YAML, with `status` merged in.
fn rollout(status: Value, paused: bool) -> Rollout {
    let mut r: Value = serde_yaml_ng::from_str(
        r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: echo
  namespace: team
  generation: 2
  annotations: {strategy.sluice.dev/module: "configmap:strategies/doubling.wasm"}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}
  strategy:
    canary:
      steps:
      - {weight: 20, pause: {}}
      - {weight: 40, pause: {duration: 60}}
      - {weight: 60, replicas: 3}
      - {replicas: "80%", pause: {duration: 0}}
      - {weight: 100}
      trafficRoutings: [{service: echo, ingress: {name: echo}}]
"#,
    )
    .expect("yaml");
    r["status"] = status;
    r["spec"]["strategy"]["paused"] = json!(paused);
    serde_json::from_value(r).expect("a Rollout")
}

fn progressing(step: i32, state: &str, reason: &str) -> Value {
    json!({
        "observedGeneration": 2,
        "phase": "Progressing",
        "message": format!("Rollout is in step({step}/5)"),
        "conditions": [{"type": "Progressing", "status": "True", "reason": reason, "message": ""}],
        "canaryStatus": {"currentStepIndex": step, "currentStepState": state, "podTemplateHash": "v2hash", "canaryRevision": "c2", "stableRevision": "v1hash"},
        "strategy": {"module": "configmap:strategies/doubling.wasm", "digest": "sha256:0123456789abcdef0123", "lastAction": "pause"},
    })
}

fn healthy() -> Value {
    json!({
        "observedGeneration": 2,
        "phase": "Healthy",
        "message": "workload deployment is completed",
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "Completed", "message": ""},
            {"type": "Succeeded", "status": "True", "reason": "", "message": ""},
        ],
        "canaryStatus": {"currentStepIndex": 5, "currentStepState": "Completed"},
    })
}

#[test]
fn summaries() {
    let cases: &[(&str, Value, bool, [&str; 4])] = &[
        ("no status yet", Value::Null, false, ["-", "-", "-", "-"]),
        ("healthy", healthy(), false, ["Healthy", "-", "-", "-"]),
        (
            "paused at step 1",
            progressing(1, "StepPaused", "InRolling"),
            false,
            ["Progressing", "1/5", "20%", "StepPaused"],
        ),
        (
            "upgrading step 3",
            progressing(3, "StepUpgrade", "InRolling"),
            false,
            ["Progressing", "3/5", "60%", "StepUpgrade"],
        ),
        (
            "a step without weight",
            progressing(4, "StepTrafficRouting", "InRolling"),
            false,
            ["Progressing", "4/5", "-", "StepTrafficRouting"],
        ),
    ];
    for (what, status, paused, [phase, step, weight, state]) in cases {
        let s = summary(&rollout(status.clone(), *paused));
        assert_eq!(
            [s.phase.as_str(), &s.step, &s.weight, &s.state],
            [*phase, *step, *weight, *state],
            "{what}"
        );
        assert_eq!(s.module, "configmap:strategies/doubling.wasm", "{what}");
    }
    let mut r = rollout(healthy(), false);
    r.metadata.annotations = None;
    assert_eq!(summary(&r).module, "builtin:steps");
}

#[test]
fn outcomes_and_exit_codes() {
    let aborted = json!({
        "observedGeneration": 2, "phase": "Progressing", "message": "The strategy aborted the release",
        "conditions": [{"type": "Progressing", "status": "False", "reason": "Aborted", "message": ""}],
        "canaryStatus": {"currentStepIndex": 2, "currentStepState": "Completed"},
    });
    let invalid = json!({
        "observedGeneration": 2, "phase": "Initial",
        "conditions": [{"type": "Valid", "status": "False", "reason": "Invalid", "message": "Spec.Strategy.Canary.Steps: Invalid value"}],
    });
    let failing = {
        let mut s = progressing(2, "StepUpgrade", "InRolling");
        s["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "StrategyReady", "status": "False", "reason": "StrategyFailed", "message": "trapped"}));
        s
    };
    let stale = {
        let mut s = healthy();
        s["observedGeneration"] = json!(1);
        s
    };
    let disabled =
        json!({"observedGeneration": 2, "phase": "Disabled", "message": "Rollout is disabled"});
    let cases: &[(&str, Value, Outcome, u8, &str)] = &[
        ("healthy", healthy(), Outcome::Healthy, 0, "completed"),
        ("disabled", disabled, Outcome::Healthy, 0, "disabled"),
        ("no status", Value::Null, Outcome::Pending, 2, "not written"),
        (
            "generation unseen",
            stale,
            Outcome::Pending,
            2,
            "generation 2",
        ),
        (
            "paused",
            progressing(1, "StepPaused", "InRolling"),
            Outcome::Pending,
            2,
            "step(1/5)",
        ),
        (
            "spec paused",
            progressing(2, "StepUpgrade", "Paused"),
            Outcome::Pending,
            2,
            "step(2/5)",
        ),
        (
            "finalising",
            progressing(5, "Completed", "Finalising"),
            Outcome::Pending,
            2,
            "",
        ),
        ("aborted", aborted, Outcome::Failed, 1, "aborted"),
        (
            "invalid",
            invalid,
            Outcome::Failed,
            1,
            "invalid: Spec.Strategy",
        ),
        (
            "strategy failing",
            failing,
            Outcome::Failed,
            1,
            "strategy failed: trapped",
        ),
    ];
    for (what, status, want, code, says) in cases {
        let (got, why) = outcome(&rollout(status.clone(), false));
        assert_eq!((got, got.code()), (*want, *code), "{what}: {why}");
        assert!(why.contains(says), "{what}: {why:?} should say {says:?}");
    }
}

#[test]
fn steps_read_as_written() {
    let r = rollout(Value::Null, false);
    let read: Vec<String> = steps_of(&r).iter().map(describe_step).collect();
    assert_eq!(
        read,
        [
            "weight 20%, pause (approval)",
            "weight 40%, pause 60s",
            "weight 60%, 3 pod(s), pause (approval)",
            "80% of the pods, no pause",
            "weight 100%, pause (approval)",
        ]
    );
}

fn pod(name: &str, hash: &str, ready: bool) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"app": "echo", "pod-template-hash": hash}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

fn scene() -> Scene {
    let deployment = |name: &str, replicas: i64, ready: i64, image: &str| {
        json!({
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
            "status": {"readyReplicas": ready},
        })
    };
    Scene {
        workload: Some(deployment("echo", 5, 5, "demo:v2")),
        canary: Some(deployment("echo-x7k2p", 1, 1, "demo:v2")),
        pods: vec![
            pod("echo-a", "v1hash", true),
            pod("echo-b", "v1hash", true),
            pod("echo-canary-a", "v2hash", false),
        ],
    }
}

#[test]
fn the_tree_marks_the_current_step_and_splits_the_pods() {
    let r = rollout(progressing(2, "StepPaused", "InRolling"), false);
    let tree = tree(&r, &scene(), Paint(false));
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines[0], "Rollout team/echo  Progressing", "{tree}");
    assert!(
        tree.contains("├─ Strategy  configmap:strategies/doubling.wasm  sha256:0123456789ab  last decision: pause"),
        "{tree}"
    );
    let marked: Vec<&&str> = lines.iter().filter(|l| l.contains('▶')).collect();
    assert_eq!(marked.len(), 1, "{tree}");
    assert!(
        marked[0].contains("2. weight 40%, pause 60s") && marked[0].ends_with("← StepPaused"),
        "{tree}"
    );
    assert!(
        tree.contains("├─ Traffic   service/echo via ingress/echo: 40% to the canary"),
        "{tree}"
    );
    // Stable pods under the workload, the canary's under the canary.
    let workload = tree
        .find("Workload  deployment/echo  5/5 ready  app=demo:v2")
        .expect(&tree);
    let canary = tree
        .find("Canary    deployment/echo-x7k2p  1/1 ready")
        .expect(&tree);
    let at = |name: &str| {
        tree.find(name)
            .unwrap_or_else(|| panic!("{name} in {tree}"))
    };
    assert!(
        workload < at("pod/echo-a") && at("pod/echo-b") < canary,
        "{tree}"
    );
    assert!(canary < at("pod/echo-canary-a"), "{tree}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("pod/echo-canary-a  Running")),
        "{tree}"
    );
    assert!(!tree.contains('\x1b'), "no colour unless asked: {tree}");
    assert!(super::tree(&r, &scene(), Paint(true)).contains("\x1b[33m"));
}

#[test]
fn outside_a_release_every_pod_is_stable_and_no_step_is_marked() {
    let r = rollout(healthy(), false);
    let mut scene = scene();
    scene.canary = None;
    let tree = tree(&r, &scene, Paint(false));
    assert!(!tree.contains('▶') && !tree.contains("Canary"), "{tree}");
    assert!(
        tree.contains("0% to the canary") || tree.contains("none to the canary"),
        "{tree}"
    );
    assert!(tree.contains("pod/echo-canary-a"), "{tree}");
}

#[test]
fn the_list_table_aligns_its_columns() {
    let rows = vec![
        summary(&rollout(progressing(1, "StepPaused", "InRolling"), false)),
        Summary {
            name: "a-much-longer-name".into(),
            ..summary(&rollout(healthy(), false))
        },
    ];
    let out = table(&rows, true, false);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("NAMESPACE   NAME                 PHASE"),
        "{out}"
    );
    let col = lines[0].find("STEP").unwrap();
    assert_eq!(&lines[1][col..col + 3], "1/5", "{out}");
    assert_eq!(&lines[2][col..col + 1], "-", "{out}");
    assert!(!table(&rows, false, false).contains("NAMESPACE"));
    assert!(
        table(&rows, false, true)
            .lines()
            .next()
            .unwrap()
            .ends_with("MESSAGE")
    );
}

#[test]
fn decisions_and_releases_as_tables() {
    let mut status = progressing(2, "StepPaused", "InRolling");
    status["strategy"]["decisions"] = json!([
        {"at": "2026-12-03T10:00:00Z", "step": 1, "state": "StepReady", "digest": "sha256:0123456789abcdef", "action": "advance", "target": "1 pod(s), 20% of the traffic", "observation": "sha256:fedcba9876543210"},
        {"at": "2026-12-03T10:01:00Z", "step": 2, "state": "StepPaused", "digest": "sha256:0123456789abcdef", "action": "pause", "target": "2 pod(s), 40% of the traffic", "message": "60s soak", "observation": "sha256:aaaaaaaaaaaaaaaa"},
    ]);
    status["strategy"]["releases"] = json!([
        {"revision": "r1", "images": ["app=demo:v1"], "module": "builtin:steps", "started": "2026-12-03T09:00:00Z", "ended": "2026-12-03T09:03:20Z", "outcome": "Succeeded", "digest": "sha256:0123456789abcdef"},
        {"revision": "r2", "images": ["app=demo:v2"], "module": "builtin:steps", "started": "2026-12-03T10:00:00Z"},
    ]);
    let r = rollout(status, false);
    let explained = decisions_table(&r);
    let lines: Vec<&str> = explained.lines().collect();
    assert_eq!(lines.len(), 3, "{explained}");
    assert!(
        lines[0].starts_with("WHEN") && lines[0].ends_with("MESSAGE"),
        "{explained}"
    );
    assert!(
        lines[2].contains("StepPaused")
            && lines[2].contains("configmap:strategies/doubling.wasm@sha256:0123456789ab")
            && lines[2].contains("sha256:aaaaaaaaaaaa")
            && lines[2].ends_with("60s soak"),
        "{explained}"
    );
    let history = history_table(&r);
    let lines: Vec<&str> = history.lines().collect();
    assert!(
        lines[1].contains("Succeeded") && lines[1].ends_with("3m20s"),
        "{history}"
    );
    assert!(
        lines[2].contains("running") && lines[2].contains("app=demo:v2"),
        "{history}"
    );
    // The tree shows the last decisions.
    let tree = tree(&r, &scene(), Paint(false));
    assert!(tree.contains("2026-12-03T10:01:00Z step 2 StepPaused → pause (2 pod(s), 40% of the traffic): 60s soak"), "{tree}");
    assert!(decisions_table(&rollout(healthy(), false)).starts_with("no decisions recorded"));
}
