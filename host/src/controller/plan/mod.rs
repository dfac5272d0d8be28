//! The pure middle of a reconcile: from what was observed and the strategy's
//! decision, the writes to make (in order), the status to write, the events to
//! publish and when to look again. No I/O; table-tested over fixture files.

mod batch;
mod rolling;
#[cfg(test)]
mod tests;

use std::time::Duration;

use super::finalise::{self, Ending};
use super::observed::Observed;
use super::status::{self, condition, message, phase, reason};
use super::write::{Target, Write};
use crate::kruise::v1alpha1::{CanaryStatus, RELEASE_LOG, ReleaseRecord, RolloutStatus};
use crate::kruise::validate;
use crate::strategy::model::{Decision, StepState};
use crate::traffic::services;
use crate::workload::{Style, WORKLOAD_TYPE_LABEL, WorkloadView, same_template};

pub use rolling::{Sighting, convergence, strategy_input};

/// The finalizer a governed Rollout carries.
pub const FINALIZER: &str = "rollouts.kruise.io/rollout";

/// The annotation an operator (or a tool: `sluice rollout abort`, a dashboard)
/// writes to ask for what Kruise's API has no field for: `abort`, `retry` or
/// `promote-full`, optionally followed by `@` and anything that makes the request
/// unique (the CLI adds the time). The controller acts on a value once, and records
/// it in `status.strategy.handledRequest`.
pub const REQUEST_ANNOTATION: &str = "rollout.sluice.dev/request";

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop the release: traffic back to the stable version, the canary removed, the
    /// workload held at the stable version (Argo's abort).
    Abort,
    /// Start an aborted release again at step 1.
    Retry,
    /// Skip the remaining steps: the release completes (Argo's `promote --full`).
    PromoteFull,
}

impl Request {
    /// Reads an annotation value: `abort`, `retry@2026-12-03T10:00:00Z`…
    pub fn parse(value: &str) -> Option<Request> {
        match value.split('@').next().unwrap_or("").trim() {
            "abort" => Some(Request::Abort),
            "retry" => Some(Request::Retry),
            "promote-full" => Some(Request::PromoteFull),
            _ => None,
        }
    }

    /// The verb, as written in the annotation.
    pub fn name(self) -> &'static str {
        match self {
            Request::Abort => "abort",
            Request::Retry => "retry",
            Request::PromoteFull => "promote-full",
        }
    }
}

/// The request annotation's value, when the controller has not handled it yet.
fn pending_request(o: &Observed) -> Option<String> {
    let value = o
        .rollout
        .metadata
        .annotations
        .as_ref()?
        .get(REQUEST_ANNOTATION)?;
    let handled = status_of(o)
        .strategy
        .map(|s| s.handled_request)
        .unwrap_or_default();
    (*value != handled).then(|| value.clone())
}

/// Acts on a pending request where the stage allows it; otherwise says why not.
/// Either way the request is recorded as handled. Returns whether it was acted on.
fn handle_request(o: &Observed, p: &mut Plan, stage: &Stage) -> bool {
    let Some(value) = pending_request(o) else {
        return false;
    };
    let request = Request::parse(&value);
    let ignored = match (request, stage) {
        (Some(Request::Abort), Stage::Rolling) => {
            p.status
                .strategy
                .get_or_insert_with(Default::default)
                .last_action = REQUESTED_ABORT.into();
            p.notes.push(Note::warning(
                "AbortRequested",
                format!("{REQUEST_ANNOTATION}: {value}: traffic back to the stable version, the canary removed"),
            ));
            begin_ending(o, p, Ending::Abort);
            finalise(o, p, Ending::Abort);
            None
        }
        (Some(Request::PromoteFull), Stage::Rolling) => {
            let steps = written_steps(o).len();
            p.notes.push(Note::normal(
                "PromotedFully",
                format!("{REQUEST_ANNOTATION}: {value}: the remaining steps are skipped"),
            ));
            if let Some(c) = p.status.canary_status.as_mut() {
                c.current_step_index = i32::try_from(steps).unwrap_or(i32::MAX);
                c.current_step_state = StepState::Completed.as_str().into();
                c.next_step_index = -1;
            }
            begin_ending(o, p, Ending::Success);
            finalise(o, p, Ending::Success);
            None
        }
        (Some(Request::Retry), Stage::Aborted) => {
            p.notes.push(Note::normal(
                "RetryRequested",
                format!("{REQUEST_ANNOTATION}: {value}: the release starts again at step 1"),
            ));
            start(o, p);
            None
        }
        (Some(r), _) => Some(format!(
            "{} applies to {} only",
            r.name(),
            match r {
                Request::Retry => "an aborted release",
                Request::Abort | Request::PromoteFull => "a release under way",
            }
        )),
        (None, _) => Some("not a request; use abort, retry or promote-full".to_owned()),
    };
    if let Some(why) = &ignored {
        p.notes.push(Note::warning(
            "RequestIgnored",
            format!("{REQUEST_ANNOTATION}: {value}: {why}"),
        ));
    }
    let s = p.status.strategy.get_or_insert_with(Default::default);
    s.handled_request = value;
    s.request_outcome = match &ignored {
        None => "done".to_owned(),
        Some(why) => format!("ignored: {why}"),
    };
    ignored.is_none()
}

/// `status.strategy.lastAction` of a release an operator aborted.
pub const REQUESTED_ABORT: &str = "abort (requested)";

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
    /// Writes, in the order they must be made.
    pub writes: Vec<Write>,
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
        /// The metric answers it was given, by query, as the decision log keeps
        /// them.
        metrics: std::collections::BTreeMap<String, String>,
    },
    /// The module cannot be asked yet (it is compiling, or its namespace's share of
    /// the sandbox is busy): nothing changes, the rollout is looked at again soon.
    Deferred {
        /// `builtin:steps`, …
        module: String,
        /// Why.
        why: String,
    },
    /// The module failed, or cannot be used: the rollout pauses.
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
    /// The spec breaks a rule (the refusal, in Kruise's words); nothing is changed.
    Invalid(String),
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
    /// A release runs, and the workload's controller has not yet seen its spec:
    /// its revisions are those of the spec before (a template changed back would
    /// read as yet another one). Nothing is decided until it has, as Kruise waits.
    CatchingUp,
}

impl Stage {
    /// Whether this stage asks the strategy module for a decision.
    pub fn decides(&self) -> bool {
        *self == Stage::Rolling
    }
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
    let mut errors = validate::validate(&o.rollout, &others, o.validation);
    let reason = progressing_reason(o);
    let progressing = reason.is_some();
    // While a release runs, the workload and the traffic routing may not change (the
    // webhook refuses it; where none ran, the release stops here).
    let fingerprint_changed = progressing
        && status_of(o)
            .strategy
            .as_ref()
            .map(|s| s.release_fingerprint.as_str())
            .is_some_and(|h| !h.is_empty() && !validate::same_fingerprint(h, &o.rollout.spec));
    if fingerprint_changed {
        errors.push(validate::FieldError::forbidden(
            "Spec.ObjectRef, Spec.Strategy.Canary.TrafficRoutings",
            "Rollout 'ObjectRef' and 'Strategy.Canary.TrafficRoutings' fields are immutable while the rollout is progressing; revert the change, or finish the release first",
        ));
    }
    if !errors.is_empty() {
        return Stage::Invalid(validate::aggregate(&errors));
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
        Some(_) if w.kind.style() == Style::Partition && !w.status_observed => Stage::CatchingUp,
        Some(r) => {
            if rolled_back(o, w) {
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
        .is_some_and(|s| s.last_action == "abort" || s.last_action == REQUESTED_ABORT)
}

fn abort_requested(p: &Plan) -> bool {
    p.status
        .strategy
        .as_ref()
        .is_some_and(|s| s.last_action == REQUESTED_ABORT)
}

/// The workload's template went back to the stable one mid-release. A partition
/// workload compares its update revision with the stable revision the release
/// recorded: once a step updates every pod, the workload's own current revision
/// is the new one, and that is a release at its last step, not a rollback.
fn rolled_back(o: &Observed, w: &WorkloadView) -> bool {
    let recorded = status_of(o)
        .canary_status
        .map(|c| c.stable_revision)
        .filter(|s| !s.is_empty());
    match (w.kind.style(), recorded, &w.update_revision) {
        (Style::Partition, Some(stable), Some(update)) => *update == stable,
        _ => !w.has_new_template(),
    }
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

fn rollout_target(o: &Observed) -> Target {
    Target::new(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        o.namespace(),
        o.name(),
    )
}

/// The write adding (or removing) the Rollout's finalizer, made against the
/// version read, so that it never undoes a concurrent change.
fn finalizer(o: &Observed, add: bool) -> Write {
    let mut finalizers: Vec<String> = o.rollout.metadata.finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != FINALIZER);
    if add {
        finalizers.push(FINALIZER.into());
    }
    Write::Patch {
        target: rollout_target(o),
        patch: serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": o.rollout.metadata.resource_version,
        }}),
        // Gone already: nothing holds it.
        missing_ok: !add,
    }
}

/// The plan for this reconcile.
pub fn plan(o: &Observed, stage: Stage, decided: Option<&Decided>) -> Plan {
    let mut p = Plan {
        writes: Vec::new(),
        status: status_of(o),
        notes: Vec::new(),
        requeue: None,
    };
    p.status.observed_generation = o.rollout.metadata.generation;
    let being_deleted = stage == Stage::Deleting;
    let hash = (!being_deleted).then(|| plan_hash_annotation(o)).flatten();
    let governed = o
        .rollout
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    // An operator's request is answered in any stage, so that one made at the wrong
    // time is not acted on later, when it no longer means what it meant.
    let acted = handle_request(o, &mut p, &stage);
    match stage {
        Stage::Deleting => deleting(o, &mut p, governed),
        Stage::Invalid(msg) => invalid(o, &mut p, &msg),
        Stage::Disabled => disabled(o, &mut p),
        stage => {
            status::clear_condition(&mut p.status, condition::VALID);
            if !governed {
                p.writes.push(finalizer(o, true));
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
                _ if acted => {}
                Stage::Aborted => {
                    if let Some(w) = &o.workload {
                        p.writes.extend(w.kind.hold(o, w));
                    }
                }
                Stage::Rolling => rolling::rolling(o, &mut p, decided),
                Stage::CatchingUp => p.requeue = Some(Duration::from_millis(500)),
                Stage::Deleting | Stage::Invalid(_) | Stage::Disabled => {
                    unreachable!("handled above")
                }
            }
        }
    }
    if !being_deleted {
        follow_workload(o, &mut p);
    }
    // Kruise's webhooks select the workloads Rollouts release by this label.
    if let Some(w) = &o.workload
        && !being_deleted
        && w.labels.get(WORKLOAD_TYPE_LABEL).map(String::as_str) != Some(w.kind.workload_type())
    {
        p.writes.push(w.patch(
            o.namespace(),
            serde_json::json!({"metadata": {"labels": {WORKLOAD_TYPE_LABEL: w.kind.workload_type()}}}),
        ));
    }
    // Last: the writes above may be made against the version read.
    p.writes.extend(hash);
    p
}

/// The write of Kruise's plan hash annotation, when the Rollout's is not current.
fn plan_hash_annotation(o: &Observed) -> Option<Write> {
    let hash = crate::kruise::hash::plan_hash(&o.rollout)?;
    let written = o
        .rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::kruise::hash::ANNOTATION));
    (written != Some(&hash)).then(|| Write::Patch {
        target: rollout_target(o),
        patch: serde_json::json!({"metadata": {"annotations": {crate::kruise::hash::ANNOTATION: hash}}}),
        missing_ok: true,
    })
}

fn invalid(o: &Observed, p: &mut Plan, msg: &str) {
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
        msg,
        o.now,
    );
    if !already {
        p.notes.push(Note::warning("InvalidSpec", msg));
    }
    if p.status.phase.is_none() {
        p.status.phase = Some(phase::INITIAL.into());
    }
}

fn deleting(o: &Observed, p: &mut Plan, governed: bool) {
    if !governed {
        return;
    }
    // A new ending starts from its first step, whatever an earlier one (an abort
    // that keeps the workload held) left recorded.
    if previous_phase(o) != Some(phase::TERMINATING) {
        clear_finalising_step(p);
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
        p.writes.push(finalizer(o, false));
        return;
    }
    if finalise::run(o, p, Ending::Delete) {
        status::set_condition(
            &mut p.status,
            condition::TERMINATING,
            false,
            reason::COMPLETED,
            "Rollout is terminated",
            o.now,
        );
        p.writes.push(finalizer(o, false));
        p.notes.push(Note::normal(
            "Terminated",
            "workload released; the rollout is removed",
        ));
    }
}

fn disabled(o: &Observed, p: &mut Plan) {
    let was_progressing = progressing_reason(o).is_some();
    if was_progressing && o.workload.is_some() {
        if previous_phase(o) != Some(phase::DISABLING) {
            clear_finalising_step(p);
        }
        p.status.phase = Some(phase::DISABLING.into());
        p.status.message = Some(message::DISABLING.into());
        if !finalise::run(o, p, Ending::Disable) {
            return;
        }
    }
    if p.status.phase.as_deref() != Some(phase::DISABLED) {
        p.notes.push(Note::normal("Disabled", message::DISABLED));
    }
    p.status.phase = Some(phase::DISABLED.into());
    p.status.message = Some(message::DISABLED.into());
    status::clear_condition(&mut p.status, condition::PROGRESSING);
    // The last release's canary status stays, as Kruise keeps it: enabled again,
    // the Rollout is healthy without reporting a first deployment.
    if let Some(w) = &o.workload {
        p.writes.extend(w.kind.release(o, w));
    }
    // As Kruise: the finalizer stays on a disabled Rollout (and is put on one
    // created disabled); deleting it is answered as any deletion.
    if !o
        .rollout
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
    {
        p.writes.push(finalizer(o, true));
    }
}

/// The phase the Rollout's status had when it was read.
fn previous_phase(o: &Observed) -> Option<&str> {
    o.rollout.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn clear_finalising_step(p: &mut Plan) {
    if let Some(c) = p.status.canary_status.as_mut() {
        c.finalising_step = None;
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
    // As Kruise: nothing is recorded of a workload whose status does not yet
    // describe its spec (a StatefulSet's revisions come with its status).
    if p.status.canary_status.is_none() && !w.status_observed {
        p.requeue = Some(Duration::from_secs(1));
    } else if p.status.canary_status.is_none() {
        let steps = written_steps(o).len();
        let (stable_revision, pod_template_hash) = w.kind.first_status_revisions(o, w);
        // As Kruise: the first deployment's status reads as a completed release,
        // with its id and the plan's hash, so a tool can tell it is done.
        p.status.canary_status = Some(CanaryStatus {
            observed_workload_generation: w.generation,
            observed_rollout_id: Some(rollout_id(o, w)),
            rollout_hash: crate::kruise::hash::plan_hash(&o.rollout),
            stable_revision,
            pod_template_hash,
            canary_revision: w.template_hash(),
            current_step_index: i32::try_from(steps).unwrap_or(i32::MAX),
            current_step_state: StepState::Completed.as_str().into(),
            next_step_index: -1,
            last_update_time: Some(status::time(o.now)),
            ..CanaryStatus::default()
        });
        p.status.message = Some(message::DEPLOYMENT_COMPLETED.into());
    }
    // Nothing holds the workload between releases: the admission webhook holds it
    // when its template changes. One it held without a new template (a new
    // `rollouts.kruise.io/rollout-id` alone) has no release to wait for: its mark
    // goes first, then the hold, so the webhook lets the second write through. Only
    // once the workload's controller has seen it at rest (a template change its
    // status does not show yet looks the same), and only the version read: the
    // mark's removal is refused if a new template came in between.
    if w.rolled_out
        && let Some(unmark) = w.unmark(o.namespace(), true)
    {
        p.writes.push(unmark);
        p.writes.extend(w.kind.release(o, w));
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
    new_release(o, p);
    p.writes.extend(w.kind.hold(o, w));
    p.notes.push(Note::normal(
        "Progressing",
        format!("new release of {} {} detected", w.kind.kind(), w.name),
    ));
    p.requeue = Some(Duration::from_millis(200));
}

/// A release starts afresh: the module's memo of the last one is forgotten, and what
/// may not change until it ends is recorded.
fn new_release(o: &Observed, p: &mut Plan) {
    // A release still running is replaced by this one (a continuous release).
    end_release(o, p, "Replaced");
    let s = p.status.strategy.get_or_insert_with(Default::default);
    s.memo.clear();
    s.last_action.clear();
    s.decisions.clear();
    // The previous release's last step says nothing of this one's.
    s.step_replicas = None;
    s.release_fingerprint = validate::fingerprint(&o.rollout.spec);
    if let Some(w) = &o.workload {
        s.releases.push(ReleaseRecord {
            revision: w.template_hash(),
            images: crate::workload::images(&w.template),
            module: o.module.name.clone(),
            started: rfc3339(o.now),
            ..ReleaseRecord::default()
        });
        let excess = s.releases.len().saturating_sub(RELEASE_LOG);
        s.releases.drain(..excess);
    }
}

/// Records how the running release ended, if one runs.
fn end_release(o: &Observed, p: &mut Plan, outcome: &str) {
    let Some(s) = p.status.strategy.as_mut() else {
        return;
    };
    let digest = s.digest.clone();
    if let Some(r) = s.releases.last_mut().filter(|r| r.outcome.is_empty()) {
        r.outcome = outcome.to_owned();
        r.ended = rfc3339(o.now);
        r.digest = digest;
    }
}

/// A time of the controller's clock (Unix milliseconds) in RFC 3339.
pub(crate) fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The release's id as Kruise records it: the Rollout's `spec.rolloutID`, else
/// the workload's `rollouts.kruise.io/rollout-id` label, else its canary revision.
fn rollout_id(o: &Observed, w: &WorkloadView) -> String {
    o.rollout
        .spec
        .rollout_id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| batch::rollout_id(w))
}

/// As Kruise at every reconcile: while the status describes the workload's
/// template, it follows the workload's generation and release id.
fn follow_workload(o: &Observed, p: &mut Plan) {
    let (Some(c), Some(w)) = (p.status.canary_status.as_mut(), &o.workload) else {
        return;
    };
    if !c.canary_revision.is_empty() && c.canary_revision == w.template_hash() {
        c.observed_workload_generation = w.generation;
        c.observed_rollout_id = Some(rollout_id(o, w));
    }
}

fn fresh_canary_status(o: &Observed, w: &WorkloadView) -> CanaryStatus {
    CanaryStatus {
        observed_workload_generation: w.generation,
        observed_rollout_id: Some(rollout_id(o, w)),
        rollout_hash: crate::kruise::hash::plan_hash(&o.rollout),
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
    if let Some(r) = &o.routing {
        p.writes.extend(r.router.remove(o, r));
        p.writes.extend(services::delete_canary(o, r));
    }
    p.writes.extend(w.kind.reset(o, w));
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
    new_release(o, p);
    p.notes
        .push(Note::normal("Progressing", message::CONTINUOUS));
    p.requeue = Some(Duration::from_millis(500));
}

fn begin_ending(o: &Observed, p: &mut Plan, ending: Ending) {
    let (r, msg) = match ending {
        Ending::Success => (reason::FINALISING, message::FINALISING.to_owned()),
        Ending::Cancel => (reason::CANCELLING, message::CANCELLING.to_owned()),
        Ending::Abort if abort_requested(p) => (
            reason::CANCELLING,
            "The release was aborted by request and the rollout process will be canceled"
                .to_owned(),
        ),
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
            // As Kruise: a rollback's status describes the template rolled back to.
            if ending == Ending::Cancel
                && let Some(w) = &o.workload
            {
                c.canary_revision = w.template_hash();
            }
        }
    }
    status::set_condition(&mut p.status, condition::PROGRESSING, true, r, &msg, o.now);
    p.status.message = Some(msg);
}

fn finalise(o: &Observed, p: &mut Plan, ending: Ending) {
    if !finalise::run(o, p, ending) {
        return;
    }
    let (succeeded, msg, r) = match ending {
        Ending::Success => (true, message::COMPLETED, reason::COMPLETED),
        Ending::Cancel => (false, message::CANCELED, reason::COMPLETED),
        Ending::Abort if abort_requested(p) => (
            false,
            "The release was aborted by request; the workload is held at the stable version: retry it (rollout.sluice.dev/request: retry), revert its template or release a new one",
            reason::ABORTED,
        ),
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
    end_release(
        o,
        p,
        match ending {
            Ending::Success => "Succeeded",
            Ending::Cancel => "Canceled",
            _ => "Aborted",
        },
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
        // As Kruise: the counts and the stable revision stay as the release left
        // them, until the next release starts afresh; a rollback leaves the step's
        // state where the release was.
        if ending != Ending::Cancel {
            c.current_step_state = StepState::Completed.as_str().into();
        }
        c.observed_workload_generation = w.generation;
    }
}

/// Records the check of a module's configuration made while no release runs: a
/// Rollout naming a module learns at once that its configuration is wrong.
pub fn config_checked(p: &mut Plan, check: &Result<String, crate::modules::Refusal>, now: u64) {
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
        Err(refusal) => {
            let already = p
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::STRATEGY_READY && c.message == refusal.message);
            status::set_condition(
                &mut p.status,
                condition::STRATEGY_READY,
                false,
                &refusal.reason,
                &refusal.message,
                now,
            );
            if !already {
                p.notes
                    .push(Note::warning("StrategyFailed", &refusal.message));
            }
        }
    }
}
