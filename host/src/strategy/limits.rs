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

/// What the operator allows any module to ask for. A module asking for more is
/// refused with the ceiling named; nothing is clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Ceilings {
    /// Linear memory and tables of one instance together, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time of one call, in milliseconds.
    pub deadline_ms: u64,
    /// Fuel (wasm instructions) of one call.
    pub fuel: u64,
    /// Size of a module's component, in bytes.
    pub module_bytes: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            memory_bytes: 256 << 20,
            deadline_ms: 2_000,
            fuel: 2_000_000_000,
            module_bytes: 64 << 20,
        }
    }
}

/// A limit asked above its ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "spec.limits.{field}: {asked} asked, above the controller's ceiling of {ceiling} ({setting}); ask for at most {ceiling}, or have the operator raise the ceiling"
)]
pub struct AboveCeiling {
    /// The field, as the module's spec writes it (`memoryBytes`, …).
    pub field: &'static str,
    /// What the module asked for.
    pub asked: u64,
    /// The ceiling.
    pub ceiling: u64,
    /// The controller setting that holds the ceiling.
    pub setting: &'static str,
}

impl Ceilings {
    /// The limits a module gets when it asks for `memory_bytes`, `deadline_ms` and
    /// `fuel` (each `None` when not asked): the defaults, lowered to a ceiling the
    /// operator set below them; refused when an asked value is above its ceiling.
    pub fn admit(
        &self,
        memory_bytes: Option<u64>,
        deadline_ms: Option<u64>,
        fuel: Option<u64>,
    ) -> Result<Limits, Vec<AboveCeiling>> {
        let d = Limits::default();
        let mut refused = Vec::new();
        let mut pick = |field, setting, asked: Option<u64>, default: u64, ceiling: u64| match asked
        {
            Some(asked) if asked > ceiling => {
                refused.push(AboveCeiling {
                    field,
                    asked,
                    ceiling,
                    setting,
                });
                ceiling
            }
            Some(asked) => asked,
            None => default.min(ceiling),
        };
        let limits = Limits {
            memory_bytes: pick(
                "memoryBytes",
                "sandbox.ceilings.memoryBytes",
                memory_bytes,
                d.memory_bytes,
                self.memory_bytes,
            ),
            deadline_ms: pick(
                "deadlineMs",
                "sandbox.ceilings.deadlineMs",
                deadline_ms,
                d.deadline_ms,
                self.deadline_ms,
            ),
            fuel: pick("fuel", "sandbox.ceilings.fuel", fuel, d.fuel, self.fuel),
            ..d
        };
        if refused.is_empty() {
            Ok(limits)
        } else {
            Err(refused)
        }
    }

    /// The defaults, lowered to any ceiling below them.
    pub fn defaults(&self) -> Limits {
        self.admit(None, None, None)
            .unwrap_or_else(|_| Limits::default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_within_the_ceilings_gets_what_was_asked() {
        let c = Ceilings::default();
        let l = c.admit(Some(64 << 20), Some(500), None).expect("within");
        assert_eq!(
            (l.memory_bytes, l.deadline_ms, l.fuel),
            (64 << 20, 500, Limits::default().fuel)
        );
    }

    #[test]
    fn asking_above_a_ceiling_names_field_value_and_ceiling() {
        let c = Ceilings::default();
        let refused = c
            .admit(Some(8 << 30), Some(60_000), Some(1))
            .expect_err("above");
        let fields: Vec<_> = refused
            .iter()
            .map(|r| (r.field, r.asked, r.ceiling))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("memoryBytes", 8 << 30, 256 << 20),
                ("deadlineMs", 60_000, 2_000)
            ]
        );
        let message = refused[1].to_string();
        assert!(
            message.contains("spec.limits.deadlineMs: 60000 asked"),
            "{message}"
        );
        assert!(
            message.contains("ceiling of 2000 (sandbox.ceilings.deadlineMs)"),
            "{message}"
        );
    }

    #[test]
    fn a_ceiling_below_a_default_lowers_the_default_only() {
        let c = Ceilings {
            deadline_ms: 50,
            ..Ceilings::default()
        };
        assert_eq!(c.defaults().deadline_ms, 50);
        assert!(c.admit(None, Some(51), None).is_err());
    }
}
