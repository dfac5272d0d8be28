//! A strategy module built for `wasm32-wasip2` that misbehaves through WASI.
//!
//! `describe` sleeps for an hour, and so do `validate-config` and `decide` when
//! their configuration is `sleep`: each must be stopped at its deadline. With the
//! configuration `reach`, `decide` reaches for files, the environment, a socket,
//! the clocks and randomness, and reports what it got in its message.

// Natively only the export is compiled out; the module is only ever built for wasm.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime};

use sluice_strategy::{
    Action, Decision, ModuleInfo, Observation, Replicas, StepTarget, Strategy, Traffic,
    export_strategy,
};

const AN_HOUR: Duration = Duration::from_secs(3600);

fn reach(input: &Observation) -> String {
    let files = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(_) => "denied".to_owned(),
    };
    let passwd = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read {} bytes", bytes.len()),
        Err(_) => "denied".to_owned(),
    };
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let socket = match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => "connected".to_owned(),
        Err(_) => "denied".to_owned(),
    };
    let lookup = match std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)) {
        Ok(addrs) => format!("resolved {}", addrs.count()),
        Err(_) => "denied".to_owned(),
    };
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let start = Instant::now();
    // A busy wait on the monotonic clock: it must not move within a call.
    let mut spins = 0u32;
    while start.elapsed() < Duration::from_millis(1) && spins < 1_000 {
        spins += 1;
    }
    let moved = start.elapsed().as_nanos();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(input.now);
    let random = hasher.finish();
    format!(
        "fs={files} passwd={passwd} env={env} args={args} socket={socket} lookup={lookup} wall={wall} now={} monotonic_moved={moved} random={random:016x}",
        input.now
    )
}

struct WasiHostile;

impl Strategy for WasiHostile {
    fn decide(input: Observation) -> Result<Decision, String> {
        let target = StepTarget {
            replicas: Replicas::Count(1),
            traffic: Traffic {
                weight: Some(20),
                matches: Vec::new(),
            },
        };
        let message = match input.config.trim().trim_matches('"') {
            "sleep" => {
                std::thread::sleep(AN_HOUR);
                "woke up".to_owned()
            }
            "reach" => reach(&input),
            _ => "good".to_owned(),
        };
        let mut decision = Decision::new(1, target, Action::Hold(5), message);
        decision.message.truncate(1000);
        Ok(decision)
    }

    fn validate_config(config: &str) -> Result<(), String> {
        if config.trim().trim_matches('"') == "sleep" {
            std::thread::sleep(AN_HOUR);
        }
        Ok(())
    }

    fn describe() -> ModuleInfo {
        std::thread::sleep(AN_HOUR);
        ModuleInfo::named("wasi-hostile", "0.0.0")
    }
}

export_strategy!(WasiHostile);
