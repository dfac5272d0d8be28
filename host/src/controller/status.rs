//! Kruise's phases, conditions and messages, byte for byte, and the status arithmetic
//! around them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::kruise::v1alpha1::{RolloutCondition, RolloutStatus};
use crate::rollout::stepper::StepProgress;
use crate::strategy::model::StepState;

/// `status.phase` values.
pub mod phase {
    /// Just created.
    pub const INITIAL: &str = "Initial";
    /// Not releasing.
    pub const HEALTHY: &str = "Healthy";
    /// Releasing.
    pub const PROGRESSING: &str = "Progressing";
    /// Being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// Being disabled mid-release.
    pub const DISABLING: &str = "Disabling";
    /// Disabled.
    pub const DISABLED: &str = "Disabled";
}

/// Condition types.
pub mod condition {
    /// A release is going on (or the last one's outcome).
    pub const PROGRESSING: &str = "Progressing";
    /// The last release's outcome.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Deletion's progress.
    pub const TERMINATING: &str = "Terminating";
    /// The strategy module loads, accepts its config and decides (Sluice).
    pub const STRATEGY_READY: &str = "StrategyReady";
    /// The spec passes the checks Kruise's webhook makes (Sluice).
    pub const VALID: &str = "Valid";
}

/// `Progressing` reasons.
pub mod reason {
    /// A release begins.
    pub const INITIALIZING: &str = "Initializing";
    /// Steps run.
    pub const IN_ROLLING: &str = "InRolling";
    /// Cleaning up after the last step.
    pub const FINALISING: &str = "Finalising";
    /// Done.
    pub const COMPLETED: &str = "Completed";
    /// Rolled back.
    pub const CANCELLING: &str = "Cancelling";
    /// `spec.strategy.paused`.
    pub const PAUSED: &str = "Paused";
    /// The strategy aborted the release (Sluice).
    pub const ABORTED: &str = "Aborted";
    /// Terminating.
    pub const IN_TERMINATING: &str = "InTerminating";
}

/// The messages Kruise writes.
pub mod message {
    /// After the first reconcile.
    pub const HEALTHY: &str = "rollout is healthy";
    /// First deployment, no release yet.
    pub const DEPLOYMENT_COMPLETED: &str = "workload deployment is completed";
    /// The workload does not exist.
    pub const WORKLOAD_NOT_FOUND: &str = "Workload Not Found";
    /// A release begins.
    pub const PROGRESSING: &str = "Rollout is in Progressing";
    /// Finalising.
    pub const FINALISING: &str = "Rollout has been completed and some closing work is being done";
    /// Done.
    pub const COMPLETED: &str = "Rollout progressing has been completed";
    /// Rolling back.
    pub const CANCELLING: &str =
        "The workload has been rolled back and the rollout process will be canceled";
    /// Rolled back.
    pub const CANCELED: &str = "Rollout progressing has been canceled";
    /// A new version mid-release.
    pub const CONTINUOUS: &str = "Workload is continuous release";
    /// `spec.strategy.paused`.
    pub const PAUSED: &str = "Rollout has been paused, you can resume it by kube-cli";
    /// Disabling.
    pub const DISABLING: &str = "Disabling rollout, release resources";
    /// Disabled.
    pub const DISABLED: &str = "Rollout is disabled";
}

/// A Kubernetes time from Unix milliseconds (Kubernetes keeps seconds).
pub fn time(ms: u64) -> Time {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Unix milliseconds of a Kubernetes time.
pub fn millis(t: &Time) -> u64 {
    u64::try_from(t.0.as_millisecond()).unwrap_or(0)
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set_condition(
    status: &mut RolloutStatus,
    type_: &str,
    value: bool,
    reason: &str,
    msg: &str,
    now: u64,
) {
    let value = if value { "True" } else { "False" };
    let now = time(now);
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now.clone());
            }
            if c.status != value || c.reason != reason || c.message != msg {
                c.last_update_time = Some(now);
            }
            c.status = value.to_owned();
            c.reason = reason.to_owned();
            c.message = msg.to_owned();
        }
        None => status.conditions.push(RolloutCondition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
            reason: reason.to_owned(),
            message: msg.to_owned(),
        }),
    }
}

/// Removes a condition.
pub fn clear_condition(status: &mut RolloutStatus, type_: &str) {
    status.conditions.retain(|c| c.type_ != type_);
}

/// A condition's reason, if it is set.
pub fn condition_reason<'a>(status: &'a RolloutStatus, type_: &str) -> Option<&'a str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

/// The step state named in a status.
pub fn parse_state(s: &str) -> StepState {
    match s {
        "StepUpgrade" => StepState::StepUpgrade,
        "StepTrafficRouting" => StepState::StepTrafficRouting,
        "StepMetricsAnalysis" => StepState::StepMetricsAnalysis,
        "StepPaused" => StepState::StepPaused,
        "StepReady" => StepState::StepReady,
        "Completed" => StepState::Completed,
        _ => StepState::BeforeStepUpgrade,
    }
}

/// The step progress a status records.
pub fn progress_of(status: &RolloutStatus) -> StepProgress {
    match &status.canary_status {
        None => StepProgress::default(),
        Some(c) => StepProgress {
            step: u32::try_from(c.current_step_index).unwrap_or(0),
            state: parse_state(&c.current_step_state),
            last_update_time: c.last_update_time.as_ref().map_or(0, millis),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut s = RolloutStatus::default();
        set_condition(&mut s, "Progressing", true, "Initializing", "a", 1_000);
        set_condition(&mut s, "Progressing", true, "InRolling", "b", 5_000);
        let c = &s.conditions[0];
        assert_eq!(c.last_transition_time, Some(time(1_000)));
        assert_eq!(c.last_update_time, Some(time(5_000)));
        set_condition(&mut s, "Progressing", false, "Completed", "c", 9_000);
        assert_eq!(s.conditions[0].last_transition_time, Some(time(9_000)));
        assert_eq!(s.conditions.len(), 1);
    }

    #[test]
    fn times_round_to_seconds() {
        assert_eq!(millis(&time(1_700_000_000_999)), 1_700_000_000_000);
    }
}
