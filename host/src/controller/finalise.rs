//! How a release ends, in Kruise's finalisation steps: traffic back first, the
//! canary's resources released after, each step done before the next starts. The
//! step reached is kept in `status.canaryStatus.finalisingStep`, as Kruise names it.

use std::time::Duration;

use super::observed::Observed;
use super::plan::Plan;
use super::status;
use crate::traffic::services;
use crate::workload::StepOutcome;

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

/// One step of finalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalisingStep {
    /// The stable Service selects every pod again.
    RestoreStableService,
    /// The canary route is gone, and its grace period passed.
    RouteTrafficToStable,
    /// The canary Service is gone.
    RemoveCanaryService,
    /// The workload goes on (or back) by itself.
    ResumeWorkload,
    /// The release lets go of the workload (the canary workload is gone).
    ReleaseWorkloadControl,
    /// Every step is done.
    End,
}

impl FinalisingStep {
    /// Every step.
    pub const ALL: [FinalisingStep; 6] = [
        FinalisingStep::RestoreStableService,
        FinalisingStep::RouteTrafficToStable,
        FinalisingStep::RemoveCanaryService,
        FinalisingStep::ResumeWorkload,
        FinalisingStep::ReleaseWorkloadControl,
        FinalisingStep::End,
    ];

    /// Kruise's name of the step.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalisingStep::RestoreStableService => "RestoreStableService",
            // Kruise's value carries the type's prefix here, and only here.
            FinalisingStep::RouteTrafficToStable => "FinalisingStepRouteTrafficToStable",
            FinalisingStep::RemoveCanaryService => "RemoveCanaryService",
            FinalisingStep::ResumeWorkload => "ResumeWorkload",
            FinalisingStep::ReleaseWorkloadControl => "ReleaseWorkloadControl",
            FinalisingStep::End => "END",
        }
    }

    /// The step Kruise calls `name`.
    pub fn parse(name: &str) -> Option<FinalisingStep> {
        // Earlier versions wrote the step without the prefix: a release finalising across
        // an upgrade goes on from where it was.
        if name == "RouteTrafficToStable" {
            return Some(FinalisingStep::RouteTrafficToStable);
        }
        FinalisingStep::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Runs the step of `ending` the status records (the first when it records none)
/// and names the next once it is done; true when all are done. The step reached and
/// its writes go into `p`.
pub fn run(o: &Observed, p: &mut Plan, ending: Ending) -> bool {
    let Some(w) = &o.workload else { return true };
    let steps = w.kind.ending_steps(ending);
    let routing = o.routing.as_ref();
    let mut c = p.status.canary_status.clone().unwrap_or_default();
    let recorded = c
        .finalising_step
        .as_deref()
        .and_then(FinalisingStep::parse)
        .and_then(|s| steps.iter().position(|x| *x == s));
    // First the mark the admission webhook holds the workload by: once it is gone,
    // the workload may be let go of.
    p.writes.extend(w.unmark(o.namespace(), false));
    // As Kruise: one step runs a pass, and the next is named when it is done, so
    // the status shows each step. A step this ending does not have (or none yet)
    // starts it from the first.
    let at = recorded.unwrap_or(0);
    c.finalising_step = Some(steps[at].as_str().to_owned());
    let grace = routing.map_or(0, |r| r.grace_ms());
    let last = c.last_update_time.as_ref().map_or(0, status::millis);
    let outcome = match steps[at] {
        FinalisingStep::RestoreStableService => match routing {
            Some(r) => pending_unless_empty(services::unpin_stable(o, r, w)),
            None => StepOutcome::done(),
        },
        FinalisingStep::RouteTrafficToStable => match routing {
            Some(r) if r.router.present(&o.traffic, r) => {
                c.last_update_time = Some(status::time(o.now));
                StepOutcome::pending(r.router.remove(o, r))
            }
            // Traffic moved back: give routers the grace period before pods go.
            Some(_) if o.now < last + grace => StepOutcome::pending(Vec::new()),
            _ => StepOutcome::done(),
        },
        FinalisingStep::RemoveCanaryService => match routing {
            Some(r) => pending_unless_empty(services::delete_canary(o, r)),
            None => StepOutcome::done(),
        },
        FinalisingStep::ResumeWorkload => w.kind.resume(o, w, ending),
        FinalisingStep::ReleaseWorkloadControl => w.kind.release_control(o, w, ending),
        FinalisingStep::End => StepOutcome::done(),
    };
    p.writes.extend(outcome.writes);
    let next = steps.get(at + 1).copied();
    if outcome.done
        && let Some(next) = next
    {
        c.finalising_step = Some(next.as_str().to_owned());
    }
    // Done when the last step (`END`) is reached; the status keeps `END`, as
    // Kruise's does, until the next release.
    let done_all = outcome.done && next.is_none_or(|n| n == FinalisingStep::End);
    if done_all {
        p.writes.extend(w.kind.after_ending(o, w, ending));
    } else if outcome.done {
        p.requeue = Some(Duration::from_millis(100));
    } else {
        p.requeue = Some(Duration::from_millis(grace.clamp(500, 5_000)));
    }
    if p.status.canary_status.is_some() || !done_all {
        p.status.canary_status = Some(c);
    }
    done_all
}

fn pending_unless_empty(writes: Vec<super::write::Write>) -> StepOutcome {
    if writes.is_empty() {
        StepOutcome::done()
    } else {
        StepOutcome::pending(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_kruises() {
        for step in FinalisingStep::ALL {
            assert_eq!(FinalisingStep::parse(step.as_str()), Some(step));
        }
        assert_eq!(FinalisingStep::End.as_str(), "END");
        assert_eq!(
            FinalisingStep::RouteTrafficToStable.as_str(),
            "FinalisingStepRouteTrafficToStable"
        );
        assert_eq!(
            FinalisingStep::parse("RouteTrafficToStable"),
            Some(FinalisingStep::RouteTrafficToStable)
        );
        assert_eq!(FinalisingStep::parse("Bogus"), None);
    }
}
