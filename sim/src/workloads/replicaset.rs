//! ReplicaSets keep their number of pods.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Ownership, pods, pods as pod_kind};
use crate::error::ApiError;
use crate::object::{self, Meta};
use crate::store::Store;

/// The live pods `owner` controls.
pub fn owned_pods(store: &Store, ownership: &Ownership, owner: &Value) -> Vec<Arc<Value>> {
    let uid = Meta::of(owner).uid();
    ownership
        .owned(uid, &super::pods())
        .into_iter()
        .filter_map(|(res, ns, name)| store.get(&res, &ns, &name))
        .filter(|p| Meta::of(p).controller_uid() == Some(uid))
        .collect()
}

/// Makes the ReplicaSet's pods match its replicas, and reports them in its status.
pub fn reconcile(store: &Store, ownership: &Ownership, rs: &Value) -> Result<(), ApiError> {
    let meta = Meta::of(rs);
    let (ns, name) = (meta.namespace(), meta.name());
    let desired = object::int_at(rs, "spec.replicas").unwrap_or(1).max(0) as usize;
    let all = owned_pods(store, ownership, rs);
    let live: Vec<Arc<Value>> = all
        .iter()
        .filter(|p| !pods::is_terminating(p))
        .cloned()
        .collect();
    if live.len() < desired {
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        for _ in live.len()..desired {
            let pod_name = format!("{name}-{}", object::random_suffix(5));
            let pod =
                pod_kind::from_template(&template, pods::controller_ref(rs), ns, &pod_name, &[]);
            store.create(&super::pods(), pod)?;
        }
    } else if live.len() > desired {
        for pod in pods::deletion_order(live.clone())
            .into_iter()
            .take(live.len() - desired)
        {
            let (pns, pname) = object::key(&pod);
            let _ = store.delete(&super::pods(), &pns, &pname);
        }
    }
    let live = owned_pods(store, ownership, rs)
        .into_iter()
        .filter(|p| !pods::is_terminating(p))
        .collect::<Vec<_>>();
    let ready = live.iter().filter(|p| pods::is_ready(p)).count();
    let mut updated = rs.clone();
    updated["status"] = json!({
        "replicas": live.len(),
        "fullyLabeledReplicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": meta.generation(),
    });
    store.update(&super::replicasets(), updated)?;
    Ok(())
}
