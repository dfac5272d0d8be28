//! The strategy runtime: one engine, modules compiled once per digest (bounded, off
//! the caller's path), a fresh sandboxed instance for every call.
//!
//! Every call takes a slot of the fair queue for its tenant, then runs as one future
//! on the runtime's own executor — not on the controller's threads — under a
//! wall-clock timeout that covers the whole call: instantiation, wasm, WASI waits
//! and host imports alike. Wasm yields to the executor at every epoch tick, so a
//! module spinning in a loop neither holds a thread nor outlives its deadline.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::cache::{self, ArtifactCache, CacheKey, Lookup, Provenance, sha256_hex};
use super::compile::{self, Compiler, EngineSettings};
use super::contract::{self, ContractVersion, Pre, STRATEGY_INTERFACE, Surface};
use super::error::{LoadError, StrategyError};
use super::host_state::{CallContext, HostState, MetricsSource, NoMetrics, truncate};
use super::limits::{Ceilings, Grants, Limits};
use super::model::{Decision, ModuleInfo, Observation};
use super::queue::{FairQueue, QueueConfig};
use super::validate::{self, Violations};
use super::wasi::WasiState;

/// Core instances one component may hold (interpreters in other languages link a
/// few dozen core modules).
const MAX_CORE_INSTANCES: u32 = 64;

/// Bytes of memory (and table) kept resident in a pool slot between instances.
const KEEP_RESIDENT: usize = 2 << 20;

/// How often the engine's epoch advances: how often running wasm yields, and so
/// the granularity of a call's deadline for a module that computes.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Most bytes the host copies out of a guest in one lift: a call's result, or one
/// import's arguments. Strings count their bytes, lists their elements' host size,
/// so a result whose lists all point at the same guest memory is stopped here.
pub const HOSTCALL_FUEL: usize = 1 << 20;

/// Longest error text of a module (a refusal, a trap) the host keeps.
pub const MAX_ERROR_TEXT: usize = 1024;

/// Tenant of calls made by local tools (not a valid namespace name, so no
/// namespace shares its turn).
pub const LOCAL_TENANT: &str = "(local tools)";

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once: the size of the instance pool.
    pub max_concurrent_calls: u32,
    /// How calls share the pool; derived from its size when `None`.
    pub queue: Option<QueueConfig>,
    /// What modules may ask for.
    pub ceilings: Ceilings,
    /// Meter instructions so each call has a deterministic budget.
    pub fuel: bool,
    /// Where compiled modules are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates cached artifacts; beside the cache directory
    /// (`<cache-dir>.key`) when `None`.
    pub cache_key_file: Option<PathBuf>,
    /// Bytes the cache directory may hold (artifacts and downloads).
    pub cache_max_bytes: u64,
    /// Compiled modules kept in memory, by the size of their artifacts.
    pub max_compiled_bytes: u64,
    /// How modules are compiled.
    pub compiler: Compiler,
    /// Modules compiled at once.
    pub compile_concurrency: usize,
    /// Threads the sandbox's calls run on.
    pub executor_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_calls: 16,
            queue: None,
            ceilings: Ceilings::default(),
            fuel: true,
            cache_dir: None,
            cache_key_file: None,
            cache_max_bytes: 1 << 30,
            max_compiled_bytes: 1 << 30,
            compiler: Compiler::InProcess,
            compile_concurrency: 1,
            executor_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
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
    artifact_size: usize,
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

/// Where a module is on its way to being usable.
#[derive(Clone)]
pub enum ModuleState {
    /// Compiled and linked.
    Ready(Arc<CompiledModule>),
    /// Being compiled (or waiting for its turn to be).
    Compiling,
    /// Refused.
    Failed(LoadError),
}

type Outcome = Option<Result<Arc<CompiledModule>, LoadError>>;

enum Entry {
    Compiling(watch::Receiver<Outcome>),
    Ready {
        module: Arc<CompiledModule>,
        used: u64,
    },
    /// Refused; asked again after `retry` when the refusal may not be the module's
    /// fault (the machine was too busy to compile it in time, the helper failed).
    Failed {
        error: LoadError,
        retry: Option<std::time::Instant>,
    },
}

/// When a refusal is looked at again: never for what the module is, later for
/// what the machine may have caused.
fn retry_after(error: &LoadError) -> Option<std::time::Instant> {
    let after = match error {
        LoadError::CompileTimeout { .. } | LoadError::CompileMemory { .. } => {
            Duration::from_secs(600)
        }
        LoadError::CompileFailed { .. } | LoadError::Read { .. } => Duration::from_secs(30),
        _ => return None,
    };
    Some(std::time::Instant::now() + after)
}

/// Most refused digests remembered (each is refused again without compiling).
const MAX_FAILED: usize = 1024;

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    clock: u64,
    /// Digests of byte buffers seen, by address: the same download is handed over
    /// at every reconcile and need not be hashed again.
    digests: HashMap<usize, (std::sync::Weak<Vec<u8>>, String)>,
}

impl Table {
    fn touch(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Forgets the least recently used modules no call holds, past `max_bytes`.
    fn shrink(&mut self, max_bytes: u64) {
        loop {
            let total: u64 = self
                .entries
                .values()
                .filter_map(|e| match e {
                    Entry::Ready { module, .. } => Some(module.artifact_size as u64),
                    _ => None,
                })
                .sum();
            if total <= max_bytes {
                break;
            }
            let oldest = self
                .entries
                .iter()
                .filter_map(|(digest, e)| match e {
                    Entry::Ready { module, used } if Arc::strong_count(module) == 1 => {
                        Some((*used, digest.clone()))
                    }
                    _ => None,
                })
                .min();
            match oldest {
                Some((_, digest)) => {
                    self.entries.remove(&digest);
                }
                None => break,
            }
        }
        let failed: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Failed { .. }))
            .map(|(d, _)| d.clone())
            .collect();
        for digest in failed.iter().skip(MAX_FAILED) {
            self.entries.remove(digest);
        }
    }
}

struct Shared {
    engine: Engine,
    settings: EngineSettings,
    pure_linker: Linker<HostState>,
    wasi_linker: Linker<HostState>,
    fuel: bool,
    ceilings: Ceilings,
    calls: Arc<FairQueue>,
    compiles: Arc<FairQueue>,
    compiler: Compiler,
    cache: Option<ArtifactCache>,
    cache_max_bytes: u64,
    max_compiled_bytes: u64,
    table: Mutex<Table>,
    log_lines_dropped: std::sync::atomic::AtomicU64,
}

/// What the sandbox has counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Log lines modules wrote past their per-call budget, dropped.
    pub log_lines_dropped: u64,
}

/// Runs strategy modules. Cheap to share; every method takes `&self`.
pub struct Runtime {
    shared: Arc<Shared>,
    executor: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    ticker: EpochTicker,
}

impl Runtime {
    /// A runtime with its engine, linkers, executor and epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let settings = EngineSettings { fuel: config.fuel };
        let engine = build_engine(&config, settings)?;
        let mut pure_linker = Linker::new(&engine);
        contract::add_to_linker(&mut pure_linker)?;
        let mut wasi_linker = pure_linker.clone();
        wasmtime_wasi::p2::add_to_linker_async(&mut wasi_linker)?;
        let cache = match &config.cache_dir {
            Some(dir) => {
                let key_file = config
                    .cache_key_file
                    .clone()
                    .unwrap_or_else(|| sibling_key_file(dir));
                let key = CacheKey::load_or_create(&key_file, dir).map_err(|e| {
                    anyhow::anyhow!("the module cache key {}: {e}", key_file.display())
                })?;
                Some(
                    ArtifactCache::open(dir, &engine, key)
                        .map_err(|e| anyhow::anyhow!("the module cache {}: {e}", dir.display()))?,
                )
            }
            None => None,
        };
        let pool = usize::try_from(config.max_concurrent_calls.max(1)).unwrap_or(16);
        let queue = config.queue.unwrap_or_else(|| QueueConfig::for_pool(pool));
        let compiles = QueueConfig {
            global: config.compile_concurrency.max(1),
            per_tenant: 1,
            waiting_per_tenant: 8,
        };
        let executor = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.executor_threads.max(1))
            .thread_name("sluice-sandbox")
            .enable_all()
            .build()?;
        let handle = executor.handle().clone();
        let ticker = EpochTicker::start(&engine)?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                settings,
                pure_linker,
                wasi_linker,
                fuel: config.fuel,
                ceilings: config.ceilings,
                calls: FairQueue::new(queue),
                compiles: FairQueue::new(compiles),
                compiler: config.compiler,
                cache,
                cache_max_bytes: config.cache_max_bytes,
                max_compiled_bytes: config.max_compiled_bytes,
                table: Mutex::new(Table::default()),
                log_lines_dropped: std::sync::atomic::AtomicU64::new(0),
            }),
            executor: Some(executor),
            handle,
            ticker,
        })
    }

    /// The engine, for tools that compile or inspect.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// What modules may ask for.
    pub fn ceilings(&self) -> &Ceilings {
        &self.shared.ceilings
    }

    /// The queue every call waits in, for tools that watch it.
    pub fn calls(&self) -> &Arc<FairQueue> {
        &self.shared.calls
    }

    /// The queue every compilation waits in.
    pub fn compiles(&self) -> &Arc<FairQueue> {
        &self.shared.compiles
    }

    /// What the sandbox has counted.
    pub fn stats(&self) -> SandboxStats {
        SandboxStats {
            log_lines_dropped: self.shared.log_lines_dropped.load(Ordering::Relaxed),
        }
    }

    /// Where the module in `bytes` is: ready, being compiled, or refused. Starts its
    /// compilation (for `tenant`'s turn of the compile queue) if nobody has; never
    /// waits for it.
    pub fn module_state(
        &self,
        tenant: &str,
        bytes: Arc<Vec<u8>>,
        pin: Option<&str>,
    ) -> ModuleState {
        match self.begin(tenant, bytes, pin) {
            Begun::Ready(module) => ModuleState::Ready(module),
            Begun::Failed(e) => ModuleState::Failed(e),
            Begun::Wait(_) => ModuleState::Compiling,
        }
    }

    /// The module in `bytes`, compiled (waiting for it) and linked; checked against
    /// `pin` when given.
    pub async fn prepare(
        &self,
        tenant: &str,
        bytes: Arc<Vec<u8>>,
        pin: Option<&str>,
    ) -> Result<Arc<CompiledModule>, LoadError> {
        match self.begin(tenant, bytes, pin) {
            Begun::Ready(module) => Ok(module),
            Begun::Failed(e) => Err(e),
            Begun::Wait(mut rx) => {
                let outcome = rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|o| o.clone())
                    .ok()
                    .flatten();
                outcome.unwrap_or_else(|| {
                    Err(LoadError::CompileFailed {
                        digest: String::new(),
                        message: "the compilation was abandoned".into(),
                    })
                })
            }
        }
    }

    /// Compiles (or finds) and links a module, waiting for it: for tools.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, LoadError> {
        self.block_on(self.prepare(LOCAL_TENANT, Arc::new(bytes.to_vec()), None))
    }

    /// Loads `bytes` after checking they hash to the pinned `sha256`: for tools.
    pub fn load_pinned(
        &self,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Arc<CompiledModule>, LoadError> {
        self.block_on(self.prepare(LOCAL_TENANT, Arc::new(bytes.to_vec()), Some(sha256)))
    }

    /// Asks the module for a decision on `input`, for `tenant`, and checks it. The
    /// call runs on the sandbox's executor, not on the caller's threads.
    pub async fn decide_async(
        &self,
        tenant: &str,
        strategy: &Strategy,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Decision, StrategyError> {
        self.decide_on(Placement::Executor, tenant, strategy, input, metrics)
            .await
    }

    /// Asks the module whether `config` is a configuration it accepts, for `tenant`.
    pub async fn validate_config_async(
        &self,
        tenant: &str,
        strategy: &Strategy,
        config: &str,
    ) -> Result<(), StrategyError> {
        self.validate_config_on(Placement::Executor, tenant, strategy, config)
            .await
    }

    /// Asks the module to describe itself, for `tenant`.
    pub async fn describe_async(
        &self,
        tenant: &str,
        strategy: &Strategy,
    ) -> Result<ModuleInfo, StrategyError> {
        self.describe_on(Placement::Executor, tenant, strategy)
            .await
    }

    /// [`Runtime::decide_async`] for local tools, on the calling thread.
    pub fn decide(
        &self,
        strategy: &Strategy,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Decision, StrategyError> {
        self.block_on(self.decide_on(Placement::Caller, LOCAL_TENANT, strategy, input, metrics))
    }

    /// [`Runtime::validate_config_async`] for local tools, on the calling thread.
    pub fn validate_config(&self, strategy: &Strategy, config: &str) -> Result<(), StrategyError> {
        self.block_on(self.validate_config_on(Placement::Caller, LOCAL_TENANT, strategy, config))
    }

    /// [`Runtime::describe_async`] for local tools, on the calling thread.
    pub fn describe(&self, strategy: &Strategy) -> Result<ModuleInfo, StrategyError> {
        self.block_on(self.describe_on(Placement::Caller, LOCAL_TENANT, strategy))
    }

    async fn decide_on(
        &self,
        placement: Placement,
        tenant: &str,
        strategy: &Strategy,
        input: &Observation,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Decision, StrategyError> {
        let export = Export::Decide(Box::new(input.clone()));
        match self
            .run(placement, tenant, strategy, export, metrics)
            .await?
        {
            Answer::Decided(answer, violations) => checked(strategy, input, answer, violations),
            _ => unreachable_answer(strategy),
        }
    }

    async fn validate_config_on(
        &self,
        placement: Placement,
        tenant: &str,
        strategy: &Strategy,
        config: &str,
    ) -> Result<(), StrategyError> {
        let export = Export::ValidateConfig(config.to_owned());
        match self
            .run(placement, tenant, strategy, export, Arc::new(NoMetrics))
            .await?
        {
            Answer::Validated(answer) => answer.map_err(|message| StrategyError::Config {
                digest: strategy.module.digest.clone(),
                message: truncate(&message, MAX_ERROR_TEXT).to_owned(),
            }),
            _ => unreachable_answer(strategy),
        }
    }

    async fn describe_on(
        &self,
        placement: Placement,
        tenant: &str,
        strategy: &Strategy,
    ) -> Result<ModuleInfo, StrategyError> {
        match self
            .run(
                placement,
                tenant,
                strategy,
                Export::Describe,
                Arc::new(NoMetrics),
            )
            .await?
        {
            Answer::Described(info) => Ok(info.bounded()),
            _ => unreachable_answer(strategy),
        }
    }

    /// Runs `future` to completion on the runtime's executor, from synchronous code.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.handle.block_on(future);
        }
        // Inside an async context a thread may not block on another runtime: wait
        // on a thread of its own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.handle.block_on(future))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// An instance kept for several calls, for benchmarks and tools that measure the
    /// cost of instantiation. The controller never reuses an instance: guest state
    /// would leak from one decision to the next.
    pub fn warm(
        &self,
        strategy: &Strategy,
        input: &Observation,
    ) -> Result<WarmInstance, StrategyError> {
        let shared = self.shared.clone();
        let strategy = strategy.clone();
        let input = input.clone();
        self.block_on(async move {
            let mut store = shared.store(&strategy, &input, Arc::new(NoMetrics));
            let instance = Instance::new(&strategy.module.pre, &mut store)
                .await
                .map_err(|e| StrategyError::Instantiate {
                    digest: strategy.module.digest.clone(),
                    message: format!("{e:#}"),
                })?;
            Ok(WarmInstance {
                store,
                instance,
                strategy,
                fuel: shared.fuel,
                handle: self.handle.clone(),
            })
        })
    }

    /// Takes a slot for `tenant` and runs one export on the executor.
    async fn run(
        &self,
        placement: Placement,
        tenant: &str,
        strategy: &Strategy,
        export: Export,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Answer, StrategyError> {
        let slot = self
            .shared
            .calls
            .acquire(tenant)
            .await
            .map_err(StrategyError::Busy)?;
        if placement == Placement::Caller {
            let answer = self.shared.call(strategy, export, metrics).await;
            drop(slot);
            return answer;
        }
        let shared = self.shared.clone();
        let strategy = strategy.clone();
        let digest = strategy.module.digest.clone();
        let task = self.handle.spawn(async move {
            let answer = shared.call(&strategy, export, metrics).await;
            drop(slot);
            answer
        });
        task.await.map_err(|e| StrategyError::Trap {
            digest,
            export: "call",
            message: format!("the call's task ended abnormally: {e}"),
        })?
    }

    /// The sha256 of `bytes`, remembered for as long as the buffer lives.
    fn digest_of(&self, bytes: &Arc<Vec<u8>>) -> String {
        let key = Arc::as_ptr(bytes) as usize;
        if let Some((seen, digest)) = self.shared.lock_table().digests.get(&key)
            && seen.upgrade().is_some_and(|b| Arc::ptr_eq(&b, bytes))
        {
            return digest.clone();
        }
        let digest = sha256_hex(bytes);
        let mut table = self.shared.lock_table();
        if table.digests.len() >= 256 {
            table.digests.retain(|_, (seen, _)| seen.strong_count() > 0);
        }
        table
            .digests
            .insert(key, (Arc::downgrade(bytes), digest.clone()));
        digest
    }

    fn begin(&self, tenant: &str, bytes: Arc<Vec<u8>>, pin: Option<&str>) -> Begun {
        let ceiling = self.shared.ceilings.module_bytes;
        if bytes.len() as u64 > ceiling {
            return Begun::Failed(LoadError::TooLarge {
                size: bytes.len() as u64,
                ceiling,
            });
        }
        let digest = self.digest_of(&bytes);
        if let Some(pin) = pin {
            let expected = crate::fetch::normalize_pin(pin);
            if digest != expected {
                return Begun::Failed(LoadError::DigestMismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let mut table = self.shared.lock_table();
        let now = table.touch();
        match table.entries.get_mut(&digest) {
            Some(Entry::Ready { module, used }) => {
                *used = now;
                return Begun::Ready(module.clone());
            }
            Some(Entry::Failed { error, retry })
                if retry.is_none_or(|at| std::time::Instant::now() < at) =>
            {
                return Begun::Failed(error.clone());
            }
            Some(Entry::Compiling(rx)) => return Begun::Wait(rx.clone()),
            _ => {}
        }
        let (tx, rx) = watch::channel(None);
        table
            .entries
            .insert(digest.clone(), Entry::Compiling(rx.clone()));
        drop(table);
        let shared = self.shared.clone();
        let tenant = tenant.to_owned();
        self.handle.spawn(async move {
            // Should this task end without an outcome (a panic, the executor shutting
            // down), the guard takes the entry out so the module is asked for again.
            let mut guard = CompileGuard {
                shared: shared.clone(),
                digest: digest.clone(),
                armed: true,
            };
            let outcome = shared.compile_job(&tenant, &digest, bytes).await;
            guard.armed = false;
            shared.settle(&digest, &outcome);
            let _ = tx.send(Some(outcome));
            let evicting = shared.clone();
            let _ = tokio::task::spawn_blocking(move || evicting.evict_cache()).await;
        });
        Begun::Wait(rx)
    }
}

/// Removes a `Compiling` entry whose job ended without an outcome.
struct CompileGuard {
    shared: Arc<Shared>,
    digest: String,
    armed: bool,
}

impl Drop for CompileGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut table = self.shared.lock_table();
            if matches!(table.entries.get(&self.digest), Some(Entry::Compiling(_))) {
                table.entries.remove(&self.digest);
            }
        }
    }
}

enum Begun {
    Ready(Arc<CompiledModule>),
    Failed(LoadError),
    Wait(watch::Receiver<Outcome>),
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
        if let Some(executor) = self.executor.take() {
            // Calls end at their deadlines; nothing need wait for them here, and an
            // async context may not block on a runtime's shutdown.
            executor.shutdown_background();
        }
    }
}

impl Shared {
    /// Records a compilation's outcome in the table.
    fn settle(&self, digest: &str, outcome: &Result<Arc<CompiledModule>, LoadError>) {
        let mut table = self.lock_table();
        let now = table.touch();
        match outcome {
            Ok(module) => {
                table.entries.insert(
                    digest.to_owned(),
                    Entry::Ready {
                        module: module.clone(),
                        used: now,
                    },
                );
            }
            // Waiting for a turn is no verdict on the module: ask again later.
            Err(LoadError::Busy(_)) => {
                table.entries.remove(digest);
            }
            Err(e) => {
                tracing::warn!(module = %&digest[..12], error = %e, "module refused");
                table.entries.insert(
                    digest.to_owned(),
                    Entry::Failed {
                        error: e.clone(),
                        retry: retry_after(e),
                    },
                );
            }
        }
        table.shrink(self.max_compiled_bytes);
    }

    fn lock_table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds no invariant a panic could break halfway: recover it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the module's artifact in the cache or compiles it, then links it.
    async fn compile_job(
        self: &Arc<Self>,
        tenant: &str,
        digest: &str,
        bytes: Arc<Vec<u8>>,
    ) -> Result<Arc<CompiledModule>, LoadError> {
        let _turn = self
            .compiles
            .acquire(tenant)
            .await
            .map_err(LoadError::Busy)?;
        if self.cache.is_some() {
            // Reading, authenticating and loading an artifact is file I/O and hashing:
            // off the executor that runs the calls.
            let shared = self.clone();
            let (owned, size) = (digest.to_owned(), bytes.len());
            let cached = tokio::task::spawn_blocking(move || {
                let cache = shared.cache.as_ref()?;
                match cache.lookup(&owned) {
                    Lookup::Hit(artifact) => {
                        Some(shared.link(&owned, size, &artifact, Provenance::Cached))
                    }
                    _ => None,
                }
            })
            .await
            .map_err(|e| failed_task(digest, &e))?;
            match cached {
                Some(Ok(module)) => return Ok(module),
                Some(Err(e)) => {
                    tracing::warn!(module = %&digest[..12], error = %e, "a cached artifact does not load; compiling again");
                }
                None => {}
            }
        }
        let artifact = self
            .compiler
            .compile(&self.engine, self.settings, digest, bytes.clone())
            .await
            .map_err(|e| match e {
                LoadError::NotAComponent { message, .. } => {
                    compile::invalid(digest, &bytes, &message)
                }
                other => other,
            })?;
        let shared = self.clone();
        let (owned, size) = (digest.to_owned(), bytes.len());
        tokio::task::spawn_blocking(move || {
            let module = shared.link(&owned, size, &artifact, Provenance::Compiled)?;
            if let Some(cache) = &shared.cache
                && let Err(e) = cache.store(&owned, &artifact)
            {
                tracing::warn!(error = %e, "cannot cache a compiled module");
            }
            Ok(module)
        })
        .await
        .map_err(|e| failed_task(digest, &e))?
    }

    /// Loads an artifact and checks the module's contract version and imports.
    fn link(
        &self,
        digest: &str,
        size: usize,
        artifact: &[u8],
        provenance: Provenance,
    ) -> Result<Arc<CompiledModule>, LoadError> {
        // SAFETY: the artifact is either what this host's own compiler produced just
        // now from bytes whose digest it computed, or a cached file authenticated by
        // its HMAC tag, which binds it to this digest and this engine configuration
        // under a key only this host holds (see `cache`). It is copied into memory
        // before it is checked, so it cannot change after the check.
        let component = unsafe { Component::deserialize(&self.engine, artifact) }.map_err(|e| {
            LoadError::CompileFailed {
                digest: digest.to_owned(),
                message: format!("loading the compiled module: {e:#}"),
            }
        })?;
        let surface = Surface::of(&component, &self.engine);
        let contract_found = surface
            .exports
            .iter()
            .find_map(|e| contract::version_of(e, STRATEGY_INTERFACE))
            .ok_or_else(|| LoadError::NotAStrategy {
                digest: digest.to_owned(),
                exports: if surface.exports.is_empty() {
                    "nothing".into()
                } else {
                    surface.exports.join(", ")
                },
            })?;
        let contract = ContractVersion::serving(&contract_found).ok_or_else(|| {
            LoadError::UnsupportedContract {
                digest: digest.to_owned(),
                found: format!("sluice:strategy@{contract_found}"),
                supported: ContractVersion::supported(),
            }
        })?;
        if let Some(import) = surface.imports.iter().find(|i| !importable(i)) {
            return Err(LoadError::UnknownImport {
                digest: digest.to_owned(),
                import: import.clone(),
            });
        }
        let linker = if surface.needs_wasi() {
            &self.wasi_linker
        } else {
            &self.pure_linker
        };
        let pre = Pre::new(contract, linker, &component).map_err(|e| LoadError::Link {
            digest: digest.to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Arc::new(CompiledModule {
            digest: digest.to_owned(),
            contract,
            contract_found,
            surface,
            size,
            artifact_size: artifact.len(),
            provenance,
            pre,
        }))
    }

    /// Keeps the cache directory within its budget, sparing modules in memory.
    fn evict_cache(&self) {
        let Some(cache) = &self.cache else { return };
        let live: Vec<String> = self.lock_table().entries.keys().cloned().collect();
        let downloads = cache.dir().join("modules");
        let removed = cache::enforce_budget(
            &[cache.dir(), &downloads],
            self.cache_max_bytes,
            &|digest| live.iter().any(|d| d == digest),
        );
        for path in removed {
            tracing::info!(path = %path.display(), "evicted from the module cache");
        }
    }

    /// Runs `export` on a fresh instance of the strategy's module, within its limits
    /// and its deadline.
    async fn call(
        &self,
        strategy: &Strategy,
        export: Export,
        metrics: Arc<dyn MetricsSource>,
    ) -> Result<Answer, StrategyError> {
        let module = &strategy.module;
        let blank = Observation::default();
        let input = match &export {
            Export::Decide(input) => input,
            _ => &blank,
        };
        let mut store = self.store(strategy, input, metrics);
        let name = export.name();
        let run = async {
            let instance = Instance::new(&module.pre, &mut store)
                .await
                .map_err(|e| (true, e))?;
            instance
                .call(&export, &mut store)
                .await
                .map_err(|e| (false, e))
        };
        let result = match tokio::time::timeout(strategy.limits.deadline(), run).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err((instantiating, error))) => Err(self.classify(
                error,
                &store,
                strategy,
                if instantiating { "instantiate" } else { name },
            )),
            // The call's future is dropped mid-flight: wasmtime unwinds the guest,
            // and the store, dropped below, returns its instance to the pool.
            Err(_) => Err(StrategyError::Deadline {
                digest: module.digest.clone(),
                export: name,
                limit: strategy.limits.deadline(),
            }),
        };
        let state = store.data_mut();
        if let Some(output) = state.wasi.as_ref().map(WasiState::output)
            && !output.is_empty()
        {
            state.log_output(&output);
        }
        if state.log.dropped() > 0 {
            self.log_lines_dropped
                .fetch_add(u64::from(state.log.dropped()), Ordering::Relaxed);
            tracing::warn!(
                module = module.short_digest(),
                rollout = %input.rollout,
                dropped = state.log.dropped(),
                "the module wrote more than its log budget; lines dropped"
            );
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
            CallContext {
                memory_limit: strategy.limits.memory_bytes,
                grants: strategy.grants.clone(),
                metrics,
                rollout: input.rollout.clone(),
                module: module.short_digest().to_owned(),
                deadline: strategy.limits.deadline(),
            },
            wasi,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Running wasm yields to the executor at every tick; the call's timeout ends it.
        store.epoch_deadline_async_yield_and_update(1);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
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
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            // Pool pressure: not the module's doing.
            return StrategyError::Busy(super::queue::Busy {
                tenant: "every namespace".into(),
                waiting: 0,
            });
        }
        let text = format!("{error:#}");
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
            _ if text.contains("fuel allocated for hostcalls has been exhausted") => {
                StrategyError::HostData {
                    digest,
                    export,
                    limit_bytes: HOSTCALL_FUEL,
                }
            }
            _ if state.limiter.hit() => StrategyError::Memory {
                digest,
                export,
                limit_bytes: strategy.limits.memory_bytes,
            },
            _ => StrategyError::Trap {
                digest,
                export,
                message: truncate(&text, MAX_ERROR_TEXT).to_owned(),
            },
        }
    }
}

fn failed_task(digest: &str, e: &tokio::task::JoinError) -> LoadError {
    LoadError::CompileFailed {
        digest: digest.to_owned(),
        message: format!("the loading task ended abnormally: {e}"),
    }
}

fn unreachable_answer<T>(strategy: &Strategy) -> Result<T, StrategyError> {
    Err(StrategyError::Trap {
        digest: strategy.module.digest.clone(),
        export: "call",
        message: "the host got an answer for another export".into(),
    })
}

/// Where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// On the sandbox's executor: the controller's calls, kept off its own threads.
    Executor,
    /// On the caller's thread: tools, which wait for the answer anyway.
    Caller,
}

/// An export to call, with its arguments.
enum Export {
    Decide(Box<Observation>),
    ValidateConfig(String),
    Describe,
}

impl Export {
    fn name(&self) -> &'static str {
        match self {
            Export::Decide(_) => "decide",
            Export::ValidateConfig(_) => "validate-config",
            Export::Describe => "describe",
        }
    }
}

/// What an export answered.
enum Answer {
    Decided(Result<Decision, String>, Violations),
    Validated(Result<(), String>),
    Described(ModuleInfo),
}

/// An instance reused across calls (see [`Runtime::warm`]).
pub struct WarmInstance {
    store: Store<HostState>,
    instance: Instance,
    strategy: Strategy,
    fuel: bool,
    handle: tokio::runtime::Handle,
}

impl WarmInstance {
    /// Calls `decide` again on the same instance, with fresh fuel.
    pub fn decide(&mut self, input: &Observation) -> Result<Decision, StrategyError> {
        if self.fuel {
            let _ = self.store.set_fuel(self.strategy.limits.fuel);
        }
        let digest = self.strategy.module.digest.clone();
        let (instance, store) = (&self.instance, &mut self.store);
        let export = Export::Decide(Box::new(input.clone()));
        let answer = self
            .handle
            .block_on(instance.call(&export, store))
            .map_err(|e| StrategyError::Trap {
                digest,
                export: "decide",
                message: format!("{e:#}"),
            })?;
        match answer {
            Answer::Decided(answer, violations) => {
                checked(&self.strategy, input, answer, violations)
            }
            _ => unreachable_answer(&self.strategy),
        }
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
        message: truncate(&message, MAX_ERROR_TEXT).to_owned(),
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

impl Instance {
    async fn new(pre: &Pre, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        match pre {
            Pre::V0_1(pre) => pre.instantiate(store).await.map(Instance::V0_1),
        }
    }

    async fn call(
        &self,
        export: &Export,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Answer> {
        match (self, export) {
            (Instance::V0_1(i), Export::Decide(input)) => {
                let mut violations = Violations::default();
                let answer = i.decide(store, input, &mut violations).await?;
                Ok(Answer::Decided(answer, violations))
            }
            (Instance::V0_1(i), Export::ValidateConfig(config)) => {
                Ok(Answer::Validated(i.validate_config(store, config).await?))
            }
            (Instance::V0_1(i), Export::Describe) => {
                Ok(Answer::Described(i.describe(store).await?))
            }
        }
    }
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

/// A seed for a WASI module's randomness, fixed by the decision's inputs.
fn seed(input: &Observation) -> u64 {
    let digest =
        sha256_hex(format!("{}/{}/{}", input.rollout, input.canary_revision, input.now).as_bytes());
    u64::from_str_radix(&digest[..16], 16).unwrap_or(input.now)
}

/// `<dir>.key`: the default place of the cache's key, outside the directory.
fn sibling_key_file(dir: &std::path::Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "cache".into());
    name.push(".key");
    dir.with_file_name(name)
}

fn build_engine(config: &RuntimeConfig, settings: EngineSettings) -> anyhow::Result<Engine> {
    let base = settings.config();
    let mut pooled = base.clone();
    let calls = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // Every per-component bound times the number of instances fits the pool's
    // totals, so no module can take another's slots; a module past a bound is
    // refused when it is loaded.
    pool.total_component_instances(calls)
        .total_core_instances(calls * MAX_CORE_INSTANCES)
        .total_memories(calls * 4)
        .total_tables(calls * 8)
        .total_stacks(calls)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memories_per_module(4)
        .max_tables_per_module(4)
        // One memory may use the whole ceiling; all of an instance's memories and
        // tables together are held to the module's limit by the store's limiter.
        .max_memory_size(usize::try_from(config.ceilings.memory_bytes).unwrap_or(usize::MAX))
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
