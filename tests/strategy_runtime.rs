//! The strategy runtime against real compiled modules: the built-in `steps`, the
//! example strategy built as a pure component and for wasm32-wasip2, modules built
//! from the WIT alone, and the on-disk cache.

mod support;

use std::sync::Arc;

use sluice::strategy::cache::Provenance;
use sluice::strategy::model::{Action, Replicas, StepState};
use sluice::strategy::{Grants, Limits, LoadError, NoMetrics, Strategy, StrategyError};
use support::sdk::{action_name, to_sdk};
use support::*;

#[test]
fn builtin_steps_speaks_contract_0_1_and_imports_nothing_but_types() {
    let runtime = runtime();
    let module = steps(&runtime);
    assert_eq!(module.contract_version(), "0.1.0");
    assert_eq!(
        module.surface().exports,
        vec!["sluice:strategy/strategy@0.1.0"]
    );
    assert!(
        module
            .surface()
            .imports
            .iter()
            .all(|i| i == "sluice:strategy/types@0.1.0"),
        "{:?}",
        module.surface().imports
    );
    assert!(!module.surface().needs_wasi());
    let info = runtime
        .describe(&strategy(module, Grants::none()))
        .expect("describe");
    assert_eq!(info.name, "steps");
}

/// The module and the same Rust logic called natively decide alike, case by case.
#[test]
fn builtin_steps_as_wasm_decides_as_the_native_logic() {
    let runtime = runtime();
    let strategy = strategy(steps(&runtime), Grants::none());
    let plans: Vec<Vec<u8>> = vec![vec![20], vec![20, 40, 60, 80, 100], vec![10, 50]];
    let states = [
        StepState::BeforeStepUpgrade,
        StepState::StepUpgrade,
        StepState::StepTrafficRouting,
        StepState::StepMetricsAnalysis,
        StepState::StepPaused,
        StepState::StepReady,
        StepState::Completed,
    ];
    let mut compared = 0;
    for plan in &plans {
        for current in 0..=plan.len() as u32 {
            for state in states {
                for paused in [false, true] {
                    let mut input = observation(
                        plan.iter().map(|w| weight_step(*w)).collect(),
                        current,
                        state,
                    );
                    input.paused = paused;
                    let wasm = runtime
                        .decide(&strategy, &input, Arc::new(NoMetrics))
                        .expect("decision");
                    let native = sluice_steps::decide(&to_sdk(&input)).expect("native decision");
                    assert_eq!(wasm.step, native.step, "{input:?}");
                    assert_eq!(wasm.message, native.message, "{input:?}");
                    assert_eq!(wasm.action.name(), action_name(&native.action), "{input:?}");
                    assert_eq!(
                        wasm.target.replicas.resolve(5),
                        native.target.replicas.resolve(5)
                    );
                    assert_eq!(
                        wasm.target.traffic.weight.map(|w| w.get()),
                        native.target.traffic.weight
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, (2 + 6 + 3) * 7 * 2);
}

#[test]
fn example_doubling_strategy_doubles_and_aborts_on_failed_pods() {
    let runtime = runtime();
    let module = runtime
        .load(sluice_test_guests::DOUBLING)
        .expect("load doubling");
    let strategy = strategy(module, Grants::none());

    runtime
        .validate_config(&strategy, r#"{"start": 10, "interval": 30}"#)
        .expect("valid config");
    let err = runtime
        .validate_config(&strategy, r#"{"start": 0}"#)
        .expect_err("start 0 is invalid");
    assert!(
        matches!(&err, StrategyError::Config { message, .. } if message.contains("start: 0 is outside 1-100")),
        "{err}"
    );
    let err = runtime
        .validate_config(&strategy, r#"{"stat": 1}"#)
        .expect_err("a typo is invalid");
    assert!(err.to_string().contains("unknown field `stat`"), "{err}");

    let steps: Vec<_> = (0..5).map(|_| weight_step(1)).collect();
    let mut input = observation(steps, 2, StepState::StepMetricsAnalysis);
    input.config = r#"{"start": 10, "interval": 30}"#.into();
    input.now = input.last_update_time + 31_000;
    let d = runtime
        .decide(&strategy, &input, Arc::new(NoMetrics))
        .expect("decide");
    assert_eq!(d.step, 3);
    assert_eq!(d.action, Action::Advance);
    assert_eq!(
        d.target.traffic.weight.map(|w| w.get()),
        Some(40),
        "10, 20, 40, …"
    );

    input.canary.failed = 1;
    let d = runtime
        .decide(&strategy, &input, Arc::new(NoMetrics))
        .expect("decide");
    assert!(
        matches!(&d.action, Action::Abort { reason } if reason.contains("1 canary pods failed")),
        "{d:?}"
    );
}

#[test]
fn a_wasip2_build_loads_with_a_wasi_that_grants_nothing_and_decides_alike() {
    let wasip2 = sluice_test_guests::DOUBLING_WASIP2.unwrap_or_else(|e| panic!("{e}"));
    let runtime = runtime();
    let wasi = runtime.load(wasip2).expect("load the wasip2 build");
    assert!(wasi.surface().needs_wasi(), "{:?}", wasi.surface().imports);
    let pure = runtime
        .load(sluice_test_guests::DOUBLING)
        .expect("load the pure build");
    assert!(!pure.surface().needs_wasi());

    let steps: Vec<_> = (0..4).map(|_| weight_step(1)).collect();
    let mut input = observation(steps, 1, StepState::StepPaused);
    input.now = input.last_update_time + 61_000;
    let a = runtime
        .decide(&strategy(wasi, Grants::none()), &input, Arc::new(NoMetrics))
        .expect("wasip2 decision");
    let b = runtime
        .decide(&strategy(pure, Grants::none()), &input, Arc::new(NoMetrics))
        .expect("pure decision");
    assert_eq!(a, b);
    assert_eq!(a.step, 2);
}

#[test]
fn a_module_built_elsewhere_from_the_wit_loads() {
    let bytes = component_from_wit(
        WitSource::Dir(&workspace().join("wit/v0.1.0")),
        "strategy-module",
    );
    let runtime = runtime();
    let module = runtime
        .load(&bytes)
        .expect("a module built against wit/v0.1.0 loads");
    assert_eq!(module.contract_version(), "0.1.0");
    // Its functions are stubs that trap: the runtime reports the trap and carries on.
    let err = runtime
        .describe(&strategy(module, Grants::none()))
        .expect_err("a stub traps");
    assert!(matches!(err, StrategyError::Trap { .. }), "{err}");
    runtime
        .describe(&strategy(steps(&runtime), Grants::none()))
        .expect("the next call on a good module works");
}

#[test]
fn a_module_of_an_unsupported_contract_version_is_refused_naming_both_versions() {
    let wit = std::fs::read_to_string(workspace().join("wit/v0.1.0/strategy.wit"))
        .expect("wit")
        .replace(
            "package sluice:strategy@0.1.0;",
            "package sluice:strategy@0.2.0;",
        );
    let bytes = component_from_wit(WitSource::Text(&wit), "strategy-module");
    let err = runtime().load(&bytes).err().expect("refused");
    assert!(
        matches!(err, LoadError::UnsupportedContract { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("sluice:strategy@0.2.0"), "{message}");
    assert!(message.contains("sluice:strategy@0.1.0"), "{message}");
}

#[test]
fn a_component_that_is_no_strategy_is_refused() {
    let bytes = component_from_wit(
        WitSource::Text("package other:thing@1.0.0;\nworld w { export run: func() -> u32; }"),
        "w",
    );
    let err = runtime().load(&bytes).err().expect("refused");
    assert!(
        matches!(&err, LoadError::NotAStrategy { exports, .. } if exports == "run"),
        "{err}"
    );
}

#[test]
fn a_module_importing_what_sluice_does_not_provide_is_refused() {
    let wit = std::fs::read_to_string(workspace().join("wit/v0.1.0/strategy.wit"))
        .expect("wit")
        .replace(
            "    import metrics;",
            "    import metrics;\n    import fs: interface { read: func(path: string) -> string; }",
        );
    let bytes = component_from_wit(WitSource::Text(&wit), "strategy-module");
    let err = runtime().load(&bytes).err().expect("refused");
    assert!(
        matches!(&err, LoadError::UnknownImport { import, .. } if import == "fs"),
        "{err}"
    );
}

#[test]
fn a_core_module_is_refused_with_a_hint() {
    let core = wat_core_module();
    let err = runtime().load(&core).err().expect("refused");
    let message = err.to_string();
    assert!(message.contains("core module"), "{message}");
    assert!(
        message.contains("sluice strategy componentize"),
        "{message}"
    );
}

/// The smallest core module: magic and version 1.
fn wat_core_module() -> Vec<u8> {
    b"\0asm\x01\0\0\0".to_vec()
}

#[test]
fn a_pinned_digest_must_match() {
    let runtime = runtime();
    let bytes = sluice::strategy::builtin::builtin("steps").expect("steps");
    let wrong = "0".repeat(64);
    let err = runtime.load_pinned(bytes, &wrong).err().expect("mismatch");
    let message = err.to_string();
    assert!(message.contains(&wrong), "{message}");
    let actual = sluice::strategy::cache::sha256_hex(bytes);
    assert!(message.contains(&actual), "{message}");
    runtime
        .load_pinned(bytes, &format!("sha256:{actual}"))
        .expect("the right pin loads");
}

#[test]
fn compiled_modules_are_cached_on_disk_and_reused_by_a_new_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = sluice::strategy::builtin::builtin("steps").expect("steps");
    let first = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    assert_eq!(
        first.load(bytes).expect("load").provenance(),
        Provenance::Compiled
    );
    drop(first);

    let second = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    let module = second.load(bytes).expect("load from cache");
    assert_eq!(module.provenance(), Provenance::Cached);
    let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
    let d = second
        .decide(
            &strategy(module, Grants::none()),
            &input,
            Arc::new(NoMetrics),
        )
        .expect("a cached module decides");
    assert_eq!(
        d.target.replicas,
        Replicas::Percent(sluice::strategy::model::Percent::new(20).unwrap())
    );
}

#[test]
fn a_corrupt_cache_entry_is_discarded_and_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = sluice::strategy::builtin::builtin("steps").expect("steps");
    let first = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    first.load(bytes).expect("load");
    drop(first);
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::write(&path, b"not an artifact").expect("corrupt");
    }
    let second = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    let module = second.load(bytes).expect("recompiled");
    assert_eq!(module.provenance(), Provenance::Compiled);
}

#[test]
fn another_modules_valid_artifact_renamed_to_this_ones_name_is_refused_and_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let steps_bytes = sluice::strategy::builtin::builtin("steps").expect("steps");
    let doubling = sluice_test_guests::DOUBLING;
    let first = runtime_with(|c| c.cache_dir = Some(cache_dir.clone()));
    let a = first.load(steps_bytes).expect("load steps");
    let b = first.load(doubling).expect("load doubling");
    drop(first);
    // B's artifact, authentic but B's, under A's name: it would run B's code as A.
    let name = |digest: &str| {
        std::fs::read_dir(&cache_dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(digest))
            })
            .expect("an artifact")
    };
    std::fs::rename(name(b.digest()), name(a.digest())).expect("rename");
    let second = runtime_with(|c| c.cache_dir = Some(cache_dir.clone()));
    let module = second.load(steps_bytes).expect("recompiled");
    assert_eq!(module.provenance(), Provenance::Compiled);
    assert_eq!(module.digest(), a.digest());
    // And it is A that decides: the built-in's first decision, not the example's.
    let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
    let decision = second
        .decide(
            &strategy(module, Grants::none()),
            &input,
            Arc::new(NoMetrics),
        )
        .expect("decides");
    assert_eq!(decision.step, 1);
    assert!(
        decision.message.contains("Rollout is in step(1/1)"),
        "{}",
        decision.message
    );
}

#[test]
fn compiled_modules_past_the_memory_budget_are_forgotten_least_recently_used_first() {
    // A budget smaller than any compiled module.
    let runtime = runtime_with(|c| c.max_compiled_bytes = 1);
    let steps_bytes = sluice::strategy::builtin::builtin("steps").expect("steps");
    let unused = Arc::downgrade(&runtime.load(steps_bytes).expect("steps"));
    let held = runtime
        .load(sluice_test_guests::DOUBLING)
        .expect("doubling");
    // Loading another module went past the budget: the one nobody uses is forgotten.
    assert!(
        unused.upgrade().is_none(),
        "the unused module stayed in memory"
    );
    runtime.load(sluice_test_guests::HOSTILE).expect("hostile");
    // One a strategy holds stays, whatever the budget.
    let again = runtime
        .load(sluice_test_guests::DOUBLING)
        .expect("doubling");
    assert!(Arc::ptr_eq(&held, &again), "a module in use was forgotten");
}

#[test]
fn the_same_bytes_are_compiled_once_per_runtime() {
    let runtime = runtime();
    let a = steps(&runtime);
    let b = steps(&runtime);
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn limits_are_per_strategy_not_per_module() {
    let runtime = runtime();
    let module = steps(&runtime);
    let tight = Strategy::new(
        module.clone(),
        Limits {
            memory_bytes: 64 << 10,
            ..Limits::default()
        },
        Grants::none(),
    );
    let input = observation(vec![weight_step(20)], 0, StepState::BeforeStepUpgrade);
    let err = runtime
        .decide(&tight, &input, Arc::new(NoMetrics))
        .expect_err("64 KiB cannot even hold the module's stack");
    assert!(matches!(err, StrategyError::Memory { .. }), "{err}");
    runtime
        .decide(
            &strategy(module, Grants::none()),
            &input,
            Arc::new(NoMetrics),
        )
        .expect("the same module with default limits decides");
}

#[test]
fn a_restart_with_a_warm_cache_loads_50_modules_without_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wit = std::fs::read_to_string(workspace().join("wit/v0.1.0/strategy.wit")).expect("wit");
    // Fifty distinct modules: the same contract, each with a world of its own name.
    let modules: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            let text = wit.replace(
                "world strategy-module {",
                &format!("world strategy-module-{i} {{"),
            );
            component_from_wit(WitSource::Text(&text), &format!("strategy-module-{i}"))
        })
        .collect();
    let first = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    for m in &modules {
        assert_eq!(
            first.load(m).expect("load").provenance(),
            Provenance::Compiled
        );
    }
    drop(first);
    let restarted = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    let cached = modules
        .iter()
        .filter(|m| restarted.load(m).expect("load").provenance() == Provenance::Cached)
        .count();
    assert_eq!(cached, 50, "every module came from the cache");
}
