//! What a module may use: resource limits per decision and granted capabilities.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds on one call into a module. The defaults fit any sensible strategy by
/// orders of magnitude and stop a runaway one in a tenth of a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Limits {
    /// Linear memory the module may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time one call may run, in milliseconds.
    pub deadline_ms: u64,
    /// Wasm instructions (fuel units) one call may execute, when fuel is enabled.
    pub fuel: u64,
    /// Largest `message` (and abort reason) a decision may carry, in bytes.
    pub max_message_bytes: usize,
    /// Largest `memo` a decision may carry, in bytes (it is stored in the Rollout's status).
    pub max_memo_bytes: usize,
}

impl Limits {
    /// The call deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            deadline_ms: 100,
            fuel: 200_000_000,
            max_message_bytes: 1024,
            max_memo_bytes: 4096,
        }
    }
}

/// Host capabilities granted to a module. Everything is denied unless granted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Grants {
    /// The module may write to the controller's log.
    pub log: bool,
    /// The module may query these metric providers (by name); `*` grants all.
    pub metrics: BTreeSet<String>,
}

impl Grants {
    /// No capability at all.
    pub fn none() -> Self {
        Grants::default()
    }

    /// Every capability, every provider: for local tools and trusted built-ins.
    pub fn all() -> Self {
        Grants {
            log: true,
            metrics: BTreeSet::from(["*".to_owned()]),
        }
    }

    /// Whether the `metrics` capability is granted at all.
    pub fn metrics_granted(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// Whether the module may query `provider`.
    pub fn may_query(&self, provider: &str) -> bool {
        self.metrics.contains("*") || self.metrics.contains(provider)
    }
}

/// A host capability a module can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `sluice:strategy/log`.
    Log,
    /// `sluice:strategy/metrics`.
    Metrics,
}

impl Capability {
    /// The capability's name as operators grant it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Metrics => "metrics",
        }
    }
}
