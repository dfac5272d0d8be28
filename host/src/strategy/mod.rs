//! Strategy modules: the contract, the sandboxed runtime that runs them, and the
//! built-ins.
//!
//! The controller hands a module an [`Observation`] and gets a checked [`Decision`]
//! back from [`Runtime::decide`]. Everything that can go wrong is a typed
//! [`StrategyError`] that pauses the one rollout it concerns.

pub mod builtin;
pub mod cache;
pub mod compile;
pub mod contract;
pub mod error;
pub mod host_state;
pub mod limits;
pub mod model;
pub mod queue;
pub mod runtime;
pub mod source;
pub mod validate;
pub mod wasi;

pub use compile::{Compiler, IsolatedCompiler};
pub use error::{LoadError, StrategyError};
pub use host_state::{MetricsError, MetricsSource, NoMetrics};
pub use limits::{AboveCeiling, Capability, Ceilings, Grants, Limits};
pub use model::{Action, Decision, ModuleInfo, Observation};
pub use queue::{Busy, QueueConfig};
pub use runtime::{
    CompiledModule, ModuleState, Runtime, RuntimeConfig, SandboxStats, Strategy, WarmInstance,
};
pub use source::ModuleRef;
