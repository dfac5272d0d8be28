//! StatefulSets: pods `<name>-<ordinal>`, updated from the highest ordinal down to
//! `partition`, one at a time once all pods are ready.

use std::sync::Arc;

use serde_json::{Value, json};

use super::hash::template_hash;
use super::replicaset::owned_pods;
use super::{Ownership, pods};
use crate::error::ApiError;
use crate::object::{self, Meta, int_at};
use crate::store::{ResKey, Store};

const REVISION_LABEL: &str = "controller-revision-hash";

fn revisions() -> ResKey {
    ResKey::new("apps", "controllerrevisions")
}

/// Records a template under its revision name, so pods of that revision can be made later.
pub fn record_revision(
    store: &Store,
    owner: &Value,
    revision: &str,
    template: &Value,
) -> Result<(), ApiError> {
    let ns = Meta::of(owner).namespace();
    if store.get(&revisions(), ns, revision).is_some() {
        return Ok(());
    }
    let cr = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": revision, "namespace": ns, "ownerReferences": [pods::controller_ref(owner)]},
        "data": {"spec": {"template": template}},
        "revision": 1,
    });
    match store.create(&revisions(), cr) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The template recorded for a revision.
pub fn template_of(store: &Store, ns: &str, revision: &str) -> Option<Value> {
    store
        .get(&revisions(), ns, revision)
        .and_then(|cr| cr.pointer("/data/spec/template").cloned())
}

/// Reconciles a StatefulSet.
pub fn reconcile(store: &Store, ownership: &Ownership, sts: &Value) -> Result<(), ApiError> {
    let meta = Meta::of(sts);
    let (ns, name) = (meta.namespace(), meta.name());
    let want = int_at(sts, "spec.replicas").unwrap_or(1).max(0);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let update_revision = format!("{name}-{}", template_hash(&template));
    record_revision(store, sts, &update_revision, &template)?;
    let current_revision = sts
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or(&update_revision)
        .to_owned();
    let rolling = sts
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("OnDelete");
    let partition = int_at(sts, "spec.updateStrategy.rollingUpdate.partition").unwrap_or(0);

    let live: Vec<Arc<Value>> = owned_pods(store, ownership, sts)
        .into_iter()
        .filter(|p| !pods::is_terminating(p))
        .collect();
    let ordinal = |p: &Value| -> i64 {
        Meta::of(p)
            .name()
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(-1)
    };
    for i in 0..want {
        if live.iter().any(|p| ordinal(p) == i) {
            continue;
        }
        // Below the partition a pod is made at the current revision.
        let revision = if rolling && i < partition {
            &current_revision
        } else {
            &update_revision
        };
        let tpl = template_of(store, ns, revision).unwrap_or_else(|| template.clone());
        let pod_name = format!("{name}-{i}");
        let pod = pods::from_template(
            &tpl,
            pods::controller_ref(sts),
            ns,
            &pod_name,
            &[
                (REVISION_LABEL, revision.as_str()),
                ("statefulset.kubernetes.io/pod-name", pod_name.as_str()),
            ],
        );
        match store.create(&super::pods(), pod) {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for pod in live.iter().filter(|p| ordinal(p) >= want) {
        let (pns, pname) = object::key(pod);
        let _ = store.delete(&super::pods(), &pns, &pname);
    }
    let all_ready = live.len() as i64 >= want && live.iter().all(|p| pods::is_ready(p));
    if rolling && all_ready {
        let mut stale: Vec<&Arc<Value>> = live
            .iter()
            .filter(|p| ordinal(p) >= partition && ordinal(p) < want)
            .filter(|p| Meta::of(p).label(REVISION_LABEL) != Some(update_revision.as_str()))
            .collect();
        stale.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        if let Some(pod) = stale.first() {
            let (pns, pname) = object::key(pod);
            let _ = store.delete(&super::pods(), &pns, &pname);
        }
    }

    let live: Vec<Arc<Value>> = owned_pods(store, ownership, sts)
        .into_iter()
        .filter(|p| !pods::is_terminating(p))
        .collect();
    let at = |rev: &str| {
        live.iter()
            .filter(|p| Meta::of(p).label(REVISION_LABEL) == Some(rev))
            .count() as i64
    };
    let updated = at(&update_revision);
    let ready = live.iter().filter(|p| pods::is_ready(p)).count();
    let current_revision = if updated == want {
        update_revision.clone()
    } else {
        current_revision
    };
    let mut status = json!({
        "observedGeneration": meta.generation(),
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": at(&current_revision),
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
    });
    if sts.get("status") == Some(&status) {
        return Ok(());
    }
    let mut updated_sts = sts.clone();
    updated_sts["status"] = status.take();
    store.update(&super::statefulsets(), updated_sts)?;
    Ok(())
}
