//! Replaying a scenario against a strategy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rollout::spec;
use crate::rollout::stepper::{self, Convergence, StepProgress};
use crate::strategy::model::{
    Action, Decision, Observation, ReplicaCounts, Step, StepState, StepTarget, Traffic,
};
use crate::strategy::{MetricsError, MetricsSource, Runtime, Strategy, StrategyError};

use super::file::{CanaryOverride, Expect, Scenario};
use super::replay::Replayed;

/// Reconciles at one tick before the runner decides the rollout has settled.
const MAX_RECONCILES_PER_TICK: usize = 32;

/// One decision (or failure) of the replay.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index of the tick in the scenario.
    pub tick: usize,
    /// When.
    pub at: Duration,
    /// Steps in the rollout.
    pub steps: u32,
    /// Progress after the host acted.
    pub progress: StepProgress,
    /// The decision, or the module's error.
    pub decision: Result<Decision, String>,
    /// The target resolved to pods.
    pub pods: u32,
    /// The tick's note, on its first row.
    pub note: Option<String>,
}

/// An expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the tick.
    pub tick: usize,
    /// When.
    pub at: Duration,
    /// What was expected and what happened.
    pub message: String,
}

/// The replay.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every decision in order.
    pub rows: Vec<Row>,
    /// Every expectation that failed.
    pub failures: Vec<Failure>,
    /// Expectations checked.
    pub checked: usize,
}

/// Metric values set by the scenario, answered for any provider.
#[derive(Default)]
struct ScenarioMetrics(Mutex<BTreeMap<String, serde_json::Value>>);

impl MetricsSource for ScenarioMetrics {
    fn query<'a>(
        &'a self,
        _provider: &'a str,
        query: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(std::future::ready(self.value(query)))
    }
}

impl ScenarioMetrics {
    fn value(&self, query: &str) -> Result<f64, MetricsError> {
        let values = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match values.get(query) {
            None | Some(serde_json::Value::Null) => Err(MetricsError::NoData),
            Some(serde_json::Value::Number(n)) => n.as_f64().ok_or(MetricsError::NoData),
            Some(serde_json::Value::String(s)) => Err(MetricsError::Failed(s.clone())),
            Some(other) => Err(MetricsError::Failed(format!(
                "the scenario gives `{other}`, not a number"
            ))),
        }
    }
}

/// What the simulated cluster holds between reconciles.
struct World {
    steps: Vec<Step>,
    progress: StepProgress,
    applied: Option<StepTarget>,
    memo: String,
    paused: bool,
    approved: bool,
    canary: Option<CanaryOverride>,
    revision: u32,
    /// The release finished (completed or aborted); nothing runs until a new one.
    finished: bool,
}

/// Replays `scenario` against `strategy`.
pub fn run(runtime: &Runtime, strategy: &Strategy, scenario: &Scenario) -> Result<Outcome, String> {
    if !scenario.replay.is_empty() {
        if !scenario.steps.is_empty() || !scenario.ticks.is_empty() {
            return Err("a scenario either replays recorded decisions (`replay`) or plays a timeline (`steps` and `ticks`), not both".into());
        }
        return Ok(replay(runtime, strategy, &scenario.replay));
    }
    let steps = spec::steps(&scenario.steps).map_err(|e| e.join("\n"))?;
    if steps.is_empty() {
        return Err("steps: a scenario needs at least one step".into());
    }
    let failure_threshold = scenario
        .failure_threshold
        .as_ref()
        .map(spec::replicas)
        .transpose()
        .map_err(|e| format!("failureThreshold: {e}"))?;
    let config = match &scenario.config {
        None => String::new(),
        Some(value) => serde_json::to_string(value).map_err(|e| format!("config: {e}"))?,
    };
    let metrics = Arc::new(ScenarioMetrics::default());
    let mut world = World {
        steps,
        progress: StepProgress::default(),
        applied: None,
        memo: String::new(),
        paused: false,
        approved: false,
        canary: None,
        revision: 1,
        finished: false,
    };
    let total_steps = u32::try_from(world.steps.len()).unwrap_or(u32::MAX);
    let mut outcome = Outcome {
        rows: Vec::new(),
        failures: Vec::new(),
        checked: 0,
    };

    for (index, tick) in scenario.ticks.iter().enumerate() {
        let now = u64::try_from(tick.at.as_millis()).unwrap_or(u64::MAX);
        if let Some(paused) = tick.paused {
            world.paused = paused;
        }
        if tick.canary.is_some() {
            world.canary = tick.canary;
        }
        metrics
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tick.metrics.clone());
        if tick.release {
            // A new version: the host resets the release and the strategy starts over.
            world.revision += 1;
            world.progress = StepProgress::default();
            world.applied = None;
            world.finished = false;
            world.approved = false;
        }
        if tick.approve && world.progress.state == StepState::StepPaused {
            world.progress.state = StepState::StepReady;
            world.approved = true;
        }

        let mut last: Option<Result<Decision, String>> = None;
        let mut note = tick.note.clone();
        for _ in 0..MAX_RECONCILES_PER_TICK {
            if world.finished {
                break;
            }
            let input = observe(scenario, &world, failure_threshold, &config, now);
            let answer = runtime
                .decide(strategy, &input, metrics.clone())
                .map_err(|e: StrategyError| e.to_string());
            let before = (world.progress, world.applied.clone());
            let pods = match &answer {
                Ok(d) => {
                    let seen = convergence(&input, d, scenario.traffic_routing, failure_threshold);
                    world.progress = stepper::next(world.progress, d, seen, now);
                    world.applied = Some(d.target.clone());
                    world.memo = d.memo.clone();
                    if world.progress.state != StepState::StepReady {
                        world.approved = false;
                    }
                    if matches!(d.action, Action::Complete | Action::Abort { .. }) {
                        world.finished = true;
                    }
                    d.target.replicas.resolve(scenario.replicas)
                }
                Err(_) => 0,
            };
            let settled = answer.is_err() || before == (world.progress, world.applied.clone());
            // A settled reconcile that repeats the previous one adds nothing to read.
            let repeats = settled
                && last.as_ref() == Some(&answer)
                && outcome
                    .rows
                    .last()
                    .is_some_and(|r| r.progress == world.progress);
            if !repeats {
                outcome.rows.push(Row {
                    tick: index,
                    at: tick.at,
                    steps: total_steps,
                    progress: world.progress,
                    decision: answer.clone(),
                    pods,
                    note: note.take(),
                });
            }
            last = Some(answer);
            if settled {
                break;
            }
        }
        if let Some(expect) = &tick.expect {
            outcome.checked += 1;
            for message in check(
                expect,
                last.as_ref(),
                world.progress.state,
                scenario.replicas,
            ) {
                outcome.failures.push(Failure {
                    tick: index,
                    at: tick.at,
                    message,
                });
            }
        }
    }
    Ok(outcome)
}

/// Replays recorded decisions: each on the observation and metric answers it was
/// made on. A row's time is counted from the first decision's.
fn replay(runtime: &Runtime, strategy: &Strategy, recorded: &[Replayed]) -> Outcome {
    let mut outcome = Outcome {
        rows: Vec::new(),
        failures: Vec::new(),
        checked: 0,
    };
    let start = recorded.first().map_or(0, |r| r.observation.now);
    for (index, r) in recorded.iter().enumerate() {
        let input = &r.observation;
        let at = Duration::from_millis(input.now.saturating_sub(start));
        let metrics = Arc::new(ScenarioMetrics(Mutex::new(r.metrics.clone())));
        let answer = runtime
            .decide(strategy, input, metrics)
            .map_err(|e: StrategyError| e.to_string());
        let pods = answer
            .as_ref()
            .map_or(0, |d| d.target.replicas.resolve(input.workload.desired));
        let progress = StepProgress {
            step: input.current_step,
            state: input.step_state,
            last_update_time: input.last_update_time,
        };
        outcome.rows.push(Row {
            tick: index,
            at,
            steps: u32::try_from(input.steps.len()).unwrap_or(u32::MAX),
            progress,
            decision: answer.clone(),
            pods,
            note: (!r.at.is_empty()).then(|| format!("recorded {}", r.at)),
        });
        outcome.checked += 1;
        let mut failed = check(
            &r.expect,
            Some(&answer),
            input.step_state,
            input.workload.desired,
        );
        if let Some(recorded) = &r.observation_digest {
            let digest = super::replay::observation_digest(input);
            if &digest != recorded {
                failed.insert(
                    0,
                    format!(
                        "observation: its sha256 is {digest}, the recorded one {recorded}: this is not the observation the decision was made on"
                    ),
                );
            }
        }
        outcome
            .failures
            .extend(failed.into_iter().map(|message| Failure {
                tick: index,
                at,
                message,
            }));
    }
    outcome
}

/// The observation the host would build from the simulated cluster.
fn observe(
    scenario: &Scenario,
    world: &World,
    failure_threshold: Option<crate::strategy::model::Replicas>,
    config: &str,
    now: u64,
) -> Observation {
    let total = scenario.replicas;
    let asked = world
        .applied
        .as_ref()
        .map_or(0, |t| t.replicas.resolve(total));
    let canary = match world.canary {
        Some(o) => ReplicaCounts {
            desired: asked,
            ready: o.ready.unwrap_or(asked).min(asked),
            updated: asked,
            failed: o.failed,
        },
        None => ReplicaCounts {
            desired: asked,
            ready: asked,
            updated: asked,
            failed: 0,
        },
    };
    Observation {
        rollout: format!(
            "scenario/{}",
            if scenario.name.is_empty() {
                "rollout"
            } else {
                &scenario.name
            }
        ),
        steps: world.steps.clone(),
        current_step: world.progress.step,
        step_state: world.progress.state,
        last_update_time: world.progress.last_update_time,
        approved: world.approved,
        paused: world.paused,
        traffic_routing: scenario.traffic_routing,
        failure_threshold,
        stable_revision: "rev-1".into(),
        canary_revision: format!("rev-{}", world.revision),
        workload: ReplicaCounts {
            desired: total,
            ready: total,
            updated: canary.updated,
            failed: canary.failed,
        },
        canary,
        traffic: world
            .applied
            .as_ref()
            .filter(|_| scenario.traffic_routing)
            .map(|t| t.traffic.clone())
            .unwrap_or_default(),
        now,
        config: config.to_owned(),
        memo: world.memo.clone(),
    }
}

/// Whether what the host saw already matches the decided target: the controller's
/// own check, so a scenario replays the host the controller is.
fn convergence(
    input: &Observation,
    decision: &Decision,
    traffic_routing: bool,
    failure_threshold: Option<crate::strategy::model::Replicas>,
) -> Convergence {
    let wanted = if traffic_routing {
        decision.target.traffic.clone()
    } else {
        Traffic::default()
    };
    let total = input.workload.desired;
    crate::controller::plan::convergence(
        &crate::controller::plan::Sighting {
            target_pods: decision.target.replicas.resolve(total).min(total),
            canary: input.canary,
            total,
            failure_threshold,
            route_matches: input.traffic == wanted,
            traffic_since: input.last_update_time,
            grace_ms: 0,
        },
        input.now,
    )
}

fn check(
    expect: &Expect,
    last: Option<&Result<Decision, String>>,
    state: StepState,
    total: u32,
) -> Vec<String> {
    let mut failures = Vec::new();
    let Some(answer) = last else {
        failures.push("expected a decision, but the release had already finished".to_owned());
        return failures;
    };
    let decision = match (answer, &expect.error) {
        (Err(e), Some(want)) => {
            if !e.contains(want.as_str()) {
                failures.push(format!(
                    "error: expected one containing {want:?}, got {e:?}"
                ));
            }
            return failures;
        }
        (Err(e), None) => {
            failures.push(format!("expected a decision, got an error: {e}"));
            return failures;
        }
        (Ok(_), Some(want)) => {
            failures.push(format!(
                "expected an error containing {want:?}, got a decision"
            ));
            return failures;
        }
        (Ok(d), None) => d,
    };
    let mut expect_eq = |field: &str, want: String, got: String| {
        if want != got {
            failures.push(format!("{field}: expected {want}, got {got}"));
        }
    };
    if let Some(step) = expect.step {
        expect_eq("step", step.to_string(), decision.step.to_string());
    }
    if let Some(want) = &expect.state {
        expect_eq("state", want.clone(), state.to_string());
    }
    if let Some(action) = &expect.action {
        expect_eq("action", action.clone(), decision.action.name().to_owned());
    }
    if let Some(replicas) = expect.replicas {
        expect_eq(
            "replicas",
            replicas.to_string(),
            decision.target.replicas.resolve(total).to_string(),
        );
    }
    if let Some(weight) = expect.weight {
        let got = decision
            .target
            .traffic
            .weight
            .map_or(-1, |w| i32::from(w.get()));
        expect_eq("weight", weight.to_string(), got.to_string());
    }
    if let Some(target) = &expect.target {
        expect_eq(
            "target",
            target.clone(),
            super::replay::describe_target(&decision.target),
        );
    }
    if let Some(message) = &expect.message {
        expect_eq(
            "message",
            format!("{message:?}"),
            format!("{:?}", decision.message),
        );
    }
    if let Some(part) = &expect.message_contains {
        let reason = match &decision.action {
            Action::Abort { reason } => reason.as_str(),
            _ => "",
        };
        if !decision.message.contains(part.as_str()) && !reason.contains(part.as_str()) {
            failures.push(format!(
                "message: expected it to contain {part:?}, got {:?}",
                decision.message
            ));
        }
    }
    failures
}
