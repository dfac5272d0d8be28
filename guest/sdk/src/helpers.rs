//! Conveniences on the contract's types, so strategies read as their rules.

use crate::{
    Action, Decision, ModuleInfo, Observation, ReplicaCounts, Replicas, Step, StepTarget, Traffic,
};

/// `percent` of `total`, rounded up as Kubernetes rounds surge and Kruise rounds batches.
pub fn percent_of(total: u32, percent: u8) -> u32 {
    let scaled = u64::from(total) * u64::from(percent.min(100));
    scaled.div_ceil(100) as u32
}

impl Replicas {
    /// The number of pods this asks for out of `total`.
    pub fn resolve(&self, total: u32) -> u32 {
        match *self {
            Replicas::Count(n) => n,
            Replicas::Percent(p) => percent_of(total, p),
        }
    }
}

impl Step {
    /// The canary pods of this step: `replicas`, else the traffic weight as a share of
    /// pods (Kruise's rule for `weight` alone), else none.
    pub fn replicas_or_weight(&self) -> Option<Replicas> {
        self.replicas
            .or_else(|| self.traffic_weight.map(Replicas::Percent))
    }

    /// What this step asks for, as a target the host can apply.
    pub fn target(&self) -> StepTarget {
        StepTarget {
            replicas: self.replicas_or_weight().unwrap_or(Replicas::Count(0)),
            traffic: Traffic {
                weight: self.traffic_weight,
                matches: self.matches.clone(),
            },
        }
    }
}

impl Observation {
    /// The step at a 1-based index.
    pub fn step(&self, index: u32) -> Option<&Step> {
        let i = usize::try_from(index).ok()?.checked_sub(1)?;
        self.steps.get(i)
    }

    /// The number of steps.
    pub fn step_count(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX)
    }

    /// Whether `index` is the last step.
    pub fn is_last_step(&self, index: u32) -> bool {
        index >= self.step_count()
    }

    /// Milliseconds since `last-update-time`.
    pub fn millis_since_update(&self) -> u64 {
        self.now.saturating_sub(self.last_update_time)
    }
}

impl ReplicaCounts {
    /// No pods at all.
    pub const fn zero() -> Self {
        ReplicaCounts {
            desired: 0,
            ready: 0,
            updated: 0,
            failed: 0,
        }
    }
}

impl Decision {
    /// A decision with an empty memo.
    pub fn new(step: u32, target: StepTarget, action: Action, message: impl Into<String>) -> Self {
        Decision {
            step,
            target,
            action,
            message: message.into(),
            memo: String::new(),
        }
    }

    /// The same decision carrying `memo` to the next call.
    pub fn with_memo(mut self, memo: impl Into<String>) -> Self {
        self.memo = memo.into();
        self
    }
}

impl ModuleInfo {
    /// Module information with a name and version and nothing else.
    pub fn named(name: &str, version: &str) -> Self {
        ModuleInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            config_schema: None,
        }
    }

    /// The same information with a description.
    pub fn described(mut self, description: &str) -> Self {
        self.description = description.into();
        self
    }
}
