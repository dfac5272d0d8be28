//! Kruise's step rules, one table row each.

use sluice_strategy::{
    Action, Observation, ReplicaCounts, Replicas, RequestRoute, Step, StepState, Traffic,
};

use super::{COMPLETED_MESSAGE, PAUSED_MESSAGE, decide};

fn step(weight: Option<u8>, replicas: Option<Replicas>, pause: Option<u32>) -> Step {
    Step {
        traffic_weight: weight,
        replicas,
        matches: Vec::<RequestRoute>::new(),
        pause_seconds: pause,
    }
}

fn observe(steps: Vec<Step>, current: u32, state: StepState) -> Observation {
    Observation {
        rollout: "default/demo".into(),
        steps,
        current_step: current,
        step_state: state,
        last_update_time: 1_000_000,
        approved: state == StepState::StepReady,
        paused: false,
        traffic_routing: true,
        failure_threshold: None,
        stable_revision: "v1".into(),
        canary_revision: "v2".into(),
        workload: ReplicaCounts {
            desired: 5,
            ready: 5,
            updated: 0,
            failed: 0,
        },
        canary: ReplicaCounts::zero(),
        traffic: Traffic {
            weight: None,
            matches: Vec::new(),
        },
        now: 1_000_000,
        config: String::new(),
        memo: String::new(),
    }
}

/// The seed walk-through's single step: `{weight: 20, pause: {}}`.
fn seed() -> Vec<Step> {
    vec![step(Some(20), None, None)]
}

fn five() -> Vec<Step> {
    vec![
        step(Some(20), None, None),
        step(Some(40), None, None),
        step(Some(60), None, Some(10)),
        step(Some(80), None, Some(10)),
        step(Some(90), Some(Replicas::Percent(100)), None),
    ]
}

#[test]
fn kruise_rules() {
    use StepState::*;
    struct Case {
        name: &'static str,
        input: Observation,
        step: u32,
        action: Action,
        pods: u32,
        weight: Option<u8>,
        message: &'static str,
    }
    let at = |mut o: Observation, now_offset_ms: u64| {
        o.now += now_offset_ms;
        o
    };
    let paused = |mut o: Observation| {
        o.paused = true;
        o
    };
    let manual = "Rollout is in step(1/1), and you need manually confirm to enter the next step";
    let cases = [
        Case {
            name: "a new release starts at step 1 (weight alone implies the same share of pods, rounded up)",
            input: observe(seed(), 0, BeforeStepUpgrade),
            step: 1,
            action: Action::Hold(5),
            pods: 1,
            weight: Some(20),
            message: "Rollout is in step(1/1), and upgrade workload to new version",
        },
        Case {
            name: "pods converging: hold",
            input: observe(seed(), 1, StepUpgrade),
            step: 1,
            action: Action::Hold(5),
            pods: 1,
            weight: Some(20),
            message: "Rollout is in step(1/1), and upgrade workload to new version",
        },
        Case {
            name: "an empty pause waits for approval",
            input: observe(seed(), 1, StepMetricsAnalysis),
            step: 1,
            action: Action::Pause(None),
            pods: 1,
            weight: Some(20),
            message: manual,
        },
        Case {
            name: "still waiting",
            input: observe(seed(), 1, StepPaused),
            step: 1,
            action: Action::Pause(None),
            pods: 1,
            weight: Some(20),
            message: manual,
        },
        Case {
            name: "approved last step completes",
            input: observe(seed(), 1, StepReady),
            step: 1,
            action: Action::Complete,
            pods: 1,
            weight: Some(20),
            message: COMPLETED_MESSAGE,
        },
        Case {
            name: "approved step advances to the next",
            input: observe(five(), 1, StepReady),
            step: 2,
            action: Action::Advance,
            pods: 2,
            weight: Some(40),
            message: "Rollout is in step(2/5), and upgrade workload to new version",
        },
        Case {
            name: "a timed pause starts counting when the step was ready",
            input: observe(five(), 3, StepMetricsAnalysis),
            step: 3,
            action: Action::Pause(Some(10)),
            pods: 3,
            weight: Some(60),
            message: "Rollout is in step(3/5), and wait duration(10 seconds) to enter the next step",
        },
        Case {
            name: "a timed pause recounts what is left",
            input: at(observe(five(), 3, StepPaused), 7_500),
            step: 3,
            action: Action::Pause(Some(3)),
            pods: 3,
            weight: Some(60),
            message: "Rollout is in step(3/5), and wait duration(10 seconds) to enter the next step",
        },
        Case {
            name: "exactly at the end of the pause it still waits (Kruise: strictly after)",
            input: at(observe(five(), 3, StepPaused), 10_000),
            step: 3,
            action: Action::Pause(Some(1)),
            pods: 3,
            weight: Some(60),
            message: "Rollout is in step(3/5), and wait duration(10 seconds) to enter the next step",
        },
        Case {
            name: "after the pause it advances",
            input: at(observe(five(), 3, StepPaused), 10_001),
            step: 4,
            action: Action::Advance,
            pods: 4,
            weight: Some(80),
            message: "Rollout is in step(4/5), and upgrade workload to new version",
        },
        Case {
            name: "a last step at 100% never pauses",
            input: observe(five(), 5, StepMetricsAnalysis),
            step: 5,
            action: Action::Complete,
            pods: 5,
            weight: Some(90),
            message: COMPLETED_MESSAGE,
        },
        Case {
            name: "weight 100 alone converts to replicas 100%: no pause either",
            input: observe(vec![step(Some(100), None, None)], 1, StepMetricsAnalysis),
            step: 1,
            action: Action::Complete,
            pods: 5,
            weight: Some(100),
            message: COMPLETED_MESSAGE,
        },
        Case {
            name: "a count equal to all pods is not `100%`: it pauses",
            input: observe(
                vec![step(Some(50), Some(Replicas::Count(5)), None)],
                1,
                StepMetricsAnalysis,
            ),
            step: 1,
            action: Action::Pause(None),
            pods: 5,
            weight: Some(50),
            message: manual,
        },
        Case {
            name: "spec.strategy.paused holds",
            input: paused(observe(five(), 2, StepPaused)),
            step: 2,
            action: Action::Hold(5),
            pods: 2,
            weight: Some(40),
            message: PAUSED_MESSAGE,
        },
        Case {
            name: "paused even when approved",
            input: paused(observe(five(), 2, StepReady)),
            step: 2,
            action: Action::Hold(5),
            pods: 2,
            weight: Some(40),
            message: PAUSED_MESSAGE,
        },
        Case {
            name: "replicas without weight: pods only",
            input: observe(
                vec![step(None, Some(Replicas::Count(2)), None)],
                1,
                StepUpgrade,
            ),
            step: 1,
            action: Action::Hold(5),
            pods: 2,
            weight: None,
            message: "Rollout is in step(1/1), and upgrade workload to new version",
        },
        Case {
            name: "steps removed under a running rollout clamp to the last one",
            input: observe(seed(), 3, StepPaused),
            step: 1,
            action: Action::Hold(5),
            pods: 1,
            weight: Some(20),
            message: "Rollout is in step(1/1), and upgrade workload to new version",
        },
        Case {
            name: "completed stays completed",
            input: observe(five(), 5, Completed),
            step: 5,
            action: Action::Complete,
            pods: 5,
            weight: Some(90),
            message: COMPLETED_MESSAGE,
        },
    ];
    for case in cases {
        let d = decide(&case.input).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(d.step, case.step, "{}: step", case.name);
        assert_eq!(d.action, case.action, "{}: action", case.name);
        assert_eq!(
            d.target.replicas.resolve(5),
            case.pods,
            "{}: pods",
            case.name
        );
        assert_eq!(
            d.target.traffic.weight, case.weight,
            "{}: weight",
            case.name
        );
        assert_eq!(d.message, case.message, "{}: message", case.name);
    }
}

#[test]
fn a_count_above_the_workload_is_capped_at_its_size() {
    // Kruise's BatchRelease caps a step's replicas at the workload's.
    let input = observe(
        vec![step(Some(20), Some(Replicas::Count(8)), None)],
        1,
        StepState::StepUpgrade,
    );
    let d = decide(&input).expect("decision");
    assert_eq!(d.target.replicas, Replicas::Count(5));
    // A smaller count is left as written.
    let input = observe(
        vec![step(Some(20), Some(Replicas::Count(3)), None)],
        1,
        StepState::StepUpgrade,
    );
    assert_eq!(
        decide(&input).expect("decision").target.replicas,
        Replicas::Count(3)
    );
}

#[test]
fn percentages_round_up() {
    for (total, pct, pods) in [
        (5, 20, 1),
        (5, 40, 2),
        (3, 20, 1),
        (3, 40, 2),
        (10, 15, 2),
        (7, 90, 7),
    ] {
        let mut input = observe(vec![step(Some(pct), None, None)], 1, StepState::StepUpgrade);
        input.workload.desired = total;
        let d = decide(&input).expect("decision");
        assert_eq!(d.target.replicas.resolve(total), pods, "{pct}% of {total}");
    }
}

#[test]
fn matches_pass_through_to_the_target() {
    use sluice_strategy::{MatchKind, MatchSource, RequestCondition};
    let route = RequestRoute {
        conditions: vec![RequestCondition {
            source: MatchSource::Header,
            name: "user-agent".into(),
            value: "pc".into(),
            kind: MatchKind::Exact,
        }],
    };
    let mut s = step(None, Some(Replicas::Count(1)), None);
    s.matches = vec![route.clone()];
    let d = decide(&observe(vec![s], 1, StepState::StepUpgrade)).expect("decision");
    assert_eq!(d.target.traffic.matches, vec![route]);
}

#[test]
fn bad_input_is_refused_with_the_field() {
    let empty = decide(&observe(Vec::new(), 0, StepState::BeforeStepUpgrade)).unwrap_err();
    assert!(
        empty.contains("spec.strategy.canary.steps is empty"),
        "{empty}"
    );
    let neither = decide(&observe(
        vec![step(None, None, None)],
        0,
        StepState::BeforeStepUpgrade,
    ))
    .unwrap_err();
    assert_eq!(
        neither,
        "spec.strategy.canary.steps[0]: weight and replicas cannot be empty at the same time"
    );
}
