//! What a decision costs: the built-in `steps` logic called natively, as a module on a
//! fresh pooled instance (what the controller does), and on a reused instance; and
//! what loading a module costs: compiling it, and loading it from the on-disk cache.
//!
//! The same for the example strategies in Rust, JavaScript and Python: the last two
//! carry an interpreter (SpiderMonkey, CPython) inside the module.
//!
//! `cargo bench -p sluice --bench decide`; figures in docs/benchmarks.md.

#[path = "../../tests/support/sdk.rs"]
#[allow(dead_code)]
mod sdk;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::strategy::cache::{ArtifactCache, CacheKey, Lookup};
use sluice::strategy::model::{Observation, Percent, ReplicaCounts, Step, StepState};
use sluice::strategy::{Grants, Limits, NoMetrics, Runtime, RuntimeConfig, Strategy};
use wasmtime::component::Component;

/// A five-step rollout paused in step 3: a typical decision.
fn input() -> Observation {
    let step = |w| Step {
        traffic_weight: Some(Percent::new(w).expect("weight")),
        ..Step::default()
    };
    Observation {
        rollout: "default/canary-demo".into(),
        steps: vec![step(20), step(40), step(60), step(80), step(100)],
        current_step: 3,
        step_state: StepState::StepPaused,
        last_update_time: 1_700_000_000_000,
        traffic_routing: true,
        stable_revision: "6f9c7d8b5".into(),
        canary_revision: "7b4d9c6f8".into(),
        workload: ReplicaCounts {
            desired: 5,
            ready: 5,
            updated: 3,
            failed: 0,
        },
        canary: ReplicaCounts {
            desired: 3,
            ready: 3,
            updated: 3,
            failed: 0,
        },
        now: 1_700_000_030_000,
        ..Observation::default()
    }
}

fn steps_bytes() -> &'static [u8] {
    sluice::strategy::builtin::builtin("steps").expect("built in")
}

fn decide(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let module = runtime.load(steps_bytes()).expect("load");
    let strategy = Strategy::new(module, Limits::default(), Grants::none());
    let input = input();
    let native_input = sdk::to_sdk(&input);
    let metrics: Arc<dyn sluice::strategy::MetricsSource> = Arc::new(NoMetrics);

    let mut group = c.benchmark_group("decide");
    group.bench_function("native", |b| {
        b.iter(|| sluice_steps::decide(black_box(&native_input)).expect("decision"))
    });
    group.bench_function("wasm_fresh_instance", |b| {
        b.iter(|| {
            runtime
                .decide(&strategy, black_box(&input), metrics.clone())
                .expect("decision")
        })
    });
    // What the controller does: a slot of the fair queue, the call on the sandbox's
    // executor, the answer back on the caller's thread.
    group.bench_function("wasm_fresh_instance_on_executor", |b| {
        b.iter(|| {
            runtime
                .block_on(runtime.decide_async(
                    "bench",
                    &strategy,
                    black_box(&input),
                    metrics.clone(),
                ))
                .expect("decision")
        })
    });
    let mut warm = runtime.warm(&strategy, &input).expect("instance");
    group.bench_function("wasm_reused_instance", |b| {
        b.iter(|| warm.decide(black_box(&input)).expect("decision"))
    });
    group.finish();

    let unfueled = Runtime::new(RuntimeConfig {
        fuel: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let module = unfueled.load(steps_bytes()).expect("load");
    let strategy = Strategy::new(module, Limits::default(), Grants::none());
    c.bench_function("decide/wasm_fresh_instance_no_fuel", |b| {
        b.iter(|| {
            unfueled
                .decide(&strategy, black_box(&input), metrics.clone())
                .expect("decision")
        })
    });
}

fn load(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let engine = runtime.engine().clone();
    let bytes = steps_bytes();
    let digest = sluice::strategy::cache::sha256_hex(bytes);

    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("compile", |b| {
        b.iter(|| Component::new(&engine, black_box(bytes)).expect("compile"))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    warm_cache(dir.path(), &engine, &digest, bytes);
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("from_disk_cache", |b| {
        b.iter(|| from_cache(dir.path(), &engine, black_box(&digest)))
    });
    group.finish();
}

/// Compiles `bytes` into a cache in `dir` (its key beside it).
fn warm_cache(dir: &std::path::Path, engine: &wasmtime::Engine, digest: &str, bytes: &[u8]) {
    let artifact = engine.precompile_component(bytes).expect("compile");
    open_cache(dir, engine)
        .store(digest, &artifact)
        .expect("store");
}

fn open_cache(dir: &std::path::Path, engine: &wasmtime::Engine) -> ArtifactCache {
    let cache_dir = dir.join("cache");
    let key = CacheKey::load_or_create(&dir.join("cache.key"), &cache_dir).expect("key");
    ArtifactCache::open(&cache_dir, engine, key).expect("cache")
}

/// What a restart does per module: open the cache, read and authenticate the
/// artifact, deserialize it.
fn from_cache(dir: &std::path::Path, engine: &wasmtime::Engine, digest: &str) -> Component {
    match open_cache(dir, engine).lookup(digest) {
        // SAFETY: the artifact was authenticated by the cache: this benchmark wrote it.
        Lookup::Hit(artifact) => {
            unsafe { Component::deserialize(engine, &artifact) }.expect("load")
        }
        other => panic!("not cached: {other:?}"),
    }
}

/// The example strategies, one per language, on the controller's path: a decision on a
/// fresh instance, a compile, a load from the disk cache.
fn languages(c: &mut Criterion) {
    let modules: [(&str, &[u8]); 3] = [
        ("rust_doubling", sluice_test_guests::DOUBLING),
        (
            "javascript_linear",
            sluice_test_guests::LINEAR_JS.unwrap_or_else(|e| panic!("{e}")),
        ),
        (
            "python_approval",
            sluice_test_guests::APPROVAL_PY.unwrap_or_else(|e| panic!("{e}")),
        ),
    ];
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let engine = runtime.engine().clone();
    let metrics: Arc<dyn sluice::strategy::MetricsSource> = Arc::new(NoMetrics);
    let input = input();
    for (name, bytes) in modules {
        let module = runtime.load(bytes).expect("load");
        let strategy = Strategy::new(module, Limits::default(), Grants::none());
        let mut group = c.benchmark_group(format!("language/{name}"));
        group.bench_function("decide_fresh_instance", |b| {
            b.iter(|| {
                runtime
                    .decide(&strategy, black_box(&input), metrics.clone())
                    .expect("decision")
            })
        });
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20));
        group.bench_function("compile", |b| {
            b.iter(|| Component::new(&engine, black_box(bytes)).expect("compile"))
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let digest = sluice::strategy::cache::sha256_hex(bytes);
        warm_cache(dir.path(), &engine, &digest, bytes);
        group.bench_function("from_disk_cache", |b| {
            b.iter(|| from_cache(dir.path(), &engine, black_box(&digest)))
        });
        group.finish();
    }
}

criterion_group!(benches, decide, load, languages);
criterion_main!(benches);
