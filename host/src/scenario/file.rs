//! The scenario file format.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::replay::{RecordedModule, Replayed};
use crate::rollout::spec::CanaryStep;
use crate::strategy::limits::Grants;

/// A scenario: one rollout replayed tick by tick.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// What the scenario shows.
    #[serde(default)]
    pub name: String,
    /// Desired replicas of the workload.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Whether the rollout has a traffic routing (an Ingress or HTTPRoute).
    #[serde(default = "yes")]
    pub traffic_routing: bool,
    /// Kruise's `failureThreshold`.
    #[serde(default)]
    pub failure_threshold: Option<IntOrString>,
    /// The steps, as a v1alpha1 Rollout writes them.
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// The module's configuration, any YAML value (passed to the module as JSON).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Capabilities granted to the module; all by default.
    #[serde(default = "Grants::all")]
    pub grants: Grants,
    /// The timeline.
    #[serde(default)]
    pub ticks: Vec<Tick>,
    /// The module recorded decisions were made by (a replay's).
    #[serde(default)]
    pub module: Option<RecordedModule>,
    /// Recorded decisions, each replayed on exactly the observation it was made
    /// on, instead of a timeline (what `kubectl sluice explain --scenario` writes).
    #[serde(default)]
    pub replay: Vec<Replayed>,
}

fn default_replicas() -> u32 {
    5
}

fn yes() -> bool {
    true
}

/// One moment of the timeline: what changed, and what the strategy should decide.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tick {
    /// Time since the scenario began: seconds, or a duration such as `90s` or `2m`.
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    /// What this tick shows, printed beside it.
    #[serde(default)]
    pub note: Option<String>,
    /// A person approves the current step.
    #[serde(default)]
    pub approve: bool,
    /// Sets or clears `spec.strategy.paused` (it stays until changed).
    #[serde(default)]
    pub paused: Option<bool>,
    /// A new version is released (the rollout restarts).
    #[serde(default)]
    pub release: bool,
    /// Canary pods as the cluster reports them (it stays until changed);
    /// by default every pod the strategy asked for is ready.
    #[serde(default)]
    pub canary: Option<CanaryOverride>,
    /// Metric values by query (they stay until changed): a number, `null` for no
    /// data, or a string for a failed query.
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// What the strategy's last decision at this tick must be.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// Canary pods overridden by a tick.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryOverride {
    /// Ready canary pods; by default as many as were asked for.
    #[serde(default)]
    pub ready: Option<u32>,
    /// Failed canary pods.
    #[serde(default)]
    pub failed: u32,
}

/// Expectations on a tick's final decision. Every field given must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The step (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The step state after the host acted, e.g. `StepPaused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `hold`, `pause`, `advance`, `complete` or `abort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Canary pods the target resolves to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Traffic weight of the target; `-1` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// The target as the decision log writes it: `1 pod(s), 20% of the traffic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The exact message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A part of the message (or of the abort reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_contains: Option<String>,
    /// The module fails, with an error containing this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "`at: {t}` is not a duration ({e}); write seconds or e.g. 90s, 2m"
            ))
        }),
    }
}
