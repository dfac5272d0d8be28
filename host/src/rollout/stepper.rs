//! How a step's state moves, given the strategy's decision and what the host saw.
//!
//! The strategy decides which step the rollout is in and what that step's target is;
//! the host brings pods, then traffic, to the target and records how far it got, in
//! Kruise's step states. This is that bookkeeping, as a pure function.

use serde::{Deserialize, Serialize};

use crate::strategy::model::{Action, Decision, Percent, ReplicaCounts, Replicas, Step, StepState};

/// The step progress kept in a Rollout's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepProgress {
    /// 1-based step; 0 before the first decision of a release.
    pub step: u32,
    /// State within the step.
    pub state: StepState,
    /// Kruise's `lastUpdateTime`, Unix milliseconds.
    pub last_update_time: u64,
}

/// What the host saw of the current target before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Convergence {
    /// The canary pods of the target are up (Kruise's batch-ready rule).
    pub pods_ready: bool,
    /// The target's traffic is applied and its grace period has passed.
    pub traffic_ready: bool,
}

/// The progress after the host acts on `decision` at `now`.
///
/// An abort leaves the progress as it is: rolling back is the caller's business.
pub fn next(
    progress: StepProgress,
    decision: &Decision,
    seen: Convergence,
    now: u64,
) -> StepProgress {
    let moved = |state| StepProgress {
        step: progress.step,
        state,
        last_update_time: now,
    };
    if matches!(decision.action, Action::Abort { .. }) {
        return progress;
    }
    if matches!(decision.action, Action::Complete) {
        return if progress.state == StepState::Completed {
            progress
        } else {
            StepProgress {
                step: decision.step,
                state: StepState::Completed,
                last_update_time: now,
            }
        };
    }
    if decision.step != progress.step {
        return StepProgress {
            step: decision.step,
            state: StepState::StepUpgrade,
            last_update_time: now,
        };
    }
    let pausing = matches!(decision.action, Action::Pause { .. });
    match progress.state {
        StepState::BeforeStepUpgrade => moved(StepState::StepUpgrade),
        StepState::StepUpgrade if seen.pods_ready => moved(StepState::StepTrafficRouting),
        StepState::StepTrafficRouting if seen.traffic_ready => {
            moved(StepState::StepMetricsAnalysis)
        }
        // Kruise keeps lastUpdateTime when a step starts waiting, so a timed pause
        // counts from the moment the step was ready.
        StepState::StepMetricsAnalysis | StepState::StepReady if pausing => StepProgress {
            state: StepState::StepPaused,
            ..progress
        },
        _ => progress,
    }
}

/// The `nextStepIndex` Kruise writes for a 1-based step of `steps`: the following
/// step, or -1 after the last.
pub fn next_step_index(step: u32, steps: usize) -> i32 {
    if step as usize >= steps {
        -1
    } else {
        i32::try_from(step + 1).unwrap_or(-1)
    }
}

/// Kruise's step jump: a person patched `status.canaryStatus.nextStepIndex` to a
/// step other than the following one (the current step itself runs it again). The
/// rollout goes to that step at once, whatever the state of the current one but a
/// completed release: straight to its traffic when the canary already has the
/// step's pods (`canary_replicas`, as the status records them), from its start
/// otherwise. Anything else leaves `progress` as it is.
pub fn jump(
    progress: StepProgress,
    asked: i32,
    steps: &[Step],
    total: u32,
    canary_replicas: u32,
    now: u64,
) -> StepProgress {
    let Ok(target) = u32::try_from(asked) else {
        return progress;
    };
    let expected = next_step_index(progress.step, steps.len());
    if progress.state == StepState::Completed
        || asked == expected
        || target == 0
        || target as usize > steps.len()
    {
        return progress;
    }
    jump_to(target, steps, total, canary_replicas, now)
}

/// The progress of a jump to `target` (1-based).
pub fn jump_to(
    target: u32,
    steps: &[Step],
    total: u32,
    canary_replicas: u32,
    now: u64,
) -> StepProgress {
    let state = match steps.get(target as usize - 1) {
        Some(step) if step_replicas(step).resolve(total) == canary_replicas => {
            StepState::StepTrafficRouting
        }
        _ => StepState::BeforeStepUpgrade,
    };
    StepProgress {
        step: target,
        state,
        last_update_time: now,
    }
}

/// Kruise's v1alpha1 rule: a step without replicas has as many as its traffic share.
pub fn step_replicas(step: &Step) -> Replicas {
    step.replicas
        .unwrap_or_else(|| Replicas::Percent(step.traffic_weight.unwrap_or(Percent::FULL)))
}

/// Kruise's recalculation when a release's steps change under it: the current step
/// if it still asks for at least the canary's `canary` pods, otherwise the first step
/// that does. When none does, Kruise takes the last step it looked at: the last step,
/// or the one before it when the current step is the last (kept as Kruise has it).
pub fn recalculate(steps: &[Step], current: u32, canary: u32, total: u32) -> u32 {
    let current = usize::try_from(current).unwrap_or(0);
    let mut order: Vec<usize> = Vec::with_capacity(steps.len());
    if (1..=steps.len()).contains(&current) {
        order.push(current - 1);
    }
    order.extend((0..steps.len()).filter(|i| Some(*i) != current.checked_sub(1)));
    let mut found = 0;
    for i in order {
        found = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if canary <= step_replicas(&steps[i]).resolve(total) {
            break;
        }
    }
    found
}

/// Kruise's rule for a batch of canary pods being ready: all `desired` pods updated,
/// and all of them ready but for the tolerated failures, and at least one ready.
pub fn batch_ready(
    target: Replicas,
    total: u32,
    canary: ReplicaCounts,
    failure_threshold: Option<Replicas>,
) -> bool {
    let desired = target.resolve(total);
    let tolerated = failure_threshold.map_or(0, |t| t.resolve(canary.updated));
    canary.updated >= desired
        && canary.ready + tolerated >= desired
        && (desired == 0 || canary.ready > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::model::{StepTarget, Traffic};

    fn decision(step: u32, action: Action) -> Decision {
        Decision {
            step,
            target: StepTarget {
                replicas: Replicas::Count(1),
                traffic: Traffic::default(),
            },
            action,
            message: String::new(),
            memo: String::new(),
        }
    }

    const HOLD: Action = Action::Hold { recheck_seconds: 5 };
    const PAUSE: Action = Action::Pause {
        recheck_seconds: None,
    };
    const NOT_YET: Convergence = Convergence {
        pods_ready: false,
        traffic_ready: false,
    };
    const PODS: Convergence = Convergence {
        pods_ready: true,
        traffic_ready: false,
    };
    const ALL: Convergence = Convergence {
        pods_ready: true,
        traffic_ready: true,
    };

    fn at(step: u32, state: StepState, t: u64) -> StepProgress {
        StepProgress {
            step,
            state,
            last_update_time: t,
        }
    }

    #[test]
    fn transitions() {
        use StepState::*;
        let cases = [
            // (from, decision step, action, seen, expected)
            (
                "a release enters step 1",
                at(0, BeforeStepUpgrade, 0),
                1,
                HOLD,
                NOT_YET,
                at(1, StepUpgrade, 100),
            ),
            (
                "pods not ready: stay",
                at(1, StepUpgrade, 0),
                1,
                HOLD,
                NOT_YET,
                at(1, StepUpgrade, 0),
            ),
            (
                "pods ready: route traffic",
                at(1, StepUpgrade, 0),
                1,
                HOLD,
                PODS,
                at(1, StepTrafficRouting, 100),
            ),
            (
                "traffic not ready: stay",
                at(1, StepTrafficRouting, 0),
                1,
                HOLD,
                PODS,
                at(1, StepTrafficRouting, 0),
            ),
            (
                "traffic ready: analysis",
                at(1, StepTrafficRouting, 0),
                1,
                HOLD,
                ALL,
                at(1, StepMetricsAnalysis, 100),
            ),
            (
                "pause keeps lastUpdateTime",
                at(1, StepMetricsAnalysis, 50),
                1,
                PAUSE,
                ALL,
                at(1, StepPaused, 50),
            ),
            (
                "pause before ready converges",
                at(1, StepUpgrade, 0),
                1,
                PAUSE,
                PODS,
                at(1, StepTrafficRouting, 100),
            ),
            (
                "paused stays paused",
                at(1, StepPaused, 50),
                1,
                PAUSE,
                ALL,
                at(1, StepPaused, 50),
            ),
            (
                "advance enters the next step",
                at(1, StepReady, 50),
                2,
                Action::Advance,
                ALL,
                at(2, StepUpgrade, 100),
            ),
            (
                "restart at step 1",
                at(3, StepPaused, 50),
                1,
                HOLD,
                ALL,
                at(1, StepUpgrade, 100),
            ),
            (
                "complete",
                at(2, StepReady, 50),
                2,
                Action::Complete,
                ALL,
                at(2, Completed, 100),
            ),
            (
                "abort changes nothing",
                at(2, StepPaused, 50),
                2,
                Action::Abort { reason: "x".into() },
                ALL,
                at(2, StepPaused, 50),
            ),
            (
                "init moves to upgrade",
                at(1, BeforeStepUpgrade, 0),
                1,
                HOLD,
                NOT_YET,
                at(1, StepUpgrade, 100),
            ),
        ];
        for (name, from, step, action, seen, want) in cases {
            assert_eq!(
                next(from, &decision(step, action), seen, 100),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn batch_readiness_follows_kruise() {
        let counts = |updated, ready| ReplicaCounts {
            desired: 0,
            ready,
            updated,
            failed: 0,
        };
        let pct = |p| Replicas::Percent(Percent::new(p).unwrap());
        let cases = [
            ("20% of 5 ready", pct(20), 5, counts(1, 1), None, true),
            ("not yet updated", pct(40), 5, counts(1, 1), None, false),
            ("updated, not ready", pct(40), 5, counts(2, 1), None, false),
            (
                "one failure tolerated",
                pct(40),
                5,
                counts(2, 1),
                Some(Replicas::Count(1)),
                true,
            ),
            (
                "tolerance needs one ready pod",
                Replicas::Count(1),
                5,
                counts(1, 0),
                Some(Replicas::Count(1)),
                false,
            ),
            (
                "nothing asked",
                Replicas::Count(0),
                5,
                counts(0, 0),
                None,
                true,
            ),
        ];
        for (name, target, total, canary, threshold, want) in cases {
            assert_eq!(
                batch_ready(target, total, canary, threshold),
                want,
                "{name}"
            );
        }
    }

    fn weights(ws: &[u8]) -> Vec<Step> {
        ws.iter()
            .map(|w| Step {
                traffic_weight: Some(Percent::new(*w).expect("weight")),
                ..Step::default()
            })
            .collect()
    }

    #[test]
    fn a_patched_next_step_index_jumps_at_once() {
        use StepState::*;
        let steps = weights(&[20, 40, 60, 80]);
        // In step 3, nextStepIndex patched back to 1: 20% of 10 is 2 pods, the
        // canary has 6, so step 1 starts over.
        let jumped = jump(at(3, StepReady, 50), 1, &steps, 10, 6, 90);
        assert_eq!(jumped, at(1, BeforeStepUpgrade, 90));
        // The canary already has the target step's pods: straight to its traffic.
        let jumped = jump(at(1, StepReady, 50), 3, &steps, 10, 6, 90);
        assert_eq!(jumped, at(3, StepTrafficRouting, 90));
        // Explicit replicas win over the weight.
        let mut explicit = steps.clone();
        explicit[3].replicas = Some(Replicas::Count(6));
        let jumped = jump(at(1, StepReady, 50), 4, &explicit, 10, 6, 90);
        assert_eq!(jumped, at(4, StepTrafficRouting, 90));
        // No approval needed: a paused step, or one still upgrading, jumps too.
        assert_eq!(
            jump(at(2, StepPaused, 50), 1, &steps, 10, 4, 90),
            at(1, BeforeStepUpgrade, 90)
        );
        assert_eq!(
            jump(at(2, StepUpgrade, 50), 4, &steps, 10, 4, 90),
            at(4, BeforeStepUpgrade, 90)
        );
        // The current step itself: it runs again.
        assert_eq!(
            jump(at(2, StepPaused, 50), 2, &steps, 10, 4, 90),
            at(2, StepTrafficRouting, 90)
        );
    }

    #[test]
    fn no_jump_to_the_following_step_a_non_step_or_from_a_completed_release() {
        use StepState::*;
        let steps = weights(&[20, 40, 60]);
        let ready = at(2, StepReady, 50);
        // The index Kruise itself writes: the following step, or -1 after the last.
        assert_eq!(jump(ready, 3, &steps, 10, 4, 90), ready);
        assert_eq!(
            jump(at(3, StepReady, 50), -1, &steps, 10, 6, 90),
            at(3, StepReady, 50)
        );
        // Out of range.
        assert_eq!(jump(ready, 0, &steps, 10, 4, 90), ready);
        assert_eq!(jump(ready, 4, &steps, 10, 4, 90), ready);
        // Done.
        assert_eq!(
            jump(at(3, Completed, 50), 1, &steps, 10, 6, 90),
            at(3, Completed, 50)
        );
        assert_eq!(next_step_index(2, 3), 3);
        assert_eq!(next_step_index(3, 3), -1);
    }

    #[test]
    fn recalculation_when_steps_change_follows_kruise() {
        let counts = |c: &[u32]| -> Vec<Step> {
            c.iter()
                .map(|n| Step {
                    replicas: Some(Replicas::Count(*n)),
                    ..Step::default()
                })
                .collect()
        };
        // (steps, current step, canary pods, expected step)
        let cases: [(&[u32], u32, u32, u32); 7] = [
            // The current step still covers the canary: it stays.
            (&[1, 2, 3, 4], 2, 2, 2),
            // It shrank under the canary: the first step that covers it.
            (&[1, 1, 3, 4], 2, 2, 3),
            // Steps 2 to 4 removed: the first step covering the canary is the last.
            (&[1, 5], 2, 3, 2),
            // A step added before: the current index moves with the canary's size.
            (&[1, 2, 3, 4, 5], 3, 2, 3),
            (&[1, 1, 1, 2, 5], 3, 2, 4),
            // Nothing covers the canary: the last step looked at…
            (&[1, 1, 1], 1, 5, 3),
            // …which is the one before the last when the current step is the last.
            (&[1, 1, 1], 3, 5, 2),
        ];
        for (steps, current, canary, want) in cases {
            assert_eq!(
                recalculate(&counts(steps), current, canary, 10),
                want,
                "{steps:?} at step {current} with {canary} canary pods"
            );
        }
        // Percentages scale against the workload, rounding up.
        let steps = weights(&[20, 50, 100]);
        assert_eq!(recalculate(&steps, 1, 3, 10), 2);
    }
}
