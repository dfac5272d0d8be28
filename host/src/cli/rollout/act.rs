//! What each writing verb sends, computed from the objects alone (no I/O): the
//! patch, the object it goes to, and the refusal when the verb does not apply.

use serde_json::{Value, json};

use crate::kruise::v1alpha1::Rollout;

/// Where a patch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The Rollout's spec or metadata.
    Rollout,
    /// The Rollout's `status` subresource.
    RolloutStatus,
    /// The workload the Rollout releases.
    Workload,
}

/// How the patch is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSON merge patch.
    Merge(Value),
    /// A JSON patch (RFC 6902), with `test` operations guarding what it changes.
    Json(Value),
}

/// One write a verb makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Where.
    pub target: Target,
    /// What.
    pub body: Body,
}

fn step_state(r: &Rollout) -> &str {
    r.status
        .as_ref()
        .and_then(|s| s.canary_status.as_ref())
        .map_or("", |c| c.current_step_state.as_str())
}

fn paused(r: &Rollout) -> bool {
    r.spec.strategy.paused
}

fn phase(r: &Rollout) -> &str {
    r.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// A release waits at a paused step. (A release rolled back keeps the step's
/// state it had, as Kruise's does: `StepPaused` alone does not say a release runs.)
pub fn waiting(r: &Rollout) -> bool {
    step_state(r) == "StepPaused" && phase(r) == "Progressing"
}

/// Kruise's approval (`kubectl-kruise rollout approve`): the paused step becomes
/// ready. Refused, in Kruise's words, when the step is not paused.
pub fn approve(r: &Rollout) -> Result<Request, String> {
    if step_state(r) == "StepPaused" && !waiting(r) {
        return Err(format!(
            "does not allow to approve, because no release is in progress (phase '{}')",
            phase(r)
        ));
    }
    if step_state(r) != "StepPaused" {
        return Err(format!(
            "does not allow to approve, because current canary state is not 'StepPaused' (it is '{}')",
            step_state(r)
        ));
    }
    Ok(approval(r))
}

fn approval(r: &Rollout) -> Request {
    // Guarded by the step it approves: an approval of a step the controller has
    // since left would approve the next one. (Not by the resource version: the
    // controller's own status writes would fail it for nothing.)
    let step = r
        .status
        .as_ref()
        .and_then(|s| s.canary_status.as_ref())
        .map_or(0, |c| c.current_step_index);
    Request {
        target: Target::RolloutStatus,
        body: Body::Json(json!([
            {"op": "test", "path": "/status/canaryStatus/currentStepIndex", "value": step},
            {"op": "test", "path": "/status/canaryStatus/currentStepState", "value": "StepPaused"},
            {"op": "replace", "path": "/status/canaryStatus/currentStepState", "value": "StepReady"},
        ])),
    }
}

fn set_paused(value: bool) -> Request {
    Request {
        target: Target::Rollout,
        body: Body::Merge(json!({"spec": {"strategy": {"paused": value}}})),
    }
}

/// What `vela workflow resume` does to a Rollout: unpause it, and approve the
/// step it waits at. Nothing to do is not an error.
pub fn resume(r: &Rollout) -> Vec<Request> {
    let mut out = Vec::new();
    if paused(r) {
        out.push(set_paused(false));
    }
    if waiting(r) {
        out.push(approval(r));
    }
    out
}

/// `kubectl-kruise rollout pause`: the Rollout holds where it is.
pub fn pause(r: &Rollout) -> Result<Request, String> {
    if paused(r) {
        return Err("the rollout is already paused (spec.strategy.paused is true)".into());
    }
    Ok(set_paused(true))
}

/// Argo's promote: past the step the release waits at (a manual or a timed
/// pause), unpausing the Rollout if needed. Refused when nothing waits.
pub fn promote(r: &Rollout) -> Result<Vec<Request>, String> {
    if !waiting(r) && !paused(r) {
        let state = step_state(r);
        return Err(
            if state.is_empty() || state == "Completed" || phase(r) != "Progressing" {
                "nothing to promote: no release is waiting (see `status`)".to_owned()
            } else {
                format!(
                    "nothing to promote: the current step is in {state}, not waiting at a pause; it moves on by itself"
                )
            },
        );
    }
    Ok(resume(r))
}

/// An operator request the controller acts on once (`abort`, `retry`,
/// `promote-full`): the annotation, its value made unique by `now`.
pub fn request(
    r: &Rollout,
    what: crate::controller::plan::Request,
    now: &str,
) -> Result<(Request, String), String> {
    use crate::controller::plan::Request as Op;
    let status = r.status.clone().unwrap_or_default();
    use crate::controller::status::{condition, condition_reason, reason};
    let aborted = condition_reason(&status, condition::PROGRESSING) == Some(reason::ABORTED);
    let releasing = super::view::releasing(r) && !aborted;
    match what {
        Op::Abort if !releasing => {
            return Err("nothing to abort: no release is under way (see `status`)".into());
        }
        Op::PromoteFull if !releasing => {
            return Err("nothing to promote: no release is under way (see `status`)".into());
        }
        Op::Retry if !aborted => {
            return Err("nothing to retry: the last release was not aborted (see `status`)".into());
        }
        _ => {}
    }
    let value = format!("{}@{now}", what.name());
    Ok((
        Request {
            target: Target::Rollout,
            body: Body::Merge(json!({"metadata": {"annotations": {
                crate::controller::plan::REQUEST_ANNOTATION: value
            }}})),
        },
        value,
    ))
}

/// The annotation `kubectl rollout restart` writes into the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// `kubectl rollout restart`: a new pod template (a restart annotation), which
/// the Rollout releases like any other.
pub fn restart(now: &str) -> Request {
    Request {
        target: Target::Workload,
        body: Body::Merge(json!({
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
        })),
    }
}

/// `kubectl set image`: `CONTAINER=IMAGE` pairs for the workload's containers (or
/// init containers); a name the template does not have is refused, naming those
/// it has.
pub fn set_image(workload: &Value, pairs: &[(String, String)]) -> Result<Request, String> {
    let mut ops = Vec::new();
    for (name, image) in pairs {
        let found = ["containers", "initContainers"].iter().find_map(|list| {
            let containers = workload
                .pointer(&format!("/spec/template/spec/{list}"))
                .and_then(Value::as_array)?;
            let i = containers.iter().position(|c| c["name"] == name.as_str())?;
            Some(format!("/spec/template/spec/{list}/{i}"))
        });
        let Some(path) = found else {
            let names: Vec<&str> = ["containers", "initContainers"]
                .iter()
                .filter_map(|l| {
                    workload
                        .pointer(&format!("/spec/template/spec/{l}"))
                        .and_then(Value::as_array)
                })
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            return Err(format!(
                "the workload has no container {name:?} (it has: {})",
                names.join(", ")
            ));
        };
        ops.push(json!({"op": "test", "path": format!("{path}/name"), "value": name}));
        ops.push(json!({"op": "replace", "path": format!("{path}/image"), "value": image}));
    }
    Ok(Request {
        target: Target::Workload,
        body: Body::Json(Value::Array(ops)),
    })
}

/// Parses `CONTAINER=IMAGE` arguments.
pub fn image_pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_owned(), i.to_owned())),
            _ => Err(format!(
                "{a:?} is not CONTAINER=IMAGE (for example app=registry.example.com/app:v2)"
            )),
        })
        .collect()
}

/// The revision annotation Deployments and their ReplicaSets carry.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// `kubectl rollout undo` for a Deployment: the template of the ReplicaSet at
/// `to_revision`, or of the latest one whose template differs from the
/// Deployment's (the previous release), back into the Deployment. `replica_sets`
/// are those the Deployment owns.
pub fn undo(
    deployment: &Value,
    replica_sets: &[Value],
    to_revision: Option<i64>,
) -> Result<(i64, Request), String> {
    let current = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_default();
    let mut history: Vec<(i64, &Value)> = replica_sets
        .iter()
        .filter_map(|rs| Some((revision(rs)?, rs)))
        .collect();
    history.sort_by_key(|(r, _)| *r);
    let chosen = match to_revision {
        Some(n) => history.iter().find(|(r, _)| *r == n).ok_or_else(|| {
            format!(
                "unable to find specified revision {n} in history (revisions: {})",
                history
                    .iter()
                    .map(|(r, _)| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
        None => history
            .iter()
            .rev()
            .find(|(_, rs)| {
                !crate::workload::same_template(
                    rs.pointer("/spec/template").unwrap_or(&Value::Null),
                    &current,
                )
            })
            .ok_or(
                "no rollout history found: the workload has no earlier revision to go back to",
            )?,
    };
    let template = crate::workload::without_revision_labels(
        chosen.1.pointer("/spec/template").unwrap_or(&Value::Null),
    );
    if crate::workload::same_template(&template, &current) {
        return Err(format!(
            "revision {} is the workload's template already: nothing to undo",
            chosen.0
        ));
    }
    Ok((
        chosen.0,
        Request {
            target: Target::Workload,
            body: Body::Json(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": deployment.pointer("/metadata/resourceVersion")},
                {"op": "replace", "path": "/spec/template", "value": template},
            ])),
        },
    ))
}

#[cfg(test)]
mod tests;
