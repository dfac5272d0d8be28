//! Which Rollouts an event concerns, and which changes of a Rollout are worth a
//! reconcile: its spec, its annotations and finalizers, its deletion, and what people
//! write into its status (an approval, a step jump) — never the status Sluice wrote
//! itself, so that a strategy whose message or memo changes at every decision is
//! decided at the rate it asks for, not in a loop.

use std::hash::{Hash, Hasher};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use super::MODULE_ANNOTATION;
use crate::kruise::v1alpha1::Rollout;

/// The fingerprint of what in a Rollout calls for a reconcile.
pub fn rollout_changed(r: &Rollout) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.metadata.generation.hash(&mut h);
    r.metadata.deletion_timestamp.is_some().hash(&mut h);
    r.metadata.finalizers.hash(&mut h);
    // Annotations name the module and its configuration; they bump no generation.
    r.metadata.annotations.hash(&mut h);
    r.metadata.labels.hash(&mut h);
    if let Some(c) = r.status.as_ref().and_then(|s| s.canary_status.as_ref()) {
        // What an approval (StepReady) or a step jump (nextStepIndex) writes, and
        // the step Sluice moved to, which the next reconcile acts on.
        c.current_step_state.hash(&mut h);
        c.current_step_index.hash(&mut h);
        c.next_step_index.hash(&mut h);
        c.finalising_step.hash(&mut h);
    }
    r.status.as_ref().map(|s| &s.phase).hash(&mut h);
    r.status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == super::status::condition::PROGRESSING)
                .map(|c| c.reason.clone())
        })
        .hash(&mut h);
    Some(h.finish())
}

/// Rollouts of `ns` releasing a `kind` workload named one of `names`.
pub fn rollouts_for(
    store: &Store<Rollout>,
    ns: Option<String>,
    kind: &str,
    names: &[String],
) -> Vec<ObjectRef<Rollout>> {
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns)
        .filter(|r| {
            r.spec
                .object_ref
                .workload_ref
                .as_ref()
                .is_some_and(|w| w.kind == kind && names.contains(&w.name))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Rollouts of `ns` whose strategy annotation names one of `modules`.
pub fn rollouts_using(
    store: &Store<Rollout>,
    ns: Option<String>,
    modules: &[String],
) -> Vec<ObjectRef<Rollout>> {
    if modules.is_empty() {
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns)
        .filter(|r| {
            r.annotations()
                .get(MODULE_ANNOTATION)
                .is_some_and(|m| modules.contains(m))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Other Rollouts of `rollout`'s namespace that hold the same workload before it:
/// enabled, and created earlier (by name when at the same second). The admission
/// webhook refuses a second Rollout of a workload; where none ran, the older one
/// keeps the workload and the newer one is invalid. Only those are cloned.
pub fn conflicting(store: &Store<Rollout>, rollout: &Rollout) -> Vec<Rollout> {
    let Some(w) = rollout.spec.object_ref.workload_ref.as_ref() else {
        return Vec::new();
    };
    let ns = rollout.namespace();
    let name = rollout.name_any();
    let created = |r: &Rollout| (r.metadata.creation_timestamp.clone(), r.name_any());
    store
        .state()
        .iter()
        .filter(|r| {
            r.namespace() == ns
                && r.name_any() != name
                && !r.spec.disabled
                && r.spec.object_ref.workload_ref.as_ref() == Some(w)
                && created(r) < created(rollout)
        })
        .map(|r| (**r).clone())
        .collect()
}

/// The object's names that concern Rollouts, for a workload kind's watch.
pub fn names_of(kind: crate::workload::Kind, object: &kube::core::DynamicObject) -> Vec<String> {
    serde_json::to_value(object)
        .map(|v: Value| kind.concerns(&v))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kruise::v1alpha1::CanaryStatus;

    fn rollout() -> Rollout {
        serde_yaml_ng::from_str(
            "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: r, namespace: default, generation: 1}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}\n  strategy: {canary: {steps: [{weight: 20}]}}\nstatus: {phase: Progressing, message: a, canaryStatus: {currentStepIndex: 1, currentStepState: StepPaused, nextStepIndex: 2}}\n",
        )
        .expect("rollout")
    }

    #[test]
    fn sluices_own_status_writes_do_not_call_for_a_reconcile() {
        let before = rollout();
        let fingerprint = rollout_changed(&before);
        // A decision's message, memo and times change: no reconcile.
        let mut own = before.clone();
        let status = own.status.as_mut().expect("status");
        status.message = Some("another message".into());
        status.strategy = Some(crate::kruise::v1alpha1::StrategyStatus {
            memo: "count=2".into(),
            ..Default::default()
        });
        if let Some(c) = status.canary_status.as_mut() {
            c.last_update_time = None;
            c.canary_ready_replicas = 3;
        }
        own.metadata.resource_version = Some("42".into());
        assert_eq!(rollout_changed(&own), fingerprint);
        // An approval, a step jump, a new spec, a new module: a reconcile each.
        type Change = Box<dyn Fn(&mut Rollout)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| {
                r.status.as_mut().unwrap().canary_status = Some(CanaryStatus {
                    current_step_index: 1,
                    current_step_state: "StepReady".into(),
                    next_step_index: 2,
                    ..Default::default()
                })
            }),
            Box::new(|r| {
                if let Some(c) = r.status.as_mut().unwrap().canary_status.as_mut() {
                    c.next_step_index = 1;
                }
            }),
            Box::new(|r| r.metadata.generation = Some(2)),
            Box::new(|r| {
                r.metadata.annotations =
                    Some([(MODULE_ANNOTATION.to_owned(), "other".to_owned())].into())
            }),
            Box::new(|r| {
                r.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ))
            }),
        ];
        for change in changes {
            let mut r = before.clone();
            change(&mut r);
            assert_ne!(rollout_changed(&r), fingerprint);
        }
    }
}
