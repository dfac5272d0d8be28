//! The workloads a Rollout releases, each behind the [`Workload`] trait: how it is
//! read, what a release looks like in it, and the writes that move it.
//!
//! Two styles: a *canary-style* workload (a Deployment) gets an extra canary
//! Deployment with the new template, scaled per step; a *partition-style* workload
//! (a CloneSet, a StatefulSet, a Deployment whose Rollout asks for the partition
//! rolling style — see [`of_rollout`]) updates its own pods in place, per step. A
//! new kind of workload is a new file here and one line in [`KINDS`]: the
//! controller's stages call the trait and never name a kind.

mod cloneset;
mod deployment;
mod deployment_partition;
mod partition;
mod statefulset;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::controller::finalise::{Ending, FinalisingStep};
use crate::controller::observed::{Observed, Snapshot};
use crate::controller::write::Write;
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::{ReplicaCounts, Replicas};

pub use deployment::{CANARY_LABEL, canary_name};
pub use deployment_partition::ReplicaSetView;
#[cfg(test)]
pub(crate) use deployment_partition::{STRATEGY_ANNOTATION, pod_template_hash};

/// The workloads Sluice releases: one registration each.
pub static KINDS: &[&dyn Workload] = &[
    &deployment::Deployment,
    &cloneset::CloneSet,
    &statefulset::StatefulSet,
];

/// The workload kind a `workloadRef` names, if Sluice releases it.
pub fn for_ref(api_version: &str, kind: &str) -> Option<Kind> {
    KINDS
        .iter()
        .find(|w| w.api_version() == api_version && w.kind() == kind)
        .map(|w| Kind(*w))
}

/// How `rollout` releases its workload: the registered kind of its `workloadRef`,
/// but a Deployment under `rollouts.kruise.io/rolling-style: partition` is released
/// in place, its own pods updated, with no canary Deployment.
pub fn of_rollout(rollout: &Rollout) -> Option<Kind> {
    let r = rollout.spec.object_ref.workload_ref.as_ref()?;
    let kind = for_ref(&r.api_version, &r.kind)?;
    let in_place = kind.style() == Style::Canary
        && crate::kruise::validate::rolling_style(rollout)
            == crate::kruise::validate::RollingStyle::Partition;
    Some(if in_place {
        Kind(&deployment_partition::PartitionDeployment)
    } else {
        kind
    })
}

/// The kinds Sluice releases, for messages: `apps/v1 Deployment, …`.
pub fn supported() -> String {
    KINDS
        .iter()
        .map(|w| format!("{} {}", w.api_version(), w.kind()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a workload is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An extra canary workload with the new template.
    Canary,
    /// The workload's own pods, updated in place below a partition.
    Partition,
}

/// A step of finalisation: its writes, and whether it is done (go on to the next
/// step) or waits (for these writes, or for the cluster).
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Writes the step makes.
    pub writes: Vec<Write>,
    /// Whether the next step may run now.
    pub done: bool,
}

impl StepOutcome {
    /// Done, with nothing to write.
    pub fn done() -> StepOutcome {
        StepOutcome {
            writes: Vec::new(),
            done: true,
        }
    }

    /// Not done: these writes (maybe none), then look again.
    pub fn pending(writes: Vec<Write>) -> StepOutcome {
        StepOutcome {
            writes,
            done: false,
        }
    }
}

/// A workload kind Sluice releases.
pub trait Workload: Send + Sync + 'static {
    /// Its `apiVersion`.
    fn api_version(&self) -> &'static str;
    /// Its `kind`.
    fn kind(&self) -> &'static str;
    /// How it is released.
    fn style(&self) -> Style;
    /// The pod label telling its revisions apart, which Services select on.
    fn revision_label(&self) -> &'static str;

    /// The API resource, for reads, writes and watches.
    fn resource(&self) -> ApiResource {
        resource_of(self.api_version(), self.kind())
    }

    /// Reads the workload `name` and what its view needs into `snapshot`.
    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        rollout: &'a Rollout,
        name: &'a str,
        snapshot: &'a mut Snapshot,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;

    /// The workload (and canary) as the plan sees them, from what was read.
    fn view(&self, snapshot: &Snapshot) -> Option<(WorkloadView, Option<CanaryView>)>;

    /// Names of workloads an event on `object` concerns (the object's own, and for a
    /// canary the workload it is the canary of).
    fn concerns(&self, object: &Value) -> Vec<String> {
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(|n| vec![n.to_owned()])
            .unwrap_or_default()
    }

    /// Writes that keep the workload from rolling out on its own; none when it is held.
    fn hold(&self, o: &Observed, w: &WorkloadView) -> Vec<Write>;
    /// Writes that let it roll out natively; none when nothing holds it.
    fn release(&self, o: &Observed, w: &WorkloadView) -> Vec<Write>;
    /// Writes that bring the canary to `size` (of `w.replicas`): a share when the step
    /// is one and the canary is at that share, so a kind that can keep a share across
    /// a scale (a CloneSet's percentage partition) does.
    fn scale_canary(&self, o: &Observed, w: &WorkloadView, size: Replicas) -> Vec<Write>;
    /// The canary pods a step of `size` asks for: the size of the workload's
    /// replicas, a share rounded up (a kind whose controller caps it says so).
    fn planned_pods(&self, w: &WorkloadView, size: Replicas) -> u32 {
        size.resolve(w.replicas)
    }
    /// Writes while no decision can be acted on (the strategy failed or waits).
    fn on_wait(&self, o: &Observed, w: &WorkloadView) -> Vec<Write>;
    /// Writes that drop a release's canary when yet another template appears.
    fn reset(&self, o: &Observed, w: &WorkloadView) -> Vec<Write>;
    /// The canary's pods.
    fn canary_counts(&self, o: &Observed, w: &WorkloadView) -> ReplicaCounts;
    /// The revision label value of the canary's pods, once known.
    fn canary_revision(&self, o: &Observed, w: &WorkloadView) -> Option<String>;
    /// The finalisation steps of `ending`, in Kruise's order for this style.
    fn ending_steps(&self, ending: Ending) -> &'static [FinalisingStep];
    /// `ResumeWorkload`: the workload goes on by itself (or back).
    fn resume(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> StepOutcome;
    /// `ReleaseWorkloadControl`: the release lets go of the workload.
    fn release_control(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> StepOutcome;
    /// Writes once every step of `ending` is done.
    fn after_ending(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> Vec<Write>;
    /// The stable revision and the pods' template hash as Kruise's status records
    /// them for a workload no release has run on yet.
    fn first_status_revisions(&self, o: &Observed, w: &WorkloadView) -> (String, String) {
        (
            w.stable_revision.clone(),
            self.canary_revision(o, w).unwrap_or_default(),
        )
    }

    /// Its `rollouts.kruise.io/workload-type` label, which Kruise's webhooks select
    /// workloads by.
    fn workload_type(&self) -> &'static str;
    /// Whether [`Workload::hold_for_release`] needs the workload's ReplicaSets.
    fn needs_replica_sets(&self) -> bool {
        false
    }
    /// The admission webhook saw a new template of `object` under `rollout`: holds it
    /// for the release (pauses it, or sets a partition covering every pod) unless it
    /// cannot be released now. Whether it was held.
    fn hold_for_release(
        &self,
        object: &mut Value,
        rollout: &Rollout,
        replica_sets: &[Value],
    ) -> bool;
    /// An update of `object` while its release runs: keeps it held against the
    /// update (`old` is the object before; `new_release`: the Rollout, when the
    /// update is a new release — its template or rollout id changed). Whether
    /// `object` changed.
    fn keep_held(&self, _object: &mut Value, _old: &Value, _new_release: Option<&Rollout>) -> bool {
        false
    }
}

/// The label Kruise's webhooks select workloads by; the controller writes it.
pub const WORKLOAD_TYPE_LABEL: &str = "rollouts.kruise.io/workload-type";

/// A registered workload kind: a cheap, comparable handle on its [`Workload`].
#[derive(Clone, Copy)]
pub struct Kind(pub &'static dyn Workload);

impl std::ops::Deref for Kind {
    type Target = dyn Workload;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.0.api_version() == other.0.api_version() && self.0.kind() == other.0.kind()
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.api_version(), self.0.kind())
    }
}

/// The released workload, as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its `metadata.resourceVersion`, the precondition of a write that must not
    /// cross a change.
    pub resource_version: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// Desired replicas.
    pub replicas: u32,
    /// The pod template as it is now.
    pub template: Value,
    /// Held: a paused Deployment, or a partition covering every pod.
    pub held: bool,
    /// Revision label value of the stable pods.
    pub stable_revision: String,
    /// The template of the stable pods.
    pub stable_template: Option<Value>,
    /// Revision label value of pods of the current template, when it is known
    /// (partition workloads report it; for Deployments it is the canary's).
    pub update_revision: Option<String>,
    /// The workload's own rollout of its current template is complete.
    pub rolled_out: bool,
    /// Its controller has seen its current generation (`status.observedGeneration`):
    /// what its status says describes its spec.
    pub status_observed: bool,
    /// Counts over all its pods.
    pub counts: ReplicaCounts,
    /// Counts over the pods of the current template (partition workloads).
    pub updated: ReplicaCounts,
    /// Current partition (partition workloads).
    pub partition: Option<i64>,
    /// The workload's metadata labels.
    pub labels: BTreeMap<String, String>,
    /// The workload's metadata annotations.
    pub annotations: BTreeMap<String, String>,
    /// The workload's whole spec, to copy for a canary Deployment.
    pub spec: Value,
    /// The pods of the release's revision (the canary's, for a Deployment), with
    /// their batch labels.
    pub pods: Vec<PodLabels>,
    /// Its ReplicaSets, when the release moves them (a Deployment in place).
    pub replica_sets: Vec<ReplicaSetView>,
}

/// The pod label naming the step a pod came up in (Kruise's batch labels).
pub const BATCH_ID: &str = "rollouts.kruise.io/rollout-batch-id";

/// A pod of the release's revision as batch labelling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLabels {
    /// Its name.
    pub name: String,
    /// Its `rollouts.kruise.io/rollout-id` label.
    pub rollout_id: Option<String>,
    /// Its `rollouts.kruise.io/rollout-batch-id` label.
    pub batch_id: Option<String>,
    /// It is being deleted.
    pub terminating: bool,
}

/// The batch labels of `pods`.
pub fn pod_labels(pods: &[Value]) -> Vec<PodLabels> {
    let label = |p: &Value, key: &str| {
        p.pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    pods.iter()
        .map(|p| PodLabels {
            name: p
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            rollout_id: label(p, crate::admission::workloads::ROLLOUT_ID),
            batch_id: label(p, BATCH_ID),
            terminating: p.pointer("/metadata/deletionTimestamp").is_some(),
        })
        .collect()
}

impl WorkloadView {
    /// Whether the current template differs from the stable pods' template: a release.
    pub fn has_new_template(&self) -> bool {
        match self.kind.style() {
            Style::Canary => self
                .stable_template
                .as_ref()
                .is_some_and(|stable| !same_template(stable, &self.template)),
            Style::Partition => self
                .update_revision
                .as_ref()
                .is_some_and(|u| *u != self.stable_revision),
        }
    }

    /// The hash Sluice records as `canaryRevision` for the current template.
    pub fn template_hash(&self) -> String {
        template_hash(&self.template)
    }

    /// A merge patch of the workload.
    pub fn patch(&self, namespace: &str, patch: Value) -> Write {
        Write::patch(
            crate::controller::write::Target::new(
                self.kind.api_version(),
                self.kind.kind(),
                namespace,
                &self.name,
            ),
            patch,
        )
    }

    /// The write that removes the mark the admission webhook holds the workload by
    /// (`rollouts.kruise.io/in-progressing`), when it has one. With `as_read`, it is
    /// refused if the workload changed since it was read.
    pub fn unmark(&self, namespace: &str, as_read: bool) -> Option<Write> {
        use crate::admission::workloads::IN_PROGRESSING;
        if !self.annotations.contains_key(IN_PROGRESSING) {
            return None;
        }
        let mut patch = serde_json::json!({"metadata": {"annotations": {IN_PROGRESSING: null}}});
        if as_read {
            patch["metadata"]["resourceVersion"] = self.resource_version.clone().into();
        }
        Some(self.patch(namespace, patch))
    }
}

/// The extra canary workload of a canary-style release.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryView {
    /// Its name.
    pub name: String,
    /// Its pod template.
    pub template: Value,
    /// Its pods.
    pub counts: ReplicaCounts,
    /// The revision label value of its pods, once its ReplicaSet exists.
    pub pod_template_hash: Option<String>,
}

/// Two pod templates are the same release when they are equal but for the
/// revision labels controllers add.
pub fn same_template(a: &Value, b: &Value) -> bool {
    without_revision_labels(a) == without_revision_labels(b)
}

/// A pod template without the revision labels controllers add.
pub fn without_revision_labels(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
        labels.remove("controller-revision-hash");
        if labels.is_empty()
            && let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    t
}

/// A short hash of a pod template, for `canaryRevision`.
pub fn template_hash(template: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(without_revision_labels(template).to_string().as_bytes());
    hex::encode(&digest[..5])
}

/// `name=image` of each container of a pod template.
pub fn images(template: &Value) -> Vec<String> {
    template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={}",
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The API resource of `kind` in `api_version` (`apps/v1`, `v1`).
pub fn resource_of(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The objects of `api` matching `params`, as plain JSON.
pub(crate) async fn list_values(
    api: &kube::Api<kube::core::DynamicObject>,
    params: &kube::api::ListParams,
) -> Result<Vec<Value>, kube::Error> {
    let list = api.list(params).await?;
    // kube-apiserver names the kind once, on the list, and leaves it off the items
    // of its own kinds: each item gets it back, as a single read would give it.
    let types = kube::core::TypeMeta {
        api_version: list.types.api_version.clone(),
        kind: list
            .types
            .kind
            .strip_suffix("List")
            .unwrap_or(&list.types.kind)
            .to_owned(),
    };
    list.items
        .into_iter()
        .map(|mut item| {
            if item.types.as_ref().is_none_or(|t| t.kind.is_empty()) {
                item.types = Some(types.clone());
            }
            serde_json::to_value(item)
        })
        .collect::<Result<_, _>>()
        .map_err(kube::Error::SerdeError)
}

/// The string entries of the map at `pointer` in `object` (labels, annotations, a
/// selector); empty when there is none.
pub fn string_map(object: &Value, pointer: &str) -> BTreeMap<String, String> {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The uid of the controller owning `object`.
pub fn controller_uid(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// A number at `path` of `object` as `u32`, 0 when absent.
pub(crate) fn count(object: &Value, path: &str) -> u32 {
    object
        .pointer(path)
        .and_then(Value::as_i64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Pods of `pods` that will not become ready without a change (crash loops, bad images).
pub fn failed_pods<'a>(pods: impl Iterator<Item = &'a Value>) -> u32 {
    let failed = pods
        .filter(|p| {
            p.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        let ready = c.get("ready").and_then(Value::as_bool).unwrap_or(false);
                        let restarts = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
                        let waiting = c.pointer("/state/waiting/reason").and_then(Value::as_str);
                        !ready
                            && (restarts > 0
                                || matches!(
                                    waiting,
                                    Some(
                                        "CrashLoopBackOff"
                                            | "ImagePullBackOff"
                                            | "ErrImagePull"
                                            | "CreateContainerConfigError"
                                            | "InvalidImageName"
                                    )
                                ))
                    })
                })
        })
        .count();
    u32::try_from(failed).unwrap_or(u32::MAX)
}

/// Pods of `pods` that are ready and not going away.
pub fn ready_pods<'a>(pods: impl Iterator<Item = &'a Value>) -> u32 {
    let ready = pods
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .count();
    u32::try_from(ready).unwrap_or(u32::MAX)
}

/// Pods of `pods` whose label `label` is `value`.
pub fn pods_with<'a>(
    pods: &'a [Value],
    label: &'a str,
    value: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    pods.iter().filter(move |p| {
        p.pointer("/metadata/labels")
            .and_then(|l| l.get(label))
            .and_then(Value::as_str)
            == Some(value)
    })
}

/// The owner reference a Rollout's objects carry.
pub fn owner(rollout: &Rollout) -> Value {
    serde_json::json!({
        "apiVersion": "rollouts.kruise.io/v1alpha1",
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The namespace of a Rollout (and so of all it touches).
pub fn namespace(rollout: &Rollout) -> &str {
    rollout.metadata.namespace.as_deref().unwrap_or("")
}
