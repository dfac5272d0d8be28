//! What the operator's commands show, computed from the objects alone (no I/O): a
//! Rollout's line in `list`, its tree in `get`, and the outcome `status` exits with.

use std::fmt::Write as _;

use serde_json::Value;

use crate::controller::status::{condition, phase, reason};
use crate::controller::{DEFAULT_MODULE, MODULE_ANNOTATION};
use crate::kruise::v1alpha1::{CanaryStep, Rollout, RolloutCondition};

/// A Rollout's line in `list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `status.phase`, or `-` before the controller has written one.
    pub phase: String,
    /// `i/n` while a release runs, `-` otherwise.
    pub step: String,
    /// The canary's traffic weight at the current step (`-` when none).
    pub weight: String,
    /// The step's state (`StepPaused`…), `-` outside a release.
    pub state: String,
    /// The strategy module the Rollout names.
    pub module: String,
    /// The controller's message.
    pub message: String,
}

/// The strategy module a Rollout names (the built-in steps when it names none).
pub fn module_of(r: &Rollout) -> String {
    r.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MODULE_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| DEFAULT_MODULE.to_owned())
}

fn steps_of(r: &Rollout) -> &[CanaryStep] {
    r.spec
        .strategy
        .canary
        .as_ref()
        .map_or(&[][..], |c| c.steps.as_slice())
}

/// Whether a release is under way (between its start and its end).
pub fn releasing(r: &Rollout) -> bool {
    let Some(status) = &r.status else {
        return false;
    };
    status.phase.as_deref() == Some(phase::PROGRESSING)
        && status
            .canary_status
            .as_ref()
            .is_some_and(|c| c.current_step_index > 0 && c.current_step_state != "Completed")
}

/// The current step (1-based) of a release under way.
pub fn current_step(r: &Rollout) -> Option<i32> {
    releasing(r)
        .then(|| r.status.as_ref()?.canary_status.as_ref())
        .flatten()
        .map(|c| c.current_step_index)
}

/// A Rollout's line in `list`.
pub fn summary(r: &Rollout) -> Summary {
    let status = r.status.clone().unwrap_or_default();
    let steps = steps_of(r);
    let current = current_step(r);
    let step = current.map_or("-".to_owned(), |i| format!("{i}/{}", steps.len()));
    let weight = current
        .and_then(|i| steps.get(usize::try_from(i - 1).ok()?))
        .and_then(|s| s.weight)
        .map_or("-".to_owned(), |w| format!("{w}%"));
    let state = current
        .and(status.canary_status.as_ref())
        .map_or("-".to_owned(), |c| c.current_step_state.clone());
    Summary {
        name: r.metadata.name.clone().unwrap_or_default(),
        namespace: r.metadata.namespace.clone().unwrap_or_default(),
        phase: status.phase.clone().unwrap_or_else(|| "-".into()),
        step,
        weight,
        state,
        module: module_of(r),
        message: status.message.clone().unwrap_or_default(),
    }
}

/// How `status` ends: its exit code and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy: no release under way, the last one completed or rolled back (exit 0).
    Healthy,
    /// Aborted, refused as invalid, or its strategy failing (exit 1).
    Failed,
    /// Still progressing or paused (exit 2).
    Pending,
}

impl Outcome {
    /// The process's exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Healthy => 0,
            Outcome::Failed => 1,
            Outcome::Pending => 2,
        }
    }
}

fn find<'a>(conditions: &'a [RolloutCondition], type_: &str) -> Option<&'a RolloutCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Where a Rollout stands, for `status`: the outcome and a line saying why.
pub fn outcome(r: &Rollout) -> (Outcome, String) {
    let Some(status) = &r.status else {
        return (
            Outcome::Pending,
            "the controller has not written a status yet".into(),
        );
    };
    let message = status.message.clone().unwrap_or_default();
    let generation = r.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return (
            Outcome::Pending,
            format!("the controller has not seen generation {generation} yet"),
        );
    }
    if let Some(c) = find(&status.conditions, condition::VALID).filter(|c| c.status == "False") {
        return (Outcome::Failed, format!("invalid: {}", c.message));
    }
    if let Some(c) =
        find(&status.conditions, condition::STRATEGY_READY).filter(|c| c.status == "False")
    {
        return (
            Outcome::Failed,
            format!("the strategy failed: {}", c.message),
        );
    }
    let progressing = find(&status.conditions, condition::PROGRESSING);
    if progressing.is_some_and(|c| c.reason == reason::ABORTED) {
        return (Outcome::Failed, message);
    }
    match status.phase.as_deref() {
        Some(phase::HEALTHY) | Some(phase::DISABLED) => (Outcome::Healthy, message),
        _ => (Outcome::Pending, message),
    }
}

/// [`outcome`], and not yet healthy while the controller has not seen the
/// workload's latest generation (a `set image` just made, say).
pub fn outcome_seen(r: &Rollout, workload_generation: Option<i64>) -> (Outcome, String) {
    let (outcome, why) = outcome(r);
    let status = r.status.clone().unwrap_or_default();
    let seen = status
        .canary_status
        .as_ref()
        .map_or(0, |c| c.observed_workload_generation);
    match workload_generation {
        Some(g)
            if outcome == Outcome::Healthy
                && status.phase.as_deref() == Some(phase::HEALTHY)
                && seen < g =>
        {
            (
                Outcome::Pending,
                format!("the controller has not seen the workload's generation {g} yet"),
            )
        }
        _ => (outcome, why),
    }
}

/// How a step reads: `weight 20%, 1 pod, pause (manual)`.
pub fn describe_step(step: &CanaryStep) -> String {
    let mut parts = Vec::new();
    if let Some(w) = step.weight {
        parts.push(format!("weight {w}%"));
    }
    if !step.matches.is_empty() {
        parts.push(format!("{} header/cookie match(es)", step.matches.len()));
    }
    if let Some(r) = &step.replicas {
        parts.push(match r {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                format!("{n} pod(s)")
            }
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                format!("{s} of the pods")
            }
        });
    }
    parts.push(match step.pause.duration {
        Some(0) => "no pause".to_owned(),
        Some(d) => format!("pause {d}s"),
        None => "pause (approval)".to_owned(),
    });
    parts.join(", ")
}

/// What `get` draws besides the Rollout: the workload, its pods and the canary.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    /// The workload the Rollout releases, if it exists.
    pub workload: Option<Value>,
    /// The canary Deployment, for the canary style.
    pub canary: Option<Value>,
    /// The pods of the workload and of its canary.
    pub pods: Vec<Value>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn images(workload: &Value) -> String {
    crate::workload::images(workload.pointer("/spec/template").unwrap_or(&Value::Null)).join(", ")
}

/// Colours for a terminal, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn good(self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn bad(self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn note(self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// The tree `get` draws: the Rollout, its strategy, its steps (the current one
/// marked), the traffic, the stable and canary workloads with their pods.
pub fn tree(r: &Rollout, scene: &Scene, paint: Paint) -> String {
    let mut out = String::new();
    let s = summary(r);
    let status = r.status.clone().unwrap_or_default();
    let (result, _) = outcome(r);
    let phase = match result {
        Outcome::Healthy => paint.good(&s.phase),
        Outcome::Failed => paint.bad(&s.phase),
        Outcome::Pending => paint.note(&s.phase),
    };
    let _ = writeln!(
        out,
        "{} {}/{}  {phase}",
        paint.bold("Rollout"),
        s.namespace,
        s.name
    );
    if !s.message.is_empty() {
        let _ = writeln!(out, "│ {}", s.message);
    }
    let strategy = status.strategy.clone().unwrap_or_default();
    let digest = if strategy.digest.is_empty() {
        String::new()
    } else {
        format!("  {}", short_digest(&strategy.digest))
    };
    let action = if strategy.last_action.is_empty() {
        String::new()
    } else {
        format!("  last decision: {}", strategy.last_action)
    };
    let _ = writeln!(out, "├─ Strategy  {}{digest}{action}", s.module);
    // The last few decisions of the release (`explain` shows them all).
    let recent = strategy.decisions.len().saturating_sub(3);
    for d in &strategy.decisions[recent..] {
        let message = if d.message.is_empty() {
            String::new()
        } else {
            format!(": {}", d.message)
        };
        let _ = writeln!(
            out,
            "│    {} step {} {} → {} ({}){message}",
            d.at, d.step, d.state, d.action, d.target
        );
    }
    let steps = steps_of(r);
    let current = current_step(r);
    let _ = writeln!(out, "├─ Steps");
    for (i, step) in steps.iter().enumerate() {
        let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let line = format!("{n}. {}", describe_step(step));
        if current == Some(n) {
            let _ = writeln!(
                out,
                "│  {} {}  ← {}",
                paint.bold("▶"),
                paint.bold(&line),
                s.state
            );
        } else {
            let _ = writeln!(out, "│    {line}");
        }
    }
    if let Some(canary) = r.spec.strategy.canary.as_ref() {
        for routing in &canary.traffic_routings {
            let via = routing
                .ingress
                .as_ref()
                .map(|i| format!("ingress/{}", i.name))
                .or_else(|| {
                    routing
                        .gateway
                        .as_ref()
                        .and_then(|g| g.http_route_name.as_ref())
                        .map(|n| format!("httproute/{n}"))
                })
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "├─ Traffic   service/{} via {via}: {} to the canary",
                routing.service,
                if s.weight == "-" {
                    "none".to_owned()
                } else {
                    s.weight.clone()
                }
            );
        }
    }
    let canary_hash = status
        .canary_status
        .as_ref()
        .map(|c| c.pod_template_hash.clone())
        .filter(|h| !h.is_empty() && releasing(r));
    let is_canary = |pod: &Value| {
        canary_hash.as_deref().is_some_and(|h| {
            text(pod, "/metadata/labels/pod-template-hash") == h
                || text(pod, "/metadata/labels/controller-revision-hash") == h
        })
    };
    let pods_line = |out: &mut String, pods: Vec<&Value>, last: bool| {
        for (i, pod) in pods.iter().enumerate() {
            let branch = if i + 1 == pods.len() {
                "└─"
            } else {
                "├─"
            };
            let ready = if pod_ready(pod) {
                paint.good("Ready")
            } else {
                paint.note(text(pod, "/status/phase"))
            };
            let _ = writeln!(
                out,
                "{}  {branch} pod/{}  {ready}",
                if last { " " } else { "│" },
                text(pod, "/metadata/name")
            );
        }
    };
    match &scene.workload {
        Some(w) => {
            let last = scene.canary.is_none() && canary_hash.is_none();
            let _ = writeln!(
                out,
                "{} Workload  {}/{}  {}/{} ready  {}",
                if last { "└─" } else { "├─" },
                text(w, "/kind").to_lowercase(),
                text(w, "/metadata/name"),
                int(w, "/status/readyReplicas"),
                int(w, "/spec/replicas"),
                images(w)
            );
            let stable: Vec<&Value> = scene.pods.iter().filter(|p| !is_canary(p)).collect();
            pods_line(&mut out, stable, last);
        }
        None => {
            let _ = writeln!(out, "└─ Workload  not found");
        }
    }
    let canary_pods: Vec<&Value> = scene.pods.iter().filter(|p| is_canary(p)).collect();
    if let Some(c) = &scene.canary {
        let _ = writeln!(
            out,
            "└─ Canary    {}/{}  {}/{} ready  {}",
            text(c, "/kind").to_lowercase(),
            text(c, "/metadata/name"),
            int(c, "/status/readyReplicas"),
            int(c, "/spec/replicas"),
            images(c)
        );
        pods_line(&mut out, canary_pods, true);
    } else if canary_hash.is_some() {
        let _ = writeln!(
            out,
            "└─ Canary    {} pod(s) of the new revision, updated in place",
            canary_pods.len()
        );
        pods_line(&mut out, canary_pods, true);
    }
    out
}

fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", hex.chars().take(12).collect::<String>())
}

/// The table `list` prints.
pub fn table(rows: &[Summary], all_namespaces: bool, wide: bool) -> String {
    let mut header = vec!["NAME"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    header.extend(["PHASE", "STEP", "WEIGHT", "STATE", "MODULE"]);
    if wide {
        header.push("MESSAGE");
    }
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let mut line = Vec::new();
        if all_namespaces {
            line.push(r.namespace.clone());
        }
        line.extend([
            r.name.clone(),
            r.phase.clone(),
            r.step.clone(),
            r.weight.clone(),
            r.state.clone(),
            r.module.clone(),
        ]);
        if wide {
            line.push(r.message.clone());
        }
        lines.push(line);
    }
    align(&lines)
}

/// Rows in columns padded to the widest cell, the last column unpadded.
fn align(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == line.len() {
                    c.clone()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("   ").trim_end());
    }
    out
}

fn short(digest: &str) -> String {
    if digest.is_empty() {
        return "-".into();
    }
    short_digest(digest)
}

/// `explain`: the current release's decisions, oldest first.
pub fn decisions_table(r: &Rollout) -> String {
    let strategy = r
        .status
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .unwrap_or_default();
    if strategy.decisions.is_empty() {
        return "no decisions recorded: no release has been decided yet\n".into();
    }
    let mut lines = vec![
        [
            "WHEN",
            "STEP",
            "STATE",
            "MODULE",
            "ACTION",
            "TARGET",
            "OBSERVATION",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in &strategy.decisions {
        lines.push(vec![
            d.at.clone(),
            d.step.to_string(),
            d.state.clone(),
            format!("{}@{}", strategy.module, short(&d.digest)),
            d.action.clone(),
            d.target.clone(),
            short(&d.observation),
            d.message.clone(),
        ]);
    }
    align(&lines)
}

/// How long from `started` to `ended` (RFC 3339), as `1h2m`, `3m20s`, `45s`.
fn duration(started: &str, ended: &str) -> String {
    let (Ok(a), Ok(b)) = (
        started.parse::<jiff::Timestamp>(),
        ended.parse::<jiff::Timestamp>(),
    ) else {
        return "-".into();
    };
    let secs = b.duration_since(a).as_secs().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `history`: one line per release, oldest first.
pub fn history_table(r: &Rollout) -> String {
    let strategy = r
        .status
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .unwrap_or_default();
    if strategy.releases.is_empty() {
        return "no releases recorded yet\n".into();
    }
    let mut lines = vec![
        [
            "REVISION", "IMAGES", "MODULE", "OUTCOME", "STARTED", "DURATION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for rel in &strategy.releases {
        let running = rel.outcome.is_empty();
        lines.push(vec![
            rel.revision.clone(),
            rel.images.join(","),
            format!("{}@{}", rel.module, short(&rel.digest)),
            if running {
                "running".into()
            } else {
                rel.outcome.clone()
            },
            rel.started.clone(),
            if running {
                "-".into()
            } else {
                duration(&rel.started, &rel.ended)
            },
        ]);
    }
    align(&lines)
}

#[cfg(test)]
mod tests;
