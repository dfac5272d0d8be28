//! Recorded decisions, replayed: what the controller keeps of each observation in
//! the decision log (`status.strategy.decisions`), and the scenario
//! `kubectl sluice explain --scenario` writes from it.
//!
//! A record keeps the observation but for its steps and configuration, which the
//! Rollout's spec holds, and the metric answers the module was given. The scenario
//! rebuilds each observation from the record and the Rollout, and keeps only those
//! whose sha256 is the recorded one: a replay of exactly what the module saw.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::file::Expect;
use crate::kruise::v1alpha1::{DecisionRecord, Rollout};
use crate::strategy::MetricsError;
use crate::strategy::model::{Observation, Replicas, StepTarget};

/// The largest observation a record keeps, as compact JSON without steps and
/// configuration (a memo fills at most 4 KiB of it). Over it, the decision is
/// logged without its observation and cannot be replayed.
pub const MAX_RECORDED_INPUT: usize = 8 << 10;

/// A metric answer in a record: the number, `no data`, or `error: ` and the error.
pub fn record_answer(answer: &Result<f64, MetricsError>) -> String {
    match answer {
        Ok(v) => v.to_string(),
        Err(MetricsError::NoData) => "no data".into(),
        Err(MetricsError::Failed(e)) => format!("error: {e}"),
    }
}

/// A recorded answer as a scenario writes it: a number, `null` for no data, or the
/// error's text.
fn scenario_answer(recorded: &str) -> serde_json::Value {
    if recorded == "no data" {
        return serde_json::Value::Null;
    }
    if let Some(error) = recorded.strip_prefix("error: ") {
        return error.into();
    }
    recorded
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| recorded.into(), serde_json::Value::Number)
}

/// The observation as a record keeps it; empty when it is over
/// [`MAX_RECORDED_INPUT`].
pub fn record_input(o: &Observation) -> String {
    let kept = Observation {
        steps: Vec::new(),
        config: String::new(),
        ..o.clone()
    };
    let json = serde_json::to_string(&kept).unwrap_or_default();
    if json.len() > MAX_RECORDED_INPUT {
        return String::new();
    }
    json
}

/// sha256 of an observation's JSON (serde_json's maps are sorted: canonical).
pub fn observation_digest(o: &Observation) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(o).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// `1 pod(s), 20% of the traffic`, `50% of the pods, 1 match(es)`: a decision's
/// target as the log and a replay write it.
pub fn describe_target(t: &StepTarget) -> String {
    let pods = match &t.replicas {
        Replicas::Count(n) => format!("{n} pod(s)"),
        Replicas::Percent(p) => format!("{p} of the pods"),
    };
    let traffic = match (&t.traffic.weight, t.traffic.matches.len()) {
        (Some(w), 0) => format!("{w} of the traffic"),
        (Some(w), n) => format!("{w} of the traffic and {n} match(es)"),
        (None, 0) => "no traffic".to_owned(),
        (None, n) => format!("{n} match(es)"),
    };
    format!("{pods}, {traffic}")
}

/// The module a replay was recorded with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedModule {
    /// As the Rollout names it (`builtin:steps`, a StrategyModule's name).
    pub name: String,
    /// sha256 of the module that made the first replayed decision.
    pub digest: String,
}

/// One recorded decision to replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Replayed {
    /// When it was made (RFC 3339), for the reader.
    #[serde(default)]
    pub at: String,
    /// sha256 of the module that made it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Everything the module was given.
    pub observation: Observation,
    /// The observation's recorded sha256: when given, the replay checks that the
    /// observation is still the one recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_digest: Option<String>,
    /// Metric answers by query: a number, `null` for no data, or a failed query's
    /// error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The decision the module made.
    pub expect: Expect,
}

/// The scenario file `explain --scenario` writes.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayFile {
    /// What it replays.
    pub name: String,
    /// The module the decisions were made by.
    pub module: RecordedModule,
    /// The decisions, oldest first.
    pub replay: Vec<Replayed>,
}

/// A recorded decision left out of the replay, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// When it was made.
    pub at: String,
    /// Why it cannot be replayed.
    pub why: String,
}

/// The replay of `rollout`'s decision log: every record whose observation can be
/// rebuilt exactly from the record and the Rollout's current steps and
/// configuration.
pub fn from_rollout(rollout: &Rollout) -> Result<(ReplayFile, Vec<Skipped>), String> {
    let name = format!(
        "{}/{}",
        rollout.metadata.namespace.as_deref().unwrap_or("default"),
        rollout.metadata.name.as_deref().unwrap_or_default()
    );
    let strategy = rollout
        .status
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .unwrap_or_default();
    if strategy.decisions.is_empty() {
        return Err(format!(
            "rollout {name} has no decisions recorded: nothing to replay until a release is decided"
        ));
    }
    let steps = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .map(|c| crate::rollout::spec::steps(&c.steps))
        .transpose()
        .map_err(|e| format!("rollout {name}: its steps are not valid: {}", e.join("; ")))?
        .unwrap_or_default();
    let config = rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::controller::CONFIG_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    let mut replay = Vec::new();
    let mut skipped = Vec::new();
    for record in &strategy.decisions {
        match rebuild(record, &steps, &config) {
            Ok(r) => replay.push(r),
            Err(why) => skipped.push(Skipped {
                at: record.at.clone(),
                why,
            }),
        }
    }
    let digest = replay.first().map(|r| r.digest.clone()).unwrap_or_default();
    Ok((
        ReplayFile {
            name: format!("{name}: {} recorded decision(s)", replay.len()),
            module: RecordedModule {
                name: strategy.module,
                digest,
            },
            replay,
        },
        skipped,
    ))
}

fn rebuild(
    record: &DecisionRecord,
    steps: &[crate::strategy::model::Step],
    config: &str,
) -> Result<Replayed, String> {
    if record.input.is_empty() {
        return Err(format!(
            "its observation was not kept (over {} KiB, or logged by an older controller)",
            MAX_RECORDED_INPUT >> 10
        ));
    }
    let mut observation: Observation = serde_json::from_str(&record.input)
        .map_err(|e| format!("its recorded observation cannot be read: {e}"))?;
    observation.steps = steps.to_vec();
    observation.config = config.to_owned();
    let digest = observation_digest(&observation);
    if digest != record.observation {
        return Err(
            "the Rollout's steps or strategy configuration changed since: its observation cannot be rebuilt"
                .into(),
        );
    }
    Ok(Replayed {
        at: record.at.clone(),
        digest: record.digest.clone(),
        observation,
        observation_digest: Some(digest),
        metrics: record
            .metrics
            .iter()
            .map(|(q, a)| (q.clone(), scenario_answer(a)))
            .collect(),
        expect: Expect {
            step: Some(record.step),
            action: Some(record.action.clone()),
            target: Some(record.target.clone()),
            message: Some(record.message.clone()),
            ..Expect::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_the_record() {
        for (answer, scenario) in [
            (Ok(0.25), serde_json::json!(0.25)),
            (Ok(3.0), serde_json::json!(3.0)),
            (Err(MetricsError::NoData), serde_json::Value::Null),
            (
                Err(MetricsError::Failed("prometheus did not answer".into())),
                serde_json::json!("prometheus did not answer"),
            ),
        ] {
            assert_eq!(scenario_answer(&record_answer(&answer)), scenario);
        }
    }

    #[test]
    fn an_observation_over_the_bound_is_not_kept() {
        let small = Observation {
            memo: "m".repeat(100),
            ..Observation::default()
        };
        assert!(record_input(&small).contains(&"m".repeat(100)));
        let large = Observation {
            memo: "m".repeat(MAX_RECORDED_INPUT),
            ..Observation::default()
        };
        assert_eq!(record_input(&large), "");
    }
}
