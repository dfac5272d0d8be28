//! The red team: hostile modules, each built by the test guests, against the sandbox
//! as the controller runs it (modules compiled by the bounded helper process, calls
//! through the fair queue). Every attack must be contained — stopped with a typed
//! error inside its own limits — and a neighbour in another namespace must go on
//! deciding, during the attack where the attack lasts.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sluice::strategy::model::{Observation, StepState};
use sluice::strategy::{
    Ceilings, Compiler, Grants, IsolatedCompiler, Limits, LoadError, NoMetrics, Runtime,
    RuntimeConfig, Strategy, StrategyError,
};
use support::*;

const EVIL: &str = "evil";
const NEIGHBOUR: &str = "neighbour";

fn sandbox() -> Runtime {
    Runtime::new(sandbox_config()).expect("runtime")
}

fn sandbox_with(f: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = sandbox_config();
    f(&mut config);
    Runtime::new(config).expect("runtime")
}

fn input(config: &str) -> Observation {
    let mut input = observation(vec![weight_step(20)], 1, StepState::StepUpgrade);
    input.config = config.into();
    input
}

fn load(runtime: &Runtime, bytes: &[u8], limits: Limits, grants: Grants) -> Strategy {
    Strategy::new(runtime.load(bytes).expect("load"), limits, grants)
}

fn wasi_hostile() -> &'static [u8] {
    sluice_test_guests::WASI_HOSTILE.unwrap_or_else(|e| panic!("{e}"))
}

fn deadline(ms: u64) -> Limits {
    Limits {
        deadline_ms: ms,
        ..Limits::default()
    }
}

/// The neighbour: the built-in strategy, deciding for another namespace.
async fn neighbour_decides(runtime: &Runtime) {
    let good = strategy(steps(runtime), Grants::none());
    let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
    let decision = runtime
        .decide_async(NEIGHBOUR, &good, &input, Arc::new(NoMetrics))
        .await
        .expect("the neighbour decides");
    assert_eq!(decision.step, 1);
}

/// Runs `calls` copies of the attack for the evil namespace and, once the evil
/// namespace fills its share of the sandbox, a neighbour decision; returns the
/// attack's errors.
fn under_attack(
    runtime: &Runtime,
    calls: usize,
    attack: impl Fn() -> futures::future::BoxFuture<'static, StrategyError> + Send + Sync,
) -> Vec<StrategyError> {
    // The neighbour's module is compiled before the attack starts.
    steps(runtime);
    runtime.block_on(async {
        let attacks = futures::future::join_all((0..calls).map(|_| attack()));
        let neighbour = async {
            let share = runtime.calls().running(EVIL).1;
            // Wait until the attack holds every slot its namespace may have.
            let mut held = share;
            while held < calls.min(4) {
                tokio::task::yield_now().await;
                held = runtime.calls().running(EVIL).1;
            }
            neighbour_decides(runtime).await;
            // The neighbour decided while the attack still held its share.
            assert_eq!(runtime.calls().running(EVIL).1, calls.min(4));
        };
        let (errors, ()) = tokio::join!(attacks, neighbour);
        errors
    })
}

#[test]
fn wasi_sleeps_in_describe_validate_config_and_decide_stop_at_the_deadline() {
    let runtime = Arc::new(sandbox());
    let sleeper = load(&runtime, wasi_hostile(), deadline(2000), Grants::none());
    let err = runtime.describe(&sleeper).expect_err("describe sleeps");
    assert!(
        matches!(err, StrategyError::Deadline { export: "describe", limit, .. } if limit == Duration::from_secs(2)),
        "{err}"
    );
    let err = runtime
        .validate_config(&sleeper, "sleep")
        .expect_err("validate-config sleeps");
    assert!(
        matches!(
            err,
            StrategyError::Deadline {
                export: "validate-config",
                ..
            }
        ),
        "{err}"
    );

    // Eight sleeping decisions at once: four run, four wait; the neighbour decides
    // while they sleep.
    let errors = under_attack(&runtime, 8, {
        let runtime = runtime.clone();
        let sleeper = sleeper.clone();
        move || {
            let (runtime, sleeper) = (runtime.clone(), sleeper.clone());
            Box::pin(async move {
                runtime
                    .decide_async(EVIL, &sleeper, &input("sleep"), Arc::new(NoMetrics))
                    .await
                    .expect_err("decide sleeps")
            })
        }
    });
    assert_eq!(errors.len(), 8);
    for err in errors {
        assert!(
            matches!(
                err,
                StrategyError::Deadline {
                    export: "decide",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.reason(), "DeadlineExceeded");
    }
}

#[test]
fn an_infinite_loop_asking_for_huge_limits_is_refused_and_within_them_stopped() {
    let asked = sluice::modules::ModuleLimits {
        memory_bytes: Some(64 << 30),
        deadline_ms: Some(3_600_000),
        fuel: Some(u64::MAX),
    };
    let refused = asked
        .admit(&Ceilings::default())
        .expect_err("above the ceilings");
    for part in [
        "spec.limits.memoryBytes: 68719476736 asked, above the controller's ceiling of 268435456",
        "spec.limits.deadlineMs: 3600000 asked, above the controller's ceiling of 2000",
        "spec.limits.fuel: 18446744073709551615 asked, above the controller's ceiling of 2000000000",
    ] {
        assert!(refused.contains(part), "{refused}");
    }

    // Asking for the ceiling itself is allowed, and the loop stops there.
    let runtime = Arc::new(sandbox_with(|c| {
        c.fuel = false;
        c.ceilings.deadline_ms = 1500;
    }));
    let limits = sluice::modules::ModuleLimits {
        deadline_ms: Some(1500),
        ..Default::default()
    }
    .admit(runtime.ceilings())
    .expect("at the ceiling");
    let looping = load(
        &runtime,
        sluice_test_guests::HOSTILE,
        limits,
        Grants::none(),
    );
    let errors = under_attack(&runtime, 4, {
        let runtime = runtime.clone();
        move || {
            let (runtime, looping) = (runtime.clone(), looping.clone());
            Box::pin(async move {
                runtime
                    .decide_async(EVIL, &looping, &input("loop"), Arc::new(NoMetrics))
                    .await
                    .expect_err("loops")
            })
        }
    });
    for err in errors {
        assert!(
            matches!(err, StrategyError::Deadline { limit, .. } if limit == Duration::from_millis(1500)),
            "{err}"
        );
    }
}

#[test]
fn a_memory_bomb_over_several_memories_is_held_to_one_limit() {
    let runtime = sandbox();
    let limit = |bytes| Limits {
        memory_bytes: bytes,
        ..Limits::default()
    };
    // Three extra memories of 12 MiB each: each is within 32 MiB, all are not.
    let bomb = load(
        &runtime,
        sluice_test_guests::MULTI_MEMORY_BOMB,
        limit(32 << 20),
        Grants::none(),
    );
    let err = runtime
        .decide(&bomb, &input(""), Arc::new(NoMetrics))
        .expect_err("over the limit in total");
    assert!(
        matches!(err, StrategyError::Memory { limit_bytes, .. } if limit_bytes == 32 << 20),
        "{err}"
    );
    // With room for all of them the same module decides: it is the total that counts.
    let roomy = load(
        &runtime,
        sluice_test_guests::MULTI_MEMORY_BOMB,
        limit(64 << 20),
        Grants::none(),
    );
    runtime
        .decide(&roomy, &input(""), Arc::new(NoMetrics))
        .expect("within 64 MiB");
    runtime.block_on(neighbour_decides(&runtime));
}

#[test]
fn thousands_of_log_lines_are_cut_to_the_budget() {
    let runtime = sandbox();
    let grants = Grants {
        log: true,
        ..Grants::none()
    };
    // The budget is what is checked, not the speed of writing 10,000 lines: a
    // deadline a loaded debug build cannot miss.
    let flood = load(
        &runtime,
        sluice_test_guests::HOSTILE,
        Limits {
            deadline_ms: 10_000,
            ..Limits::default()
        },
        grants,
    );
    let before = runtime.stats().log_lines_dropped;
    runtime
        .decide(&flood, &input("logflood"), Arc::new(NoMetrics))
        .expect("a chatty module still decides");
    let dropped = runtime.stats().log_lines_dropped - before;
    let kept = u64::from(sluice::strategy::host_state::MAX_LOG_LINES);
    assert_eq!(dropped, 10_000 - kept, "all but {kept} lines are dropped");
    runtime.block_on(neighbour_decides(&runtime));
}

#[test]
fn a_result_aliasing_guest_memory_is_stopped_before_the_host_copies_it() {
    let runtime = sandbox();
    let aliased = load(
        &runtime,
        sluice_test_guests::ALIASED_RESULT,
        Limits::default(),
        Grants::none(),
    );
    let err = runtime
        .decide(&aliased, &input(""), Arc::new(NoMetrics))
        .expect_err("128 GiB once copied");
    assert!(
        matches!(
            err,
            StrategyError::HostData {
                export: "decide",
                ..
            }
        ),
        "{err}"
    );
    // The same hand-written shape, answering a plain decision, is accepted.
    let good = load(
        &runtime,
        sluice_test_guests::HANDWRITTEN_GOOD,
        Limits::default(),
        Grants::none(),
    );
    let decision = runtime
        .decide(&good, &input(""), Arc::new(NoMetrics))
        .expect("a hand-written module decides");
    assert_eq!(decision.step, 1);
    runtime.block_on(neighbour_decides(&runtime));
}

#[test]
fn deep_recursion_exhausts_the_modules_stack_only() {
    let runtime = sandbox();
    let deep = load(
        &runtime,
        sluice_test_guests::HOSTILE,
        Limits::default(),
        Grants::none(),
    );
    let err = runtime
        .decide(&deep, &input("recurse"), Arc::new(NoMetrics))
        .expect_err("the stack overflows");
    assert!(
        matches!(&err, StrategyError::Trap { message, .. } if message.contains("call stack exhausted")),
        "{err}"
    );
    runtime.block_on(neighbour_decides(&runtime));
}

#[test]
fn a_hundred_metric_queries_get_the_per_call_budget() {
    let runtime = sandbox();
    let grants = Grants {
        metrics: ["prometheus".to_owned()].into(),
        ..Grants::none()
    };
    let greedy = load(
        &runtime,
        sluice_test_guests::HOSTILE,
        Limits::default(),
        grants,
    );
    let decision = runtime
        .decide(&greedy, &input("queries"), Arc::new(FixedMetrics(Ok(1.0))))
        .expect("decides");
    let budget = sluice::strategy::host_state::MAX_QUERIES;
    assert_eq!(
        decision.message,
        format!("{budget} of 100 queries answered")
    );
    runtime.block_on(neighbour_decides(&runtime));
}

/// `bytes` with a custom section of `padding` zero bytes appended.
fn padded(bytes: &[u8], padding: usize) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut section = Vec::new();
    leb(&mut section, name.len());
    section.extend_from_slice(name);
    section.resize(section.len() + padding, 0);
    let mut out = bytes.to_vec();
    out.push(0);
    leb(&mut out, section.len());
    out.extend_from_slice(&section);
    out
}

#[test]
fn a_module_above_the_size_ceiling_is_refused_before_it_is_compiled() {
    let runtime = sandbox_with(|c| c.ceilings.module_bytes = 1 << 20);
    let steps_bytes = sluice::strategy::builtin::builtin("steps").expect("built in");
    // The padding is a valid custom section: below the ceiling the module loads.
    runtime
        .load(&padded(steps_bytes, 512 << 10))
        .expect("a padded module under the ceiling loads");
    let big = padded(steps_bytes, 2 << 20);
    match runtime.load(&big) {
        Err(LoadError::TooLarge { size, ceiling }) => {
            assert_eq!((size, ceiling), (big.len() as u64, 1 << 20));
        }
        Err(other) => panic!("expected TooLarge, got {other}"),
        Ok(_) => panic!("a module above the ceiling loaded"),
    }
    runtime.block_on(neighbour_decides(&runtime));
}

#[test]
fn compilation_is_bounded_in_time_and_in_memory() {
    let heavy = sluice_test_guests::LINEAR_JS.unwrap_or_else(|e| panic!("{e}"));
    let steps_bytes = sluice::strategy::builtin::builtin("steps").expect("built in");
    let bounded = |timeout: Duration, memory_bytes: u64| {
        sandbox_with(|c| {
            c.compiler = Compiler::Isolated(IsolatedCompiler {
                timeout,
                memory_bytes,
                ..IsolatedCompiler::with_program(env!("CARGO_BIN_EXE_sluice").into())
            })
        })
    };
    // The JavaScript module carries an interpreter: it takes seconds and hundreds
    // of MiB to compile, the built-in strategy a fraction of either.
    let quick = bounded(Duration::from_secs(2), 2 << 30);
    match quick.load(heavy) {
        Err(LoadError::CompileTimeout { limit, .. }) => assert_eq!(limit, Duration::from_secs(2)),
        Err(other) => panic!("expected a compile timeout, got {other}"),
        Ok(_) => panic!("compiled within the time limit"),
    }
    quick
        .load(steps_bytes)
        .expect("the built-in compiles in time");
    // A refused module stays refused: it is not compiled again at every ask.
    assert!(matches!(
        quick.load(heavy),
        Err(LoadError::CompileTimeout { .. })
    ));

    let small = bounded(Duration::from_secs(120), 256 << 20);
    match small.load(heavy) {
        Err(LoadError::CompileMemory { limit_bytes, .. }) => assert_eq!(limit_bytes, 256 << 20),
        Err(other) => panic!("expected a compile memory limit, got {other}"),
        Ok(_) => panic!("compiled within the memory limit"),
    }
    small
        .load(steps_bytes)
        .expect("the built-in compiles in 256 MiB");
    small.block_on(neighbour_decides(&small));
}

fn field<'a>(message: &'a str, key: &str) -> &'a str {
    message
        .split(' ')
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {message}"))
}

#[test]
fn a_wasi_module_reaching_for_files_env_sockets_clocks_and_randomness_gets_nothing_real() {
    let runtime = sandbox();
    let reacher = load(&runtime, wasi_hostile(), Limits::default(), Grants::none());
    let first = input("reach");
    let message = runtime
        .decide(&reacher, &first, Arc::new(NoMetrics))
        .expect("decides")
        .message;
    for (key, want) in [
        ("fs", "denied"),
        ("passwd", "denied"),
        ("env", "0"),
        ("args", "0"),
        ("socket", "denied"),
        ("lookup", "denied"),
        ("monotonic_moved", "0"),
    ] {
        assert_eq!(field(&message, key), want, "{key} in {message}");
    }
    // The wall clock reads the decision's `now`, nothing else.
    assert_eq!(field(&message, "wall"), first.now.to_string());
    // Randomness is fixed by the decision: the same input, the same numbers; another
    // input, others.
    let again = runtime
        .decide(&reacher, &first, Arc::new(NoMetrics))
        .expect("decides")
        .message;
    assert_eq!(field(&again, "random"), field(&message, "random"));
    let mut later = first.clone();
    later.now += 1000;
    let other = runtime
        .decide(&reacher, &later, Arc::new(NoMetrics))
        .expect("decides")
        .message;
    assert_ne!(field(&other, "random"), field(&message, "random"));
    assert_eq!(field(&other, "wall"), later.now.to_string());
}

#[test]
fn thirty_hostile_modules_loaded_at_once_delay_only_their_namespace() {
    let runtime = sandbox();
    // Thirty distinct modules (each its own digest), all sleeping in `describe`.
    let modules: Vec<Arc<Vec<u8>>> = (0..30)
        .map(|i| Arc::new(padded(wasi_hostile(), 16 + i)))
        .collect();
    let neighbour_module = Arc::new(padded(
        sluice::strategy::builtin::builtin("steps").expect("built in"),
        7,
    ));
    runtime.block_on(async {
        // The evil namespace asks for all thirty at once. Its compilations take
        // their turns one at a time, and at most eight wait; the others are told to
        // come back (busy), which is no verdict on them.
        let asked: Vec<_> = modules
            .iter()
            .map(|bytes| runtime.prepare(EVIL, bytes.clone(), None))
            .collect();
        let first_answers = futures::future::join_all(asked);
        // The neighbour's new module compiles next in turn, before the evil
        // namespace's queue drains.
        let neighbours = async {
            while runtime.compiles().waiting(EVIL) == 0 {
                tokio::task::yield_now().await;
            }
            let module = runtime
                .prepare(NEIGHBOUR, neighbour_module.clone(), None)
                .await
                .expect("the neighbour's module compiles");
            assert!(
                runtime.compiles().waiting(EVIL) > 0,
                "the neighbour did not wait for the evil namespace's compilations"
            );
            module
        };
        let (first_answers, module) = tokio::join!(first_answers, neighbours);
        let busy = first_answers
            .iter()
            .filter(|a| matches!(a, Err(LoadError::Busy(_))))
            .count();
        let loaded = first_answers.iter().filter(|a| a.is_ok()).count();
        assert_eq!(
            (loaded, busy),
            (9, 21),
            "one compiled at once and eight waited; the rest were busy"
        );
        let good = Strategy::new(module, Limits::default(), Grants::none());
        let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
        runtime
            .decide_async(NEIGHBOUR, &good, &input, Arc::new(NoMetrics))
            .await
            .expect("the neighbour decides");

        // Every evil module eventually loads (the busy ones when asked again), and
        // all thirty describe themselves at once: each is stopped at its deadline.
        let mut loaded = Vec::new();
        for bytes in &modules {
            loop {
                match runtime.prepare(EVIL, bytes.clone(), None).await {
                    Ok(module) => break loaded.push(module),
                    Err(LoadError::Busy(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("a hostile module failed to load: {e}"),
                }
            }
        }
        let describes = futures::future::join_all(loaded.into_iter().map(|module| {
            let strategy = Strategy::new(module, deadline(200), Grants::none());
            let runtime = &runtime;
            async move { runtime.describe_async(EVIL, &strategy).await }
        }));
        steps(&runtime);
        let neighbour = async {
            while runtime.calls().running(EVIL).1 < 4 {
                tokio::task::yield_now().await;
            }
            neighbour_decides(&runtime).await;
            assert_eq!(runtime.calls().running(EVIL).1, 4);
        };
        let (results, ()) = tokio::join!(describes, neighbour);
        for result in results {
            let err = result.expect_err("describe sleeps");
            assert!(
                matches!(
                    err,
                    StrategyError::Deadline {
                        export: "describe",
                        ..
                    }
                ),
                "{err}"
            );
        }
    });
}
