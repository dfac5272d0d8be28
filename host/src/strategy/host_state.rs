//! The state a module's store carries for one call: its limits, its grants, and
//! what the host answers its imports with.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use wasmtime::ResourceLimiter;

use super::limits::{Capability, Grants};
use super::wasi::WasiState;

/// Answers `metrics` queries for modules. The controller's implementation calls the
/// configured providers; tests and scenarios answer from tables. The host bounds
/// each query's time by what is left of the call's deadline.
pub trait MetricsSource: Send + Sync {
    /// Runs `query` against `provider`.
    fn query<'a>(
        &'a self,
        provider: &'a str,
        query: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>>;
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
    fn query<'a>(
        &'a self,
        provider: &'a str,
        _query: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(std::future::ready(Err(MetricsError::Failed(format!(
            "no metric provider `{provider}` is configured"
        )))))
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

/// Bytes a table element is counted as: a pointer.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Refuses growth of an instance's memories and tables past the module's limit,
/// counting all of them together (a component holds several core instances, each
/// may have its own memory), and remembers that it did, so the trap that follows is
/// reported as a memory limit, not as a plain crash.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    used: u64,
    last_grant: u64,
    hit: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of memories and tables together.
    pub fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit,
            used: 0,
            last_grant: 0,
            hit: false,
        }
    }

    /// Whether growth was refused during this call.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Bytes of memories and tables the instance holds now.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Grants growth by `delta` bytes if the total stays within the limit.
    fn grow(&mut self, delta: u64) -> bool {
        match self.used.checked_add(delta) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.last_grant = delta;
                true
            }
            _ => {
                self.hit = true;
                false
            }
        }
    }

    /// Takes back the last grant, whose growth failed after all.
    fn undo(&mut self) {
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Creating a memory asks for growth from 0 to its initial size: every byte
        // of every memory of the instance passes through here.
        Ok(self.grow(desired.saturating_sub(current) as u64))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        Ok(self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES) as u64))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
    }
}

/// Most log lines a module writes in one call; the rest are counted and dropped.
pub const MAX_LOG_LINES: u32 = 64;
/// Most log bytes a module writes in one call.
pub const MAX_LOG_BYTES: usize = 16 << 10;
/// Longest log line; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;
/// Most metric queries one call may make; the rest return `failed` at once.
pub const MAX_QUERIES: u32 = 32;

/// What a call has written to the log so far.
#[derive(Debug, Default)]
pub struct LogBudget {
    lines: u32,
    bytes: usize,
    dropped: u32,
}

impl LogBudget {
    /// Whether a line of `len` bytes may still be written; counts it either way.
    pub fn admit(&mut self, len: usize) -> bool {
        let len = len.min(MAX_LOG_LINE);
        if self.lines >= MAX_LOG_LINES || self.bytes + len > MAX_LOG_BYTES {
            self.dropped += 1;
            return false;
        }
        self.lines += 1;
        self.bytes += len;
        true
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u32 {
        self.dropped
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
    /// When the call's deadline ends.
    deadline: Instant,
    /// Time kept back from metric queries so the module can still answer.
    reserve: Duration,
    queries: u32,
    /// What the module logged.
    pub log: LogBudget,
}

/// What one call is: its rollout, module and budget.
pub struct CallContext {
    /// The memory limit, bytes.
    pub memory_limit: u64,
    /// Granted capabilities.
    pub grants: Arc<Grants>,
    /// Where metric queries go.
    pub metrics: Arc<dyn MetricsSource>,
    /// `namespace/name` of the rollout.
    pub rollout: String,
    /// Short digest of the module.
    pub module: String,
    /// The call's wall-clock deadline.
    pub deadline: Duration,
}

impl HostState {
    /// State for one call that starts now.
    pub fn new(call: CallContext, wasi: Option<WasiState>) -> Self {
        HostState {
            limiter: MemoryLimiter::new(call.memory_limit),
            grants: call.grants,
            metrics: call.metrics,
            denied: None,
            rollout: call.rollout,
            module: call.module,
            wasi,
            deadline: Instant::now() + call.deadline,
            reserve: query_reserve(call.deadline),
            queries: 0,
            log: LogBudget::default(),
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

    /// Writes a module's log line to the controller's log, within the call's budget.
    pub fn log(&mut self, level: tracing::Level, message: &str) -> wasmtime::Result<()> {
        self.require(Capability::Log)?;
        if !self.log.admit(message.len()) {
            return Ok(());
        }
        let message = truncate(message, MAX_LOG_LINE);
        let (rollout, module) = (&self.rollout, &self.module);
        match level {
            tracing::Level::ERROR => tracing::error!(rollout, module, "{message}"),
            tracing::Level::WARN => tracing::warn!(rollout, module, "{message}"),
            tracing::Level::INFO => tracing::info!(rollout, module, "{message}"),
            _ => tracing::debug!(rollout, module, "{message}"),
        }
        Ok(())
    }

    /// Writes what a WASI module printed, within the same budget as its log lines.
    pub fn log_output(&mut self, output: &str) {
        if !self.grants.log {
            return;
        }
        for line in output.lines().filter(|l| !l.trim().is_empty()) {
            if self.log.admit(line.len()) {
                let (rollout, module) = (&self.rollout, &self.module);
                tracing::info!(rollout, module, "{}", truncate(line, MAX_LOG_LINE));
            }
        }
    }

    /// Answers a metric query, if the module may ask it, in the time the call has left.
    pub async fn query(&mut self, provider: &str, query: &str) -> wasmtime::Result<QueryOutcome> {
        self.require(Capability::Metrics)?;
        if !self.grants.may_query(provider) {
            return Ok(QueryOutcome::NotPermitted(format!(
                "the module was not granted the metric provider `{provider}`"
            )));
        }
        self.queries += 1;
        if self.queries > MAX_QUERIES {
            return Ok(QueryOutcome::Failed(format!(
                "a call may make at most {MAX_QUERIES} metric queries"
            )));
        }
        let budget = self
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.reserve);
        if budget.is_zero() {
            return Ok(QueryOutcome::Failed(
                "no time is left in the call's deadline for a metric query".into(),
            ));
        }
        let metrics = self.metrics.clone();
        Ok(
            match tokio::time::timeout(budget, metrics.query(provider, query)).await {
                Ok(Ok(v)) => QueryOutcome::Value(v),
                Ok(Err(MetricsError::NoData)) => QueryOutcome::NoData,
                Ok(Err(MetricsError::Failed(m))) => QueryOutcome::Failed(m),
                Err(_) => QueryOutcome::Failed(format!(
                    "`{provider}` did not answer within the {} ms left of the call's deadline",
                    budget.as_millis()
                )),
            },
        )
    }
}

/// The part of a call's deadline a metric query may not use: a tenth, between 1 and
/// 50 ms, so the module has time to act on the answer.
pub fn query_reserve(deadline: Duration) -> Duration {
    (deadline / 10).clamp(Duration::from_millis(1), Duration::from_millis(50))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_count_together() {
        let mut l = MemoryLimiter::new(10 << 20);
        // Three memories of 3 MiB each fit; a fourth does not.
        for _ in 0..3 {
            assert!(l.memory_growing(0, 3 << 20, None).expect("limiter"));
        }
        assert!(!l.memory_growing(0, 3 << 20, None).expect("limiter"));
        assert!(l.hit());
        // Growth counts what is added, not the memory's new size.
        let mut l = MemoryLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 4 << 20, None).expect("limiter"));
        assert!(l.memory_growing(4 << 20, 8 << 20, None).expect("limiter"));
        assert_eq!(l.used(), 8 << 20);
        // A table of a million pointers is 8 MiB: over what is left.
        assert!(!l.table_growing(0, 1 << 20, None).expect("limiter"));
        assert!(l.table_growing(0, 1024, None).expect("limiter"));
        assert_eq!(l.used(), (8 << 20) + 1024 * TABLE_ELEMENT_BYTES as u64);
    }

    #[test]
    fn a_failed_growth_is_given_back() {
        let mut l = MemoryLimiter::new(4 << 20);
        assert!(l.memory_growing(0, 3 << 20, None).expect("limiter"));
        l.memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .expect("limiter");
        assert_eq!(l.used(), 0);
        assert!(l.memory_growing(0, 4 << 20, None).expect("limiter"));
    }

    #[test]
    fn the_log_budget_counts_lines_and_bytes() {
        let mut b = LogBudget::default();
        for _ in 0..MAX_LOG_LINES {
            assert!(b.admit(10));
        }
        assert!(!b.admit(10));
        let mut b = LogBudget::default();
        assert!(b.admit(MAX_LOG_LINE));
        for _ in 0..3 {
            assert!(b.admit(MAX_LOG_LINE));
        }
        assert!(
            !b.admit(1 << 20),
            "a huge line counts as a cut line, past the bytes"
        );
        assert_eq!(b.dropped(), 1);
    }

    #[test]
    fn queries_keep_a_tenth_of_the_deadline() {
        assert_eq!(
            query_reserve(Duration::from_millis(100)),
            Duration::from_millis(10)
        );
        assert_eq!(
            query_reserve(Duration::from_secs(5)),
            Duration::from_millis(50)
        );
        assert_eq!(
            query_reserve(Duration::from_millis(3)),
            Duration::from_millis(1)
        );
    }
}
