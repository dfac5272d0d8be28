//! Modules that misbehave: each failure is a typed error within its limit, and the
//! next decision of a good module on the same runtime still succeeds.

mod support;

use std::sync::Arc;
use std::thread;

use sluice::strategy::model::StepState;
use sluice::strategy::{
    Capability, Grants, Limits, MetricsError, MetricsSource, NoMetrics, Runtime, Strategy,
    StrategyError,
};
use support::*;

fn hostile(runtime: &Runtime, limits: Limits, grants: Grants) -> Strategy {
    let module = runtime
        .load(sluice_test_guests::HOSTILE)
        .expect("load hostile");
    Strategy::new(module, limits, grants)
}

/// Calls the hostile module with `mode`, then checks a good module still decides.
fn misbehave(runtime: &Runtime, strategy: &Strategy, mode: &str) -> StrategyError {
    let mut input = observation(vec![weight_step(20)], 1, StepState::StepUpgrade);
    input.config = mode.into();
    let err = runtime
        .decide(strategy, &input, Arc::new(NoMetrics))
        .expect_err(mode);
    assert_good_module_still_decides(runtime);
    err
}

fn assert_good_module_still_decides(runtime: &Runtime) {
    let good = strategy(steps(runtime), Grants::none());
    let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
    let d = runtime
        .decide(&good, &input, Arc::new(NoMetrics))
        .expect("a good module decides after a bad one");
    assert_eq!(d.step, 1);
}

#[test]
fn an_infinite_loop_hits_the_deadline() {
    let runtime = runtime_with(|c| c.fuel = false);
    let limits = Limits {
        deadline_ms: 50,
        ..Limits::default()
    };
    let err = misbehave(&runtime, &hostile(&runtime, limits, Grants::none()), "loop");
    assert!(
        matches!(err, StrategyError::Deadline { limit, export: "decide", .. } if limit.as_millis() == 50),
        "{err}"
    );
    assert_eq!(err.reason(), "DeadlineExceeded");
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let runtime = runtime();
    let limits = Limits {
        deadline_ms: 60_000,
        fuel: 1_000_000,
        ..Limits::default()
    };
    let err = misbehave(&runtime, &hostile(&runtime, limits, Grants::none()), "loop");
    assert!(
        matches!(
            err,
            StrategyError::Fuel {
                fuel: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let runtime = runtime();
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let err = misbehave(
        &runtime,
        &hostile(&runtime, limits, Grants::none()),
        "memory",
    );
    assert!(
        matches!(err, StrategyError::Memory { limit_bytes, .. } if limit_bytes == 8 << 20),
        "{err}"
    );
}

#[test]
fn a_panic_is_a_trap() {
    let runtime = runtime();
    let err = misbehave(
        &runtime,
        &hostile(&runtime, Limits::default(), Grants::none()),
        "trap",
    );
    assert!(
        matches!(&err, StrategyError::Trap { export: "decide", message, .. } if message.contains("unreachable")),
        "{err}"
    );
}

#[test]
fn a_refusal_is_reported_with_the_module_message() {
    let runtime = runtime();
    let err = misbehave(
        &runtime,
        &hostile(&runtime, Limits::default(), Grants::none()),
        "error",
    );
    assert!(
        matches!(&err, StrategyError::Refused { message, .. } if message == "the strategy refuses to decide"),
        "{err}"
    );
}

#[test]
fn out_of_range_decisions_are_invalid_and_name_the_field() {
    let runtime = runtime();
    let strategy = hostile(&runtime, Limits::default(), Grants::none());
    let cases = [
        ("weight", "target.traffic.weight: 150 is outside 0-100"),
        ("percent", "target.replicas.percent: 101 is outside 0-100"),
        (
            "replicas",
            "target.replicas: 6 is more than the workload's 5 desired replicas",
        ),
        ("step", "step: 2 is not a step of this rollout (1-1)"),
        (
            "message",
            "message: 65536 bytes, more than the 1024 allowed",
        ),
        ("memo", "memo: 65536 bytes, more than the 4096 allowed"),
    ];
    for (mode, violation) in cases {
        let err = misbehave(&runtime, &strategy, mode);
        match &err {
            StrategyError::InvalidDecision { violations, .. } => {
                assert_eq!(violations, &vec![violation.to_owned()], "{mode}")
            }
            other => panic!("{mode}: expected an invalid decision, got {other}"),
        }
    }
}

#[test]
fn a_result_larger_than_the_host_copies_is_stopped_in_the_lift() {
    let runtime = runtime();
    let strategy = hostile(&runtime, Limits::default(), Grants::none());
    let err = misbehave(&runtime, &strategy, "huge");
    assert!(
        matches!(err, StrategyError::HostData { export: "decide", limit_bytes, .. } if limit_bytes == sluice::strategy::runtime::HOSTCALL_FUEL),
        "{err}"
    );
    assert_eq!(err.reason(), "HostDataLimitExceeded");
}

#[test]
fn ungranted_capabilities_are_denied_by_name() {
    let runtime = runtime();
    let strategy = hostile(&runtime, Limits::default(), Grants::none());
    for (mode, capability) in [("log", Capability::Log), ("metrics", Capability::Metrics)] {
        let err = misbehave(&runtime, &strategy, mode);
        assert!(
            matches!(&err, StrategyError::CapabilityDenied { capability: c, .. } if *c == capability),
            "{mode}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("the `{mode}` capability")),
            "{err}"
        );
    }
}

#[test]
fn granted_capabilities_work_and_provider_grants_are_enforced() {
    let runtime = runtime();
    let mut input = observation(vec![weight_step(20)], 1, StepState::StepUpgrade);

    let granted = hostile(&runtime, Limits::default(), Grants::all());
    input.config = "log".into();
    runtime
        .decide(&granted, &input, Arc::new(NoMetrics))
        .expect("log granted");
    input.config = "metrics".into();
    let d = runtime
        .decide(&granted, &input, Arc::new(FixedMetrics(Ok(0.97))))
        .expect("metrics granted");
    assert_eq!(d.message, "metric 0.97");

    // Provider errors reach the module as values: this one answers -1 on any error.
    let d = runtime
        .decide(
            &granted,
            &input,
            Arc::new(FixedMetrics(Err(MetricsError::NoData))),
        )
        .expect("no data is a value, not a trap");
    assert_eq!(d.message, "metric -1");

    let other_provider = hostile(
        &runtime,
        Limits::default(),
        Grants {
            log: false,
            metrics: ["datadog".to_owned()].into(),
        },
    );
    let d = runtime
        .decide(&other_provider, &input, Arc::new(FixedMetrics(Ok(0.97))))
        .expect("an ungranted provider is refused as a value");
    assert_eq!(d.message, "metric -1");
}

/// Tells the test when the module asked its first query.
struct Announced(std::sync::Mutex<std::sync::mpsc::Sender<()>>);

impl MetricsSource for Announced {
    fn query<'a>(
        &'a self,
        _provider: &'a str,
        _query: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<f64, MetricsError>> {
        let _ = self.0.lock().expect("sender").send(());
        Box::pin(std::future::ready(Ok(1.0)))
    }
}

#[test]
fn a_runaway_module_does_not_hold_up_others() {
    let runtime = Arc::new(runtime_with(|c| c.fuel = false));
    let looping = hostile(
        &runtime,
        Limits {
            deadline_ms: 2_000,
            ..Limits::default()
        },
        Grants {
            log: false,
            metrics: ["prometheus".to_owned()].into(),
        },
    );
    let (started, loop_started) = std::sync::mpsc::channel();
    let background = {
        let runtime = runtime.clone();
        thread::spawn(move || {
            let mut input = observation(vec![weight_step(20)], 1, StepState::StepUpgrade);
            input.config = "announced-loop".into();
            runtime.decide(
                &looping,
                &input,
                Arc::new(Announced(std::sync::Mutex::new(started))),
            )
        })
    };
    // The good module's decisions are made while the other one loops, not before.
    loop_started
        .recv()
        .expect("the looping module starts and announces it");
    for _ in 0..200 {
        assert_good_module_still_decides(&runtime);
    }
    let err = background
        .join()
        .expect("thread")
        .expect_err("the loop times out");
    assert!(matches!(err, StrategyError::Deadline { .. }), "{err}");
}
