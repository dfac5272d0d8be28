//! The strategy runtime: one engine, modules compiled and linked once per digest,
//! a fresh sandboxed instance for every call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::cache::{ArtifactCache, Provenance, sha256_hex};
use super::contract::{self, ContractVersion, Pre, STRATEGY_INTERFACE, Surface};
use super::error::{LoadError, StrategyError};
use super::host_state::{HostState, MetricsSource};
use super::limits::{Grants, Limits};
use super::model::{Decision, ModuleInfo, Observation};
use super::validate::{self, Violations};
use super::wasi::WasiState;

/// Bytes of memory (and table) kept resident in a pool slot between instances.
const KEEP_RESIDENT: usize = 2 << 20;

/// How often the engine's epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How the runtime's engine is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Calls that may run at once; sizes the instance pool.
    pub max_concurrent_calls: u32,
    /// The most linear memory any module may ever have, in bytes (the pool's slot size).
    pub max_memory_bytes: u64,
    /// Meter instructions so each call has a deterministic budget.
    pub fuel: bool,
    /// Where compiled modules are cached; `None` compiles in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_calls: 16,
            max_memory_bytes: 256 << 20,
            fuel: true,
            cache_dir: None,
        }
    }
}

/// A compiled, linked module, shared by every rollout that uses its digest.
pub struct CompiledModule {
    digest: String,
    contract: ContractVersion,
    contract_found: String,
    surface: Surface,
    size: usize,
    provenance: Provenance,
    pre: Pre,
}

impl CompiledModule {
    /// sha256 of the module's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The contract version the module was built against, as it names it.
    pub fn contract_version(&self) -> &str {
        &self.contract_found
    }

    /// The host's contract version serving it.
    pub fn contract(&self) -> ContractVersion {
        self.contract
    }

    /// What the module imports and exports.
    pub fn surface(&self) -> &Surface {
        &self.surface
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the compiled code came from the on-disk cache.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// The first 12 hex digits of the digest, for log lines.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }
}

/// A module together with what one use of it is allowed: the unit a rollout runs.
#[derive(Clone)]
pub struct Strategy {
    /// The compiled module.
    pub module: Arc<CompiledModule>,
    /// Its limits.
    pub limits: Limits,
    /// Its capabilities.
    pub grants: Arc<Grants>,
}

impl Strategy {
    /// A module with the given limits and grants.
    pub fn new(module: Arc<CompiledModule>, limits: Limits, grants: Grants) -> Self {
        Strategy {
            module,
            limits,
            grants: Arc::new(grants),
        }
    }
}

/// Runs strategy modules. Cheap to share; every method takes `&self`.
pub struct Runtime {
    engine: Engine,
    pure_linker: Linker<HostState>,
    wasi_linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
    fuel: bool,
    compiled: Mutex<HashMap<String, Arc<CompiledModule>>>,
    ticker: EpochTicker,
}

impl Runtime {
    /// A runtime with its engine, linkers and epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = build_engine(&config)?;
        let mut pure_linker = Linker::new(&engine);
        contract::add_to_linker(&mut pure_linker)?;
        let mut wasi_linker = pure_linker.clone();
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker)?;
        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| ArtifactCache::open(dir, &engine))
            .transpose()?;
        let ticker = EpochTicker::start(&engine)?;
        Ok(Runtime {
            engine,
            pure_linker,
            wasi_linker,
            cache,
            fuel: config.fuel,
            compiled: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    /// The engine, for tools that compile or inspect.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or finds) and links a module, checking its contract version and imports.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, LoadError> {
        let digest = sha256_hex(bytes);
        if let Some(module) = self.lock_compiled().get(&digest) {
            return Ok(module.clone());
        }
        let (component, provenance) = self.compile(&digest, bytes)?;
        let surface = Surface::of(&component, &self.engine);
        let contract_found = surface
            .exports
            .iter()
            .find_map(|e| contract::version_of(e, STRATEGY_INTERFACE))
            .ok_or_else(|| LoadError::NotAStrategy {
                digest: digest.clone(),
                exports: if surface.exports.is_empty() {
                    "nothing".into()
                } else {
                    surface.exports.join(", ")
                },
            })?;
        let contract = ContractVersion::serving(&contract_found).ok_or_else(|| {
            LoadError::UnsupportedContract {
                digest: digest.clone(),
                found: format!("sluice:strategy@{contract_found}"),
                supported: ContractVersion::supported(),
            }
        })?;
        if let Some(import) = surface.imports.iter().find(|i| !importable(i)) {
            return Err(LoadError::UnknownImport {
                digest,
                import: import.clone(),
            });
        }
        let linker = if surface.needs_wasi() {
            &self.wasi_linker
        } else {
            &self.pure_linker
        };
        let pre = Pre::new(contract, linker, &component).map_err(|e| LoadError::Link {
            digest: digest.clone(),
            message: format!("{e:#}"),
        })?;
        let module = Arc::new(CompiledModule {
            digest: digest.clone(),
            contract,
            contract_found,
            surface,
            size: bytes.len(),
            provenance,
            pre,
        });
        self.lock_compiled().insert(digest, module.clone());
        Ok(module)
    }

    /// Loads `bytes` after checking they hash to the pinned `sha256`.
    pub fn load_pinned(
        &self,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Arc<CompiledModule>, LoadError> {
        let actual = sha256_hex(bytes);
        let expected = crate::fetch::normalize_pin(sha256);
        if actual != expected {
            return Err(LoadError::DigestMismatch { expected, actual });
        }
        self.load(bytes)
    }

    /// Forgets compiled modules no longer in use by any strategy.
    pub fn evict_unused(&self) {
        self.lock_compiled()
            .retain(|_, module| Arc::strong_count(module) > 1);
    }

    /// Asks the module for a decision on `input`, and checks it against the contract.
    pub fn decide(
        &self,
        strategy: &Strategy,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Decision, StrategyError> {
        let mut violations = Violations::default();
        let answer = self.call(
            strategy,
            "decide",
            input,
            metrics,
            |instance, store| match instance {
                Instance::V0_1(i) => i.decide(store, input, &mut violations),
            },
        )?;
        checked(strategy, input, answer, violations)
    }

    /// Asks the module whether `config` is a configuration it accepts.
    pub fn validate_config(&self, strategy: &Strategy, config: &str) -> Result<(), StrategyError> {
        let input = Observation::default();
        let answer = self.call(
            strategy,
            "validate-config",
            &input,
            Arc::new(super::host_state::NoMetrics),
            |instance, store| match instance {
                Instance::V0_1(i) => i.validate_config(store, config),
            },
        )?;
        answer.map_err(|message| StrategyError::Config {
            digest: strategy.module.digest.clone(),
            message,
        })
    }

    /// Asks the module to describe itself.
    pub fn describe(&self, strategy: &Strategy) -> Result<ModuleInfo, StrategyError> {
        let input = Observation::default();
        self.call(
            strategy,
            "describe",
            &input,
            Arc::new(super::host_state::NoMetrics),
            |instance, store| match instance {
                Instance::V0_1(i) => i.describe(store),
            },
        )
    }

    /// An instance kept for several calls, for benchmarks and tools that measure the
    /// cost of instantiation. The controller never reuses an instance: guest state
    /// would leak from one decision to the next.
    pub fn warm(
        &self,
        strategy: &Strategy,
        input: &Observation,
    ) -> Result<WarmInstance, StrategyError> {
        let mut store = self.store(strategy, input, Arc::new(super::host_state::NoMetrics));
        let instance = match &strategy.module.pre {
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Instance::V0_1),
        }
        .map_err(|e| StrategyError::Instantiate {
            digest: strategy.module.digest.clone(),
            message: format!("{e:#}"),
        })?;
        Ok(WarmInstance {
            store,
            instance,
            strategy: strategy.clone(),
            fuel: self.fuel,
        })
    }

    /// Runs `f` on a fresh instance of the strategy's module, within its limits.
    fn call<R>(
        &self,
        strategy: &Strategy,
        export: &'static str,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
        f: impl FnOnce(&Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, StrategyError> {
        let module = &strategy.module;
        let mut store = self.store(strategy, input, metrics);
        let instance = match &module.pre {
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Instance::V0_1),
        };
        let result = instance
            .map_err(|e| {
                if store.data().limiter.hit() {
                    StrategyError::Memory {
                        digest: module.digest.clone(),
                        export: "instantiate",
                        limit_bytes: strategy.limits.memory_bytes,
                    }
                } else {
                    StrategyError::Instantiate {
                        digest: module.digest.clone(),
                        message: format!("{e:#}"),
                    }
                }
            })
            .and_then(|instance| {
                f(&instance, &mut store).map_err(|e| self.classify(e, &store, strategy, export))
            });
        if let Some(wasi) = &store.data().wasi {
            let output = wasi.output();
            if !output.is_empty() && strategy.grants.log {
                tracing::info!(module = module.short_digest(), rollout = %input.rollout, "{}", output.trim_end());
            }
        }
        result
    }

    /// A store for one call: limits, deadline, fuel, and WASI if the module needs it.
    fn store(
        &self,
        strategy: &Strategy,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
    ) -> Store<HostState> {
        let module = &strategy.module;
        let wasi = module
            .surface
            .needs_wasi()
            .then(|| WasiState::new(input.now, seed(input)));
        let state = HostState::new(
            strategy.limits.memory_bytes,
            strategy.grants.clone(),
            metrics,
            input.rollout.clone(),
            module.short_digest().to_owned(),
            wasi,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(strategy.limits.deadline()));
        if self.fuel {
            // Fuel is enabled on the engine, so setting it cannot fail.
            let _ = store.set_fuel(strategy.limits.fuel);
        }
        store
    }

    /// Names the limit a failed call ran into.
    fn classify(
        &self,
        error: wasmtime::Error,
        store: &Store<HostState>,
        strategy: &Strategy,
        export: &'static str,
    ) -> StrategyError {
        let digest = strategy.module.digest.clone();
        let state = store.data();
        if let Some(capability) = state.denied {
            return StrategyError::CapabilityDenied { digest, capability };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => StrategyError::Deadline {
                digest,
                export,
                limit: strategy.limits.deadline(),
            },
            Some(Trap::OutOfFuel) => StrategyError::Fuel {
                digest,
                export,
                fuel: strategy.limits.fuel,
            },
            _ if state.limiter.hit() => StrategyError::Memory {
                digest,
                export,
                limit_bytes: strategy.limits.memory_bytes,
            },
            _ => StrategyError::Trap {
                digest,
                export,
                message: format!("{error:#}"),
            },
        }
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> Result<(Component, Provenance), LoadError> {
        let compiled = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, digest, bytes),
            None => Component::new(&self.engine, bytes).map(|c| (c, Provenance::Compiled)),
        };
        compiled.map_err(|e| LoadError::NotAComponent {
            digest: digest.to_owned(),
            hint: if wasmparser_is_core_module(bytes) {
                " (it is a core module: turn it into a component with `sluice strategy componentize`)"
            } else {
                ""
            },
            message: format!("{e:#}"),
        })
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CompiledModule>>> {
        // The map holds no invariant a panic could break halfway: recover it.
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// An instance reused across calls (see [`Runtime::warm`]).
pub struct WarmInstance {
    store: Store<HostState>,
    instance: Instance,
    strategy: Strategy,
    fuel: bool,
}

impl WarmInstance {
    /// Calls `decide` again on the same instance, with fresh deadline and fuel.
    pub fn decide(&mut self, input: &Observation) -> Result<Decision, StrategyError> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.strategy.limits.deadline()));
        if self.fuel {
            let _ = self.store.set_fuel(self.strategy.limits.fuel);
        }
        let mut violations = Violations::default();
        let digest = &self.strategy.module.digest;
        let answer = match &self.instance {
            Instance::V0_1(i) => i.decide(&mut self.store, input, &mut violations),
        }
        .map_err(|e| StrategyError::Trap {
            digest: digest.clone(),
            export: "decide",
            message: format!("{e:#}"),
        })?;
        checked(&self.strategy, input, answer, violations)
    }
}

/// A module's answer to `decide`, checked against the contract's rules.
fn checked(
    strategy: &Strategy,
    input: &Observation,
    answer: Result<Decision, String>,
    mut violations: Violations,
) -> Result<Decision, StrategyError> {
    let digest = &strategy.module.digest;
    let decision = answer.map_err(|message| StrategyError::Refused {
        digest: digest.clone(),
        message,
    })?;
    validate::check(&decision, input, &strategy.limits, &mut violations);
    violations
        .into_result()
        .map_err(|violations| StrategyError::InvalidDecision {
            digest: digest.clone(),
            violations,
        })?;
    Ok(decision)
}

/// A live instance, for its contract version.
enum Instance {
    V0_1(contract::v0_1::Instance),
}

/// Imports a strategy may have: this package's capabilities and, for WASI builds, WASI.
fn importable(name: &str) -> bool {
    name.starts_with("wasi:")
        || ["log", "metrics", "types"].iter().any(|iface| {
            contract::version_of(name, &format!("{}/{iface}", contract::PACKAGE))
                .and_then(|v| ContractVersion::serving(&v))
                .is_some()
        })
}

/// Whether `bytes` start like a core wasm module (version 1) rather than a component.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// The epoch ticks a deadline spans, rounding up, plus one for the tick in progress.
fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (deadline.as_nanos().div_ceil(tick) as u64).max(1) + 1
}

/// A seed for a WASI module's randomness, fixed by the decision's inputs.
fn seed(input: &Observation) -> u64 {
    let digest =
        sha256_hex(format!("{}/{}/{}", input.rollout, input.canary_revision, input.now).as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(input.now)
}

fn build_engine(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let mut base = Config::new();
    base.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel)
        .memory_init_cow(true);
    let mut pooled = base.clone();
    let calls = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(calls)
        .total_core_instances(calls * 8)
        .total_memories(calls * 2)
        .total_tables(calls * 4)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
        // A strategy touches the first pages of its memory (stack, data) at every call:
        // keeping them resident between instances saves faulting them in again.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            // Some containers cap virtual memory below what the pool reserves.
            tracing::warn!(error = %e, "the pooling allocator is unavailable; instantiating on demand");
            Ok(Engine::new(&base)?)
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
