//! An example strategy: the canary's traffic share doubles at every step.
//!
//! Step `k` of `n` sends `start * 2^(k-1)` percent of traffic (and the same share
//! of pods) to the canary; the last step sends 100%. Each step lasts `interval`
//! seconds once its pods are ready. When more than `maxFailedPods` canary pods fail,
//! the release is aborted and rolled back. No approvals: it runs on its own.
//!
//! Configuration (annotation `strategy.sluice.dev/config`), all optional:
//! `{"start": 5, "interval": 60, "maxFailedPods": 0}`.

use serde::Deserialize;
use sluice_strategy::{
    Action, Decision, ModuleInfo, Observation, Replicas, StepState, StepTarget, Strategy, Traffic,
    export_strategy,
};

/// The module's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Traffic percent of the first step (1-100).
    #[serde(default = "default_start")]
    pub start: u8,
    /// Seconds each step lasts once its pods are ready.
    #[serde(default = "default_interval")]
    pub interval: u32,
    /// Failed canary pods tolerated before the release is aborted.
    #[serde(default)]
    pub max_failed_pods: u32,
}

fn default_start() -> u8 {
    5
}

fn default_interval() -> u32 {
    60
}

impl Config {
    /// Parses and checks a configuration; empty means all defaults.
    pub fn parse(text: &str) -> Result<Config, String> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let config: Config =
            serde_json::from_str(text).map_err(|e| format!("invalid configuration: {e}"))?;
        if !(1..=100).contains(&config.start) {
            return Err(format!(
                "start: {} is outside 1-100; set the first step's traffic percent",
                config.start
            ));
        }
        Ok(config)
    }

    /// Traffic percent of a 1-based step out of `total`.
    pub fn weight(&self, step: u32, total: u32) -> u8 {
        if step >= total {
            return 100;
        }
        let doubled = u32::from(self.start).saturating_mul(1u32 << (step - 1).min(7));
        doubled.min(100) as u8
    }
}

fn target(weight: u8) -> StepTarget {
    StepTarget {
        replicas: Replicas::Percent(weight),
        traffic: Traffic {
            weight: Some(weight),
            matches: Vec::new(),
        },
    }
}

/// Decides one reconcile.
pub fn decide(input: &Observation) -> Result<Decision, String> {
    let config = Config::parse(&input.config)?;
    let total = input.step_count().max(1);
    let step = input.current_step.clamp(1, total);
    let weight = config.weight(step, total);

    if input.canary.failed > config.max_failed_pods {
        return Ok(Decision::new(
            step,
            target(weight),
            Action::Abort(format!(
                "{} canary pods failed (at most {} tolerated)",
                input.canary.failed, config.max_failed_pods
            )),
            "canary pods are failing: rolling back",
        ));
    }
    if input.paused {
        return Ok(Decision::new(
            step,
            target(weight),
            Action::Hold(30),
            "paused",
        ));
    }
    let converging = format!("step {step}/{total}: shifting {weight}% to the canary");
    if step != input.current_step {
        return Ok(Decision::new(
            step,
            target(weight),
            Action::Hold(5),
            converging,
        ));
    }
    match input.step_state {
        StepState::BeforeStepUpgrade | StepState::StepUpgrade | StepState::StepTrafficRouting => {
            Ok(Decision::new(
                step,
                target(weight),
                Action::Hold(5),
                converging,
            ))
        }
        StepState::Completed => Ok(Decision::new(
            step,
            target(weight),
            Action::Complete,
            "done",
        )),
        StepState::StepMetricsAnalysis | StepState::StepPaused | StepState::StepReady => {
            let waited = input.millis_since_update() / 1000;
            let interval = u64::from(config.interval);
            if step == total {
                Ok(Decision::new(
                    step,
                    target(100),
                    Action::Complete,
                    "all traffic on the new version",
                ))
            } else if waited >= interval {
                let next = step + 1;
                let next_weight = config.weight(next, total);
                Ok(Decision::new(
                    next,
                    target(next_weight),
                    Action::Advance,
                    format!("step {next}/{total}: shifting {next_weight}% to the canary"),
                ))
            } else {
                let left = u32::try_from(interval - waited).unwrap_or(u32::MAX);
                Ok(Decision::new(
                    step,
                    target(weight),
                    Action::Pause(Some(left)),
                    format!("step {step}/{total}: {weight}% on the canary, next step in {left}s"),
                ))
            }
        }
    }
}

/// The exported strategy.
pub struct Doubling;

impl Strategy for Doubling {
    fn decide(input: Observation) -> Result<Decision, String> {
        decide(&input)
    }

    fn validate_config(config: &str) -> Result<(), String> {
        Config::parse(config).map(|_| ())
    }

    fn describe() -> ModuleInfo {
        let mut info = ModuleInfo::named("doubling", env!("CARGO_PKG_VERSION"))
            .described("Traffic doubles every step; failed canary pods abort the release.");
        info.config_schema = Some(
            r#"{"type":"object","additionalProperties":false,"properties":{"start":{"type":"integer","minimum":1,"maximum":100},"interval":{"type":"integer","minimum":0},"maxFailedPods":{"type":"integer","minimum":0}}}"#
                .into(),
        );
        info
    }
}

export_strategy!(Doubling);
