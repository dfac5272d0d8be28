//! Partition-style workloads: the workload updates its own pods, and a release keeps
//! `partition` pods on the old revision, lowering it step by step. What differs from
//! one kind to another (where the partition is, how pods name their revision) is a
//! [`Partitioned`] value in the kind's own file.

use futures::future::BoxFuture;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{
    CanaryView, StepOutcome, Style, Workload, WorkloadView, count, failed_pods, list_values,
    namespace, pods_with, ready_pods, resource_of, string_map,
};
use crate::controller::finalise::{Ending, FinalisingStep};
use crate::controller::observed::{Observed, Snapshot};
use crate::controller::write::{Target, Write};
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::{ReplicaCounts, Replicas};

/// A partition-style workload kind.
pub struct Partitioned {
    /// Its `apiVersion`.
    pub api_version: &'static str,
    /// Its `kind`.
    pub kind: &'static str,
    /// The pod label naming a pod's revision.
    pub revision_label: &'static str,
    /// JSON pointer of the partition in the object.
    pub partition_path: &'static str,
    /// The status' revisions are `<name>-<label value>` (CloneSet) rather than the
    /// label value itself (StatefulSet).
    pub revision_has_name_prefix: bool,
    /// The partition that holds every pod of `w`.
    pub hold_value: fn(&WorkloadView) -> Value,
    /// Whether the partition may be a share (`"60%"`), which the kind applies to its
    /// replicas as they are: a step given as a share keeps it through a scale.
    pub partition_share: bool,
    /// The merge patch setting the partition to a value.
    pub partition_patch: fn(Value) -> Value,
    /// Its `rollouts.kruise.io/workload-type`.
    pub workload_type: &'static str,
    /// The partition the admission webhook sets when a release begins.
    pub webhook_hold: fn() -> Value,
    /// Whether a new template of the object can be held for a release under
    /// `rollout` (Kruise's preconditions for the kind).
    pub releasable: fn(&Value, &Rollout) -> bool,
}

impl Partitioned {
    fn label_of(&self, revision: &str) -> String {
        if self.revision_has_name_prefix {
            revision
                .rsplit_once('-')
                .map_or(revision.to_owned(), |(_, h)| h.to_owned())
        } else {
            revision.to_owned()
        }
    }

    fn set(&self, o: &Observed, w: &WorkloadView, value: Value) -> Vec<Write> {
        vec![Write::patch(
            Target::new(self.api_version, self.kind, o.namespace(), &w.name),
            (self.partition_patch)(value),
        )]
    }
}

/// The partition keeping `keep` of `replicas` pods as a share, as Kruise writes it
/// (rounded down), when that share keeps exactly `keep` pods (a share of the
/// replicas is rounded up); `None` when it would keep another count (a large
/// workload's 1% is more than one pod).
fn share_partition(keep: u32, replicas: u32) -> Option<Value> {
    let percent = if keep >= replicas {
        100
    } else {
        u64::from(keep) * 100 / u64::from(replicas)
    };
    let keeps = (u64::from(replicas) * percent).div_ceil(100);
    (keeps == u64::from(keep)).then(|| json!(format!("{percent}%")))
}

fn update_revision(w: &Value) -> Option<&str> {
    w.pointer("/status/updateRevision").and_then(Value::as_str)
}

impl Workload for Partitioned {
    fn api_version(&self) -> &'static str {
        self.api_version
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn style(&self) -> Style {
        Style::Partition
    }

    fn revision_label(&self) -> &'static str {
        self.revision_label
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
            let object = match api.get_opt(name).await {
                Ok(Some(o)) => serde_json::to_value(o).map_err(kube::Error::SerdeError)?,
                Ok(None) => return Ok(()),
                // A kind whose CRD is not installed has no objects.
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e),
            };
            // The pods of the update revision, to count the ready and the failed.
            if let Some(revision) = update_revision(&object) {
                let label = self.label_of(revision);
                let pods: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &resource_of("v1", "Pod"));
                let params =
                    ListParams::default().labels(&format!("{}={label}", self.revision_label));
                snapshot.pods = list_values(&pods, &params).await?;
            }
            snapshot.workload = Some(object);
            Ok(())
        })
    }

    fn view(&self, snapshot: &Snapshot) -> Option<(WorkloadView, Option<CanaryView>)> {
        let w = snapshot.workload.as_ref()?;
        let int = |path: &str| w.pointer(path).and_then(Value::as_i64);
        let replicas = u32::try_from(int("/spec/replicas").unwrap_or(1)).unwrap_or(0);
        let update = update_revision(w).map(str::to_owned);
        let current = w
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| update.clone())
            .unwrap_or_default();
        let partition = match w.pointer(self.partition_path) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .map(|p| (i64::from(replicas) * p + 99) / 100),
            _ => None,
        };
        let generation = int("/metadata/generation").unwrap_or(0);
        let updated = count(w, "/status/updatedReplicas");
        let update_label = update.as_deref().map(|r| self.label_of(r));
        let (updated_ready, failed) = match &update_label {
            Some(rev) => (
                ready_pods(pods_with(&snapshot.pods, self.revision_label, rev)),
                failed_pods(pods_with(&snapshot.pods, self.revision_label, rev)),
            ),
            None => (0, 0),
        };
        let ready = count(w, "/status/readyReplicas");
        let observed_generation = int("/status/observedGeneration").unwrap_or(0);
        let view = WorkloadView {
            kind: super::for_ref(self.api_version, self.kind)?,
            name: w
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            uid: w
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            resource_version: w
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            generation,
            replicas,
            template: w.pointer("/spec/template").cloned().unwrap_or(Value::Null),
            held: partition.is_some_and(|p| p >= i64::from(replicas)),
            stable_revision: self.label_of(&current),
            stable_template: None,
            update_revision: update_label,
            rolled_out: observed_generation == generation
                && updated == replicas
                && ready == replicas,
            status_observed: observed_generation == generation,
            counts: ReplicaCounts {
                desired: replicas,
                ready,
                updated,
                failed,
            },
            updated: ReplicaCounts {
                desired: replicas
                    .saturating_sub(u32::try_from(partition.unwrap_or(0).max(0)).unwrap_or(0)),
                ready: updated_ready,
                updated,
                failed,
            },
            partition,
            labels: string_map(w, "/metadata/labels"),
            annotations: string_map(w, "/metadata/annotations"),
            spec: w.get("spec").cloned().unwrap_or(Value::Null),
            pods: super::pod_labels(&snapshot.pods),
            replica_sets: Vec::new(),
        };
        Some((view, None))
    }

    fn hold(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        if w.held {
            Vec::new()
        } else {
            self.set(o, w, (self.hold_value)(w))
        }
    }

    fn release(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        // Any partition holds pods back, all of them or some.
        if w.partition.is_some() {
            self.set(o, w, Value::Null)
        } else {
            Vec::new()
        }
    }

    fn scale_canary(&self, o: &Observed, w: &WorkloadView, size: Replicas) -> Vec<Write> {
        let keep = w.replicas - size.resolve(w.replicas).min(w.replicas);
        // Kruise's share, unless it would not keep exactly the stable pods (a large
        // workload's share rounding to another count): then the count, so the step
        // can be reached.
        let value = match size {
            Replicas::Percent(_) if self.partition_share => share_partition(keep, w.replicas),
            _ => None,
        }
        .unwrap_or_else(|| json!(keep));
        // A partition is only ever lowered within a release: one already at or below
        // the wanted one (a canary kept from shrinking) stays.
        if w.partition.is_some_and(|p| p <= i64::from(keep)) {
            Vec::new()
        } else {
            self.set(o, w, value)
        }
    }

    fn on_wait(&self, _o: &Observed, _w: &WorkloadView) -> Vec<Write> {
        Vec::new()
    }

    fn reset(&self, o: &Observed, w: &WorkloadView) -> Vec<Write> {
        self.hold(o, w)
    }

    fn canary_counts(&self, _o: &Observed, w: &WorkloadView) -> ReplicaCounts {
        w.updated
    }

    fn canary_revision(&self, _o: &Observed, w: &WorkloadView) -> Option<String> {
        w.update_revision.clone()
    }

    fn ending_steps(&self, ending: Ending) -> &'static [FinalisingStep] {
        ending_steps(ending)
    }

    fn resume(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> StepOutcome {
        match ending {
            // The workload rolls the rest out (or back) itself: partition 0, then wait.
            Ending::Success | Ending::Cancel | Ending::Abort => {
                if w.partition.unwrap_or(0) != 0 {
                    StepOutcome::pending(self.set(o, w, json!(0)))
                } else if w.rolled_out {
                    StepOutcome::done()
                } else {
                    StepOutcome::pending(Vec::new())
                }
            }
            // Let go of it as it is.
            Ending::Delete | Ending::Disable => {
                let writes = self.release(o, w);
                if writes.is_empty() {
                    StepOutcome::done()
                } else {
                    StepOutcome::pending(writes)
                }
            }
        }
    }

    fn release_control(&self, _o: &Observed, _w: &WorkloadView, _ending: Ending) -> StepOutcome {
        StepOutcome::done()
    }

    fn after_ending(&self, o: &Observed, w: &WorkloadView, ending: Ending) -> Vec<Write> {
        // An aborted release stays held at the stable version; otherwise the
        // workload is an ordinary one until the webhook holds its next template.
        match ending {
            Ending::Abort => self.hold(o, w),
            Ending::Success | Ending::Cancel | Ending::Delete | Ending::Disable => Vec::new(),
        }
    }

    fn workload_type(&self) -> &'static str {
        self.workload_type
    }

    /// As Kruise: a new template mid-release is held from its first pod again
    /// (the release starts over), in the same request, before the workload's
    /// controller updates the pods at or above the old partition.
    fn keep_held(&self, object: &mut Value, _old: &Value, new_release: Option<&Rollout>) -> bool {
        new_release.is_some_and(|rollout| self.hold_for_release(object, rollout, &[]))
    }

    fn hold_for_release(&self, object: &mut Value, rollout: &Rollout, _: &[Value]) -> bool {
        if !(self.releasable)(object, rollout) {
            return false;
        }
        json_patch::merge(object, &(self.partition_patch)((self.webhook_hold)()));
        true
    }
}

/// How a release of a workload updated in place ends, whatever its kind.
pub(super) fn ending_steps(ending: Ending) -> &'static [FinalisingStep] {
    use FinalisingStep::*;
    match ending {
        // Kruise's orders, whatever the workload: a release that succeeded, a Rollout
        // deleted or disabled.
        Ending::Success | Ending::Delete | Ending::Disable => &[
            RestoreStableService,
            RouteTrafficToStable,
            RemoveCanaryService,
            ResumeWorkload,
            ReleaseWorkloadControl,
            End,
        ],
        Ending::Cancel => &[
            RouteTrafficToStable,
            ResumeWorkload,
            ReleaseWorkloadControl,
            RestoreStableService,
            RemoveCanaryService,
            End,
        ],
        // Updated pods cannot go back until the template does: they stay, held, out
        // of traffic behind the pinned stable Service.
        Ending::Abort => &[RouteTrafficToStable, RemoveCanaryService, End],
    }
}
