//! A strategy module that misbehaves on purpose. Its configuration names the
//! misbehaviour; `good` behaves.

// Natively only the export is compiled out; the module is only ever built for wasm.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::hint::black_box;

use sluice_strategy::{
    Action, Decision, ModuleInfo, Observation, Replicas, StepTarget, Strategy, Traffic,
    export_strategy, log, metrics,
};

fn good(input: &Observation) -> Decision {
    Decision::new(
        1,
        StepTarget {
            replicas: Replicas::Count(1),
            traffic: Traffic {
                weight: Some(20),
                matches: Vec::new(),
            },
        },
        Action::Hold(5),
        format!("good at {}", input.now),
    )
}

/// Recursion with no end the optimiser can see: the stack overflows.
fn deep(n: u32) -> u32 {
    if n == 0 {
        return 1;
    }
    black_box(deep(black_box(n - 1))).wrapping_add(1)
}

struct Hostile;

impl Strategy for Hostile {
    fn decide(input: Observation) -> Result<Decision, String> {
        let mut decision = good(&input);
        match input.config.trim().trim_matches('"') {
            "good" | "" => {}
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            // Says it started (a query the host sees), then loops: a test knows the
            // loop is running before it measures what the loop does to others.
            "announced-loop" => {
                let _ = metrics::query("prometheus", "started");
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                    black_box(&hoard);
                }
            }
            "trap" => panic!("the strategy gave up"),
            "error" => return Err("the strategy refuses to decide".into()),
            "weight" => decision.target.traffic.weight = Some(150),
            "percent" => decision.target.replicas = Replicas::Percent(101),
            "replicas" => decision.target.replicas = Replicas::Count(input.workload.desired + 1),
            "step" => decision.step = input.step_count() + 1,
            "message" => decision.message = "m".repeat(64 << 10),
            "memo" => decision.memo = "m".repeat(64 << 10),
            // More than the host copies out of a guest in one answer.
            "huge" => decision.message = "m".repeat(4 << 20),
            "log" => log::info("hello from a module"),
            "logflood" => {
                for i in 0..10_000 {
                    log::info(&format!("line {i} of a flood"));
                }
            }
            "recurse" => decision.step = deep(black_box(u32::MAX)),
            "queries" => {
                let answered = (0..100)
                    .filter(|i| metrics::query("prometheus", &format!("q{i}")).is_ok())
                    .count();
                decision.message = format!("{answered} of 100 queries answered");
            }
            // Pauses for a second at a time, its memo counting its decisions: a
            // message and a memo that change at every decision.
            "countdown" => {
                let n = input.memo.parse::<u64>().unwrap_or(0) + 1;
                decision.action = Action::Pause(Some(1));
                decision.memo = n.to_string();
                decision.message = format!("decision {n}");
            }
            "metrics" => {
                let value = metrics::query("prometheus", "up").unwrap_or(-1.0);
                decision.message = format!("metric {value}");
            }
            other => return Err(format!("unknown misbehaviour `{other}`")),
        }
        Ok(decision)
    }

    fn describe() -> ModuleInfo {
        ModuleInfo::named("hostile", "0.0.0")
    }
}

export_strategy!(Hostile);
