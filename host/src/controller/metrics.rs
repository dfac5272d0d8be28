//! The controller's Prometheus metrics.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of one value.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Result_ {
    /// `ok` or the failing stage.
    pub result: String,
}

/// Labels of a decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `hold`, `pause`, `advance`, `complete`, `abort`, or `error`.
    pub action: String,
    /// The module, e.g. `builtin:steps`.
    pub module: String,
}

/// Labels of a phase count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: String,
}

/// The controller's metric families.
pub struct ControllerMetrics {
    registry: Mutex<Registry>,
    /// Reconciles by result.
    pub reconciles: Family<Result_, Counter>,
    /// Reconcile time.
    pub reconcile_duration: Histogram,
    /// Decisions by action.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Decision time (the module call, instantiation included).
    pub decision_duration: Histogram,
    /// Rollouts by phase, as of the last scrape.
    pub rollouts: Family<PhaseLabels, Gauge>,
    /// API writes made by reconciles (object writes and status patches).
    pub writes: Counter,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// Registers the families.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let reconciles = Family::<Result_, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_duration = Histogram::new(exponential_buckets(0.000_005, 2.0, 18));
        let rollouts = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconciles of Rollouts, by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "decisions",
            "Strategy decisions, by action and module",
            decisions.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time of one strategy decision",
            decision_duration.clone(),
        );
        registry.register("rollouts", "Rollouts by phase", rollouts.clone());
        let writes = Counter::default();
        registry.register(
            "api_writes",
            "API writes made by reconciles: object writes and status patches",
            writes.clone(),
        );
        ControllerMetrics {
            writes,
            registry: Mutex::new(registry),
            reconciles,
            reconcile_duration,
            decisions,
            decision_duration,
            rollouts,
        }
    }

    /// Counts a reconcile.
    pub fn reconciled(&self, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&Result_ {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts a decision.
    pub fn decided(&self, action: &str, module: &str, took: Duration) {
        self.decisions
            .get_or_create(&DecisionLabels {
                action: action.into(),
                module: module.into(),
            })
            .inc();
        self.decision_duration.observe(took.as_secs_f64());
    }

    /// Counts `n` API writes.
    pub fn wrote(&self, n: usize) {
        self.writes.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Sets the phase gauges from a count per phase.
    pub fn set_phases(&self, counts: &[(String, i64)]) {
        self.rollouts.clear();
        for (phase, n) in counts {
            self.rollouts
                .get_or_create(&PhaseLabels {
                    phase: phase.clone(),
                })
                .set(*n);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
