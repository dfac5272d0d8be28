//! The WASI a `wasm32-wasip2` module gets: one that grants nothing.
//!
//! No files, no environment, no arguments, no sockets, no stdin. Its stdout and
//! stderr are captured (the first 16 KiB of each per call; a write past that fails)
//! and written to the controller's log within the call's log budget, when the module
//! is granted `log`. Its clocks read the decision's `now` and never move, and its
//! random numbers are seeded from the decision, so a decision replays exactly. A
//! sleep waits in real time, but inside the call's deadline: the call is stopped at
//! its deadline like any other.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::host_state::HostState;

/// How much a module may print to each of stdout and stderr in one call.
const OUTPUT_CAPACITY: usize = 16 << 10;

/// WASI resources (streams, pollables) a module may hold at once in one call: each
/// is host memory the memory limit does not see.
const MAX_RESOURCES: usize = 1024;

/// WASI state of one call.
pub struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiState {
    /// WASI fixed at `now_ms`, its randomness seeded with `seed`.
    pub fn new(now_ms: u64, seed: u64) -> Self {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock(Duration::from_millis(now_ms)))
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(StdRng::seed_from_u64(seed))
            .insecure_random(StdRng::seed_from_u64(seed.rotate_left(32)))
            .insecure_random_seed(u128::from(seed))
            .max_random_size(1 << 16)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        WasiState {
            ctx,
            table,
            stdout,
            stderr,
        }
    }

    /// What the module printed, stdout then stderr.
    pub fn output(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.stdout.contents()).into_owned();
        text.push_str(&String::from_utf8_lossy(&self.stderr.contents()));
        text
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // WASI is linked only into the linker used for modules that import it, and
        // those get a `WasiState` in every store (see `Runtime::store`).
        let wasi = self
            .wasi
            .as_mut()
            .expect("a WASI module's store always carries WASI state");
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

struct FixedWallClock(Duration);

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}
