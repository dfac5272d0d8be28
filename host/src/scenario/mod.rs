//! Strategy scenarios: a rollout's steps, the module's configuration and a timeline
//! of what the cluster looks like, replayed against a strategy module with the
//! host's own step bookkeeping, checking the decisions a scenario expects.
//!
//! This is what `sluice strategy test` runs. Scenario files are YAML; see
//! `docs/strategy-authoring.md` and `examples/scenarios/`.

mod file;
pub mod replay;
mod report;
mod run;

pub use file::{CanaryOverride, Expect, Scenario, Tick};
pub use report::render;
pub use run::{Failure, Outcome, Row, run};
