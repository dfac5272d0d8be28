//! An example strategy gated on metrics: each step's traffic comes from the Rollout's
//! steps, and the canary moves on only while its success rate and latency stay within
//! the thresholds of its configuration.
//!
//! - healthy for `interval` seconds: next step (or complete after the last);
//! - a threshold broken: one failure; `failureLimit` consecutive failures abort the
//!   release (the host rolls back);
//! - no data, or a query failing: inconclusive — hold, never advance, count nothing.
//!
//! Configuration (`strategy.sluice.dev/config`):
//! `{"provider": "prometheus", "successRate": "<PromQL, 0..1>", "latency": "<PromQL, seconds>",
//!   "minSuccessRate": 0.99, "maxLatency": 0.5, "interval": 30, "failureLimit": 3}`.
//! Needs the `metrics` capability for `provider`.

use serde::Deserialize;
use sluice_strategy::{
    Action, Decision, ModuleInfo, Observation, StepState, Strategy, export_strategy, metrics,
};

/// The module's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Metric provider name.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Query giving the canary's share of successful requests (0..1).
    pub success_rate: String,
    /// Query giving the canary's latency in seconds (optional).
    #[serde(default)]
    pub latency: Option<String>,
    /// Lowest success rate accepted.
    #[serde(default = "default_min_success")]
    pub min_success_rate: f64,
    /// Highest latency accepted, seconds.
    #[serde(default = "default_max_latency")]
    pub max_latency: f64,
    /// Seconds a step must stay healthy.
    #[serde(default = "default_interval")]
    pub interval: u32,
    /// Consecutive failed checks that abort the release.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
}

fn default_provider() -> String {
    "prometheus".into()
}
fn default_min_success() -> f64 {
    0.99
}
fn default_max_latency() -> f64 {
    0.5
}
fn default_interval() -> u32 {
    30
}
fn default_failure_limit() -> u32 {
    3
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config =
            serde_json::from_str(text).map_err(|e| format!("invalid configuration: {e}"))?;
        if !(0.0..=1.0).contains(&config.min_success_rate) {
            return Err(format!(
                "minSuccessRate: {} is outside 0-1",
                config.min_success_rate
            ));
        }
        if config.failure_limit == 0 {
            return Err("failureLimit: must be at least 1".into());
        }
        Ok(config)
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within thresholds.
    Healthy,
    /// A threshold broken, with what.
    Failing(String),
    /// Not enough data to tell, with why.
    Inconclusive(String),
}

/// Checks the canary's metrics with `query` (the host's `metrics.query`, or a stub in tests).
pub fn check(
    config: &Config,
    query: &dyn Fn(&str, &str) -> Result<f64, metrics::QueryError>,
) -> Verdict {
    let ask = |q: &str| match query(&config.provider, q) {
        Ok(v) => Ok(v),
        Err(metrics::QueryError::NoData) => Err("no data yet".to_owned()),
        Err(metrics::QueryError::NotPermitted(m)) | Err(metrics::QueryError::Failed(m)) => Err(m),
    };
    let success = match ask(&config.success_rate) {
        Ok(v) => v,
        Err(why) => return Verdict::Inconclusive(format!("success rate: {why}")),
    };
    if success < config.min_success_rate {
        return Verdict::Failing(format!(
            "success rate {success:.3} below {}",
            config.min_success_rate
        ));
    }
    if let Some(latency_query) = &config.latency {
        match ask(latency_query) {
            Ok(l) if l > config.max_latency => {
                return Verdict::Failing(format!("latency {l:.3}s above {}s", config.max_latency));
            }
            Ok(_) => {}
            Err(why) => return Verdict::Inconclusive(format!("latency: {why}")),
        }
    }
    Verdict::Healthy
}

/// Decides one reconcile, with `query` answering metric queries.
pub fn decide_with(
    input: &Observation,
    query: &dyn Fn(&str, &str) -> Result<f64, metrics::QueryError>,
) -> Result<Decision, String> {
    let config = Config::parse(&input.config)?;
    let total = input.step_count();
    if total == 0 {
        return Err("the rollout has no steps".into());
    }
    let index = input.current_step.clamp(1, total);
    let step = input.step(index).ok_or("no such step")?;
    let failures: u32 = input
        .memo
        .strip_prefix("failures=")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let here = |action, message: String| Decision::new(index, step.target(), action, message);
    if input.paused {
        return Ok(here(Action::Hold(10), "paused".into()));
    }
    if index != input.current_step
        || matches!(
            input.step_state,
            StepState::BeforeStepUpgrade | StepState::StepUpgrade | StepState::StepTrafficRouting
        )
    {
        return Ok(here(
            Action::Hold(5),
            format!("step {index}/{total}: bringing the canary up"),
        )
        .with_memo(input.memo.clone()));
    }
    if input.step_state == StepState::Completed {
        return Ok(here(Action::Complete, "done".into()));
    }
    match check(&config, query) {
        Verdict::Inconclusive(why) => Ok(here(
            Action::Pause(Some(config.interval.min(10))),
            format!("step {index}/{total}: inconclusive ({why}); holding"),
        )
        .with_memo(input.memo.clone())),
        Verdict::Failing(why) => {
            let failures = failures + 1;
            if failures >= config.failure_limit {
                Ok(here(
                    Action::Abort(format!("{why} for {failures} consecutive checks")),
                    format!("step {index}/{total}: rolling back: {why}"),
                ))
            } else {
                Ok(here(
                    Action::Pause(Some(config.interval.min(10))),
                    format!(
                        "step {index}/{total}: {why} ({failures} of {} failed checks)",
                        config.failure_limit
                    ),
                )
                .with_memo(format!("failures={failures}")))
            }
        }
        Verdict::Healthy => {
            let waited = input.millis_since_update() / 1000;
            if waited < u64::from(config.interval) {
                let left = u32::try_from(u64::from(config.interval) - waited).unwrap_or(u32::MAX);
                return Ok(here(
                    Action::Pause(Some(left.min(10))),
                    format!("step {index}/{total}: healthy, {left}s to go"),
                ));
            }
            if index >= total {
                return Ok(here(Action::Complete, "healthy through every step".into()));
            }
            let next = index + 1;
            let next_step = input.step(next).ok_or("no such step")?;
            Ok(Decision::new(
                next,
                next_step.target(),
                Action::Advance,
                format!("step {next}/{total}: healthy, going on"),
            ))
        }
    }
}

/// The exported strategy.
pub struct MetricsGate;

impl Strategy for MetricsGate {
    fn decide(input: Observation) -> Result<Decision, String> {
        decide_with(&input, &|provider, q| metrics::query(provider, q))
    }

    fn validate_config(config: &str) -> Result<(), String> {
        Config::parse(config).map(|_| ())
    }

    fn describe() -> ModuleInfo {
        ModuleInfo::named("metrics-gate", env!("CARGO_PKG_VERSION"))
            .described("Advances while the canary's success rate and latency hold; rolls back when they break.")
    }
}

export_strategy!(MetricsGate);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_strategy::{ReplicaCounts, Step, Traffic};

    fn observe(state: StepState, since_ms: u64, memo: &str) -> Observation {
        Observation {
            rollout: "default/echo".into(),
            steps: vec![
                Step {
                    traffic_weight: Some(50),
                    replicas: None,
                    matches: vec![],
                    pause_seconds: None,
                },
                Step {
                    traffic_weight: Some(100),
                    replicas: None,
                    matches: vec![],
                    pause_seconds: None,
                },
            ],
            current_step: 1,
            step_state: state,
            last_update_time: 1_000_000,
            approved: false,
            paused: false,
            traffic_routing: true,
            failure_threshold: None,
            stable_revision: "a".into(),
            canary_revision: "b".into(),
            workload: ReplicaCounts::zero(),
            canary: ReplicaCounts::zero(),
            traffic: Traffic {
                weight: None,
                matches: vec![],
            },
            now: 1_000_000 + since_ms,
            config:
                r#"{"successRate": "s", "minSuccessRate": 0.9, "interval": 4, "failureLimit": 2}"#
                    .into(),
            memo: memo.into(),
        }
    }

    fn answering(
        v: Result<f64, metrics::QueryError>,
    ) -> impl Fn(&str, &str) -> Result<f64, metrics::QueryError> {
        move |_, _| v.clone()
    }

    #[test]
    fn missing_data_holds_and_counts_nothing() {
        let d = decide_with(
            &observe(StepState::StepMetricsAnalysis, 60_000, "failures=1"),
            &answering(Err(metrics::QueryError::NoData)),
        )
        .unwrap();
        assert!(matches!(d.action, Action::Pause(Some(_))), "{d:?}");
        assert_eq!(d.memo, "failures=1");
        assert!(d.message.contains("inconclusive"));
    }

    #[test]
    fn consecutive_failures_abort() {
        let first = decide_with(
            &observe(StepState::StepPaused, 1_000, ""),
            &answering(Ok(0.7)),
        )
        .unwrap();
        assert_eq!(first.memo, "failures=1");
        assert!(matches!(first.action, Action::Pause(_)));
        let second = decide_with(
            &observe(StepState::StepPaused, 2_000, &first.memo),
            &answering(Ok(0.7)),
        )
        .unwrap();
        assert!(
            matches!(&second.action, Action::Abort(reason) if reason.contains("below 0.9 for 2 consecutive checks")),
            "{second:?}"
        );
    }

    #[test]
    fn healthy_advances_after_the_interval_and_resets_failures() {
        let early = decide_with(
            &observe(StepState::StepPaused, 1_000, "failures=1"),
            &answering(Ok(0.99)),
        )
        .unwrap();
        assert!(matches!(early.action, Action::Pause(Some(3))), "{early:?}");
        assert_eq!(early.memo, "", "a healthy check resets the count");
        let later = decide_with(
            &observe(StepState::StepPaused, 5_000, ""),
            &answering(Ok(0.99)),
        )
        .unwrap();
        assert_eq!((later.step, later.action), (2, Action::Advance));
    }
}
