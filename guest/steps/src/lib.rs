//! The built-in `steps` strategy: OpenKruise Rollout's canary steps, rule for rule.
//!
//! - A step's pods are its `replicas` (a percentage rounds up), or, when only a
//!   `weight` is written, the same percentage of pods.
//! - Once a step's pods and traffic reached their target, an empty `pause` waits for a
//!   person's approval; `pause.duration` waits that many seconds after the step was
//!   ready, then goes on.
//! - The last step with `replicas: 100%` never pauses.
//! - `spec.strategy.paused` holds the rollout where it is.
//! - A new release (the host starts it at step 0) begins at step 1.
//!
//! The rules live in [`decide`], a plain function, so they are table-tested natively and
//! benchmarked against the same logic running as a module.

use sluice_strategy::{
    Action, Decision, ModuleInfo, Observation, Replicas, Step, StepState, Strategy, export_strategy,
};

/// How long to wait before looking again while pods or traffic converge.
pub const CONVERGE_RECHECK_SECONDS: u32 = 5;

/// Kruise's message while the rollout is paused by `spec.strategy.paused`.
pub const PAUSED_MESSAGE: &str = "Rollout has been paused, you can resume it by kube-cli";

/// Kruise's message once every step is done and the host cleans up.
pub const COMPLETED_MESSAGE: &str =
    "Rollout has been completed and some closing work is being done";

/// Decides one reconcile of a Kruise canary rollout.
pub fn decide(input: &Observation) -> Result<Decision, String> {
    let total = input.step_count();
    if total == 0 {
        return Err("spec.strategy.canary.steps is empty: add at least one step".into());
    }
    // A release starts at step 1; steps removed under a running rollout clamp to the last one.
    let index = input.current_step.clamp(1, total);
    let step = step_at(input, index)?;

    if input.paused {
        return Ok(Decision::new(
            index,
            target(input, step),
            Action::Hold(CONVERGE_RECHECK_SECONDS),
            PAUSED_MESSAGE,
        ));
    }
    if index != input.current_step {
        return enter(input, index);
    }
    match input.step_state {
        StepState::BeforeStepUpgrade | StepState::StepUpgrade | StepState::StepTrafficRouting => {
            enter(input, index)
        }
        StepState::StepMetricsAnalysis | StepState::StepPaused => {
            pause_or_go_on(input, index, step)
        }
        StepState::StepReady => go_on(input, index),
        StepState::Completed => Ok(Decision::new(
            index,
            target(input, step),
            Action::Complete,
            COMPLETED_MESSAGE,
        )),
    }
}

/// The step's target, a count of pods capped at the workload's size as Kruise caps
/// it (a percentage cannot pass it).
fn target(input: &Observation, step: &Step) -> sluice_strategy::StepTarget {
    let mut target = step.target();
    if let Replicas::Count(n) = target.replicas {
        target.replicas = Replicas::Count(n.min(input.workload.desired));
    }
    target
}

fn step_at(input: &Observation, index: u32) -> Result<&Step, String> {
    input
        .step(index)
        .ok_or_else(|| format!("step {index} does not exist"))
}

/// Brings the step's pods and traffic to its target.
fn enter(input: &Observation, index: u32) -> Result<Decision, String> {
    let step = step_at(input, index)?;
    if step.replicas_or_weight().is_none() {
        return Err(format!(
            "spec.strategy.canary.steps[{}]: weight and replicas cannot be empty at the same time",
            index - 1
        ));
    }
    Ok(Decision::new(
        index,
        target(input, step),
        Action::Hold(CONVERGE_RECHECK_SECONDS),
        format!(
            "Rollout is in step({index}/{}), and upgrade workload to new version",
            input.step_count()
        ),
    ))
}

/// The step reached its target: wait as its `pause` says, or go on.
fn pause_or_go_on(input: &Observation, index: u32, step: &Step) -> Result<Decision, String> {
    let total = input.step_count();
    if input.is_last_step(index) && asks_for_all_pods(step) {
        return go_on(input, index);
    }
    match step.pause_seconds {
        None => Ok(Decision::new(
            index,
            target(input, step),
            Action::Pause(None),
            format!(
                "Rollout is in step({index}/{total}), and you need manually confirm to enter the next step"
            ),
        )),
        Some(seconds) => {
            let deadline = input
                .last_update_time
                .saturating_add(u64::from(seconds) * 1000);
            if input.now > deadline {
                return go_on(input, index);
            }
            let remaining = (deadline - input.now).div_ceil(1000).max(1);
            Ok(Decision::new(
                index,
                target(input, step),
                Action::Pause(Some(u32::try_from(remaining).unwrap_or(u32::MAX))),
                format!(
                    "Rollout is in step({index}/{total}), and wait duration({seconds} seconds) to enter the next step"
                ),
            ))
        }
    }
}

/// Kruise skips the pause of a last step whose replicas are literally `100%`
/// (which is also what `weight: 100` alone converts to).
fn asks_for_all_pods(step: &Step) -> bool {
    matches!(step.replicas_or_weight(), Some(Replicas::Percent(100)))
}

/// The step is done: the next step, or the end of the release.
fn go_on(input: &Observation, index: u32) -> Result<Decision, String> {
    if input.is_last_step(index) {
        let step = step_at(input, index)?;
        return Ok(Decision::new(
            index,
            target(input, step),
            Action::Complete,
            COMPLETED_MESSAGE,
        ));
    }
    let next = index + 1;
    let mut decision = enter(input, next)?;
    decision.action = Action::Advance;
    Ok(decision)
}

/// The module's export.
pub struct Steps;

impl Strategy for Steps {
    fn decide(input: Observation) -> Result<Decision, String> {
        decide(&input)
    }

    fn validate_config(config: &str) -> Result<(), String> {
        let trimmed = config.trim();
        if trimmed.is_empty() || trimmed == "{}" || trimmed == "null" {
            Ok(())
        } else {
            Err("the built-in `steps` strategy takes no configuration: remove the strategy.sluice.dev/config annotation".into())
        }
    }

    fn describe() -> ModuleInfo {
        ModuleInfo::named("steps", env!("CARGO_PKG_VERSION")).described(
            "OpenKruise Rollout canary steps: replicas and traffic per step, pause for approval or for a duration.",
        )
    }
}

export_strategy!(Steps);

#[cfg(test)]
mod tests;
