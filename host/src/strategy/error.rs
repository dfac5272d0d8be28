//! What can go wrong with a strategy module, one variant per failing step.

use std::sync::Arc;
use std::time::Duration;

use super::limits::Capability;
use super::queue::Busy;

/// A module could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The bytes could not be read.
    #[error("cannot read module {path}: {source}")]
    Read {
        /// Where from.
        path: String,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// The module is larger than the operator allows.
    #[error(
        "the module is {size} bytes, above the controller's ceiling of {ceiling} bytes (sandbox.ceilings.moduleBytes)"
    )]
    TooLarge {
        /// Its size.
        size: u64,
        /// The ceiling.
        ceiling: u64,
    },
    /// Compiling the module ran past the time limit.
    #[error(
        "compiling module {digest} took longer than the limit of {limit:?} (compile.timeout); the module is refused"
    )]
    CompileTimeout {
        /// sha256 of the bytes.
        digest: String,
        /// The limit.
        limit: Duration,
    },
    /// Compiling the module needed more memory than allowed.
    #[error(
        "compiling module {digest} needed more than the limit of {limit_bytes} bytes of memory (compile.memoryBytes); the module is refused"
    )]
    CompileMemory {
        /// sha256 of the bytes.
        digest: String,
        /// The limit.
        limit_bytes: u64,
    },
    /// The compiler process failed otherwise.
    #[error("compiling module {digest} failed: {message}")]
    CompileFailed {
        /// sha256 of the bytes.
        digest: String,
        /// What happened.
        message: String,
    },
    /// Too many modules of one namespace are waiting to compile.
    #[error("{0}")]
    Busy(Busy),
    /// The bytes are not a WebAssembly component.
    #[error("module {digest} is not a WebAssembly component{hint}: {message}")]
    NotAComponent {
        /// sha256 of the bytes.
        digest: String,
        /// What to do about it.
        hint: &'static str,
        /// The compiler's message.
        message: String,
    },
    /// The component exports no strategy.
    #[error(
        "module {digest} exports no `sluice:strategy/strategy` interface (it exports: {exports}); build it against the WIT in wit/"
    )]
    NotAStrategy {
        /// sha256 of the bytes.
        digest: String,
        /// What it does export.
        exports: String,
    },
    /// The component was built against a contract version this host does not speak.
    #[error(
        "module {digest} was built against strategy contract {found}, but this host supports {supported}; rebuild it against one of those versions (wit/ holds them)"
    )]
    UnsupportedContract {
        /// sha256 of the bytes.
        digest: String,
        /// The module's contract version.
        found: String,
        /// What the host supports.
        supported: String,
    },
    /// The component imports something no host provides.
    #[error(
        "module {digest} imports `{import}`, which Sluice does not provide; a strategy may import only sluice:strategy/log, sluice:strategy/metrics and (for wasm32-wasip2 builds) wasi:* interfaces"
    )]
    UnknownImport {
        /// sha256 of the bytes.
        digest: String,
        /// The import's name.
        import: String,
    },
    /// Linking or pre-instantiation failed.
    #[error("module {digest} cannot be linked: {message}")]
    Link {
        /// sha256 of the bytes.
        digest: String,
        /// wasmtime's message.
        message: String,
    },
    /// The module's own sha256 differs from the pinned one.
    #[error("module digest mismatch: expected sha256 {expected}, got {actual}")]
    DigestMismatch {
        /// The pin.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// No built-in module has this name.
    #[error("no built-in strategy `{name}`; built-ins: {known}")]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

impl LoadError {
    /// A short label for statuses and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::DigestMismatch { .. } => "DigestMismatch",
            LoadError::UnsupportedContract { .. } => "UnsupportedContract",
            LoadError::TooLarge { .. } => "ModuleTooLarge",
            LoadError::CompileTimeout { .. } | LoadError::CompileMemory { .. } => {
                "CompileLimitExceeded"
            }
            LoadError::Busy(_) => "Busy",
            _ => "NotLoadable",
        }
    }
}

/// A call into a module failed. The rollout using it pauses; nothing else is affected.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// The sandbox has no slot for the call now: pool pressure, not a module
    /// failure. The call is made again later.
    #[error("{0}")]
    Busy(Busy),
    /// The module returned (or passed to the host) more data than the host copies.
    #[error(
        "module {digest} handed the host more than {limit_bytes} bytes in `{export}` (lists and strings of a result or an import's arguments)"
    )]
    HostData {
        /// sha256 of the module.
        digest: String,
        /// The export called.
        export: &'static str,
        /// The bound.
        limit_bytes: usize,
    },
    /// The module could not be instantiated for this call.
    #[error("module {digest} could not be instantiated: {message}")]
    Instantiate {
        /// sha256 of the module.
        digest: String,
        /// wasmtime's message.
        message: String,
    },
    /// The module ran past its deadline.
    #[error("module {digest} exceeded its deadline of {limit:?} in `{export}`")]
    Deadline {
        /// sha256 of the module.
        digest: String,
        /// The export called.
        export: &'static str,
        /// The deadline.
        limit: Duration,
    },
    /// The module ran out of fuel.
    #[error("module {digest} ran out of fuel ({fuel} instructions) in `{export}`")]
    Fuel {
        /// sha256 of the module.
        digest: String,
        /// The export called.
        export: &'static str,
        /// The budget.
        fuel: u64,
    },
    /// The module tried to grow its memory past its limit.
    #[error("module {digest} exceeded its memory limit of {limit_bytes} bytes in `{export}`")]
    Memory {
        /// sha256 of the module.
        digest: String,
        /// The export called.
        export: &'static str,
        /// The limit.
        limit_bytes: u64,
    },
    /// The module called a capability it was not granted.
    #[error(
        "module {digest} called the `{}` capability, which it was not granted; grant it in the module's capabilities or remove the call",
        capability.name()
    )]
    CapabilityDenied {
        /// sha256 of the module.
        digest: String,
        /// The capability.
        capability: Capability,
    },
    /// The module trapped (a panic, an unreachable, a bad memory access).
    #[error("module {digest} trapped in `{export}`: {message}")]
    Trap {
        /// sha256 of the module.
        digest: String,
        /// The export called.
        export: &'static str,
        /// The trap and its backtrace.
        message: String,
    },
    /// The module returned an error instead of a decision.
    #[error("module {digest} refused to decide: {message}")]
    Refused {
        /// sha256 of the module.
        digest: String,
        /// The module's message.
        message: String,
    },
    /// The module rejected its configuration.
    #[error("module {digest} rejected its configuration: {message}")]
    Config {
        /// sha256 of the module.
        digest: String,
        /// The module's message.
        message: String,
    },
    /// The decision broke the contract's rules.
    #[error("module {digest} returned an invalid decision: {}", violations.join("; "))]
    InvalidDecision {
        /// sha256 of the module.
        digest: String,
        /// Each rule broken, naming the field.
        violations: Vec<String>,
    },
}

impl StrategyError {
    /// A short label for metrics and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            StrategyError::Busy(_) => "Busy",
            StrategyError::HostData { .. } => "HostDataLimitExceeded",
            StrategyError::Instantiate { .. } => "Instantiate",
            StrategyError::Deadline { .. } => "DeadlineExceeded",
            StrategyError::Fuel { .. } => "FuelExhausted",
            StrategyError::Memory { .. } => "MemoryLimitExceeded",
            StrategyError::CapabilityDenied { .. } => "CapabilityDenied",
            StrategyError::Trap { .. } => "Trap",
            StrategyError::Refused { .. } => "Refused",
            StrategyError::Config { .. } => "InvalidConfig",
            StrategyError::InvalidDecision { .. } => "InvalidDecision",
        }
    }

    /// Whether the call should simply be made again later: the module did nothing wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, StrategyError::Busy(_))
    }
}
