//! What one reconcile sees of the cluster: plain values, built by `observe` and read by
//! the pure `plan`.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::ReplicaCounts;

/// The kinds of workload a Rollout releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment, released with an extra canary Deployment.
    Deployment,
    /// `apps.kruise.io/v1alpha1` CloneSet, released by partition.
    CloneSet,
    /// `apps/v1` StatefulSet, released by partition.
    StatefulSet,
}

impl WorkloadKind {
    /// The kind named by a workloadRef.
    pub fn from_ref(api_version: &str, kind: &str) -> Option<Self> {
        match (api_version, kind) {
            ("apps/v1", "Deployment") => Some(WorkloadKind::Deployment),
            ("apps.kruise.io/v1alpha1", "CloneSet") => Some(WorkloadKind::CloneSet),
            ("apps/v1", "StatefulSet") => Some(WorkloadKind::StatefulSet),
            _ => None,
        }
    }

    /// The pod label telling revisions apart, which Services select on.
    pub fn revision_label(self) -> &'static str {
        match self {
            WorkloadKind::Deployment | WorkloadKind::CloneSet => "pod-template-hash",
            WorkloadKind::StatefulSet => "controller-revision-hash",
        }
    }
}

/// The released workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadView {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
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
    /// Counts over all its pods.
    pub counts: ReplicaCounts,
    /// Counts over the pods of the current template (partition workloads).
    pub updated: ReplicaCounts,
    /// Current partition (partition workloads).
    pub partition: Option<i64>,
    /// The workload's metadata labels.
    pub labels: BTreeMap<String, String>,
    /// The workload's whole spec, to copy for a canary Deployment.
    pub spec: Value,
}

impl WorkloadView {
    /// Whether the current template differs from the stable pods' template: a release.
    pub fn has_new_template(&self) -> bool {
        match self.kind {
            WorkloadKind::Deployment => self
                .stable_template
                .as_ref()
                .is_some_and(|stable| !same_template(stable, &self.template)),
            WorkloadKind::CloneSet | WorkloadKind::StatefulSet => self
                .update_revision
                .as_ref()
                .is_some_and(|u| *u != self.stable_revision),
        }
    }

    /// The hash Sluice records as `canaryRevision` for the current template.
    pub fn template_hash(&self) -> String {
        template_hash(&self.template)
    }
}

/// The extra canary Deployment of a Deployment release.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryView {
    /// Its name.
    pub name: String,
    /// Its pod template.
    pub template: Value,
    /// Its pods.
    pub counts: ReplicaCounts,
    /// `pod-template-hash` of its pods, once its ReplicaSet exists.
    pub pod_template_hash: Option<String>,
}

/// The traffic objects of a Rollout's traffic routing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficView {
    /// The stable Service's selector (`None`: the Service does not exist).
    pub stable_selector: Option<BTreeMap<String, String>>,
    /// The stable Service.
    pub stable_service: Option<Value>,
    /// The canary Service's selector (`None`: it does not exist).
    pub canary_selector: Option<BTreeMap<String, String>>,
    /// The stable Ingress (NGINX routing).
    pub ingress: Option<Value>,
    /// The canary Ingress' annotations (`None`: it does not exist).
    pub canary_ingress: Option<BTreeMap<String, String>>,
    /// The HTTPRoute (Gateway API routing).
    pub http_route: Option<Value>,
}

/// Everything one reconcile of a Rollout sees.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The Rollout.
    pub rollout: Rollout,
    /// Other Rollouts of its namespace (for the one-Rollout-per-workload rule).
    pub others: Vec<Rollout>,
    /// The released workload, if it exists.
    pub workload: Option<WorkloadView>,
    /// The canary Deployment, if any.
    pub canary: Option<CanaryView>,
    /// The traffic objects.
    pub traffic: TrafficView,
    /// Now, Unix milliseconds.
    pub now: u64,
}

/// Two pod templates are the same release when they are equal but for the
/// revision labels controllers add.
pub fn same_template(a: &Value, b: &Value) -> bool {
    without_revision_labels(a) == without_revision_labels(b)
}

fn without_revision_labels(t: &Value) -> Value {
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
    let digest = Sha256::digest(without_revision_labels(template).to_string().as_bytes());
    hex::encode(&digest[..5])
}
