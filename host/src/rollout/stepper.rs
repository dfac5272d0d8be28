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
/// step other than the following one, and the current step is approved. The rollout
/// goes to that step — straight to its traffic when the canary already has the
/// step's pods, from its start otherwise. Anything else leaves `progress` as it is.
pub fn jump(
    progress: StepProgress,
    asked: i32,
    steps: &[Step],
    total: u32,
    canary_updated: u32,
    now: u64,
) -> StepProgress {
    let Ok(target) = u32::try_from(asked) else {
        return progress;
    };
    let expected = next_step_index(progress.step, steps.len());
    if progress.state != StepState::StepReady
        || asked == expected
        || target == 0
        || target as usize > steps.len()
    {
        return progress;
    }
    let step = &steps[target as usize - 1];
    // Kruise's v1alpha1 rule: a step without replicas has as many as its traffic share.
    let replicas = step
        .replicas
        .unwrap_or_else(|| Replicas::Percent(step.traffic_weight.unwrap_or(Percent::FULL)));
    StepProgress {
        step: target,
        state: if replicas.resolve(total) == canary_updated {
            StepState::StepTrafficRouting
        } else {
            StepState::BeforeStepUpgrade
        },
        last_update_time: now,
    }
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
    fn a_patched_next_step_index_jumps_once_the_step_is_approved() {
        use StepState::*;
        let steps = weights(&[20, 40, 60, 80]);
        // Approved in step 3, nextStepIndex patched back to 1: 20% of 10 is 2 pods,
        // the canary has 6, so step 1 starts over.
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
    }

    #[test]
    fn no_jump_without_approval_a_changed_index_or_a_real_step() {
        use StepState::*;
        let steps = weights(&[20, 40, 60]);
        let ready = at(2, StepReady, 50);
        // Not approved yet.
        assert_eq!(
            jump(at(2, StepPaused, 50), 1, &steps, 10, 4, 90),
            at(2, StepPaused, 50)
        );
        // The index Kruise itself writes: the following step, or -1 after the last.
        assert_eq!(jump(ready, 3, &steps, 10, 4, 90), ready);
        assert_eq!(
            jump(at(3, StepReady, 50), -1, &steps, 10, 6, 90),
            at(3, StepReady, 50)
        );
        // Out of range.
        assert_eq!(jump(ready, 0, &steps, 10, 4, 90), ready);
        assert_eq!(jump(ready, 4, &steps, 10, 4, 90), ready);
        assert_eq!(next_step_index(2, 3), 3);
        assert_eq!(next_step_index(3, 3), -1);
    }
}
