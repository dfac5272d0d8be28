//! The controller's clock, given to whatever reads the time (a reconcile's `now`,
//! leases, module statuses), so that tests can move time instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::jiff::Timestamp;

/// Tells the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, Unix milliseconds.
    fn now_ms(&self) -> u64;

    /// Now, as a timestamp.
    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(i64::try_from(self.now_ms()).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests of timed pauses and leases.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn at(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(ms)))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(
            u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system's clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
