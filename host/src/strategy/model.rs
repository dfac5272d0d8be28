//! The host's own view of what strategies see and decide, independent of any
//! contract version: every supported contract version converts to and from these.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A share from 0 to 100, checked once where it enters the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    /// The whole.
    pub const FULL: Percent = Percent(100);

    /// A share, or an error naming the value when above 100.
    pub fn new(value: u8) -> Result<Self, OutOfRange> {
        if value <= 100 {
            Ok(Percent(value))
        } else {
            Err(OutOfRange(u32::from(value)))
        }
    }

    /// The share as a number from 0 to 100.
    pub fn get(self) -> u8 {
        self.0
    }

    /// This share of `total`, rounded up (Kruise rounds batches up).
    pub fn of(self, total: u32) -> u32 {
        (u64::from(total) * u64::from(self.0)).div_ceil(100) as u32
    }
}

impl TryFrom<u8> for Percent {
    type Error = OutOfRange;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Percent::new(value)
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> u8 {
        p.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A value outside 0-100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is outside 0-100")]
pub struct OutOfRange(pub u32);

/// How many canary pods: a count, or a share of the workload rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Replicas {
    /// An absolute number of pods.
    Count(u32),
    /// A share of the workload's desired replicas.
    Percent(Percent),
}

impl Replicas {
    /// The number of pods out of `total`.
    pub fn resolve(self, total: u32) -> u32 {
        match self {
            Replicas::Count(n) => n,
            Replicas::Percent(p) => p.of(total),
        }
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replicas::Count(n) => write!(f, "{n}"),
            Replicas::Percent(p) => write!(f, "{p}"),
        }
    }
}

/// How a request condition compares values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchKind {
    /// Equal strings.
    Exact,
    /// The value is a regular expression the request's value must match.
    RegularExpression,
}

/// The part of a request a condition inspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchSource {
    /// An HTTP header.
    Header,
    /// A cookie.
    Cookie,
}

/// One condition on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCondition {
    /// Header or cookie.
    pub source: MatchSource,
    /// Header or cookie name.
    pub name: String,
    /// Value (or pattern) to match.
    pub value: String,
    /// Exact or regular expression.
    pub kind: MatchKind,
}

/// Conditions that must all hold for a request to go to the canary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestRoute {
    /// The conditions, all of which must hold.
    pub conditions: Vec<RequestCondition>,
}

/// A step of the Rollout's spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Traffic share for the canary.
    pub traffic_weight: Option<Percent>,
    /// Canary pods.
    pub replicas: Option<Replicas>,
    /// Request routes sent to the canary.
    pub matches: Vec<RequestRoute>,
    /// Seconds to wait once ready; `None` waits for approval.
    pub pause_seconds: Option<u32>,
}

/// Where the host is within a step; Kruise's `currentStepState` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StepState {
    /// The step was entered.
    #[default]
    BeforeStepUpgrade,
    /// Canary pods converge on the target.
    StepUpgrade,
    /// Traffic converges on the target.
    StepTrafficRouting,
    /// Pods and traffic are at the target.
    StepMetricsAnalysis,
    /// Waiting for an approval or a timer.
    StepPaused,
    /// Approved.
    StepReady,
    /// All steps done.
    Completed,
}

impl StepState {
    /// The name Kruise writes in `status.canaryStatus.currentStepState`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::BeforeStepUpgrade => "BeforeStepUpgrade",
            StepState::StepUpgrade => "StepUpgrade",
            StepState::StepTrafficRouting => "StepTrafficRouting",
            StepState::StepMetricsAnalysis => "StepMetricsAnalysis",
            StepState::StepPaused => "StepPaused",
            StepState::StepReady => "StepReady",
            StepState::Completed => "Completed",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Replica counts of a set of pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaCounts {
    /// Pods asked for.
    pub desired: u32,
    /// Pods ready.
    pub ready: u32,
    /// Pods on the new template.
    pub updated: u32,
    /// Pods that will not become ready without a change.
    pub failed: u32,
}

/// Traffic sent to the canary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Traffic {
    /// Share of all requests.
    pub weight: Option<Percent>,
    /// Requests routed by header or cookie.
    pub matches: Vec<RequestRoute>,
}

/// Everything a strategy is told at one reconcile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
// A replayed observation may leave out what does not matter to it; a misspelt
// field is an error, not a default.
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Observation {
    /// `namespace/name` of the Rollout.
    pub rollout: String,
    /// The Rollout's steps.
    pub steps: Vec<Step>,
    /// 1-based current step; 0 when a release has just begun.
    pub current_step: u32,
    /// State within the step.
    pub step_state: StepState,
    /// Kruise's `lastUpdateTime`, Unix milliseconds.
    pub last_update_time: u64,
    /// A person approved the current step.
    pub approved: bool,
    /// `spec.strategy.paused`.
    pub paused: bool,
    /// The Rollout routes traffic.
    pub traffic_routing: bool,
    /// Failed canary pods tolerated.
    pub failure_threshold: Option<Replicas>,
    /// Stable pods' revision.
    pub stable_revision: String,
    /// The release's revision.
    pub canary_revision: String,
    /// The whole workload.
    pub workload: ReplicaCounts,
    /// The canary pods.
    pub canary: ReplicaCounts,
    /// Traffic currently applied.
    pub traffic: Traffic,
    /// Now, Unix milliseconds.
    pub now: u64,
    /// The module's configuration (JSON).
    pub config: String,
    /// The module's memo from its last decision.
    pub memo: String,
}

/// What the current step should look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTarget {
    /// Canary pods.
    pub replicas: Replicas,
    /// Canary traffic.
    pub traffic: Traffic,
}

/// What the host does after a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Converge on the target; decide again within this many seconds.
    Hold {
        /// Seconds before the next decision at the latest.
        recheck_seconds: u32,
    },
    /// Wait in the step for approval, or at most this many seconds.
    Pause {
        /// Seconds before deciding again, if the wait is timed.
        recheck_seconds: Option<u32>,
    },
    /// Go on to the next step.
    Advance,
    /// Promote the canary.
    Complete,
    /// Roll back.
    Abort {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// The action's name, as metrics and events label it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Hold { .. } => "hold",
            Action::Pause { .. } => "pause",
            Action::Advance => "advance",
            Action::Complete => "complete",
            Action::Abort { .. } => "abort",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Hold { recheck_seconds } => write!(f, "hold {recheck_seconds}s"),
            Action::Pause {
                recheck_seconds: None,
            } => f.write_str("pause"),
            Action::Pause {
                recheck_seconds: Some(s),
            } => write!(f, "pause {s}s"),
            Action::Advance => f.write_str("advance"),
            Action::Complete => f.write_str("complete"),
            Action::Abort { reason } => write!(f, "abort: {reason}"),
        }
    }
}

/// A strategy's validated answer to one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// 1-based step the rollout is in after this decision.
    pub step: u32,
    /// The step's target.
    pub target: StepTarget,
    /// What to do.
    pub action: Action,
    /// A human message for the status.
    pub message: String,
    /// State handed back to the module next time.
    pub memo: String,
}

/// What a module says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// One line on what it does.
    pub description: String,
    /// JSON Schema of its configuration.
    pub config_schema: Option<String>,
}

/// Longest name or version a module's description keeps.
pub const MAX_INFO_NAME: usize = 128;
/// Longest one-line description kept.
pub const MAX_INFO_DESCRIPTION: usize = 1024;
/// Largest configuration schema kept; a larger one is dropped.
pub const MAX_CONFIG_SCHEMA: usize = 32 << 10;

impl ModuleInfo {
    /// The description cut to what the host writes into a module's status.
    pub fn bounded(self) -> ModuleInfo {
        let cut = |s: String, max: usize| {
            if s.len() <= max {
                s
            } else {
                crate::strategy::host_state::truncate(&s, max).to_owned()
            }
        };
        ModuleInfo {
            name: cut(self.name, MAX_INFO_NAME),
            version: cut(self.version, MAX_INFO_NAME),
            description: cut(self.description, MAX_INFO_DESCRIPTION),
            config_schema: self.config_schema.filter(|s| s.len() <= MAX_CONFIG_SCHEMA),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_up_like_kruise() {
        let cases = [
            (5, 20, 1),
            (5, 40, 2),
            (3, 20, 1),
            (3, 40, 2),
            (10, 25, 3),
            (5, 100, 5),
            (0, 50, 0),
        ];
        for (total, pct, want) in cases {
            assert_eq!(
                Percent::new(pct).unwrap().of(total),
                want,
                "{pct}% of {total}"
            );
        }
    }

    #[test]
    fn percent_rejects_above_100() {
        assert_eq!(Percent::new(101), Err(OutOfRange(101)));
        assert!(Percent::new(100).is_ok());
    }
}
