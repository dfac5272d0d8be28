//! `apps/v1` Deployment released partition-style, in place (a Rollout annotated
//! `rollouts.kruise.io/rolling-style: partition`): no canary Deployment. As Kruise
//! does it, the Deployment is held paused with a `Recreate` strategy, so its own
//! controller stands still, and the release moves its ReplicaSets the way Kruise's
//! advanced Deployment controller does: the new template's ReplicaSet grown to the
//! step's pods within `maxSurge`, the old ones shrunk within `maxUnavailable`, a
//! change of `spec.replicas` spread over them by size. Kruise's annotations say
//! where it stands: `rollouts.kruise.io/deployment-strategy` (the step's pods as
//! `partition`, the saved `rollingUpdate`) and `rollouts.kruise.io/deployment-extra-status`.
//! Once the release ends the Deployment gets its rolling update back and its own
//! controller finishes (or undoes) the rollout.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use kube::api::Api;
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::deployment::{
    Deployment, HASH, STABLE_REVISION_LABEL, base_view, hash_for, hash_of, pods_of_hash,
    read_with_replica_sets, revision_of,
};
use super::{
    CanaryView, StepOutcome, Style, Workload, WorkloadView, controller_uid, count, failed_pods,
    namespace, pods_with, ready_pods, same_template, string_map,
};
use crate::controller::finalise::{Ending, FinalisingStep};
use crate::controller::observed::{Observed, Snapshot};
use crate::controller::write::{Target, Write};
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::{ReplicaCounts, Replicas};

/// Kruise's annotation holding the partition-style strategy of a held Deployment.
pub const STRATEGY_ANNOTATION: &str = "rollouts.kruise.io/deployment-strategy";
/// Kruise's annotation reporting the updated pods of a held Deployment.
pub const EXTRA_STATUS_ANNOTATION: &str = "rollouts.kruise.io/deployment-extra-status";
/// Kruise's label on a Deployment whose ReplicaSets the release moves.
pub const CONTROL_LABEL: &str = "rollouts.kruise.io/controlled-by-advanced-deployment-controller";

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
/// Written beside `desired-replicas` because Kubernetes' proportional scaling reads
/// both once the Deployment is given back.
const MAX: &str = "deployment.kubernetes.io/max-replicas";

/// The Deployment kind released in place.
pub struct PartitionDeployment;

/// A ReplicaSet of the Deployment, as the release moves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetView {
    /// Its name.
    pub name: String,
    /// Its `pod-template-hash`.
    pub hash: String,
    /// Its `deployment.kubernetes.io/revision`.
    pub revision: i64,
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.availableReplicas`.
    pub available: u32,
    /// Its template is the Deployment's.
    pub current: bool,
    /// The Deployment replicas it was last sized for (`desired-replicas`).
    pub sized_for: Option<u32>,
}

/// A ReplicaSet's new size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    /// The ReplicaSet.
    pub name: String,
    /// Its new `spec.replicas`.
    pub replicas: u32,
}

/// What the release does to the ReplicaSets in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Make the new template's ReplicaSet with this many pods.
    Create(u32),
    /// Resize these ReplicaSets.
    Resize(Vec<Resize>),
}

/// The numbers the ReplicaSets move by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The Deployment's replicas.
    pub replicas: u32,
    /// The pods of the new template the step wants (Kruise's partition, resolved).
    pub limit: u32,
    /// Pods above `replicas` allowed while moving.
    pub max_surge: u32,
    /// Pods below `replicas` allowed unavailable while moving.
    pub max_unavailable: u32,
}

/// One pass of Kruise's advanced Deployment controller over `sets`, as pure data:
/// a change of replicas spread over the active ReplicaSets first; else the new
/// ReplicaSet made or grown (towards `limit`, within the surge), and only once it
/// does not grow, the old ones shrunk (unavailable pods first, then as far as
/// availability allows). `None` when nothing moves.
pub fn moves(sets: &[ReplicaSetView], b: Bounds) -> Option<Move> {
    let want = i64::from(b.replicas);
    let limit = i64::from(b.limit.min(b.replicas));
    let active: Vec<&ReplicaSetView> = sets.iter().filter(|s| s.replicas > 0).collect();
    let total: i64 = sets.iter().map(|s| i64::from(s.replicas)).sum();
    let new = sets.iter().find(|s| s.current);

    // The Deployment was scaled since its ReplicaSets were sized (one never sized is
    // no evidence, as for Kubernetes): its pods keep their proportions.
    if active.len() > 1
        && active
            .iter()
            .any(|s| s.sized_for.is_some_and(|n| n != b.replicas))
    {
        let resized: Vec<Resize> = proportional(&active, b.replicas)
            .into_iter()
            .filter(|r| {
                active.iter().any(|s| {
                    s.name == r.name
                        && (s.replicas != r.replicas || s.sized_for != Some(b.replicas))
                })
            })
            .collect();
        return Some(Move::Resize(resized));
    }
    let Some(new) = new else {
        let grow = (want + i64::from(b.max_surge) - total).min(limit).max(0);
        // Without surge the new ReplicaSet still starts with a pod (Kruise's lower
        // bound): empty, it would leave the old one the only active ReplicaSet, which
        // the Deployment's own controller sizes back to `replicas` even while paused.
        let floor = if b.max_surge == 0 { want.min(1) } else { 0 };
        return Some(Move::Create(u32::try_from(grow.max(floor)).unwrap_or(0)));
    };
    let new_size = i64::from(new.replicas);
    let old: Vec<&ReplicaSetView> = active.iter().copied().filter(|s| !s.current).collect();
    let old_total: i64 = old.iter().map(|s| i64::from(s.replicas)).sum();

    // With no old pods left the new ReplicaSet is the Deployment: it follows the
    // replicas whatever the step, as Kubernetes' own controller would size it.
    if old_total == 0 {
        return (new_size != want).then(|| resize_one(new, want));
    }
    // Grow the new ReplicaSet first: never beyond the step, the surge or the replicas.
    if new_size < limit {
        let room = want + i64::from(b.max_surge) - total;
        let grown = (new_size + room.min(want - new_size)).min(limit);
        if grown > new_size {
            return Some(resize_one(new, grown));
        }
    }

    // Then shrink the old ones down to what the step leaves them.
    let keep_old = want - limit.max(new_size);
    let excess = old_total - keep_old;
    if excess < 0 {
        // Fewer old pods than the step leaves (the Deployment grew): the largest old
        // ReplicaSet gets them.
        let largest = old.iter().max_by_key(|s| (s.replicas, s.revision))?;
        return Some(resize_one(largest, i64::from(largest.replicas) - excess));
    }
    let min_available = want - i64::from(b.max_unavailable);
    let new_unavailable = new_size - i64::from(new.available.min(new.replicas));
    let budget = (total - min_available - new_unavailable).min(excess);
    if budget <= 0 {
        return None;
    }
    let mut by_age = old;
    by_age.sort_by_key(|s| s.revision);
    let mut sizes: Vec<i64> = by_age.iter().map(|s| i64::from(s.replicas)).collect();
    // Pods that are not available go first: removing them costs no availability.
    let mut cleaned = 0;
    for (s, size) in by_age.iter().zip(sizes.iter_mut()) {
        let unavailable = i64::from(s.replicas.saturating_sub(s.available));
        let cut = unavailable.min(budget - cleaned);
        *size -= cut;
        cleaned += cut;
    }
    // Then available ones, while `replicas - maxUnavailable` stay: the newest old
    // ReplicaSet first, as Kruise does, so the stable pods (the oldest) go last and
    // those of a release given up for a newer one go first.
    let available: i64 = sets
        .iter()
        .map(|s| i64::from(s.available.min(s.replicas)))
        .sum();
    let mut more = (available - min_available).min(excess - cleaned).max(0);
    for size in sizes.iter_mut().rev() {
        let cut = (*size).min(more);
        *size -= cut;
        more -= cut;
    }
    let resized: Vec<Resize> = by_age
        .iter()
        .zip(sizes)
        .filter(|(s, size)| i64::from(s.replicas) != *size)
        .map(|(s, size)| Resize {
            name: s.name.clone(),
            replicas: u32::try_from(size.max(0)).unwrap_or(0),
        })
        .collect();
    (!resized.is_empty()).then_some(Move::Resize(resized))
}

fn resize_one(s: &ReplicaSetView, replicas: i64) -> Move {
    Move::Resize(vec![Resize {
        name: s.name.clone(),
        replicas: u32::try_from(replicas.max(0)).unwrap_or(0),
    }])
}

/// `active` resized to `replicas` in all, each keeping its share (rounded down),
/// the rest to the largest (the newest of equals when growing, the oldest when
/// shrinking).
fn proportional(active: &[&ReplicaSetView], replicas: u32) -> Vec<Resize> {
    let total: u64 = active.iter().map(|s| u64::from(s.replicas)).sum();
    let growing = u64::from(replicas) > total;
    let mut order: Vec<&ReplicaSetView> = active.to_vec();
    order.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then(if growing {
            b.revision.cmp(&a.revision)
        } else {
            a.revision.cmp(&b.revision)
        })
    });
    let mut sizes: Vec<u64> = order
        .iter()
        .map(|s| u64::from(s.replicas) * u64::from(replicas) / total.max(1))
        .collect();
    let given: u64 = sizes.iter().sum();
    sizes[0] += u64::from(replicas) - given.min(u64::from(replicas));
    order
        .iter()
        .zip(sizes)
        .map(|(s, size)| Resize {
            name: s.name.clone(),
            replicas: u32::try_from(size).unwrap_or(u32::MAX),
        })
        .collect()
}

/// Kruise's `NewRSReplicasLimit`: the new template's pods a step of `size` allows, a
/// share rounded up but, short of 100%, leaving one old pod.
fn limit(size: Replicas, replicas: u32) -> u32 {
    let n = size.resolve(replicas).min(replicas);
    match size {
        Replicas::Percent(p) if replicas > 1 && p.get() != 100 => n.min(replicas - 1),
        _ => n,
    }
}

/// The limit of a partition as the strategy annotation writes it (a count or a
/// share); none for anything else.
fn limit_of(partition: &Value, replicas: u32) -> u32 {
    serde_json::from_value(partition.clone())
        .ok()
        .and_then(|p| crate::rollout::spec::replicas(&p).ok())
        .map_or(0, |size| limit(size, replicas))
}

/// The partition Kruise writes for a step of `size`: the step's replicas as given.
fn partition_value(size: Replicas) -> Value {
    match size {
        Replicas::Count(n) => json!(n),
        Replicas::Percent(p) => json!(format!("{}%", p.get())),
    }
}

/// `maxSurge`/`maxUnavailable` of `replicas`: surge rounded up, unavailability
/// down, 25% each by default, never both 0.
fn rolling_bounds(rolling_update: Option<&Value>, replicas: u32) -> (u32, u32) {
    let resolve = |v: Option<&Value>, up: bool| -> u32 {
        let percent = match v {
            Some(Value::Number(n)) => {
                return n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            }
            Some(Value::String(s)) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(25),
            _ => 25,
        };
        let scaled = u64::from(replicas) * percent;
        let n = if up {
            scaled.div_ceil(100)
        } else {
            scaled / 100
        };
        u32::try_from(n).unwrap_or(replicas)
    };
    let surge = resolve(rolling_update.and_then(|r| r.get("maxSurge")), true);
    let unavailable = resolve(rolling_update.and_then(|r| r.get("maxUnavailable")), false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The strategy annotation of `w`, when the release holds it.
fn strategy_of(w: &WorkloadView) -> Option<Value> {
    strategy_in(&w.annotations)
}

fn strategy_in(annotations: &BTreeMap<String, String>) -> Option<Value> {
    annotations
        .get(STRATEGY_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The `rollingUpdate` the Deployment rolls by outside a release: its own, or the one
/// saved in the strategy annotation while it is held.
fn saved_rolling_update(w: &WorkloadView) -> Value {
    w.spec
        .pointer("/strategy/rollingUpdate")
        .cloned()
        .or_else(|| strategy_of(w).and_then(|s| s.get("rollingUpdate").cloned()))
        .unwrap_or_else(|| json!({"maxUnavailable": "25%", "maxSurge": "25%"}))
}

fn strategy_text(rolling_update: &Value, partition: &Value) -> String {
    json!({
        "rollingStyle": "Partition",
        "rollingUpdate": rolling_update,
        "partition": partition,
    })
    .to_string()
}

fn recreate(w: &WorkloadView) -> bool {
    w.spec.pointer("/strategy/type").and_then(Value::as_str) == Some("Recreate")
}

fn rs_target(ns: &str, name: &str) -> Target {
    Target::new("apps/v1", "ReplicaSet", ns, name)
}

/// A short hash of `template` in the alphabet Kubernetes writes `pod-template-hash`
/// in, for the ReplicaSet the release makes. Kubernetes finds a Deployment's new
/// ReplicaSet by its template, not this name, so it adopts it once released.
pub fn pod_template_hash(template: &Value) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(
        super::without_revision_labels(template)
            .to_string()
            .as_bytes(),
    );
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The partition-style strategy annotation of a Deployment released in place.
fn partition_strategy(object: &Value) -> Option<Value> {
    let text = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STRATEGY_ANNOTATION))
        .and_then(Value::as_str)?;
    let strategy: Value = serde_json::from_str(text).ok()?;
    strategy
        .get("rollingStyle")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("partition"))
        .then_some(strategy)
}

/// Kruise's hold of a Deployment released in place: `Recreate` keeps its own
/// controller still, and a `rollingUpdate` written meanwhile is kept in the strategy
/// annotation (it applies once the release ends). Whether `object` changed.
fn keep_held_in_place(object: &mut Value, mut strategy: Value) -> bool {
    let mut changed = false;
    if object
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        != Some("Recreate")
    {
        object["spec"]["strategy"]["type"] = json!("Recreate");
        changed = true;
    }
    let rolling = object
        .pointer_mut("/spec/strategy")
        .and_then(Value::as_object_mut)
        .and_then(|s| s.remove("rollingUpdate"));
    if let Some(rolling) = rolling.filter(|r| !r.is_null()) {
        strategy["rollingUpdate"] = rolling;
        object["metadata"]["annotations"][STRATEGY_ANNOTATION] = json!(strategy.to_string());
        changed = true;
    }
    changed
}

impl PartitionDeployment {
    /// Writes taking the Deployment from its controller: paused, `Recreate`, the
    /// strategy annotation with `partition`; none when that is how it is.
    fn control(&self, o: &Observed, w: &WorkloadView, partition: &Value) -> Vec<Write> {
        let strategy = strategy_of(w);
        let current = strategy.as_ref().and_then(|s| s.get("partition").cloned());
        // Within a release the partition only rises (Kruise's UpgradeBatch).
        let partition = match &current {
            Some(c) if limit_of(c, w.replicas) >= limit_of(partition, w.replicas) => c.clone(),
            _ => partition.clone(),
        };
        let controlled = w.held && recreate(w) && w.labels.contains_key(CONTROL_LABEL);
        if controlled && current.as_ref() == Some(&partition) {
            return Vec::new();
        }
        let text = strategy_text(&saved_rolling_update(w), &partition);
        let mut patch = json!({"metadata": {"annotations": {STRATEGY_ANNOTATION: text}}});
        if !controlled {
            patch["metadata"]["labels"] = json!({CONTROL_LABEL: "true"});
            patch["spec"] = json!({
                "paused": true,
                "strategy": {"type": "Recreate", "rollingUpdate": null},
            });
        }
        vec![w.patch(o.namespace(), patch)]
    }

    /// Writes giving the Deployment back to its controller with its rolling update;
    /// none when nothing holds it.
    fn let_go(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        let controlled = w.held
            || w.labels.contains_key(CONTROL_LABEL)
            || w.annotations.contains_key(STRATEGY_ANNOTATION);
        if !controlled {
            return Vec::new();
        }
        let mut patch = json!({
            "metadata": {
                "labels": {CONTROL_LABEL: null, STABLE_REVISION_LABEL: null},
                "annotations": {STRATEGY_ANNOTATION: null, EXTRA_STATUS_ANNOTATION: null},
            },
            "spec": {"paused": false},
        });
        if recreate(w) {
            patch["spec"]["strategy"] =
                json!({"type": "RollingUpdate", "rollingUpdate": saved_rolling_update(w)});
        }
        vec![w.patch(o.namespace(), patch)]
    }

    /// The ReplicaSet writes of one pass towards `limit` new pods, and Kruise's
    /// extra status; only while the Deployment is held from its controller.
    fn move_sets(&self, o: &Observed, w: &WorkloadView, limit: u32) -> Vec<Write> {
        if !(w.held && recreate(w)) {
            return Vec::new();
        }
        let ns = o.namespace();
        let rolling = saved_rolling_update(w);
        let (max_surge, max_unavailable) = rolling_bounds(Some(&rolling), w.replicas);
        let bounds = Bounds {
            replicas: w.replicas,
            limit,
            max_surge,
            max_unavailable,
        };
        let mut writes = Vec::new();
        let extra = json!({
            "updatedReadyReplicas": w.updated.ready,
            "expectedUpdatedReplicas": limit.min(w.replicas),
        })
        .to_string();
        if w.annotations.get(EXTRA_STATUS_ANNOTATION) != Some(&extra) {
            writes.push(w.patch(
                ns,
                json!({"metadata": {"annotations": {EXTRA_STATUS_ANNOTATION: extra}}}),
            ));
        }
        let sized = || {
            json!({
                DESIRED: w.replicas.to_string(),
                MAX: (w.replicas + max_surge).to_string(),
            })
            .as_object()
            .cloned()
            .unwrap_or_default()
        };
        match moves(&w.replica_sets, bounds) {
            None => {}
            Some(Move::Create(replicas)) => {
                let hash = w.update_revision.clone().unwrap_or_default();
                let mut template = w.template.clone();
                template["metadata"]["labels"][HASH] = json!(hash);
                let mut selector = w.spec.get("selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"][HASH] = json!(hash);
                let revision = w.replica_sets.iter().map(|s| s.revision).max().unwrap_or(0) + 1;
                let mut annotations = sized();
                annotations.insert(REVISION.into(), json!(revision.to_string()));
                let mut spec =
                    json!({"replicas": replicas, "selector": selector, "template": template});
                if let Some(m) = w.spec.get("minReadySeconds") {
                    spec["minReadySeconds"] = m.clone();
                }
                writes.push(Write::Create {
                    target: rs_target(ns, &format!("{}-{hash}", w.name)),
                    object: json!({
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": {
                            "name": format!("{}-{hash}", w.name),
                            "namespace": ns,
                            "labels": template["metadata"]["labels"].clone(),
                            "annotations": annotations,
                            "ownerReferences": [{
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": w.name,
                                "uid": w.uid,
                                "controller": true,
                                "blockOwnerDeletion": true,
                            }],
                        },
                        "spec": spec,
                    }),
                });
            }
            Some(Move::Resize(resized)) => {
                for r in resized {
                    writes.push(Write::patch(
                        rs_target(ns, &r.name),
                        json!({
                            "metadata": {"annotations": sized()},
                            "spec": {"replicas": r.replicas},
                        }),
                    ));
                }
            }
        }
        writes
    }
}

impl Workload for PartitionDeployment {
    fn api_version(&self) -> &'static str {
        "apps/v1"
    }

    fn kind(&self) -> &'static str {
        "Deployment"
    }

    fn style(&self) -> Style {
        Style::Partition
    }

    fn revision_label(&self) -> &'static str {
        HASH
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        rollout: &'a Rollout,
        name: &'a str,
        snapshot: &'a mut Snapshot,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            let ns = namespace(rollout);
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &self.resource());
            if !read_with_replica_sets(client, &api, ns, name, snapshot).await? {
                return Ok(());
            }
            // The new template's pods, to count the ready and the failed and to label:
            // none before its ReplicaSet is made.
            let new_set = snapshot.workload.as_ref().and_then(|d| {
                let uid = d.pointer("/metadata/uid").and_then(Value::as_str)?;
                hash_for(snapshot, uid, d.pointer("/spec/template")?)
            });
            if let Some(hash) = new_set {
                snapshot.pods = pods_of_hash(client, ns, &hash).await?;
            }
            Ok(())
        })
    }

    fn view(&self, snapshot: &Snapshot) -> Option<(WorkloadView, Option<CanaryView>)> {
        let d = snapshot.workload.as_ref()?;
        let mut view = base_view(super::Kind(&PartitionDeployment), d, snapshot);
        let (replicas, template) = (view.replicas, &view.template);
        let owned: Vec<&Value> = snapshot
            .replica_sets
            .iter()
            .filter(|rs| controller_uid(rs) == Some(view.uid.as_str()))
            .filter(|rs| rs.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        let sets: Vec<ReplicaSetView> = owned
            .iter()
            .map(|rs| ReplicaSetView {
                name: rs
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                hash: hash_of(rs).unwrap_or_default(),
                revision: revision_of(rs),
                replicas: count(rs, "/spec/replicas"),
                available: count(rs, "/status/availableReplicas"),
                current: rs
                    .pointer("/spec/template")
                    .is_some_and(|t| same_template(t, template)),
                sized_for: string_map(rs, "/metadata/annotations")
                    .get(DESIRED)
                    .and_then(|n| n.parse().ok()),
            })
            .collect();
        let new = sets.iter().find(|s| s.current);
        let update = new.map_or_else(|| pod_template_hash(template), |s| s.hash.clone());
        // The stable pods: those the release recorded on the Deployment, else those
        // of the newest other ReplicaSet still running, else the new template's own.
        let stable = view
            .labels
            .get(STABLE_REVISION_LABEL)
            .cloned()
            .or_else(|| {
                sets.iter()
                    .filter(|s| !s.current && s.replicas > 0)
                    .max_by_key(|s| s.revision)
                    .map(|s| s.hash.clone())
            })
            .unwrap_or_else(|| update.clone());
        let limit = strategy_in(&view.annotations)
            .as_ref()
            .and_then(|s| s.get("partition"))
            .map(|p| limit_of(p, replicas));
        let new_pods = || pods_with(&snapshot.pods, HASH, &update);
        view.stable_template = owned
            .iter()
            .find(|rs| hash_of(rs).as_ref() == Some(&stable))
            .and_then(|rs| rs.pointer("/spec/template").cloned());
        view.stable_revision = stable;
        view.updated = ReplicaCounts {
            desired: limit.unwrap_or(0),
            ready: ready_pods(new_pods()),
            updated: new.map_or(0, |s| s.replicas),
            failed: failed_pods(new_pods()),
        };
        view.partition = limit.map(|l| i64::from(replicas - l.min(replicas)));
        view.update_revision = Some(update);
        view.replica_sets = sets;
        Some((view, None))
    }

    fn hold(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        let partition = strategy_of(w)
            .and_then(|s| s.get("partition").cloned())
            .unwrap_or(json!(0));
        // Held where it is, the ReplicaSets still follow the partition and the
        // Deployment's replicas (a scale while the strategy waits or after an abort):
        // nothing else moves them while it is paused.
        let mut writes = self.control(o, w, &partition);
        writes.extend(self.move_sets(o, w, w.updated.desired));
        writes
    }

    fn release(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        self.let_go(o, w)
    }

    fn scale_canary(&self, o: &Observed, w: &WorkloadView, size: Replicas) -> Vec<Write> {
        let partition = partition_value(size);
        let mut writes = self.control(o, w, &partition);
        let limit = limit(size, w.replicas).max(w.updated.desired);
        writes.extend(self.move_sets(o, w, limit));
        writes
    }

    fn planned_pods(&self, w: &WorkloadView, size: Replicas) -> u32 {
        limit(size, w.replicas)
    }

    fn on_wait(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        self.hold(o, w)
    }

    fn reset(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        // Yet another template: the partition starts again from none.
        let at_zero = strategy_of(w)
            .and_then(|s| s.get("partition").cloned())
            .is_some_and(|p| limit_of(&p, w.replicas) == 0);
        if at_zero || !w.held {
            return self.hold(o, w);
        }
        let text = strategy_text(&saved_rolling_update(w), &json!(0));
        vec![w.patch(
            o.namespace(),
            json!({"metadata": {"annotations": {STRATEGY_ANNOTATION: text}}}),
        )]
    }

    fn canary_counts(&self, _o: &Observed, w: &WorkloadView) -> ReplicaCounts {
        w.updated
    }

    fn canary_revision(&self, _o: &Observed, w: &WorkloadView) -> Option<String> {
        w.update_revision.clone()
    }

    fn ending_steps(&self, ending: Ending) -> &'static [FinalisingStep] {
        super::partition::ending_steps(ending)
    }

    fn resume(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> StepOutcome {
        let writes = self.let_go(o, w);
        if !writes.is_empty() {
            return StepOutcome::pending(writes);
        }
        match ending {
            // The Deployment's own controller rolls the rest out (or back): done when
            // it has.
            Ending::Success | Ending::Cancel if !w.rolled_out => StepOutcome::pending(Vec::new()),
            _ => StepOutcome::done(),
        }
    }

    fn release_control(&self, _o: &Observed, _w: &WorkloadView, _ending: Ending) -> StepOutcome {
        StepOutcome::done()
    }

    fn after_ending(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> Vec<Write> {
        match ending {
            Ending::Abort => self.hold(o, w),
            Ending::Success | Ending::Cancel | Ending::Delete | Ending::Disable => Vec::new(),
        }
    }

    /// Kruise's advanced Deployment knows its revisions only from what a release
    /// puts on it (the stable-revision label): none before the first.
    fn first_status_revisions(&self, _o: &Observed, w: &WorkloadView) -> (String, String) {
        (
            w.labels
                .get(STABLE_REVISION_LABEL)
                .cloned()
                .unwrap_or_default(),
            String::new(),
        )
    }

    fn workload_type(&self) -> &'static str {
        "deployment"
    }

    fn needs_replica_sets(&self) -> bool {
        true
    }

    fn hold_for_release(
        &self,
        object: &mut Value,
        rollout: &Rollout,
        replica_sets: &[Value],
    ) -> bool {
        Deployment.hold_for_release(object, rollout, replica_sets)
    }

    fn keep_held(&self, object: &mut Value, old: &Value, new_release: Option<&Rollout>) -> bool {
        // Before the release first holds it in place, it is held as any Deployment.
        let Some(strategy) = partition_strategy(object) else {
            return Deployment.keep_held(object, old, new_release);
        };
        let unpaused = object.pointer("/spec/paused") != Some(&Value::Bool(true));
        object["spec"]["paused"] = json!(true);
        keep_held_in_place(object, strategy) || unpaused
    }
}

#[cfg(test)]
mod tests;
