//! The state a module's store carries for one call: its limits, its grants, and
//! what the host answers its imports with.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::limits::{Capability, Grants};
use super::wasi::WasiState;

/// Answers `metrics` queries for modules. The controller's implementation calls the
/// configured providers with bounded time; tests and scenarios answer from tables.
pub trait MetricsSource: Send + Sync {
    /// Runs `query` against `provider`.
    fn query(&self, provider: &str, query: &str) -> Result<f64, MetricsError>;
}

/// Why a metric query has no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// The query returned no sample.
    #[error("no data")]
    NoData,
    /// The provider failed, timed out or is unknown.
    #[error("{0}")]
    Failed(String),
}

/// A metrics source with no providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricsSource for NoMetrics {
    fn query(&self, provider: &str, _query: &str) -> Result<f64, MetricsError> {
        Err(MetricsError::Failed(format!(
            "no metric provider `{provider}` is configured"
        )))
    }
}

/// The answer to a metric query as the module receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutcome {
    /// A value.
    Value(f64),
    /// No sample.
    NoData,
    /// The provider was not granted.
    NotPermitted(String),
    /// The provider failed.
    Failed(String),
}

/// Refuses memory growth past the module's limit and remembers that it did, so the
/// trap that follows is reported as a memory limit, not as a plain crash.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory.
    pub fn new(limit: u64) -> Self {
        MemoryLimiter { limit, hit: false }
    }

    /// Whether growth was refused during this call.
    pub fn hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The error a denied capability traps with.
#[derive(Debug, thiserror::Error)]
#[error("the `{}` capability is not granted to this module", .0.name())]
pub struct CapabilityDenied(pub Capability);

/// Per-call state of a module's store.
pub struct HostState {
    /// The memory limit.
    pub limiter: MemoryLimiter,
    grants: Arc<Grants>,
    metrics: Arc<dyn MetricsSource>,
    /// The first capability the module was denied, if any.
    pub denied: Option<Capability>,
    /// `namespace/name` of the rollout the call is for, for log lines.
    pub rollout: String,
    /// Short digest of the module, for log lines.
    pub module: String,
    /// WASI for modules built for `wasm32-wasip2`; `None` for pure components.
    pub wasi: Option<WasiState>,
}

impl HostState {
    /// State for one call.
    pub fn new(
        memory_limit: u64,
        grants: Arc<Grants>,
        metrics: Arc<dyn MetricsSource>,
        rollout: String,
        module: String,
        wasi: Option<WasiState>,
    ) -> Self {
        HostState {
            limiter: MemoryLimiter::new(memory_limit),
            grants,
            metrics,
            denied: None,
            rollout,
            module,
            wasi,
        }
    }

    /// Fails the call when `capability` is not granted.
    pub fn require(&mut self, capability: Capability) -> wasmtime::Result<()> {
        let granted = match capability {
            Capability::Log => self.grants.log,
            Capability::Metrics => self.grants.metrics_granted(),
        };
        if granted {
            Ok(())
        } else {
            self.denied.get_or_insert(capability);
            Err(wasmtime::Error::new(CapabilityDenied(capability)))
        }
    }

    /// Writes a module's log line to the controller's log.
    pub fn log(&mut self, level: tracing::Level, message: &str) -> wasmtime::Result<()> {
        self.require(Capability::Log)?;
        // A module's log line is bounded so that a chatty module cannot flood the log.
        let message = truncate(message, 4096);
        let (rollout, module) = (&self.rollout, &self.module);
        match level {
            tracing::Level::ERROR => tracing::error!(rollout, module, "{message}"),
            tracing::Level::WARN => tracing::warn!(rollout, module, "{message}"),
            tracing::Level::INFO => tracing::info!(rollout, module, "{message}"),
            _ => tracing::debug!(rollout, module, "{message}"),
        }
        Ok(())
    }

    /// Answers a metric query, if the module may ask it.
    pub fn query(&mut self, provider: &str, query: &str) -> wasmtime::Result<QueryOutcome> {
        self.require(Capability::Metrics)?;
        if !self.grants.may_query(provider) {
            return Ok(QueryOutcome::NotPermitted(format!(
                "the module was not granted the metric provider `{provider}`"
            )));
        }
        Ok(match self.metrics.query(provider, query) {
            Ok(v) => QueryOutcome::Value(v),
            Err(MetricsError::NoData) => QueryOutcome::NoData,
            Err(MetricsError::Failed(m)) => QueryOutcome::Failed(m),
        })
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
