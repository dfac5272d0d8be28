//! The mutating webhook for workloads, as Kruise's: when an update changes the pod
//! template of a workload a Rollout releases, the same request holds the workload
//! for the release — a Deployment paused and labelled with its stable revision, a
//! CloneSet's or StatefulSet's partition set to cover every pod — and marks it
//! `rollouts.kruise.io/in-progressing`. While that mark stays, an update cannot
//! release the workload (a Deployment stays paused). Outside a release nothing is
//! touched: the workload is an ordinary one.
//!
//! [`mutate`] is the decision, pure; [`review`] reads what it needs.

use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use crate::kruise::v1alpha1::Rollout;
use crate::workload::{self, Kind};

/// The annotation marking a workload whose release is in progress.
pub const IN_PROGRESSING: &str = "rollouts.kruise.io/in-progressing";

/// The annotation whose change alone starts a release (Kruise's rollout ID).
pub const ROLLOUT_ID: &str = "rollouts.kruise.io/rollout-id";

/// The Rollout releasing `object` of `kind`: not being deleted, not disabled, with
/// a canary strategy.
pub fn matched_rollout<'a>(
    kind: Kind,
    object: &Value,
    rollouts: impl IntoIterator<Item = &'a Rollout>,
) -> Option<&'a Rollout> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
    let group = |api_version: &str| {
        api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_owned()
    };
    rollouts.into_iter().find(|r| {
        r.metadata.deletion_timestamp.is_none()
            && r.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Disabled")
            && r.spec.strategy.canary.is_some()
            && r.spec.object_ref.workload_ref.as_ref().is_some_and(|w| {
                group(&w.api_version) == group(kind.api_version())
                    && w.kind == kind.kind()
                    && w.name == name
            })
    })
}

fn annotation<'a>(object: &'a Value, key: &str) -> &'a str {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether the update from `old` to `new` is a new release: its rollout ID changed,
/// or (without one) its pod template did.
pub fn is_new_release(old: &Value, new: &Value) -> bool {
    let id = annotation(new, ROLLOUT_ID);
    if !id.is_empty() {
        return annotation(old, ROLLOUT_ID) != id;
    }
    let template = |o: &Value| o.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    !workload::same_template(&template(old), &template(new))
}

/// The object an update of `kind` from `old` to `new` should write, when the webhook
/// changes it; `None` lets the update through as it is.
pub fn mutate(
    kind: Kind,
    old: &Value,
    new: &Value,
    rollouts: &[Rollout],
    replica_sets: &[Value],
) -> Option<Value> {
    let rollout = matched_rollout(kind, new, rollouts)?;
    // The Rollout says how the workload is released (a Deployment in place or not).
    let kind = workload::of_rollout(rollout).unwrap_or(kind);
    let mut object = new.clone();
    if !annotation(new, IN_PROGRESSING).is_empty() {
        let new_release = (new.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0)
            && is_new_release(old, new))
        .then_some(rollout);
        return kind
            .keep_held(&mut object, old, new_release)
            .then_some(object);
    }
    if new.pointer("/spec/replicas").and_then(Value::as_i64) == Some(0) || !is_new_release(old, new)
    {
        return None;
    }
    if !kind.hold_for_release(&mut object, rollout, replica_sets) {
        return None;
    }
    let name = rollout.metadata.name.as_deref().unwrap_or("");
    object["metadata"]["annotations"][IN_PROGRESSING] =
        json!(json!({"rolloutName": name}).to_string());
    Some(object)
}

/// Finds the workload's Rollout among those the webhook knows, reads a
/// Deployment's ReplicaSets, and decides.
pub async fn review(
    client: &kube::Client,
    rollouts: &[std::sync::Arc<Rollout>],
    kind: Kind,
    old: &Value,
    new: &Value,
) -> Result<Option<Value>, kube::Error> {
    let ns = new
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let in_namespace = rollouts
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.metadata.namespace.as_deref().unwrap_or("default") == ns);
    let Some(matched) = matched_rollout(kind, new, in_namespace) else {
        return Ok(None);
    };
    let rollouts = [matched.clone()];
    let replica_sets = if kind.needs_replica_sets() {
        let selector = workload::string_map(new, "/spec/selector/matchLabels")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &workload::resource_of("apps/v1", "ReplicaSet"),
        );
        workload::list_values(&api, &ListParams::default().labels(&selector)).await?
    } else {
        Vec::new()
    };
    Ok(mutate(kind, old, new, &rollouts, &replica_sets))
}

#[cfg(test)]
mod tests;
