//! Kruise's batch labels: each pod of the release's revision carries the release's
//! `rollouts.kruise.io/rollout-id` and the 1-based step it came up in,
//! `rollouts.kruise.io/rollout-batch-id`, so dashboards and alerts can tell the
//! batches apart.
//!
//! As Kruise (v0.6) does: the id is the workload's `rollouts.kruise.io/rollout-id`
//! label, else the release's canary revision. Step *n*'s share of pods is its
//! canary size (rounded up against the workload's replicas) less step *n − 1*'s;
//! the pods a step lacks are taken from those without the current id, filling the
//! current step first and going back to the first. Labels are never removed, and
//! a pod need not be ready to be labelled.

use serde_json::json;

use crate::controller::write::{Target, Write};
use crate::rollout::stepper;
use crate::strategy::model::Step;
use crate::workload::{PodLabels, WorkloadView};

use crate::admission::workloads::ROLLOUT_ID;
use crate::workload::BATCH_ID;

/// The release's id: the workload's label, else its canary revision.
pub fn rollout_id(w: &WorkloadView) -> String {
    w.labels
        .get(ROLLOUT_ID)
        .filter(|id| !id.is_empty())
        .cloned()
        .unwrap_or_else(|| w.template_hash())
}

/// Which pods get which batch, for a release at step `current` of `steps`.
pub fn assign(
    steps: &[Step],
    current: u32,
    total: u32,
    id: &str,
    pods: &[PodLabels],
) -> Vec<(String, u32)> {
    let batches = steps.len().min(usize::try_from(current).unwrap_or(0));
    let valid = |batch: &Option<String>| {
        batch
            .as_deref()
            .and_then(|b| b.parse::<usize>().ok())
            .filter(|b| (1..=steps.len()).contains(b))
    };
    let mut have = vec![0u32; batches];
    let mut unlabelled = Vec::new();
    for pod in pods.iter().filter(|p| !p.terminating) {
        match (pod.rollout_id.as_deref() == Some(id), valid(&pod.batch_id)) {
            (true, Some(b)) => {
                if let Some(n) = have.get_mut(b - 1) {
                    *n += 1;
                }
            }
            _ => unlabelled.push(pod.name.clone()),
        }
    }
    let mut before = 0;
    let mut shares = Vec::with_capacity(batches);
    for step in &steps[..batches] {
        let target = stepper::step_replicas(step).resolve(total).min(total);
        shares.push(target.saturating_sub(before));
        before = target.max(before);
    }
    let mut assigned = Vec::new();
    for batch in (0..batches).rev() {
        for _ in 0..shares[batch].saturating_sub(have[batch]) {
            let Some(pod) = unlabelled.pop() else {
                return assigned;
            };
            assigned.push((pod, u32::try_from(batch + 1).unwrap_or(u32::MAX)));
        }
    }
    assigned
}

/// The label patches for the pods of `w`'s release at step `current`.
pub fn writes(namespace: &str, w: &WorkloadView, steps: &[Step], current: u32) -> Vec<Write> {
    let id = rollout_id(w);
    assign(steps, current, w.replicas, &id, &w.pods)
        .into_iter()
        .map(|(pod, batch)| Write::Patch {
            target: Target::new("v1", "Pod", namespace, &pod),
            patch: json!({"metadata": {"labels": {ROLLOUT_ID: id, BATCH_ID: batch.to_string()}}}),
            missing_ok: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::model::{Percent, Replicas};

    fn steps(percents: &[u8]) -> Vec<Step> {
        percents
            .iter()
            .map(|p| Step {
                replicas: Some(Replicas::Percent(Percent::new(*p).expect("0-100"))),
                ..Step::default()
            })
            .collect()
    }

    fn pod(name: &str, id: Option<&str>, batch: Option<&str>) -> PodLabels {
        PodLabels {
            name: name.into(),
            rollout_id: id.map(Into::into),
            batch_id: batch.map(Into::into),
            terminating: false,
        }
    }

    fn batches(assigned: &[(String, u32)]) -> Vec<u32> {
        let mut b: Vec<u32> = assigned.iter().map(|(_, b)| *b).collect();
        b.sort_unstable();
        b
    }

    #[test]
    fn each_step_gets_its_share_of_new_pods() {
        let plan = steps(&[20, 40, 60, 80, 100]);
        // Step 1 of 5 replicas: one pod, batch 1.
        let got = assign(&plan, 1, 5, "1", &[pod("a", None, None)]);
        assert_eq!(got, [("a".to_owned(), 1)]);
        // Step 2: the labelled pod stays, the new one is batch 2.
        let pods = [pod("a", Some("1"), Some("1")), pod("b", None, None)];
        assert_eq!(assign(&plan, 2, 5, "1", &pods), [("b".to_owned(), 2)]);
        // Nothing to do when every batch is full.
        let pods = [
            pod("a", Some("1"), Some("1")),
            pod("b", Some("1"), Some("2")),
        ];
        assert_eq!(assign(&plan, 2, 5, "1", &pods), []);
    }

    #[test]
    fn a_scaled_workload_fills_every_batch_again() {
        // 5 → 10 replicas at step 2 of 20%, 40%: each batch is 2 pods now.
        let plan = steps(&[20, 40, 60, 100]);
        let pods = [
            pod("a", Some("1"), Some("1")),
            pod("b", Some("1"), Some("2")),
            pod("c", None, None),
            pod("d", None, None),
        ];
        assert_eq!(batches(&assign(&plan, 2, 10, "1", &pods)), [1, 2]);
    }

    #[test]
    fn a_new_rollout_id_labels_every_pod_again_and_an_over_full_batch_stays() {
        let plan = steps(&[20, 40, 60]);
        let pods = [
            pod("a", Some("1"), Some("1")),
            pod("b", Some("1"), Some("2")),
            pod("c", Some("1"), Some("3")),
        ];
        assert_eq!(batches(&assign(&plan, 3, 5, "2", &pods)), [1, 2, 3]);
        // Kruise's own case: batch 1 holds 3 where the plan says 2; nothing moves.
        let plan = steps(&[40, 100]);
        let pods = [
            pod("a", Some("1"), Some("1")),
            pod("b", Some("1"), Some("1")),
            pod("c", Some("1"), Some("1")),
            pod("d", Some("1"), Some("2")),
            pod("e", Some("1"), Some("2")),
        ];
        assert_eq!(assign(&plan, 2, 5, "1", &pods), []);
    }

    #[test]
    fn terminating_pods_and_invalid_batches() {
        let plan = steps(&[50, 100]);
        let mut gone = pod("x", None, None);
        gone.terminating = true;
        let pods = [
            gone,
            pod("a", Some("1"), Some("nine")),
            pod("b", None, None),
        ];
        // Two pods for batch 1 of 4: the terminating one is left alone, the one
        // with a batch id that is no batch is labelled again.
        assert_eq!(batches(&assign(&plan, 1, 4, "1", &pods)), [1, 1]);
    }
}
