//! The reporting end of a reconcile: the Rollout's status, when it changed, and the
//! plan's events.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::error::Error;
use super::observed::Observed;
use super::plan::{FINALIZER, Plan};
use crate::kruise::v1alpha1::Rollout;

/// Writes the planned status (when it changed: true then) and publishes the
/// planned events.
pub async fn report(
    client: &kube::Client,
    recorder: &Recorder,
    o: &Observed,
    plan: &Plan,
) -> Result<bool, Error> {
    let rollout = format!("{}/{}", o.namespace(), o.name());
    let serialise = |source| Error::Serialise {
        rollout: rollout.clone(),
        source,
    };
    let removing_finalizer = o.rollout.metadata.deletion_timestamp.is_some()
        && o.rollout
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
        && plan.writes.iter().any(|w| {
            w.target().kind == "Rollout"
                && matches!(w, super::write::Write::Patch { patch, .. }
                    if patch.pointer("/metadata/finalizers").and_then(Value::as_array)
                        .is_some_and(|f| !f.iter().any(|x| x == FINALIZER)))
        });
    let old =
        serde_json::to_value(o.rollout.status.clone().unwrap_or_default()).map_err(serialise)?;
    let new = serde_json::to_value(&plan.status).map_err(serialise)?;
    let write = old != new && !removing_finalizer;
    if write {
        let api: Api<Rollout> = Api::namespaced(client.clone(), o.namespace());
        let mut patch = json!({"status": merge_diff(&old, &new)});
        // A status written from a stale read would undo a concurrent approval. (A
        // finalizer written in this reconcile moved the version on: no precondition.)
        let writes_rollout = plan.writes.iter().any(|w| w.target().kind == "Rollout");
        if !writes_rollout {
            patch["metadata"] = json!({"resourceVersion": o.rollout.metadata.resource_version});
        }
        api.patch_status(o.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Report {
                rollout: rollout.clone(),
                source,
            })?;
    }
    let reference = o.rollout.object_ref(&());
    for note in &plan.notes {
        let event = KubeEvent {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(note.message.chars().take(1000).collect()),
            // The recorder folds events by type, reason and action, not by note: the
            // note as action keeps each transition its own Event, and counts repeats.
            action: note.message.chars().take(128).collect(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(rollout = %o.rollout.name_any(), error = %e, "cannot publish an event");
        }
    }
    Ok(write)
}

/// A JSON merge patch turning `old` into `new`.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(old_v) if old_v == v => {}
                    Some(old_v) => {
                        out.insert(k.clone(), merge_diff(old_v, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_diff_nulls_removed_fields() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [2], "f": true});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"c": 5, "d": null}, "e": [2], "f": true})
        );
    }
}
