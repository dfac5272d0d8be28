//! `apps/v1` Deployment, released canary-style: the stable Deployment is paused
//! while an extra canary Deployment with the new template runs the step's pods.

use futures::future::BoxFuture;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{
    CanaryView, StepOutcome, Style, Workload, WorkloadView, controller_uid, count, failed_pods,
    list_values, namespace, owner, pods_with, resource_of, same_template, string_map,
};
use crate::controller::finalise::{Ending, FinalisingStep};
use crate::controller::observed::{Observed, Snapshot};
use crate::controller::write::{Target, Write};
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::{ReplicaCounts, Replicas};

/// The label on a canary Deployment naming the Deployment it is the canary of.
pub const CANARY_LABEL: &str = "rollouts.kruise.io/canary-deployment";

/// The label on a Deployment naming its stable revision while a release runs.
pub const STABLE_REVISION_LABEL: &str = "rollouts.kruise.io/stable-revision";

/// The revision label of a Deployment's pods.
pub(super) const HASH: &str = "pod-template-hash";

/// The Deployment kind.
pub struct Deployment;

fn target(ns: &str, name: &str) -> Target {
    Target::new("apps/v1", "Deployment", ns, name)
}

fn paused(o: &Observed, w: &WorkloadView, value: bool) -> Vec<Write> {
    vec![Write::patch(
        target(o.namespace(), &w.name),
        json!({"spec": {"paused": value}}),
    )]
}

/// A name for the canary of `w` in this release: Kruise's shape, `<name>-xxxxx`,
/// but fixed by the Rollout and the template, so a create made twice (its answer
/// lost) finds the first one instead of making a second canary.
pub fn canary_name(rollout: &Rollout, w: &WorkloadView) -> String {
    use sha2::{Digest, Sha256};
    // The alphabet Kubernetes' generated names use: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uid = rollout.metadata.uid.as_deref().unwrap_or("");
    let digest = Sha256::digest(format!("{uid}/{}", w.template_hash()).as_bytes());
    let suffix: String = digest[..5]
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{suffix}", w.name)
}

/// The canary Deployment: the stable Deployment's spec with the new template.
fn canary_object(o: &Observed, w: &WorkloadView, replicas: u32) -> Value {
    let mut spec = w.spec.clone();
    if let Some(m) = spec.as_object_mut() {
        m.remove("paused");
        m.insert("replicas".into(), json!(replicas));
    }
    let patch_meta = o
        .rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.patch_pod_template_metadata.clone());
    if let Some(pm) = patch_meta {
        for (k, v) in pm.labels.unwrap_or_default() {
            spec["template"]["metadata"]["labels"][k] = json!(v);
        }
        for (k, v) in pm.annotations.unwrap_or_default() {
            spec["template"]["metadata"]["annotations"][k] = json!(v);
        }
    }
    // As Kruise: the canary carries its own label alone, none of the stable
    // Deployment's (which select it for other tools and Rollouts).
    let labels = json!({CANARY_LABEL: w.name});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(&o.rollout, w),
            "namespace": o.namespace(),
            "labels": labels,
            "ownerReferences": [owner(&o.rollout)],
        },
        "spec": spec,
    })
}

/// The canary's `template` with the labels and annotations the Rollout's
/// `patchPodTemplateMetadata` puts on canary pods set back as `workload` has them
/// (Kruise compares the two templates ignoring those keys).
fn without_patch_metadata(rollout: &Rollout, mut template: Value, workload: &Value) -> Value {
    let Some(patch) = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.patch_pod_template_metadata.as_ref())
    else {
        return template;
    };
    for (field, keys) in [
        ("labels", &patch.labels),
        ("annotations", &patch.annotations),
    ] {
        let pointer = format!("/metadata/{field}");
        let original = workload.pointer(&pointer).and_then(Value::as_object);
        let Some(map) = template
            .pointer_mut(&pointer)
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for key in keys.iter().flat_map(|k| k.keys()) {
            match original.and_then(|o| o.get(key)) {
                Some(v) => {
                    map.insert(key.clone(), v.clone());
                }
                None => {
                    map.remove(key);
                }
            }
        }
        if map.is_empty()
            && let Some(meta) = template.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove(field);
        }
    }
    template
}

pub(super) fn hash_of(rs: &Value) -> Option<String> {
    rs.pointer(&format!("/metadata/labels/{HASH}"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

pub(super) fn revision_of(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Rollout's live canary of `workload`: owned by it, not being deleted.
fn live_canary<'a>(snapshot: &'a Snapshot, rollout_uid: &'a str) -> Option<&'a Value> {
    snapshot.canaries.iter().find(|c| {
        controller_uid(c) == Some(rollout_uid) && c.pointer("/metadata/deletionTimestamp").is_none()
    })
}

/// The `pod-template-hash` of the ReplicaSet of `owner_uid` running `template`.
pub(super) fn hash_for(snapshot: &Snapshot, owner_uid: &str, template: &Value) -> Option<String> {
    snapshot
        .replica_sets
        .iter()
        .filter(|rs| controller_uid(rs) == Some(owner_uid))
        .filter(|rs| {
            rs.pointer("/spec/template")
                .is_some_and(|t| same_template(t, template))
        })
        .find_map(hash_of)
}

/// Reads the Deployment `name` into the snapshot with its ReplicaSets, and a canary
/// Deployment's: all carry the template's labels, so a list by the Deployment's
/// selector finds them (ownership tells them apart). False when there is no such
/// Deployment.
pub(super) async fn read_with_replica_sets(
    client: &kube::Client,
    api: &Api<DynamicObject>,
    ns: &str,
    name: &str,
    snapshot: &mut Snapshot,
) -> Result<bool, kube::Error> {
    let Some(d) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let d = serde_json::to_value(d).map_err(kube::Error::SerdeError)?;
    let selector = string_map(&d, "/spec/selector/matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let sets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource_of("apps/v1", "ReplicaSet"));
    snapshot.replica_sets = list_values(&sets, &ListParams::default().labels(&selector)).await?;
    snapshot.workload = Some(d);
    Ok(true)
}

/// The pods of one template: those labelled with its `pod-template-hash`.
pub(super) async fn pods_of_hash(
    client: &kube::Client,
    ns: &str,
    hash: &str,
) -> Result<Vec<Value>, kube::Error> {
    let pods: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource_of("v1", "Pod"));
    list_values(
        &pods,
        &ListParams::default().labels(&format!("{HASH}={hash}")),
    )
    .await
}

/// What a Deployment's view holds whatever its style: the release's own fields
/// (stable and update revisions, updated pods, partition, ReplicaSets) left empty.
pub(super) fn base_view(kind: super::Kind, d: &Value, snapshot: &Snapshot) -> WorkloadView {
    let text = |path: &str| {
        d.pointer(path)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let replicas = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .map_or(1, |n| u32::try_from(n).unwrap_or(0));
    let generation = d
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let want = i64::from(replicas);
    let status = |field: &str| {
        d.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let status_observed = d
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        == Some(generation);
    let rolled_out = status_observed
        && status("updatedReplicas") == want
        && status("replicas") == want
        && status("availableReplicas") == want;
    WorkloadView {
        kind,
        name: text("/metadata/name"),
        uid: text("/metadata/uid"),
        resource_version: text("/metadata/resourceVersion"),
        generation,
        replicas,
        template: d.pointer("/spec/template").cloned().unwrap_or(Value::Null),
        held: d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true),
        stable_revision: String::new(),
        stable_template: None,
        update_revision: None,
        rolled_out,
        status_observed,
        counts: ReplicaCounts {
            desired: replicas,
            ready: count(d, "/status/readyReplicas"),
            updated: count(d, "/status/updatedReplicas"),
            failed: 0,
        },
        updated: ReplicaCounts::default(),
        partition: None,
        labels: string_map(d, "/metadata/labels"),
        annotations: string_map(d, "/metadata/annotations"),
        spec: d.get("spec").cloned().unwrap_or(Value::Null),
        pods: super::pod_labels(&snapshot.pods),
        replica_sets: Vec::new(),
    }
}

impl Workload for Deployment {
    fn api_version(&self) -> &'static str {
        "apps/v1"
    }

    fn kind(&self) -> &'static str {
        "Deployment"
    }

    fn style(&self) -> Style {
        Style::Canary
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
            snapshot.canaries = list_values(
                &api,
                &ListParams::default().labels(&format!("{CANARY_LABEL}={name}")),
            )
            .await?;
            // The canary's pods, to count those that will not become ready.
            let rollout_uid = rollout.metadata.uid.as_deref().unwrap_or("");
            let canary_hash = live_canary(snapshot, rollout_uid).and_then(|c| {
                let uid = c.pointer("/metadata/uid").and_then(Value::as_str)?;
                hash_for(snapshot, uid, c.pointer("/spec/template")?)
            });
            if let Some(hash) = canary_hash {
                snapshot.pods = pods_of_hash(client, ns, &hash).await?;
            }
            Ok(())
        })
    }

    fn view(&self, snapshot: &Snapshot) -> Option<(WorkloadView, Option<CanaryView>)> {
        let d = snapshot.workload.as_ref()?;
        let mut view = base_view(super::Kind(&Deployment), d, snapshot);
        // The newest ReplicaSet: while the Deployment is held, a new template makes none.
        let stable = snapshot
            .replica_sets
            .iter()
            .filter(|rs| controller_uid(rs) == Some(view.uid.as_str()))
            .max_by_key(|rs| revision_of(rs));
        view.stable_revision = stable.and_then(hash_of).unwrap_or_default();
        view.stable_template = stable.and_then(|rs| rs.pointer("/spec/template").cloned());
        let template = &view.template;
        let rollout_uid = snapshot.rollout.metadata.uid.as_deref().unwrap_or("");
        let canary = live_canary(snapshot, rollout_uid).map(|c| {
            let cuid = c
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            let created = c.pointer("/spec/template").cloned().unwrap_or(Value::Null);
            let hash = hash_for(snapshot, cuid, &created);
            // The canary's template is the release's once what the Rollout's
            // patchPodTemplateMetadata put on it is set back as the workload has it.
            let ctemplate = without_patch_metadata(&snapshot.rollout, created, template);
            let failed = hash
                .as_deref()
                .map_or(0, |h| failed_pods(pods_with(&snapshot.pods, HASH, h)));
            CanaryView {
                name: c
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                template: ctemplate,
                counts: ReplicaCounts {
                    desired: count(c, "/spec/replicas"),
                    ready: count(c, "/status/readyReplicas"),
                    updated: count(c, "/status/updatedReplicas"),
                    failed,
                },
                pod_template_hash: hash,
            }
        });
        Some((view, canary))
    }

    fn concerns(&self, object: &Value) -> Vec<String> {
        let mut names: Vec<String> = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(|n| vec![n.to_owned()])
            .unwrap_or_default();
        if let Some(stable) = object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(CANARY_LABEL))
            .and_then(Value::as_str)
        {
            names.push(stable.to_owned());
        }
        names
    }

    fn hold(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        if w.held {
            Vec::new()
        } else {
            paused(o, w, true)
        }
    }

    fn release(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        if w.held {
            paused(o, w, false)
        } else {
            Vec::new()
        }
    }

    fn scale_canary(&self, o: &Observed, w: &WorkloadView, size: Replicas) -> Vec<Write> {
        let pods = size.resolve(w.replicas);
        let mut writes = self.hold(o, w);
        match &o.canary {
            Some(c) if c.counts.desired == pods => {}
            Some(c) => writes.push(Write::patch(
                target(o.namespace(), &c.name),
                json!({"spec": {"replicas": pods}}),
            )),
            None => writes.push(Write::Create {
                target: target(o.namespace(), &canary_name(&o.rollout, w)),
                object: canary_object(o, w, pods),
            }),
        }
        writes
    }

    fn on_wait(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        self.hold(o, w)
    }

    fn reset(&self, o: &Observed, _w: &WorkloadView) -> Vec<Write> {
        o.canary
            .iter()
            .map(|c| Write::Delete {
                target: target(o.namespace(), &c.name),
                background: true,
            })
            .collect()
    }

    fn canary_counts(&self, o: &Observed, w: &WorkloadView) -> ReplicaCounts {
        o.canary
            .as_ref()
            .filter(|c| same_template(&c.template, &w.template))
            .map(|c| c.counts)
            .unwrap_or_default()
    }

    fn canary_revision(&self, o: &Observed, _w: &WorkloadView) -> Option<String> {
        o.canary.as_ref().and_then(|c| c.pod_template_hash.clone())
    }

    fn ending_steps(&self, ending: Ending) -> &'static [FinalisingStep] {
        use FinalisingStep::*;
        match ending {
            // Kruise's order for a release that succeeded, and for a Rollout deleted
            // or disabled.
            Ending::Success | Ending::Delete | Ending::Disable => &[
                RestoreStableService,
                RouteTrafficToStable,
                RemoveCanaryService,
                ResumeWorkload,
                ReleaseWorkloadControl,
                End,
            ],
            // Rolled back: the stable pods never changed; the Deployment is let go of.
            Ending::Cancel => &[
                RouteTrafficToStable,
                ResumeWorkload,
                ReleaseWorkloadControl,
                RestoreStableService,
                RemoveCanaryService,
                End,
            ],
            // Aborted by the strategy: held at the stable version until the template
            // is reverted or replaced.
            Ending::Abort => &[
                RouteTrafficToStable,
                ReleaseWorkloadControl,
                RestoreStableService,
                RemoveCanaryService,
                End,
            ],
        }
    }

    fn resume(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> StepOutcome {
        if w.held {
            return StepOutcome::pending(self.release(o, w));
        }
        // A promoted Deployment rolls the new template out natively: done when it has.
        let rolled = ending != Ending::Success
            || (w.rolled_out
                && w.stable_template
                    .as_ref()
                    .is_some_and(|t| same_template(t, &w.template)));
        if rolled {
            StepOutcome::done()
        } else {
            StepOutcome::pending(Vec::new())
        }
    }

    fn release_control(&self, o: &Observed, w: &WorkloadView, _ending: Ending) -> StepOutcome {
        if o.canary.is_some() {
            return StepOutcome::pending(self.reset(o, w));
        }
        // Released: an ordinary Deployment until its next template change, which the
        // admission webhook holds for the next release.
        StepOutcome::done()
    }

    fn after_ending(&self, _o: &Observed, _w: &WorkloadView, _ending: Ending) -> Vec<Write> {
        Vec::new()
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
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        // The Deployment's live ReplicaSets, oldest revision first.
        let mut sets: Vec<&Value> = replica_sets
            .iter()
            .filter(|rs| controller_uid(rs) == Some(uid))
            .filter(|rs| rs.pointer("/metadata/deletionTimestamp").is_none())
            .filter(|rs| rs.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0))
            .collect();
        if sets.is_empty() {
            return false;
        }
        // With traffic routing, a Deployment still running two versions is not
        // released until it settles.
        let routed = rollout
            .spec
            .strategy
            .canary
            .as_ref()
            .is_some_and(|c| !c.traffic_routings.is_empty());
        if routed && sets.len() != 1 {
            return false;
        }
        sets.sort_by_key(|rs| revision_of(rs));
        let template = object
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        let stable = sets.iter().find(|rs| {
            rs.pointer("/spec/template")
                .is_some_and(|t| !same_template(t, &template))
        });
        if let Some(hash) = stable.and_then(|rs| hash_of(rs)) {
            object["metadata"]["labels"][STABLE_REVISION_LABEL] = json!(hash);
        }
        object["spec"]["paused"] = json!(true);
        true
    }

    /// A new release mid-release needs nothing more: the Deployment stays paused.
    fn keep_held(&self, object: &mut Value, old: &Value, _new_release: Option<&Rollout>) -> bool {
        let mut changed = false;
        if object.pointer("/spec/paused") != Some(&Value::Bool(true)) {
            object["spec"]["paused"] = json!(true);
            changed = true;
        }
        // A Recreate strategy would replace every pod at once: the old one stays.
        if object
            .pointer("/spec/strategy/type")
            .and_then(Value::as_str)
            == Some("Recreate")
            && let Some(strategy) = old.pointer("/spec/strategy")
        {
            object["spec"]["strategy"] = strategy.clone();
            changed = true;
        }
        changed
    }
}
