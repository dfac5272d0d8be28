//! Table tests of the pure middle. Each file of `tests/fixtures/plan/` holds a base
//! snapshot (the objects a reconcile observed) and cases: a JSON merge patch of the
//! base (`{template-hash}` stands for the hash of the workload's template,
//! `{plan-hash}` for Kruise's hash of the Rollout's plan, which the Rollout carries
//! as its annotation unless a case writes another; the workload carries its
//! `rollouts.kruise.io/workload-type` label likewise), the
//! strategy's answer, and what the plan must produce — the stage, the writes in
//! order, the status (a subset), the events and the requeue. In what is expected,
//! `{canary}` is the canary Deployment's name, `{new-replica-set}` and
//! `{pod-template-hash}` the name and hash of the ReplicaSet a release in place
//! makes for the workload's template.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{Decided, Plan, Stage, config_checked, plan, stage};
use crate::controller::observed::{Observed, Snapshot};
use crate::controller::write::Write;
use crate::strategy::model::{
    Action, Decision, Percent, Replicas, RequestRoute, StepTarget, Traffic,
};

/// A digest to name the deciding module by.
const DIGEST: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// The snapshot every case starts from.
    base: Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// A JSON merge patch of the base snapshot.
    #[serde(default)]
    given: Value,
    /// The strategy's answer, when the stage asks for one.
    #[serde(default)]
    decision: Option<FixtureDecision>,
    /// Between releases: the module's verdict on its configuration (`accepted`, or
    /// a refusal message).
    #[serde(default)]
    config: Option<String>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FixtureDecision {
    #[serde(default)]
    step: u32,
    #[serde(default)]
    replicas: Option<Value>,
    #[serde(default)]
    weight: Option<u8>,
    #[serde(default)]
    matches: Vec<RequestRoute>,
    /// `hold`, `pause`, `advance`, `complete`, `abort`.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    recheck: Option<u32>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    memo: String,
    /// The module cannot be asked yet: why.
    #[serde(default)]
    deferred: Option<String>,
    /// The module failed: `reason: message`.
    #[serde(default)]
    failed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `Rolling`, `Idle`, `Finalising(Success)`, `Invalid`, …
    #[serde(default)]
    stage: Option<String>,
    /// Every write, in order: `patch apps/v1 Deployment default/echo` alone, or with
    /// the exact patch (or a subset of the created object) as `body`.
    #[serde(default)]
    writes: Option<Vec<ExpectedWrite>>,
    /// A subset of the status written: arrays match when each expected element is a
    /// subset of some actual one; `null` means absent.
    #[serde(default)]
    status: Option<Value>,
    /// The reasons of the events, in order.
    #[serde(default)]
    notes: Option<Vec<String>>,
    /// `300s`, `1s`, `200ms`, or `none`.
    #[serde(default)]
    requeue: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpectedWrite {
    Named(String),
    WithBody { write: String, body: Value },
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plan")
}

/// RFC 7386: the base with `patch` merged in.
fn merge(base: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !base.is_object() {
                *base = Value::Object(serde_json::Map::new());
            }
            let b = base.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        Value::Null => {}
        other => *base = other.clone(),
    }
}

/// Where `expected` is not a subset of `actual`, at `path`.
fn subset(expected: &Value, actual: Option<&Value>, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Null, Some(a)) => out.push(format!("{path}: expected absent, got {a}")),
        (_, None) => out.push(format!("{path}: expected {expected}, absent")),
        (Value::Object(e), Some(Value::Object(a))) => {
            for (k, v) in e {
                subset(v, a.get(k), &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(e), Some(Value::Array(a))) => {
            for (i, v) in e.iter().enumerate() {
                let found = a.iter().any(|x| {
                    let mut miss = Vec::new();
                    subset(v, Some(x), "", &mut miss);
                    miss.is_empty()
                });
                if !found {
                    out.push(format!(
                        "{path}[{i}]: no element matches {v}; got {}",
                        Value::Array(a.clone())
                    ));
                }
            }
        }
        (e, Some(a)) if e == a => {}
        // A number written as a string in YAML, or the other way round.
        (e, Some(a)) if e.to_string().trim_matches('"') == a.to_string().trim_matches('"') => {}
        (e, Some(a)) => out.push(format!("{path}: expected {e}, got {a}")),
    }
}

fn replicas(v: &Value) -> Replicas {
    match v {
        Value::Number(n) => {
            Replicas::Count(u32::try_from(n.as_u64().expect("count")).expect("u32"))
        }
        Value::String(s) => Replicas::Percent(
            Percent::new(s.trim_end_matches('%').parse().expect("percent")).expect("0-100"),
        ),
        other => panic!("replicas: {other} is neither a count nor a percentage"),
    }
}

fn decided(d: &FixtureDecision) -> Decided {
    let module = "builtin:steps".to_owned();
    if let Some(why) = &d.deferred {
        return Decided::Deferred {
            module,
            why: why.clone(),
        };
    }
    if let Some(failed) = &d.failed {
        let (reason, message) = failed.split_once(": ").unwrap_or((failed.as_str(), ""));
        return Decided::Failed {
            module,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
    }
    let action = match d.action.as_deref().unwrap_or("hold") {
        "hold" => Action::Hold {
            recheck_seconds: d.recheck.unwrap_or(5),
        },
        "pause" => Action::Pause {
            recheck_seconds: d.recheck,
        },
        "advance" => Action::Advance,
        "complete" => Action::Complete,
        "abort" => Action::Abort {
            reason: d.reason.clone(),
        },
        other => panic!("unknown action {other}"),
    };
    Decided::Decision {
        decision: Decision {
            step: d.step,
            target: StepTarget {
                replicas: d.replicas.as_ref().map_or(Replicas::Count(0), replicas),
                traffic: Traffic {
                    weight: d.weight.map(|w| Percent::new(w).expect("0-100")),
                    matches: d.matches.clone(),
                },
            },
            action,
            message: d.message.clone(),
            memo: d.memo.clone(),
        },
        module,
        digest: DIGEST.to_owned(),
        metrics: Default::default(),
    }
}

fn stage_name(s: &Stage) -> String {
    match s {
        Stage::Invalid(_) => "Invalid".into(),
        other => format!("{other:?}"),
    }
}

fn requeue_name(p: &Plan) -> String {
    match p.requeue {
        None => "none".into(),
        Some(d) if d.subsec_millis() == 0 => format!("{}s", d.as_secs()),
        Some(d) => format!("{}ms", d.as_millis()),
    }
}

fn check_writes(
    expected: &[ExpectedWrite],
    actual: &[Write],
    canary: &str,
    new_set: &str,
    out: &mut Vec<String>,
) {
    let named: Vec<String> = actual.iter().map(Write::describe).collect();
    let wanted: Vec<String> = expected
        .iter()
        .map(|w| match w {
            ExpectedWrite::Named(s) | ExpectedWrite::WithBody { write: s, .. } => s
                .replace("{canary}", canary)
                .replace("{new-replica-set}", new_set),
        })
        .collect();
    if named != wanted {
        out.push(format!("writes:\n  expected {wanted:#?}\n  got {named:#?}"));
        return;
    }
    for (e, a) in expected.iter().zip(actual) {
        let ExpectedWrite::WithBody { body, write } = e else {
            continue;
        };
        match a {
            Write::Patch { patch, .. } if patch != body => {
                out.push(format!("{write}: expected the patch {body}, got {patch}"));
            }
            Write::Create { object, .. } => subset(body, Some(object), write, out),
            _ => {}
        }
    }
}

fn run_case(file: &str, base: &Value, case: &Case) -> Vec<String> {
    let mut given = base.clone();
    merge(&mut given, &case.given);
    // `{template-hash}` stands for the hash of the workload's current template.
    if let Some(template) = given.pointer("/workload/spec/template") {
        let hash = crate::workload::template_hash(template);
        let text = given.to_string().replace("{template-hash}", &hash);
        given = serde_json::from_str(&text).expect("JSON");
    }
    // The workload carries the label the controller gives it (`rollouts.kruise.io/
    // workload-type`) unless the case writes one.
    if let Some(workload) = given.get_mut("workload").filter(|w| w.is_object())
        && workload
            .pointer("/metadata/labels/rollouts.kruise.io~1workload-type")
            .is_none()
    {
        let kind = workload["kind"].as_str().unwrap_or("").to_lowercase();
        workload["metadata"]["labels"][crate::workload::WORKLOAD_TYPE_LABEL] = Value::String(kind);
    }
    // `{plan-hash}` stands for Kruise's hash of the Rollout's plan; the Rollout
    // carries it as its annotation unless the case writes one.
    if let Ok(rollout) =
        serde_json::from_value::<crate::kruise::v1alpha1::Rollout>(given["rollout"].clone())
        && let Some(hash) = crate::kruise::hash::plan_hash(&rollout)
    {
        let text = given.to_string().replace("{plan-hash}", &hash);
        given = serde_json::from_str(&text).expect("JSON");
        if given
            .pointer("/rollout/metadata/annotations/rollouts.kruise.io~1hash")
            .is_none()
        {
            given["rollout"]["metadata"]["annotations"][crate::kruise::hash::ANNOTATION] =
                Value::String(hash);
        }
    }
    let plan_hash =
        serde_json::from_value::<crate::kruise::v1alpha1::Rollout>(given["rollout"].clone())
            .ok()
            .and_then(|r| crate::kruise::hash::plan_hash(&r))
            .unwrap_or_default();
    let snapshot: Snapshot = match serde_json::from_value(given) {
        Ok(s) => s,
        Err(e) => return vec![format!("the snapshot does not read: {e}")],
    };
    let observed = Observed::from_snapshot(&snapshot);
    let st = stage(&observed);
    let mut out = Vec::new();
    if let Some(want) = &case.expect.stage
        && stage_name(&st) != *want
    {
        out.push(format!("stage: expected {want}, got {}", stage_name(&st)));
    }
    let canary = observed
        .workload
        .as_ref()
        .map(|w| crate::workload::canary_name(&observed.rollout, w))
        .unwrap_or_default();
    let decision = case.decision.as_ref().map(decided);
    if st.decides() && decision.is_none() {
        out.push(format!(
            "{file}: the stage decides but the case gives no decision"
        ));
    }
    let mut p = plan(&observed, st, decision.as_ref());
    if let Some(verdict) = &case.config {
        let check = if verdict == "accepted" {
            Ok("builtin:steps".to_owned())
        } else {
            Err(crate::modules::refusal("InvalidConfig", verdict.clone()))
        };
        config_checked(&mut p, &check, observed.now);
    }
    // `{pod-template-hash}` stands for the hash of the ReplicaSet a release in place
    // makes for the workload's template, `{new-replica-set}` for its name.
    let pod_hash = observed
        .workload
        .as_ref()
        .map(|w| crate::workload::pod_template_hash(&w.template))
        .unwrap_or_default();
    let new_set = observed
        .workload
        .as_ref()
        .map(|w| format!("{}-{pod_hash}", w.name))
        .unwrap_or_default();
    let with_hash = |v: &Value| -> Value {
        let text = v
            .to_string()
            .replace("{plan-hash}", &plan_hash)
            .replace("{pod-template-hash}", &pod_hash);
        serde_json::from_str(&text).expect("JSON")
    };
    if let Some(writes) = &case.expect.writes {
        let writes: Vec<ExpectedWrite> = writes
            .iter()
            .map(|w| match w {
                ExpectedWrite::WithBody { write, body } => ExpectedWrite::WithBody {
                    write: write.clone(),
                    body: with_hash(body),
                },
                ExpectedWrite::Named(n) => ExpectedWrite::Named(n.clone()),
            })
            .collect();
        check_writes(&writes, &p.writes, &canary, &new_set, &mut out);
    }
    if let Some(status) = &case.expect.status {
        let actual = serde_json::to_value(&p.status).expect("status serialises");
        subset(&with_hash(status), Some(&actual), "status", &mut out);
    }
    if let Some(notes) = &case.expect.notes {
        let got: Vec<&str> = p.notes.iter().map(|n| n.reason.as_str()).collect();
        if got != notes.iter().map(String::as_str).collect::<Vec<_>>() {
            out.push(format!(
                "notes: expected {notes:?}, got {got:?} ({:?})",
                p.notes
            ));
        }
    }
    if let Some(requeue) = &case.expect.requeue
        && requeue_name(&p) != *requeue
    {
        out.push(format!(
            "requeue: expected {requeue}, got {}",
            requeue_name(&p)
        ));
    }
    out
}

#[test]
fn the_plan_does_what_each_fixture_says() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/plan")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut cases = 0;
    let mut failures = Vec::new();
    for path in &files {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).expect("read");
        let table: Table =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file} does not read: {e}"));
        let base: Value = table.base;
        for case in &table.cases {
            cases += 1;
            for failure in run_case(&file, &base, case) {
                failures.push(format!("{file} — {}: {failure}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The table covers what the design promises: keep it from silently shrinking.
    assert!(
        cases >= 60,
        "only {cases} plan cases in {}",
        fixtures().display()
    );
}

#[test]
fn merge_patches_as_rfc_7386_says() {
    let mut base = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
    merge(
        &mut base,
        &serde_json::json!({"a": {"b": null, "c": [3]}, "e": 2}),
    );
    assert_eq!(base, serde_json::json!({"a": {"c": [3]}, "d": 1, "e": 2}));
}

#[test]
fn a_missing_field_fails_the_subset_check() {
    let mut out = Vec::new();
    subset(
        &serde_json::json!({"phase": "Healthy", "conditions": [{"type": "Progressing"}]}),
        Some(&serde_json::json!({"phase": "Healthy", "conditions": [{"type": "Succeeded"}]})),
        "status",
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
}
