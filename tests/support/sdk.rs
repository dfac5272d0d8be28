//! The host's model in the SDK's types, to call a strategy's Rust logic natively
//! with the same input the host gives its module.

use sluice::strategy::model::{Observation, ReplicaCounts, Replicas, StepState};
use sluice_strategy as sdk;

/// The SDK action's name, as the host names actions.
pub fn action_name(a: &sdk::Action) -> &'static str {
    match a {
        sdk::Action::Hold(_) => "hold",
        sdk::Action::Pause(_) => "pause",
        sdk::Action::Advance => "advance",
        sdk::Action::Complete => "complete",
        sdk::Action::Abort(_) => "abort",
    }
}

/// The host's observation in the SDK's types, to call the native logic with.
pub fn to_sdk(o: &Observation) -> sdk::Observation {
    use StepState as S;
    let counts = |c: ReplicaCounts| sdk::ReplicaCounts {
        desired: c.desired,
        ready: c.ready,
        updated: c.updated,
        failed: c.failed,
    };
    let replicas = |r: Replicas| match r {
        Replicas::Count(n) => sdk::Replicas::Count(n),
        Replicas::Percent(p) => sdk::Replicas::Percent(p.get()),
    };
    sdk::Observation {
        rollout: o.rollout.clone(),
        steps: o
            .steps
            .iter()
            .map(|s| sdk::Step {
                traffic_weight: s.traffic_weight.map(|w| w.get()),
                replicas: s.replicas.map(replicas),
                matches: Vec::new(),
                pause_seconds: s.pause_seconds,
            })
            .collect(),
        current_step: o.current_step,
        step_state: match o.step_state {
            S::BeforeStepUpgrade => sdk::StepState::BeforeStepUpgrade,
            S::StepUpgrade => sdk::StepState::StepUpgrade,
            S::StepTrafficRouting => sdk::StepState::StepTrafficRouting,
            S::StepMetricsAnalysis => sdk::StepState::StepMetricsAnalysis,
            S::StepPaused => sdk::StepState::StepPaused,
            S::StepReady => sdk::StepState::StepReady,
            S::Completed => sdk::StepState::Completed,
        },
        last_update_time: o.last_update_time,
        approved: o.approved,
        paused: o.paused,
        traffic_routing: o.traffic_routing,
        failure_threshold: o.failure_threshold.map(replicas),
        stable_revision: o.stable_revision.clone(),
        canary_revision: o.canary_revision.clone(),
        workload: counts(o.workload),
        canary: counts(o.canary),
        traffic: sdk::Traffic {
            weight: o.traffic.weight.map(|w| w.get()),
            matches: Vec::new(),
        },
        now: o.now,
        config: o.config.clone(),
        memo: o.memo.clone(),
    }
}
