//! OpenKruise CloneSets (`apps.kruise.io/v1alpha1`), once their CRD is installed:
//! `updateStrategy.partition` keeps that many pods (or that share) on the old
//! revision; the rest are recreated at the new one within `maxUnavailable`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::hash::template_hash;
use super::replicaset::owned_pods;
use super::statefulset::{record_revision, template_of};
use super::{Ownership, pods, scaled};
use crate::error::ApiError;
use crate::object::{self, Meta, int_at};
use crate::store::Store;

const REVISION_LABEL: &str = "controller-revision-hash";

/// Reconciles a CloneSet.
pub fn reconcile(store: &Store, ownership: &Ownership, cs: &Value) -> Result<(), ApiError> {
    let meta = Meta::of(cs);
    let (ns, name) = (meta.namespace(), meta.name());
    let want = int_at(cs, "spec.replicas").unwrap_or(1).max(0);
    let template = cs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let update_revision = format!("{name}-{hash}");
    record_revision(store, cs, &update_revision, &template)?;
    let current_revision = cs
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or(&update_revision)
        .to_owned();
    let strategy = cs.pointer("/spec/updateStrategy");
    let paused = strategy
        .and_then(|s| s.get("paused"))
        .and_then(Value::as_bool)
        == Some(true);
    let partition = scaled(strategy.and_then(|s| s.get("partition")), want, true, 0).clamp(0, want);
    let max_unavailable = scaled(
        strategy.and_then(|s| s.get("maxUnavailable")),
        want,
        false,
        (want / 5).max(1),
    )
    .max(1);

    let live: Vec<Arc<Value>> = owned_pods(store, ownership, cs)
        .into_iter()
        .filter(|p| !pods::is_terminating(p))
        .collect();
    let on = |rev: &str| {
        live.iter()
            .filter(|p| Meta::of(p).label(REVISION_LABEL) == Some(rev))
            .count() as i64
    };
    let updated = on(&update_revision);
    let count = live.len() as i64;
    if count < want {
        for _ in count..want {
            // New pods keep the partition's share on the current revision.
            let old_now = count - updated;
            let revision = if old_now < partition && current_revision != update_revision {
                current_revision.clone()
            } else {
                update_revision.clone()
            };
            let tpl = template_of(store, ns, &revision).unwrap_or_else(|| template.clone());
            let rev_hash = revision
                .rsplit_once('-')
                .map_or(hash.as_str(), |(_, h)| h)
                .to_owned();
            let pod_name = format!("{name}-{}", object::random_suffix(5));
            let pod = pods::from_template(
                &tpl,
                pods::controller_ref(cs),
                ns,
                &pod_name,
                &[
                    (REVISION_LABEL, revision.as_str()),
                    ("pod-template-hash", rev_hash.as_str()),
                ],
            );
            store.create(&super::pods(), pod)?;
        }
    } else if count > want {
        let mut order = pods::deletion_order(live.clone());
        // Scale-in removes old-revision pods first when the new ones are within the partition.
        order.sort_by_key(|p| Meta::of(p).label(REVISION_LABEL) == Some(update_revision.as_str()));
        for pod in order.into_iter().take((count - want) as usize) {
            let (pns, pname) = object::key(&pod);
            let _ = store.delete(&super::pods(), &pns, &pname);
        }
    } else if !paused {
        let desired_updated = want - partition;
        let unavailable = live.iter().filter(|p| !pods::is_ready(p)).count() as i64;
        let budget = (max_unavailable - unavailable).min(desired_updated - updated);
        if budget > 0 {
            let mut old: Vec<Arc<Value>> = live
                .iter()
                .filter(|p| Meta::of(p).label(REVISION_LABEL) != Some(update_revision.as_str()))
                .cloned()
                .collect();
            old = pods::deletion_order(old);
            for pod in old.into_iter().take(budget as usize) {
                let (pns, pname) = object::key(&pod);
                let _ = store.delete(&super::pods(), &pns, &pname);
            }
        }
    }

    let live: Vec<Arc<Value>> = owned_pods(store, ownership, cs)
        .into_iter()
        .filter(|p| !pods::is_terminating(p))
        .collect();
    let on = |rev: &str| {
        live.iter()
            .filter(|p| Meta::of(p).label(REVISION_LABEL) == Some(rev))
            .collect::<Vec<_>>()
    };
    let updated_pods = on(&update_revision);
    let ready = live.iter().filter(|p| pods::is_ready(p)).count();
    let current_revision = if updated_pods.len() as i64 == want {
        update_revision.clone()
    } else {
        current_revision
    };
    let selector = cs
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let status = json!({
        "observedGeneration": meta.generation(),
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": updated_pods.len(),
        "updatedReadyReplicas": updated_pods.iter().filter(|p| pods::is_ready(p)).count(),
        "expectedUpdatedReplicas": want - partition,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "labelSelector": selector,
    });
    if cs.get("status") == Some(&status) {
        return Ok(());
    }
    let mut updated_cs = cs.clone();
    updated_cs["status"] = status;
    store.update(&super::clonesets(), updated_cs)?;
    Ok(())
}
