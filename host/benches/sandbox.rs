//! A neighbour's decision latency, alone and while another namespace attacks the
//! sandbox: eight attackers call a hostile module in a loop while the neighbour
//! (the built-in `steps`, in its own namespace) decides, one decision after the
//! other. Prints p50 and p99 of the neighbour's latency per attack and the ratio to
//! the neighbour alone.
//!
//! `cargo bench -p sluice --bench sandbox`; figures in docs/benchmarks.md.

#[path = "../../tests/support/sdk.rs"]
#[allow(dead_code)]
mod sdk;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sluice::strategy::model::{Observation, Percent, ReplicaCounts, Step, StepState};
use sluice::strategy::{
    Grants, Limits, MetricsError, MetricsSource, NoMetrics, Runtime, RuntimeConfig, Strategy,
};

const ATTACKERS: usize = 8;
const SAMPLES: usize = 2000;
const WARMUP: usize = 200;

fn input(config: &str) -> Observation {
    Observation {
        rollout: "bench/app".into(),
        steps: vec![Step {
            traffic_weight: Some(Percent::new(20).expect("weight")),
            ..Step::default()
        }],
        current_step: 1,
        step_state: StepState::StepUpgrade,
        workload: ReplicaCounts {
            desired: 5,
            ready: 5,
            ..ReplicaCounts::default()
        },
        now: 1_700_000_000_000,
        config: config.into(),
        ..Observation::default()
    }
}

struct Fixed;

impl MetricsSource for Fixed {
    fn query<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(std::future::ready(Ok(1.0)))
    }
}

struct Attack {
    name: &'static str,
    module: &'static [u8],
    config: &'static str,
    limits: Limits,
    grants: Grants,
}

fn attacks() -> Vec<Attack> {
    let short = Limits {
        deadline_ms: 100,
        ..Limits::default()
    };
    let mut all = vec![
        Attack {
            name: "infinite loop (100 ms deadline)",
            module: sluice_test_guests::HOSTILE,
            config: "loop",
            limits: short.clone(),
            grants: Grants::none(),
        },
        Attack {
            name: "memory bomb over four memories",
            module: sluice_test_guests::MULTI_MEMORY_BOMB,
            config: "",
            limits: Limits::default(),
            grants: Grants::none(),
        },
        Attack {
            name: "10,000 log lines per decision",
            module: sluice_test_guests::HOSTILE,
            config: "logflood",
            limits: Limits::default(),
            grants: Grants {
                log: true,
                ..Grants::none()
            },
        },
        Attack {
            name: "result aliasing guest memory",
            module: sluice_test_guests::ALIASED_RESULT,
            config: "",
            limits: Limits::default(),
            grants: Grants::none(),
        },
        Attack {
            name: "deep recursion",
            module: sluice_test_guests::HOSTILE,
            config: "recurse",
            limits: Limits::default(),
            grants: Grants::none(),
        },
        Attack {
            name: "100 metric queries per decision",
            module: sluice_test_guests::HOSTILE,
            config: "queries",
            limits: Limits::default(),
            grants: Grants {
                metrics: ["prometheus".to_owned()].into(),
                ..Grants::none()
            },
        },
    ];
    if let Ok(sleeper) = sluice_test_guests::WASI_HOSTILE {
        all.insert(
            0,
            Attack {
                name: "WASI sleep in decide (100 ms deadline)",
                module: sleeper,
                config: "sleep",
                limits: short,
                grants: Grants::none(),
            },
        );
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The neighbour's latencies while `attack` (if any) runs; and the attack's calls.
fn measure(runtime: &Arc<Runtime>, attack: Option<&Attack>) -> (Vec<Duration>, u64) {
    let neighbour = Strategy::new(
        runtime
            .load(sluice::strategy::builtin::builtin("steps").expect("built in"))
            .expect("steps"),
        Limits::default(),
        Grants::none(),
    );
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("driver");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    if let Some(attack) = attack {
        let hostile = Strategy::new(
            runtime.load(attack.module).expect("hostile module"),
            attack.limits.clone(),
            attack.grants.clone(),
        );
        for _ in 0..ATTACKERS {
            let (runtime, hostile, stop, calls) = (
                runtime.clone(),
                hostile.clone(),
                stop.clone(),
                calls.clone(),
            );
            let input = input(attack.config);
            attackers.push(driver.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = runtime
                        .decide_async("evil", &hostile, &input, Arc::new(Fixed))
                        .await;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let good = input("");
    let mut latencies = Vec::with_capacity(SAMPLES);
    driver.block_on(async {
        // Let the attack fill its share first.
        if attack.is_some() {
            while runtime.calls().running("evil").1 == 0 && calls.load(Ordering::Relaxed) == 0 {
                tokio::task::yield_now().await;
            }
        }
        for i in 0..WARMUP + SAMPLES {
            let started = Instant::now();
            runtime
                .decide_async("neighbour", &neighbour, &good, Arc::new(NoMetrics))
                .await
                .expect("the neighbour decides");
            if i >= WARMUP {
                latencies.push(started.elapsed());
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    driver.block_on(async {
        for a in attackers {
            let _ = a.await;
        }
    });
    latencies.sort();
    (latencies, calls.load(Ordering::Relaxed))
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let (alone, _) = measure(&runtime, None);
    let (p50, p99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    println!(
        "neighbour decisions: {SAMPLES} per row; attackers: {ATTACKERS} concurrent loops in another namespace"
    );
    println!();
    println!("| attack | neighbour p50 | neighbour p99 | p50 ratio | p99 ratio | attack calls |");
    println!("|---|---|---|---|---|---|");
    println!("| none (alone) | {p50:.1?} | {p99:.1?} | 1.0 | 1.0 | 0 |");
    for attack in attacks() {
        let (latencies, calls) = measure(&runtime, Some(&attack));
        let (a50, a99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "| {} | {a50:.1?} | {a99:.1?} | {:.1} | {:.1} | {calls} |",
            attack.name,
            a50.as_secs_f64() / p50.as_secs_f64(),
            a99.as_secs_f64() / p99.as_secs_f64(),
        );
    }
    let _ = NoMetrics;
}
