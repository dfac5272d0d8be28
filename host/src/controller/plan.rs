//! The pure middle of a reconcile: from what was observed (and the strategy's
//! decision), the changes to make, in order, and the status to write.

use std::collections::BTreeMap;
use std::time::Duration;

use super::observed::{Observed, WorkloadKind, WorkloadView, same_template};
use super::status::{self, condition, message, phase, reason};
use super::traffic::{self, Router, Routing};
use crate::kruise::v1alpha1::{CanaryStatus, RolloutStatus, StrategyStatus};
use crate::kruise::validate;
use crate::rollout::spec;
use crate::rollout::stepper::{self, Convergence, StepProgress};
use crate::strategy::model::{
    Action, Decision, Observation, ReplicaCounts, Replicas, StepState, Traffic,
};

/// The finalizer a governed Rollout carries.
pub const FINALIZER: &str = "rollouts.kruise.io/rollout";

/// One change to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add the Rollout's finalizer.
    AddFinalizer,
    /// Remove it (the Rollout may go).
    RemoveFinalizer,
    /// Keep the workload from rolling out on its own (Deployment `paused`, or a
    /// partition covering every pod).
    HoldWorkload,
    /// Let the workload roll out natively.
    ReleaseWorkload,
    /// Keep this many pods of a partition workload on the old revision.
    SetPartition(u32),
    /// Create or scale the canary Deployment.
    EnsureCanaryDeployment {
        /// Its replicas.
        replicas: u32,
    },
    /// Delete the canary Deployment.
    DeleteCanaryDeployment,
    /// Select only the stable pods from the stable Service.
    PinStableService {
        /// Their revision label value.
        revision: String,
    },
    /// Let the stable Service select every pod again.
    UnpinStableService,
    /// Create or update the canary Service, selecting the canary pods.
    EnsureCanaryService {
        /// Their revision label value.
        revision: String,
    },
    /// Delete the canary Service.
    DeleteCanaryService,
    /// Create or update the canary Ingress with these canary annotations.
    EnsureCanaryIngress(BTreeMap<String, String>),
    /// Delete the canary Ingress.
    DeleteCanaryIngress,
    /// Replace the HTTPRoute's rules.
    SetHttpRouteRules(Vec<serde_json::Value>),
}

/// A Kubernetes Event to publish about the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A warning rather than a normal event.
    pub warning: bool,
    /// One word.
    pub reason: String,
    /// What happened.
    pub message: String,
}

impl Note {
    fn normal(reason: &str, message: impl Into<String>) -> Note {
        Note {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn warning(reason: &str, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Changes, in the order they must be made.
    pub changes: Vec<Change>,
    /// The status to write.
    pub status: RolloutStatus,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// When to look again without a watch event.
    pub requeue: Option<Duration>,
}

/// The strategy's answer, as the plan takes it.
#[derive(Debug, Clone)]
pub enum Decided {
    /// A checked decision of the module with this digest.
    Decision {
        /// The decision.
        decision: Decision,
        /// `builtin:steps`, …
        module: String,
        /// sha256 of the module.
        digest: String,
    },
    /// The module cannot be asked yet (it is compiling, or its namespace's share of
    /// the sandbox is busy): nothing changes, the rollout is looked at again soon.
    Deferred {
        /// `builtin:steps`, …
        module: String,
        /// Why.
        why: String,
    },
    /// The module failed: the rollout pauses.
    Failed {
        /// `builtin:steps`, …
        module: String,
        /// A short label (`DeadlineExceeded`, …).
        reason: String,
        /// The error.
        message: String,
    },
}

/// Where a Rollout is, as far as a reconcile is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Being deleted.
    Deleting,
    /// The spec breaks a rule; nothing is changed.
    Invalid(Vec<String>),
    /// `spec.disabled`.
    Disabled,
    /// The workload does not exist.
    NoWorkload,
    /// Not releasing.
    Idle,
    /// A new template appeared: a release begins.
    Start,
    /// The template went back to the stable one.
    Rollback,
    /// Yet another template appeared mid-release.
    Continuous,
    /// Cleaning up after a release.
    Finalising(Ending),
    /// Aborted by the strategy, held at the stable version.
    Aborted,
    /// Steps run: the strategy decides.
    Rolling,
}

/// How a release ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Promoted.
    Success,
    /// Rolled back by reverting the template.
    Cancel,
    /// Aborted by the strategy.
    Abort,
    /// The Rollout is being deleted.
    Delete,
    /// The Rollout is being disabled.
    Disable,
}

impl Ending {
    fn steps(self, kind: WorkloadKind) -> &'static [&'static str] {
        let partition = kind != WorkloadKind::Deployment;
        match (self, partition) {
            (Ending::Success, false) => &[
                "RestoreStableService",
                "RouteTrafficToStable",
                "RemoveCanaryService",
                "ResumeWorkload",
                "ReleaseWorkloadControl",
                "END",
            ],
            (Ending::Success, true) => &[
                "RestoreStableService",
                "RouteTrafficToStable",
                "RemoveCanaryService",
                "ResumeWorkload",
                "END",
            ],
            (Ending::Cancel | Ending::Abort, false) => &[
                "RouteTrafficToStable",
                "ReleaseWorkloadControl",
                "RestoreStableService",
                "RemoveCanaryService",
                "END",
            ],
            (Ending::Cancel, true) => &[
                "RouteTrafficToStable",
                "ResumeWorkload",
                "RestoreStableService",
                "RemoveCanaryService",
                "END",
            ],
            // Updated pods of a partition workload cannot go back until the template
            // does: they stay, held, out of traffic behind the pinned stable Service.
            (Ending::Abort, true) => &["RouteTrafficToStable", "RemoveCanaryService", "END"],
            (Ending::Delete | Ending::Disable, _) => &[
                "RouteTrafficToStable",
                "ReleaseWorkloadControl",
                "RestoreStableService",
                "RemoveCanaryService",
                "ResumeWorkload",
                "END",
            ],
        }
    }
}

fn routing(o: &Observed) -> Option<Routing> {
    Routing::of_rollout(&o.rollout)
}

fn status_of(o: &Observed) -> RolloutStatus {
    o.rollout.status.clone().unwrap_or_default()
}

fn progressing_reason(o: &Observed) -> Option<String> {
    let s = status_of(o);
    if s.phase.as_deref() != Some(phase::PROGRESSING)
        && s.phase.as_deref() != Some(phase::DISABLING)
    {
        return None;
    }
    status::condition_reason(&s, condition::PROGRESSING).map(str::to_owned)
}

/// Where the Rollout is.
pub fn stage(o: &Observed) -> Stage {
    if o.rollout.metadata.deletion_timestamp.is_some() {
        return Stage::Deleting;
    }
    let others: Vec<_> = o.others.iter().collect();
    let errors = validate::validate(&o.rollout, &others);
    let reason = progressing_reason(o);
    let progressing = reason.is_some();
    // While a release runs, the workload and the traffic routing may not change.
    let fingerprint_changed = progressing
        && status_of(o)
            .canary_status
            .as_ref()
            .and_then(|c| c.rollout_hash.as_deref())
            .is_some_and(|h| h != validate::fingerprint(&o.rollout.spec));
    if !errors.is_empty() || fingerprint_changed {
        let mut errors = errors;
        if fingerprint_changed {
            errors.push("spec.objectRef, spec.strategy.canary.trafficRoutings: cannot change while the rollout is progressing; revert the change or finish the release first".into());
        }
        return Stage::Invalid(errors);
    }
    if o.rollout.spec.disabled {
        return Stage::Disabled;
    }
    let Some(w) = &o.workload else {
        return Stage::NoWorkload;
    };
    match reason.as_deref() {
        None => {
            if w.has_new_template() && w.replicas > 0 {
                Stage::Start
            } else {
                Stage::Idle
            }
        }
        Some(reason::FINALISING) => Stage::Finalising(Ending::Success),
        Some(reason::CANCELLING) => Stage::Finalising(if aborted_marker(o) {
            Ending::Abort
        } else {
            Ending::Cancel
        }),
        Some(r) => {
            if !w.has_new_template() {
                Stage::Rollback
            } else if template_moved_on(o, w) {
                Stage::Continuous
            } else if r == reason::ABORTED {
                Stage::Aborted
            } else {
                Stage::Rolling
            }
        }
    }
}

fn aborted_marker(o: &Observed) -> bool {
    status_of(o)
        .strategy
        .as_ref()
        .is_some_and(|s| s.last_action == "abort")
}

/// The template differs from the one this release started with.
fn template_moved_on(o: &Observed, w: &WorkloadView) -> bool {
    let recorded = status_of(o)
        .canary_status
        .map(|c| c.canary_revision)
        .unwrap_or_default();
    !recorded.is_empty() && recorded != w.template_hash()
        || o.canary
            .as_ref()
            .is_some_and(|c| !same_template(&c.template, &w.template))
}

/// The Rollout's canary steps as written; none without a canary strategy.
fn written_steps(o: &Observed) -> &[crate::kruise::v1alpha1::CanaryStep] {
    o.rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .map_or(&[], |c| c.steps.as_slice())
}

/// The step progress the status records, after the step jump a person may have asked
/// for by patching `nextStepIndex`.
fn progress(o: &Observed, w: &WorkloadView, s: &RolloutStatus) -> StepProgress {
    let recorded = status::progress_of(s);
    match (s.canary_status.as_ref(), spec::steps(written_steps(o)).ok()) {
        (Some(c), Some(steps)) => stepper::jump(
            recorded,
            c.next_step_index,
            &steps,
            w.replicas,
            canary_counts(o, w).updated,
            o.now,
        ),
        _ => recorded,
    }
}

/// The strategy's input, when the stage needs a decision.
pub fn strategy_input(o: &Observed, stage: &Stage, config: &str) -> Option<Observation> {
    if *stage != Stage::Rolling {
        return None;
    }
    let w = o.workload.as_ref()?;
    let canary_spec = o.rollout.spec.strategy.canary.as_ref()?;
    let steps = spec::steps(&canary_spec.steps).ok()?;
    let s = status_of(o);
    let progress = progress(o, w, &s);
    let failure_threshold = canary_spec
        .failure_threshold
        .as_ref()
        .and_then(|t| spec::replicas(t).ok());
    Some(Observation {
        rollout: format!(
            "{}/{}",
            o.rollout.metadata.namespace.as_deref().unwrap_or(""),
            o.rollout.metadata.name.as_deref().unwrap_or("")
        ),
        steps,
        current_step: progress.step,
        step_state: progress.state,
        last_update_time: progress.last_update_time,
        approved: progress.state == StepState::StepReady,
        paused: o.rollout.spec.strategy.paused,
        traffic_routing: routing(o).is_some(),
        failure_threshold,
        stable_revision: w.stable_revision.clone(),
        canary_revision: w.template_hash(),
        workload: w.counts,
        canary: canary_counts(o, w),
        traffic: applied_traffic(o),
        now: o.now,
        config: config.to_owned(),
        memo: s.strategy.map(|st| st.memo).unwrap_or_default(),
    })
}

fn canary_counts(o: &Observed, w: &WorkloadView) -> ReplicaCounts {
    match w.kind {
        WorkloadKind::Deployment => o
            .canary
            .as_ref()
            .filter(|c| same_template(&c.template, &w.template))
            .map(|c| c.counts)
            .unwrap_or_default(),
        WorkloadKind::CloneSet | WorkloadKind::StatefulSet => w.updated,
    }
}

fn applied_traffic(o: &Observed) -> Traffic {
    let Some(r) = routing(o) else {
        return Traffic::default();
    };
    let weight = match &r.router {
        Router::Nginx { .. } => o
            .traffic
            .canary_ingress
            .as_ref()
            .and_then(traffic::nginx_weight),
        Router::Gateway { .. } => o
            .traffic
            .http_route
            .as_ref()
            .and_then(|h| h.pointer("/spec/rules").and_then(|r| r.as_array()).cloned())
            .and_then(|rules| traffic::http_route_weight(&rules, &r)),
    };
    Traffic {
        weight,
        matches: Vec::new(),
    }
}

/// The plan for this reconcile.
pub fn plan(o: &Observed, stage: Stage, decided: Option<&Decided>) -> Plan {
    let mut p = Plan {
        changes: Vec::new(),
        status: status_of(o),
        notes: Vec::new(),
        requeue: None,
    };
    p.status.observed_generation = o.rollout.metadata.generation;
    let governed = o
        .rollout
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    match stage {
        Stage::Deleting => deleting(o, &mut p, governed),
        Stage::Invalid(errors) => invalid(o, &mut p, &errors),
        Stage::Disabled => disabled(o, &mut p),
        stage => {
            status::clear_condition(&mut p.status, condition::VALID);
            if !governed {
                p.changes.push(Change::AddFinalizer);
            }
            match stage {
                Stage::NoWorkload => {
                    p.status.phase = Some(phase::INITIAL.into());
                    p.status.message = Some(message::WORKLOAD_NOT_FOUND.into());
                }
                Stage::Idle => idle(o, &mut p),
                Stage::Start => start(o, &mut p),
                Stage::Rollback => {
                    begin_ending(o, &mut p, Ending::Cancel);
                    finalise(o, &mut p, Ending::Cancel);
                }
                Stage::Continuous => continuous(o, &mut p),
                Stage::Finalising(ending) => finalise(o, &mut p, ending),
                Stage::Aborted => p.changes.push(Change::HoldWorkload),
                Stage::Rolling => rolling(o, &mut p, decided),
                Stage::Deleting | Stage::Invalid(_) | Stage::Disabled => {
                    unreachable!("handled above")
                }
            }
        }
    }
    p
}

fn invalid(o: &Observed, p: &mut Plan, errors: &[String]) {
    let msg = errors.join("; ");
    let already = p
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::VALID && c.message == msg);
    status::set_condition(
        &mut p.status,
        condition::VALID,
        false,
        "InvalidSpec",
        &msg,
        o.now,
    );
    if !already {
        p.notes.push(Note::warning("InvalidSpec", &msg));
    }
    if p.status.phase.is_none() {
        p.status.phase = Some(phase::INITIAL.into());
    }
}

fn deleting(o: &Observed, p: &mut Plan, governed: bool) {
    if !governed {
        return;
    }
    p.status.phase = Some(phase::TERMINATING.into());
    status::set_condition(
        &mut p.status,
        condition::TERMINATING,
        true,
        reason::IN_TERMINATING,
        "Rollout is in terminating",
        o.now,
    );
    if o.workload.is_none() {
        p.changes.push(Change::RemoveFinalizer);
        return;
    }
    if finalise_steps(o, p, Ending::Delete) {
        status::set_condition(
            &mut p.status,
            condition::TERMINATING,
            false,
            reason::COMPLETED,
            "Rollout is terminated",
            o.now,
        );
        p.changes.push(Change::RemoveFinalizer);
        p.notes.push(Note::normal(
            "Terminated",
            "workload released; the rollout is removed",
        ));
    }
}

fn disabled(o: &Observed, p: &mut Plan) {
    let was_progressing = progressing_reason(o).is_some();
    if was_progressing && o.workload.is_some() {
        p.status.phase = Some(phase::DISABLING.into());
        p.status.message = Some(message::DISABLING.into());
        if !finalise_steps(o, p, Ending::Disable) {
            return;
        }
    }
    if p.status.phase.as_deref() != Some(phase::DISABLED) {
        p.notes.push(Note::normal("Disabled", message::DISABLED));
    }
    p.status.phase = Some(phase::DISABLED.into());
    p.status.message = Some(message::DISABLED.into());
    status::clear_condition(&mut p.status, condition::PROGRESSING);
    p.status.canary_status = None;
    if o.workload.as_ref().is_some_and(|w| w.held) {
        p.changes.push(Change::ReleaseWorkload);
    }
    if o.rollout
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
    {
        p.changes.push(Change::RemoveFinalizer);
    }
}

fn idle(o: &Observed, p: &mut Plan) {
    let Some(w) = &o.workload else { return };
    let phase_now = p.status.phase.clone();
    match phase_now.as_deref() {
        None | Some(phase::INITIAL) | Some(phase::DISABLED) => {
            p.status.phase = Some(phase::HEALTHY.into());
            p.status.message = Some(message::HEALTHY.into());
            p.notes.push(Note::normal("Healthy", message::HEALTHY));
            p.requeue = Some(Duration::from_secs(1));
            return;
        }
        _ => {}
    }
    p.status.phase = Some(phase::HEALTHY.into());
    if p.status.canary_status.is_none() {
        let steps = written_steps(o).len();
        p.status.canary_status = Some(CanaryStatus {
            observed_workload_generation: w.generation,
            stable_revision: w.stable_revision.clone(),
            canary_revision: w.template_hash(),
            current_step_index: i32::try_from(steps).unwrap_or(i32::MAX),
            current_step_state: StepState::Completed.as_str().into(),
            next_step_index: -1,
            last_update_time: Some(status::time(o.now)),
            ..CanaryStatus::default()
        });
        p.status.message = Some(message::DEPLOYMENT_COMPLETED.into());
    } else if let Some(c) = p.status.canary_status.as_mut() {
        c.observed_workload_generation = w.generation;
        c.stable_revision = w.stable_revision.clone();
    }
    // Hold the workload once its own rollout is done, so that the next template
    // change waits for a release instead of rolling out on its own.
    if !w.held && w.rolled_out {
        p.changes.push(Change::HoldWorkload);
    }
    if !w.rolled_out {
        p.requeue = Some(Duration::from_secs(2));
    }
}

fn start(o: &Observed, p: &mut Plan) {
    let Some(w) = &o.workload else { return };
    p.status.phase = Some(phase::PROGRESSING.into());
    p.status.message = Some(message::PROGRESSING.into());
    status::set_condition(
        &mut p.status,
        condition::PROGRESSING,
        true,
        reason::INITIALIZING,
        message::PROGRESSING,
        o.now,
    );
    status::clear_condition(&mut p.status, condition::SUCCEEDED);
    p.status.canary_status = Some(fresh_canary_status(o, w));
    if let Some(s) = p.status.strategy.as_mut() {
        s.memo.clear();
        s.last_action.clear();
    }
    p.changes.push(Change::HoldWorkload);
    p.notes.push(Note::normal(
        "Progressing",
        format!("new release of {} {} detected", kind_name(w.kind), w.name),
    ));
    p.requeue = Some(Duration::from_millis(200));
}

fn fresh_canary_status(o: &Observed, w: &WorkloadView) -> CanaryStatus {
    CanaryStatus {
        observed_workload_generation: w.generation,
        observed_rollout_id: o.rollout.spec.rollout_id.clone(),
        rollout_hash: Some(validate::fingerprint(&o.rollout.spec)),
        stable_revision: w.stable_revision.clone(),
        canary_revision: w.template_hash(),
        current_step_index: 0,
        current_step_state: StepState::BeforeStepUpgrade.as_str().into(),
        next_step_index: 1,
        last_update_time: Some(status::time(o.now)),
        ..CanaryStatus::default()
    }
}

fn continuous(o: &Observed, p: &mut Plan) {
    let Some(w) = &o.workload else { return };
    // Reset: restore traffic, drop the old canary; the new version starts at step 1.
    let r = routing(o);
    if let Some(r) = &r {
        push_route_removal(o, p, r);
        if o.traffic.canary_selector.is_some() && r.canary_service != r.service {
            p.changes.push(Change::DeleteCanaryService);
        }
    }
    if w.kind == WorkloadKind::Deployment && o.canary.is_some() {
        p.changes.push(Change::DeleteCanaryDeployment);
    }
    if w.kind != WorkloadKind::Deployment {
        p.changes.push(Change::HoldWorkload);
    }
    p.status.message = Some(message::CONTINUOUS.into());
    status::set_condition(
        &mut p.status,
        condition::PROGRESSING,
        true,
        reason::INITIALIZING,
        message::CONTINUOUS,
        o.now,
    );
    p.status.canary_status = Some(fresh_canary_status(o, w));
    if let Some(s) = p.status.strategy.as_mut() {
        s.memo.clear();
        s.last_action.clear();
    }
    p.notes
        .push(Note::normal("Progressing", message::CONTINUOUS));
    p.requeue = Some(Duration::from_millis(500));
}

fn begin_ending(o: &Observed, p: &mut Plan, ending: Ending) {
    let (r, msg) = match ending {
        Ending::Success => (reason::FINALISING, message::FINALISING.to_owned()),
        Ending::Cancel => (reason::CANCELLING, message::CANCELLING.to_owned()),
        Ending::Abort => (
            reason::CANCELLING,
            "The strategy aborted the release and the rollout process will be canceled".to_owned(),
        ),
        Ending::Delete | Ending::Disable => return,
    };
    if status::condition_reason(&p.status, condition::PROGRESSING) != Some(r) {
        p.notes.push(Note::normal("Progressing", &msg));
        if let Some(c) = p.status.canary_status.as_mut() {
            c.finalising_step = None;
            c.last_update_time = Some(status::time(o.now));
        }
    }
    status::set_condition(&mut p.status, condition::PROGRESSING, true, r, &msg, o.now);
    p.status.message = Some(msg);
}

fn finalise(o: &Observed, p: &mut Plan, ending: Ending) {
    if !finalise_steps(o, p, ending) {
        return;
    }
    let (succeeded, msg, r) = match ending {
        Ending::Success => (true, message::COMPLETED, reason::COMPLETED),
        Ending::Cancel => (false, message::CANCELED, reason::COMPLETED),
        Ending::Abort => (
            false,
            "The strategy aborted the release; the workload is held at the stable version: revert its template or release a new one",
            reason::ABORTED,
        ),
        Ending::Delete | Ending::Disable => return,
    };
    status::set_condition(&mut p.status, condition::PROGRESSING, false, r, msg, o.now);
    status::set_condition(
        &mut p.status,
        condition::SUCCEEDED,
        succeeded,
        "",
        "",
        o.now,
    );
    p.status.message = Some(msg.into());
    if ending == Ending::Abort {
        // Held at the stable version until the template is reverted or replaced.
        p.status.phase = Some(phase::PROGRESSING.into());
        p.notes.push(Note::warning("Aborted", msg));
    } else {
        p.status.phase = Some(phase::HEALTHY.into());
        p.notes.push(Note::normal(
            if succeeded { "Succeeded" } else { "Canceled" },
            msg,
        ));
    }
    if let (Some(c), Some(w)) = (p.status.canary_status.as_mut(), &o.workload) {
        c.current_step_state = StepState::Completed.as_str().into();
        c.finalising_step = None;
        c.observed_workload_generation = w.generation;
        c.canary_replicas = 0;
        c.canary_ready_replicas = 0;
        if succeeded {
            c.stable_revision = w
                .update_revision
                .clone()
                .unwrap_or_else(|| c.pod_template_hash.clone());
        }
    }
}

/// Works through an ending's steps; true when all are done.
fn finalise_steps(o: &Observed, p: &mut Plan, ending: Ending) -> bool {
    let Some(w) = &o.workload else { return true };
    let steps = ending.steps(w.kind);
    let r = routing(o);
    let mut c = p.status.canary_status.clone().unwrap_or_default();
    let start = c
        .finalising_step
        .as_deref()
        .and_then(|s| steps.iter().position(|x| *x == s))
        .unwrap_or(0);
    let grace = r.as_ref().map_or(0, |r| u64::from(r.grace_seconds) * 1000);
    let last = c.last_update_time.as_ref().map_or(0, status::millis);
    let mut done_all = false;
    for step in &steps[start..] {
        c.finalising_step = Some((*step).to_owned());
        let done = match *step {
            "RestoreStableService" => match &r {
                Some(_)
                    if o.traffic
                        .stable_selector
                        .as_ref()
                        .is_some_and(|s| s.contains_key(w.kind.revision_label())) =>
                {
                    p.changes.push(Change::UnpinStableService);
                    false
                }
                _ => true,
            },
            "RouteTrafficToStable" => match &r {
                Some(r) if route_present(o, r) => {
                    push_route_removal(o, p, r);
                    c.last_update_time = Some(status::time(o.now));
                    false
                }
                // Traffic moved back: give routers the grace period before pods go.
                Some(_) => o.now >= last + grace,
                None => true,
            },
            "RemoveCanaryService" => match &r {
                Some(r) if o.traffic.canary_selector.is_some() && r.canary_service != r.service => {
                    p.changes.push(Change::DeleteCanaryService);
                    false
                }
                _ => true,
            },
            "ResumeWorkload" => match (ending, w.kind) {
                (Ending::Success, WorkloadKind::Deployment) => {
                    if w.held {
                        p.changes.push(Change::ReleaseWorkload);
                        false
                    } else {
                        w.rolled_out
                            && w.stable_template
                                .as_ref()
                                .is_some_and(|t| same_template(t, &w.template))
                    }
                }
                (_, WorkloadKind::CloneSet | WorkloadKind::StatefulSet)
                    if ending != Ending::Delete && ending != Ending::Disable =>
                {
                    if w.partition.unwrap_or(0) != 0 {
                        p.changes.push(Change::SetPartition(0));
                        false
                    } else {
                        w.rolled_out
                    }
                }
                _ => {
                    if w.held {
                        p.changes.push(Change::ReleaseWorkload);
                        false
                    } else {
                        true
                    }
                }
            },
            "ReleaseWorkloadControl" => {
                if o.canary.is_some() {
                    p.changes.push(Change::DeleteCanaryDeployment);
                    false
                } else {
                    if ending == Ending::Success && !w.held {
                        p.changes.push(Change::HoldWorkload);
                    }
                    true
                }
            }
            _ => {
                done_all = true;
                true
            }
        };
        if !done {
            break;
        }
    }
    if done_all {
        c.finalising_step = None;
        if matches!(w.kind, WorkloadKind::CloneSet | WorkloadKind::StatefulSet)
            && matches!(ending, Ending::Success | Ending::Cancel | Ending::Abort)
        {
            p.changes.push(Change::HoldWorkload);
        }
    } else {
        p.requeue = Some(Duration::from_millis(grace.clamp(500, 5_000)));
    }
    if p.status.canary_status.is_some() || !done_all {
        p.status.canary_status = Some(c);
    }
    done_all
}

fn route_present(o: &Observed, r: &Routing) -> bool {
    match &r.router {
        Router::Nginx { .. } => o.traffic.canary_ingress.is_some(),
        Router::Gateway { .. } => o
            .traffic
            .http_route
            .as_ref()
            .and_then(|h| h.pointer("/spec/rules").and_then(|v| v.as_array()).cloned())
            .is_some_and(|rules| traffic::http_route_rules(&rules, r, None) != rules),
    }
}

fn push_route_removal(o: &Observed, p: &mut Plan, r: &Routing) {
    match &r.router {
        Router::Nginx { .. } => {
            if o.traffic.canary_ingress.is_some() {
                p.changes.push(Change::DeleteCanaryIngress);
            }
        }
        Router::Gateway { .. } => {
            if let Some(rules) = o
                .traffic
                .http_route
                .as_ref()
                .and_then(|h| h.pointer("/spec/rules").and_then(|v| v.as_array()).cloned())
            {
                let restored = traffic::http_route_rules(&rules, r, None);
                if restored != rules {
                    p.changes.push(Change::SetHttpRouteRules(restored));
                }
            }
        }
    }
}

fn kind_name(k: WorkloadKind) -> &'static str {
    match k {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::CloneSet => "CloneSet",
        WorkloadKind::StatefulSet => "StatefulSet",
    }
}

fn rolling(o: &Observed, p: &mut Plan, decided: Option<&Decided>) {
    let Some(w) = &o.workload else { return };
    let Some(decided) = decided else {
        p.requeue = Some(Duration::from_secs(1));
        return;
    };
    let (decision, module, digest) = match decided {
        Decided::Deferred { module, why } => {
            tracing::debug!(module, why, "no decision yet");
            if w.kind == WorkloadKind::Deployment {
                p.changes.push(Change::HoldWorkload);
            }
            p.requeue = Some(Duration::from_secs(1));
            return;
        }
        Decided::Failed {
            module,
            reason,
            message,
        } => {
            let msg = format!(
                "strategy module {module} failed ({reason}): {message}; the rollout waits until it decides again"
            );
            let already = p.status.conditions.iter().any(|c| {
                c.type_ == condition::STRATEGY_READY && c.status == "False" && c.reason == *reason
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
            if w.kind == WorkloadKind::Deployment {
                p.changes.push(Change::HoldWorkload);
            }
            p.requeue = Some(Duration::from_secs(30));
            return;
        }
        Decided::Decision {
            decision,
            module,
            digest,
        } => (decision, module, digest),
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
    p.status.strategy = Some(StrategyStatus {
        module: module.clone(),
        digest: digest.clone(),
        memo: decision.memo.clone(),
        last_action: decision.action.name().to_owned(),
    });

    let steps_total = written_steps(o).len();
    let progress = progress(o, w, &p.status);
    let recorded = status::progress_of(&p.status);
    if progress.step != recorded.step {
        p.notes.push(Note::normal(
            "StepJumped",
            format!(
                "nextStepIndex was set to {}: from step {} to step {} of {steps_total}",
                progress.step, recorded.step, progress.step
            ),
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

    let total = w.replicas;
    let pods = decision.target.replicas.resolve(total).min(total);
    let r = routing(o);
    let canary = canary_counts(o, w);
    let failure_threshold = o
        .rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.failure_threshold.as_ref())
        .and_then(|t| spec::replicas(t).ok());
    let pods_ready = canary.desired == pods
        && stepper::batch_ready(Replicas::Count(pods), total, canary, failure_threshold);
    let wants_traffic = r.is_some()
        && (decision.target.traffic.weight.is_some()
            || !decision.target.traffic.matches.is_empty());
    let route_matches = match &r {
        Some(r) if wants_traffic => route_is(o, r, &decision.target.traffic),
        Some(r) => !route_present(o, r),
        None => true,
    };
    let grace = r.as_ref().map_or(0, |r| u64::from(r.grace_seconds) * 1000);
    let seen = Convergence {
        pods_ready,
        traffic_ready: route_matches && o.now >= progress.last_update_time + grace,
    };
    let next = stepper::next(progress, decision, seen, o.now);

    // Pods first.
    match w.kind {
        WorkloadKind::Deployment => {
            p.changes.push(Change::HoldWorkload);
            p.changes
                .push(Change::EnsureCanaryDeployment { replicas: pods });
        }
        WorkloadKind::CloneSet | WorkloadKind::StatefulSet => {
            p.changes.push(Change::SetPartition(total - pods))
        }
    }
    let mut next = next;
    if let Some(r) = &r {
        let canary_revision = match w.kind {
            WorkloadKind::Deployment => o.canary.as_ref().and_then(|c| c.pod_template_hash.clone()),
            _ => w.update_revision.clone(),
        };
        // The stable Service keeps to the stable pods from the first step on, so canary
        // pods get no traffic but what the canary route gives them.
        if r.canary_service != r.service
            && o.traffic
                .stable_selector
                .as_ref()
                .is_some_and(|s| s.get(w.kind.revision_label()) != Some(&w.stable_revision))
        {
            p.changes.push(Change::PinStableService {
                revision: w.stable_revision.clone(),
            });
        }
        let routing_now = matches!(
            next.state,
            StepState::StepTrafficRouting
                | StepState::StepMetricsAnalysis
                | StepState::StepPaused
                | StepState::StepReady
        );
        if routing_now && wants_traffic {
            if let Some(revision) = canary_revision.clone() {
                if r.canary_service != r.service
                    && o.traffic
                        .canary_selector
                        .as_ref()
                        .is_none_or(|s| s.get(w.kind.revision_label()) != Some(&revision))
                {
                    p.changes.push(Change::EnsureCanaryService { revision });
                }
                if !route_matches {
                    p.changes.push(route_change(o, r, &decision.target.traffic));
                    next.last_update_time = o.now;
                }
            }
        } else if !wants_traffic && route_present(o, r) {
            // A step without traffic: take the previous step's canary route down first.
            push_route_removal(o, p, r);
            next.last_update_time = o.now;
        }
        if next.state == StepState::StepTrafficRouting {
            p.requeue = Some(Duration::from_millis(grace.max(500)));
        }
    }

    // Status.
    let reason_now = if o.rollout.spec.strategy.paused {
        reason::PAUSED
    } else {
        reason::IN_ROLLING
    };
    status::set_condition(
        &mut p.status,
        condition::PROGRESSING,
        true,
        reason_now,
        &decision.message,
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
    if decision.action.name() != previous_action && matches!(decision.action, Action::Pause { .. })
    {
        p.notes
            .push(Note::normal("Paused", decision.message.clone()));
    }
    c.current_step_index = i32::try_from(next.step).unwrap_or(i32::MAX);
    c.current_step_state = next.state.as_str().into();
    // A nextStepIndex a person wrote stays until the step moves: it is their jump.
    let asked = c.next_step_index;
    let asked_is_a_step = asked >= 1 && asked as usize <= steps_total;
    c.next_step_index = if next.step == recorded.step && asked_is_a_step {
        asked
    } else {
        stepper::next_step_index(next.step, steps_total)
    };
    c.last_update_time = Some(status::time(next.last_update_time.max(1)));
    c.canary_replicas = i32::try_from(pods).unwrap_or(i32::MAX);
    c.canary_ready_replicas = i32::try_from(canary.ready).unwrap_or(i32::MAX);
    c.observed_workload_generation = w.generation;
    c.canary_revision = w.template_hash();
    if let Some(hash) = match w.kind {
        WorkloadKind::Deployment => o.canary.as_ref().and_then(|c| c.pod_template_hash.clone()),
        _ => w.update_revision.clone(),
    } {
        c.pod_template_hash = hash;
    }
    p.status.canary_status = Some(c);

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
}

fn describe_traffic(t: &Traffic) -> String {
    match (t.weight, t.matches.is_empty()) {
        (Some(w), true) => w.to_string(),
        (Some(w), false) => format!("{w} and {} request routes", t.matches.len()),
        (None, false) => format!("{} request routes", t.matches.len()),
        (None, true) => "none".into(),
    }
}

fn route_is(o: &Observed, r: &Routing, t: &Traffic) -> bool {
    match &r.router {
        Router::Nginx { .. } => o
            .traffic
            .canary_ingress
            .as_ref()
            .is_some_and(|a| traffic::canary_annotations_of(a) == traffic::nginx_annotations(t)),
        Router::Gateway { .. } => o
            .traffic
            .http_route
            .as_ref()
            .and_then(|h| h.pointer("/spec/rules").and_then(|v| v.as_array()).cloned())
            .is_some_and(|rules| traffic::http_route_rules(&rules, r, Some(t)) == rules),
    }
}

fn route_change(o: &Observed, r: &Routing, t: &Traffic) -> Change {
    match &r.router {
        Router::Nginx { .. } => Change::EnsureCanaryIngress(traffic::nginx_annotations(t)),
        Router::Gateway { .. } => {
            let rules = o
                .traffic
                .http_route
                .as_ref()
                .and_then(|h| h.pointer("/spec/rules").and_then(|v| v.as_array()).cloned())
                .unwrap_or_default();
            Change::SetHttpRouteRules(traffic::http_route_rules(&rules, r, Some(t)))
        }
    }
}

/// Records the check of a module's configuration made while no release runs: a
/// Rollout naming a module learns at once that its configuration is wrong.
pub fn config_checked(p: &mut Plan, check: &Result<String, (String, String)>, now: u64) {
    match check {
        Ok(module) => {
            let failed = p
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STRATEGY_READY && c.status == "False");
            if failed {
                status::set_condition(
                    &mut p.status,
                    condition::STRATEGY_READY,
                    true,
                    "ConfigAccepted",
                    &format!("{module} accepts its configuration"),
                    now,
                );
            }
        }
        Err((reason, message)) => {
            let already = p
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STRATEGY_READY && c.message == *message);
            status::set_condition(
                &mut p.status,
                condition::STRATEGY_READY,
                false,
                reason,
                message,
                now,
            );
            if !already {
                p.notes.push(Note::warning("StrategyFailed", message));
            }
        }
    }
}
