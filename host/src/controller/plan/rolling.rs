//! A release's steps: the strategy's input, what the host saw of its last target,
//! and the writes that bring pods, then traffic, to the decided target.

use std::time::Duration;

use super::{Decided, Ending, Note, Plan, begin_ending, finalise, fresh_canary_status, status_of};
use crate::controller::observed::Observed;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controller::status::{self, condition, phase, reason};
use crate::kruise::v1alpha1::{DECISION_LOG, DecisionRecord, RolloutStatus, StrategyStatus};
use crate::rollout::spec;
use crate::rollout::stepper::{self, Convergence, StepProgress};
use crate::scenario::replay;
use crate::strategy::model::{Action, Decision, Observation, Replicas, StepState, Traffic};
use crate::traffic::services;
use crate::workload::WorkloadView;

/// Adds `d` to the log unless it is the last decision again (but for its time);
/// keeps the last [`DECISION_LOG`].
fn log_decision(log: &mut Vec<DecisionRecord>, d: DecisionRecord) {
    let same = |a: &DecisionRecord| {
        (
            a.step, &a.state, &a.digest, &a.action, &a.target, &a.message,
        ) == (
            d.step, &d.state, &d.digest, &d.action, &d.target, &d.message,
        )
    };
    if log.last().is_some_and(same) {
        return;
    }
    log.push(d);
    let excess = log.len().saturating_sub(DECISION_LOG);
    log.drain(..excess);
}

/// The step progress the status records, after what moves it outside a decision
/// (Kruise's order): the release's steps changed under it (the step is recalculated
/// from the canary's size), or a person patched `nextStepIndex` (a jump). Neither
/// while `spec.strategy.paused` holds the rollout, or once its steps are done.
fn progress(o: &Observed, w: &WorkloadView, s: &RolloutStatus) -> StepProgress {
    let recorded = status::progress_of(s);
    let (Some(c), Ok(steps)) = (
        s.canary_status.as_ref(),
        spec::steps(super::written_steps(o)),
    ) else {
        return recorded;
    };
    if o.rollout.spec.strategy.paused || recorded.state == StepState::Completed {
        return recorded;
    }
    let canary_replicas = u32::try_from(c.canary_replicas).unwrap_or(0);
    if plan_changed(o, s) {
        // The current step's pods as the old steps planned them; a status from
        // before they were recorded has only the canary's.
        let planned = s
            .strategy
            .as_ref()
            .and_then(|s| s.step_replicas.as_ref())
            .and_then(|r| spec::replicas(r).ok())
            .map(|r| r.resolve(w.replicas));
        let canary =
            planned.unwrap_or_else(|| w.kind.canary_counts(o, w).desired.max(canary_replicas));
        let step = stepper::recalculate(&steps, recorded.step, canary, w.replicas);
        if c.next_step_index == i32::try_from(step).unwrap_or(-1) {
            // The following step: the current one is done.
            return StepProgress {
                state: StepState::StepReady,
                last_update_time: o.now,
                ..recorded
            };
        }
        return stepper::jump(
            recorded,
            i32::try_from(step).unwrap_or(-1),
            &steps,
            w.replicas,
            canary_replicas,
            o.now,
        );
    }
    stepper::jump(
        recorded,
        c.next_step_index,
        &steps,
        w.replicas,
        canary_replicas,
        o.now,
    )
}

/// The release's plan (Kruise's hash of its steps and routing) is not the one its
/// status recorded.
fn plan_changed(o: &Observed, s: &RolloutStatus) -> bool {
    let recorded = s
        .canary_status
        .as_ref()
        .and_then(|c| c.rollout_hash.as_deref())
        .unwrap_or("");
    !recorded.is_empty() && Some(recorded) != crate::kruise::hash::plan_hash(&o.rollout).as_deref()
}

fn failure_threshold(o: &Observed) -> Option<Replicas> {
    o.rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.failure_threshold.as_ref())
        .and_then(|t| spec::replicas(t).ok())
}

/// The strategy's input, when the stage needs a decision.
pub fn strategy_input(o: &Observed, stage: &super::Stage) -> Option<Observation> {
    if !stage.decides() {
        return None;
    }
    let w = o.workload.as_ref()?;
    let canary_spec = o.rollout.spec.strategy.canary.as_ref()?;
    let steps = spec::steps(&canary_spec.steps).ok()?;
    let s = status_of(o);
    let progress = progress(o, w, &s);
    Some(Observation {
        rollout: format!("{}/{}", o.namespace(), o.name()),
        steps,
        current_step: progress.step,
        step_state: progress.state,
        last_update_time: progress.last_update_time,
        approved: progress.state == StepState::StepReady,
        paused: o.rollout.spec.strategy.paused,
        traffic_routing: o.routing.is_some(),
        failure_threshold: failure_threshold(o),
        stable_revision: w.stable_revision.clone(),
        canary_revision: w.template_hash(),
        workload: w.counts,
        canary: w.kind.canary_counts(o, w),
        traffic: Traffic {
            weight: o
                .routing
                .as_ref()
                .and_then(|r| r.router.applied_weight(&o.traffic, r)),
            matches: Vec::new(),
        },
        now: o.now,
        config: o.module.config.clone(),
        memo: s.strategy.map(|st| st.memo).unwrap_or_default(),
    })
}

/// What the host saw of a decision's target.
#[derive(Debug, Clone, Copy)]
pub struct Sighting {
    /// The canary pods the decision asks for.
    pub target_pods: u32,
    /// The canary's pods as they are.
    pub canary: crate::strategy::model::ReplicaCounts,
    /// The workload's replicas.
    pub total: u32,
    /// Failed canary pods tolerated.
    pub failure_threshold: Option<Replicas>,
    /// The route applied is the one decided.
    pub route_matches: bool,
    /// When traffic last changed, Unix milliseconds.
    pub traffic_since: u64,
    /// The grace period after a traffic change, milliseconds.
    pub grace_ms: u64,
}

/// Whether the target is reached: the canary's pods up by Kruise's batch rule, and
/// its traffic applied with the grace period passed at `now`. The one check the
/// controller and `sluice strategy test` both make.
pub fn convergence(seen: &Sighting, now: u64) -> Convergence {
    Convergence {
        pods_ready: seen.canary.desired >= seen.target_pods
            && stepper::batch_ready(
                Replicas::Count(seen.target_pods),
                seen.total,
                seen.canary,
                seen.failure_threshold,
            ),
        traffic_ready: seen.route_matches && now >= seen.traffic_since + seen.grace_ms,
    }
}

pub(super) fn rolling(o: &Observed, p: &mut Plan, decided: Option<&Decided>) {
    let Some(w) = &o.workload else { return };
    let Some(decided) = decided else {
        p.requeue = Some(Duration::from_secs(1));
        return;
    };
    let (decision, module, digest, metrics) = match decided {
        Decided::Deferred { module, why } => {
            tracing::debug!(module, why, "no decision yet");
            p.writes.extend(w.kind.on_wait(o, w));
            p.requeue = Some(Duration::from_secs(1));
            return;
        }
        Decided::Failed {
            module,
            reason,
            message,
        } => {
            failed(o, p, w, module, reason, message);
            return;
        }
        Decided::Decision {
            decision,
            module,
            digest,
            metrics,
        } => (decision, module, digest, metrics),
    };
    status::set_condition(
        &mut p.status,
        condition::STRATEGY_READY,
        true,
        "Decided",
        &format!("{module} ({digest}) decided"),
        o.now,
    );
    let previous_action = p
        .status
        .strategy
        .as_ref()
        .map(|s| s.last_action.clone())
        .unwrap_or_default();
    let kept = p.status.strategy.clone().unwrap_or_default();
    let mut decisions = kept.decisions;
    // What the module was given (the same pure function built its input).
    let given = strategy_input(o, &super::Stage::Rolling);
    log_decision(
        &mut decisions,
        DecisionRecord {
            at: super::rfc3339(o.now),
            step: decision.step,
            state: given
                .as_ref()
                .map(|g| g.step_state.as_str().to_owned())
                .unwrap_or_default(),
            digest: digest.clone(),
            action: decision.action.name().to_owned(),
            target: replay::describe_target(&decision.target),
            message: decision.message.clone(),
            observation: given
                .as_ref()
                .map(replay::observation_digest)
                .unwrap_or_default(),
            input: given.as_ref().map(replay::record_input).unwrap_or_default(),
            metrics: metrics.clone(),
        },
    );
    p.status.strategy = Some(StrategyStatus {
        module: module.clone(),
        digest: digest.clone(),
        memo: decision.memo.clone(),
        last_action: decision.action.name().to_owned(),
        release_fingerprint: kept.release_fingerprint,
        step_replicas: kept.step_replicas,
        handled_request: kept.handled_request,
        request_outcome: kept.request_outcome,
        decisions,
        releases: kept.releases,
    });

    let steps_total = super::written_steps(o).len();
    let progress = progress(o, w, &p.status);
    let recorded = status::progress_of(&p.status);
    if plan_changed(o, &p.status) {
        p.notes.push(Note::normal(
            "StepsChanged",
            format!(
                "the release's steps changed: it goes on at step {} of {steps_total}",
                progress.step
            ),
        ));
    } else if progress != recorded {
        p.notes.push(Note::normal(
            "StepJumped",
            format!(
                "nextStepIndex was set to {}: from step {} to step {} of {steps_total}",
                progress.step, recorded.step, progress.step
            ),
        ));
    }
    // Kruise's batch labels on the release's pods, the last step's too (before
    // the release completes), from the steps the module was given.
    if !matches!(decision.action, Action::Abort { .. })
        && let Some(given) = &given
    {
        p.writes.extend(super::batch::writes(
            o.namespace(),
            w,
            &given.steps,
            decision.step,
        ));
    }
    match &decision.action {
        Action::Complete => {
            p.notes.push(Note::normal(
                "Progressing",
                format!("all {steps_total} steps done ({module})"),
            ));
            if let Some(c) = p.status.canary_status.as_mut() {
                c.current_step_state = StepState::Completed.as_str().into();
                c.next_step_index = -1;
            }
            begin_ending(o, p, Ending::Success);
            finalise(o, p, Ending::Success);
            return;
        }
        Action::Abort { reason: why } => {
            p.notes
                .push(Note::warning("Aborted", format!("{module}: {why}")));
            begin_ending(o, p, Ending::Abort);
            p.status.message = Some(format!("The strategy aborted the release: {why}"));
            finalise(o, p, Ending::Abort);
            return;
        }
        _ => {}
    }

    if progress != recorded {
        // Kruise writes a jump (or the step an edit of the steps leads to) by
        // itself, so its state is seen; the step runs from the next pass.
        let canary = w.kind.canary_counts(o, w);
        record(
            o,
            p,
            w,
            decision,
            module,
            digest,
            recorded,
            progress,
            canary.desired,
            canary,
        );
        p.requeue = Some(Duration::from_millis(200));
        return;
    }
    let total = w.replicas;
    let routing = o.routing.as_ref();
    let canary = w.kind.canary_counts(o, w);
    // The canary never shrinks within a release: a jump back, a smaller workload or
    // edited steps keep the pods it has.
    let planned = w.kind.planned_pods(w, decision.target.replicas).min(total);
    let pods = planned.max(canary.desired);
    let wanted = &decision.target.traffic;
    let wants_traffic =
        routing.is_some() && (wanted.weight.is_some() || !wanted.matches.is_empty());
    // As Kruise: a step without traffic finalises the traffic routing before it
    // goes on (the stable Service selects every pod again, the canary route goes,
    // then the canary Service).
    let route_matches = match routing {
        Some(r) if wants_traffic => r.router.is(&o.traffic, r, wanted),
        Some(r) => {
            !r.router.present(&o.traffic, r)
                && !services::pinned(o, w)
                && services::delete_canary(o, r).is_empty()
        }
        None => true,
    };
    let grace = routing.map_or(0, |r| r.grace_ms());
    let seen = convergence(
        &Sighting {
            target_pods: pods,
            canary,
            total,
            failure_threshold: failure_threshold(o),
            route_matches,
            traffic_since: progress.last_update_time,
            grace_ms: grace,
        },
        o.now,
    );
    let mut next = stepper::next(progress, decision, seen, o.now);

    // Pods first.
    // The step's share when the canary is to be at it, else the count it is kept at.
    let size = match decision.target.replicas {
        share @ Replicas::Percent(_) if planned == pods => share,
        _ => Replicas::Count(pods),
    };
    p.writes.extend(w.kind.scale_canary(o, w, size));
    if let Some(r) = routing {
        let canary_revision = w.kind.canary_revision(o, w);
        // The stable Service keeps to the stable pods while a step routes traffic,
        // so canary pods get no traffic but what the canary route gives them.
        if wants_traffic {
            p.writes.extend(services::pin_stable(o, r, w));
        }
        let routing_now = matches!(
            next.state,
            StepState::StepTrafficRouting
                | StepState::StepMetricsAnalysis
                | StepState::StepPaused
                | StepState::StepReady
        );
        if routing_now && wants_traffic {
            if let Some(revision) = &canary_revision {
                p.writes.extend(services::ensure_canary(o, r, w, revision));
                if !route_matches {
                    p.writes.extend(r.router.route(o, r, wanted));
                    next.last_update_time = o.now;
                }
            }
        } else if !wants_traffic {
            // A step without traffic, in Kruise's order, each change given the
            // grace period before the next: the stable Service selects every pod
            // again, the previous step's canary route goes, then the canary Service.
            let graced = o.now >= progress.last_update_time.saturating_add(grace);
            if services::pinned(o, w) {
                p.writes.extend(services::unpin_stable(o, r, w));
                next.last_update_time = o.now;
            } else if r.router.present(&o.traffic, r) {
                if graced {
                    p.writes.extend(r.router.remove(o, r));
                    next.last_update_time = o.now;
                }
            } else if graced {
                p.writes.extend(services::delete_canary(o, r));
            }
        }
        if next.state == StepState::StepTrafficRouting {
            p.requeue = Some(Duration::from_millis(grace.max(500)));
        }
    }
    record(
        o, p, w, decision, module, digest, progress, next, pods, canary,
    );

    let recheck = match decision.action {
        Action::Hold { recheck_seconds } => Duration::from_secs(u64::from(recheck_seconds.max(1))),
        Action::Pause {
            recheck_seconds: Some(s),
        } => Duration::from_secs(u64::from(s.max(1))),
        Action::Pause {
            recheck_seconds: None,
        } => Duration::from_secs(300),
        _ => Duration::from_secs(1),
    };
    let converging = next != progress;
    p.requeue = Some(match (p.requeue, converging) {
        (Some(r), _) => r.min(recheck),
        (None, true) => Duration::from_millis(200),
        (None, false) => recheck,
    });
    if decision.action.name() != previous_action && matches!(decision.action, Action::Pause { .. })
    {
        p.notes
            .push(Note::normal("Paused", decision.message.clone()));
    }
}

/// The strategy failed: the Rollout waits, with a condition and (once) an event.
fn failed(o: &Observed, p: &mut Plan, w: &WorkloadView, module: &str, reason: &str, message: &str) {
    let msg = format!(
        "strategy module {module} failed ({reason}): {message}; the rollout waits until it decides again"
    );
    let already =
        p.status.conditions.iter().any(|c| {
            c.type_ == condition::STRATEGY_READY && c.status == "False" && c.reason == reason
        });
    status::set_condition(
        &mut p.status,
        condition::STRATEGY_READY,
        false,
        reason,
        &msg,
        o.now,
    );
    if !already {
        p.notes.push(Note::warning("StrategyFailed", &msg));
    }
    p.status.message = Some(msg);
    p.writes.extend(w.kind.on_wait(o, w));
    p.requeue = Some(Duration::from_secs(30));
}

/// The status after a decision: the Progressing condition, the step, the canary.
#[allow(clippy::too_many_arguments)]
fn record(
    o: &Observed,
    p: &mut Plan,
    w: &WorkloadView,
    decision: &Decision,
    module: &str,
    digest: &str,
    progress: StepProgress,
    next: StepProgress,
    pods: u32,
    canary: crate::strategy::model::ReplicaCounts,
) {
    let steps_total = super::written_steps(o).len();
    let reason_now = if o.rollout.spec.strategy.paused {
        reason::PAUSED
    } else {
        reason::IN_ROLLING
    };
    // As Kruise: the step's words go to `status.message`; the condition keeps
    // the words it was given when its reason last changed ("Rollout is in
    // Progressing", or the pause's words after a resume).
    let condition_message = if reason_now == reason::PAUSED {
        status::message::PAUSED.to_owned()
    } else {
        p.status
            .conditions
            .iter()
            .find(|c| {
                c.type_ == condition::PROGRESSING
                    && (c.reason == reason::IN_ROLLING || c.reason == reason::PAUSED)
            })
            .map_or_else(
                || status::message::PROGRESSING.to_owned(),
                |c| c.message.clone(),
            )
    };
    status::set_condition(
        &mut p.status,
        condition::PROGRESSING,
        true,
        reason_now,
        &condition_message,
        o.now,
    );
    p.status.phase = Some(phase::PROGRESSING.into());
    p.status.message = Some(decision.message.clone());
    let mut c = p
        .status
        .canary_status
        .clone()
        .unwrap_or_else(|| fresh_canary_status(o, w));
    let by = format!("{module} {}", &digest[..digest.len().min(12)]);
    if next.step != progress.step {
        p.notes.push(Note::normal(
            "Progressing",
            format!(
                "step {} of {steps_total}: {} canary pods, traffic {} (decided by {by})",
                next.step,
                pods,
                describe_traffic(&decision.target.traffic)
            ),
        ));
    } else if next.state != progress.state {
        p.notes.push(Note::normal(
            "Progressing",
            format!("step {} {} (decided by {by})", next.step, next.state),
        ));
    }
    c.current_step_index = i32::try_from(next.step).unwrap_or(i32::MAX);
    c.current_step_state = next.state.as_str().into();
    // A jump is made at once; while `spec.strategy.paused` holds the rollout, the
    // nextStepIndex a person wrote waits for it.
    let asked = c.next_step_index;
    let asked_is_a_step = asked >= 1 && asked as usize <= steps_total;
    c.next_step_index = if o.rollout.spec.strategy.paused && asked_is_a_step {
        asked
    } else {
        stepper::next_step_index(next.step, steps_total)
    };
    c.rollout_hash = crate::kruise::hash::plan_hash(&o.rollout);
    if let Some(s) = p.status.strategy.as_mut() {
        s.step_replicas = Some(match decision.target.replicas {
            Replicas::Count(n) => IntOrString::Int(i32::try_from(n).unwrap_or(i32::MAX)),
            share @ Replicas::Percent(_) => IntOrString::String(share.to_string()),
        });
    }
    c.last_update_time = Some(status::time(next.last_update_time.max(1)));
    // Kruise's counts are the canary's pods as they are.
    c.canary_replicas = i32::try_from(canary.updated).unwrap_or(i32::MAX);
    c.canary_ready_replicas = i32::try_from(canary.ready).unwrap_or(i32::MAX);
    c.observed_workload_generation = w.generation;
    c.canary_revision = w.template_hash();
    if let Some(hash) = w.kind.canary_revision(o, w) {
        c.pod_template_hash = hash;
    }
    p.status.canary_status = Some(c);
}

fn describe_traffic(t: &Traffic) -> String {
    match (t.weight, t.matches.is_empty()) {
        (Some(w), true) => w.to_string(),
        (Some(w), false) => format!("{w} and {} request routes", t.matches.len()),
        (None, false) => format!("{} request routes", t.matches.len()),
        (None, true) => "none".into(),
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn decision(at: &str, step: u32, action: &str) -> DecisionRecord {
        DecisionRecord {
            at: at.into(),
            step,
            state: "StepPaused".into(),
            digest: "sha256:aa".into(),
            action: action.into(),
            target: "1 pod(s), 20% of the traffic".into(),
            message: String::new(),
            observation: format!("sha256:{at}"),
            ..DecisionRecord::default()
        }
    }

    #[test]
    fn the_log_folds_repeats_and_keeps_the_last_ten() {
        let mut log = Vec::new();
        log_decision(&mut log, decision("t1", 1, "pause"));
        // The same decision at a later time, on another observation: recorded once.
        log_decision(&mut log, decision("t2", 1, "pause"));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].at, "t1");
        log_decision(&mut log, decision("t3", 1, "advance"));
        assert_eq!(log.len(), 2);
        for step in 2..=20 {
            log_decision(&mut log, decision(&format!("s{step}"), step, "pause"));
        }
        assert_eq!(log.len(), DECISION_LOG);
        assert_eq!(log.first().map(|d| d.step), Some(11));
        assert_eq!(log.last().map(|d| d.step), Some(20));
    }
}
