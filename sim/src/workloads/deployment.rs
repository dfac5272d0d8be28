//! Deployments roll ReplicaSets as the Deployment controller does: a ReplicaSet per
//! template (named by its hash), rolling updates within maxSurge/maxUnavailable,
//! `paused` holding template changes while still scaling, revision annotations.

use std::sync::Arc;

use serde_json::{Value, json};

use super::hash::template_hash;
use super::{Ownership, pods, scaled};
use crate::error::ApiError;
use crate::object::{self, Meta, int_at};
use crate::store::Store;

const REVISION: &str = "deployment.kubernetes.io/revision";

fn owned_replicasets(store: &Store, ownership: &Ownership, d: &Value) -> Vec<Arc<Value>> {
    let uid = Meta::of(d).uid();
    ownership
        .owned(uid, &super::replicasets())
        .into_iter()
        .filter_map(|(res, ns, name)| store.get(&res, &ns, &name))
        .filter(|rs| Meta::of(rs).controller_uid() == Some(uid))
        .collect()
}

fn revision(rs: &Value) -> i64 {
    Meta::of(rs)
        .annotation(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &Value) -> i64 {
    int_at(rs, "spec.replicas").unwrap_or(0)
}

fn set_replicas(
    store: &Store,
    rs: &Value,
    n: i64,
    deployment_replicas: i64,
) -> Result<(), ApiError> {
    let mut updated = rs.clone();
    updated["spec"]["replicas"] = json!(n.max(0));
    let annotations = object::meta_mut(&mut updated)
        .entry("annotations")
        .or_insert_with(|| json!({}));
    annotations["deployment.kubernetes.io/desired-replicas"] =
        json!(deployment_replicas.to_string());
    store.update(&super::replicasets(), updated)?;
    Ok(())
}

/// Brings a Deployment's ReplicaSets toward its template and replicas, and reports status.
pub fn reconcile(store: &Store, ownership: &Ownership, d: &Value) -> Result<(), ApiError> {
    let want = int_at(d, "spec.replicas").unwrap_or(1).max(0);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let mut sets = owned_replicasets(store, ownership, d);
    sets.sort_by_key(|rs| revision(rs));
    let max_revision = sets.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    // The new ReplicaSet is the one whose template is the Deployment's, whatever its
    // name: another controller (an advanced Deployment controller) may have made it.
    let mut new_rs = sets
        .iter()
        .filter(|rs| rs.pointer("/metadata/deletionTimestamp").is_none())
        .find(|rs| {
            rs.pointer("/spec/template")
                .is_some_and(|t| template_hash(t) == hash)
        })
        .cloned();

    if !paused {
        match &new_rs {
            None => {
                let first = sets.is_empty();
                let created = create_replicaset(
                    store,
                    d,
                    &template,
                    &hash,
                    max_revision + 1,
                    if first { want } else { 0 },
                )?;
                new_rs = Some(created);
            }
            Some(rs) if revision(rs) < max_revision => {
                // Going back to an older template reuses its ReplicaSet as the newest revision.
                let mut bumped = (**rs).clone();
                object::meta_mut(&mut bumped)
                    .entry("annotations")
                    .or_insert_with(|| json!({}))[REVISION] = json!((max_revision + 1).to_string());
                new_rs = Some(store.update(&super::replicasets(), bumped)?);
            }
            Some(_) => {}
        }
    }
    let sets = {
        let mut s = owned_replicasets(store, ownership, d);
        if let Some(n) = &new_rs
            && !s.iter().any(|x| Meta::of(x).uid() == Meta::of(n).uid())
        {
            s.push(n.clone());
        }
        s
    };
    let new_uid = new_rs.as_ref().map(|rs| Meta::of(rs).uid().to_owned());
    let is_new = |rs: &Value| Some(Meta::of(rs).uid()) == new_uid.as_deref();
    let old: Vec<&Arc<Value>> = sets.iter().filter(|rs| !is_new(rs)).collect();

    if paused {
        scale_paused(store, d, &sets, new_rs.as_ref(), want)?;
    } else if let Some(new_rs) = sets.iter().find(|rs| is_new(rs)) {
        let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
        if recreate {
            for rs in &old {
                if replicas(rs) > 0 {
                    set_replicas(store, rs, 0, want)?;
                }
            }
            let old_pods: i64 = old
                .iter()
                .map(|rs| int_at(rs, "status.replicas").unwrap_or(0))
                .sum();
            if old_pods == 0 && replicas(new_rs) != want {
                set_replicas(store, new_rs, want, want)?;
            }
        } else {
            roll(store, d, new_rs, &old, want)?;
        }
    }
    write_status(store, ownership, d, new_uid.as_deref())
}

fn create_replicaset(
    store: &Store,
    d: &Value,
    template: &Value,
    hash: &str,
    rev: i64,
    replicas: i64,
) -> Result<Arc<Value>, ApiError> {
    let meta = Meta::of(d);
    let mut template = template.clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let labels = template["metadata"]["labels"].clone();
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", meta.name()),
            "namespace": meta.namespace(),
            "labels": labels,
            "annotations": {REVISION: rev.to_string(), "deployment.kubernetes.io/desired-replicas": int_at(d, "spec.replicas").unwrap_or(1).to_string()},
            "ownerReferences": [pods::controller_ref(d)],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    });
    store.create(&super::replicasets(), rs)
}

/// One step of a rolling update: surge the new ReplicaSet, then drain old ones as
/// far as availability allows.
fn roll(
    store: &Store,
    d: &Value,
    new_rs: &Arc<Value>,
    old: &[&Arc<Value>],
    want: i64,
) -> Result<(), ApiError> {
    let strategy = d.pointer("/spec/strategy/rollingUpdate");
    let mut surge = scaled(
        strategy.and_then(|s| s.get("maxSurge")),
        want,
        true,
        (want + 3) / 4,
    );
    let unavailable = scaled(
        strategy.and_then(|s| s.get("maxUnavailable")),
        want,
        false,
        want / 4,
    );
    if surge == 0 && unavailable == 0 {
        surge = 1;
    }
    let new_replicas = replicas(new_rs);
    let total: i64 = replicas(new_rs) + old.iter().map(|rs| replicas(rs)).sum::<i64>();
    if new_replicas > want {
        set_replicas(store, new_rs, want, want)?;
        return Ok(());
    }
    if new_replicas < want && total < want + surge {
        let grow = (want + surge - total).min(want - new_replicas);
        set_replicas(store, new_rs, new_replicas + grow, want)?;
    }
    // Old pods that are not available can go at once; available ones only while the
    // Deployment keeps `want - maxUnavailable` available.
    let available = |rs: &Value| int_at(rs, "status.availableReplicas").unwrap_or(0);
    let min_available = want - unavailable;
    let new_unavailable = (replicas(new_rs) - available(new_rs)).max(0);
    let all_replicas: i64 = replicas(new_rs) + old.iter().map(|rs| replicas(rs)).sum::<i64>();
    let mut can_remove = (all_replicas - min_available - new_unavailable).max(0);
    let mut by_age: Vec<&&Arc<Value>> = old.iter().collect();
    by_age.sort_by_key(|rs| revision(rs));
    for rs in by_age {
        let current = replicas(rs);
        if current == 0 {
            continue;
        }
        let unhealthy = (current - available(rs)).max(0);
        let remove = (unhealthy + can_remove).min(current);
        if remove > 0 {
            can_remove -= (remove - unhealthy).max(0);
            set_replicas(store, rs, current - remove, want)?;
        }
    }
    Ok(())
}

/// What the Deployment controller does with a paused Deployment's ReplicaSets
/// (`scale` in its sync): the only active ReplicaSet (or, with none, the newest)
/// follows `spec.replicas`; a saturated new ReplicaSet scales the old ones to 0; a
/// rolling-update Deployment's replicas changed since its ReplicaSets were sized
/// (their `desired-replicas` annotation) are spread over them by size. Anything
/// else is left to whoever moves them (an advanced Deployment controller holding a
/// `Recreate` Deployment paused).
fn scale_paused(
    store: &Store,
    d: &Value,
    sets: &[Arc<Value>],
    new_rs: Option<&Arc<Value>>,
    want: i64,
) -> Result<(), ApiError> {
    let active: Vec<&Arc<Value>> = sets.iter().filter(|rs| replicas(rs) > 0).collect();
    match active.as_slice() {
        [] => {
            let latest = new_rs.or_else(|| sets.iter().max_by_key(|rs| revision(rs)));
            match latest {
                Some(rs) if replicas(rs) != want => set_replicas(store, rs, want, want),
                _ => Ok(()),
            }
        }
        [only] if replicas(only) != want => set_replicas(store, only, want, want),
        [_] => Ok(()),
        _ => {
            let new_uid = new_rs.map(|rs| Meta::of(rs).uid().to_owned());
            let saturated = new_rs.is_some_and(|rs| {
                replicas(rs) == want
                    && desired_replicas(rs) == Some(want)
                    && int_at(rs, "status.availableReplicas").unwrap_or(0) == want
            });
            if saturated {
                for rs in &active {
                    if Some(Meta::of(rs).uid()) != new_uid.as_deref() {
                        set_replicas(store, rs, 0, want)?;
                    }
                }
                return Ok(());
            }
            let rolling =
                d.pointer("/spec/strategy/type").and_then(Value::as_str) != Some("Recreate");
            let scaling_event = active
                .iter()
                .any(|rs| desired_replicas(rs).is_some_and(|n| n != want));
            if rolling && scaling_event {
                scale_proportionally(store, sets, want)
            } else {
                Ok(())
            }
        }
    }
}

/// The Deployment replicas a ReplicaSet was last sized for.
fn desired_replicas(rs: &Value) -> Option<i64> {
    Meta::of(rs)
        .annotation("deployment.kubernetes.io/desired-replicas")
        .and_then(|n| n.parse().ok())
}

/// A paused Deployment still scales: the difference goes to its ReplicaSets by size
/// (called with two active ReplicaSets or more, so `total` is not 0).
fn scale_proportionally(store: &Store, sets: &[Arc<Value>], want: i64) -> Result<(), ApiError> {
    let total: i64 = sets.iter().map(|rs| replicas(rs)).sum();
    if total == want {
        return Ok(());
    }
    let mut ordered: Vec<&Arc<Value>> = sets.iter().collect();
    ordered.sort_by_key(|rs| std::cmp::Reverse((replicas(rs), revision(rs))));
    let mut left = want;
    for (i, rs) in ordered.iter().enumerate() {
        let share = if i + 1 == ordered.len() {
            left
        } else {
            (replicas(rs) * want + total - 1) / total
        }
        .min(left)
        .max(0);
        left -= share;
        if share != replicas(rs) {
            set_replicas(store, rs, share, want)?;
        }
    }
    Ok(())
}

fn write_status(
    store: &Store,
    ownership: &Ownership,
    d: &Value,
    new_uid: Option<&str>,
) -> Result<(), ApiError> {
    let sets = owned_replicasets(store, ownership, d);
    let sum = |path: &str| {
        sets.iter()
            .map(|rs| int_at(rs, path).unwrap_or(0))
            .sum::<i64>()
    };
    let want = int_at(d, "spec.replicas").unwrap_or(1).max(0);
    let new = sets.iter().find(|rs| Some(Meta::of(rs).uid()) == new_uid);
    let updated = new.map_or(0, |rs| int_at(rs, "status.replicas").unwrap_or(0));
    let available = sum("status.availableReplicas");
    let unavailable_allowed = scaled(
        d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
        want,
        false,
        want / 4,
    );
    let complete = updated == want && sum("status.replicas") == want && available == want;
    let now = object::now_rfc3339();
    let mut status = json!({
        "observedGeneration": Meta::of(d).generation(),
        "replicas": sum("status.replicas"),
        "updatedReplicas": updated,
        "readyReplicas": sum("status.readyReplicas"),
        "availableReplicas": available,
        "conditions": [
            {"type": "Available", "status": if available >= want - unavailable_allowed { "True" } else { "False" },
             "reason": if available >= want - unavailable_allowed { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": "Deployment availability", "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True",
             "reason": if d.pointer("/spec/paused") == Some(&json!(true)) { "DeploymentPaused" } else if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
             "message": "Deployment progress", "lastUpdateTime": now, "lastTransitionTime": now},
        ],
    });
    if want - available > 0 {
        status["unavailableReplicas"] = json!(want - available);
    }
    // Timestamps alone must not make a status look changed.
    if let Some(old) = d.get("status") {
        let same = |a: &Value, b: &Value| strip_times(a) == strip_times(b);
        if same(old, &status) {
            return Ok(());
        }
    }
    let mut updated_d = d.clone();
    updated_d["status"] = status;
    if let Some(rev) = new.and_then(|rs| Meta::of(rs).annotation(REVISION)) {
        object::meta_mut(&mut updated_d)
            .entry("annotations")
            .or_insert_with(|| json!({}))[REVISION] = json!(rev);
    }
    store.update(&super::deployments(), updated_d)?;
    Ok(())
}

fn strip_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.ends_with("Time"))
                .map(|(k, v)| (k.clone(), strip_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        other => other.clone(),
    }
}
