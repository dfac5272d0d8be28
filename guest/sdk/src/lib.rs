//! Write a Sluice strategy module in a few lines.
//!
//! A strategy is a type implementing [`Strategy`], exported with [`export_strategy!`],
//! compiled for `wasm32-unknown-unknown` and turned into a component. The host calls
//! [`Strategy::decide`] at every reconcile of a Rollout with an [`Observation`] and
//! applies the [`Decision`] it returns.
//!
//! ```
//! use sluice_strategy::*;
//!
//! /// Sends 10% of traffic, waits for approval, then finishes.
//! struct TenPercent;
//!
//! impl Strategy for TenPercent {
//!     fn decide(input: Observation) -> Result<Decision, String> {
//!         let last = input.step_count().max(1);
//!         let target = StepTarget {
//!             replicas: Replicas::Percent(10),
//!             traffic: Traffic { weight: Some(10), matches: vec![] },
//!         };
//!         Ok(match (input.current_step, input.step_state) {
//!             (0, _) => Decision::new(1, target, Action::Hold(5), "starting"),
//!             (_, StepState::StepReady) => Decision::new(last, target, Action::Complete, "approved"),
//!             (_, StepState::StepMetricsAnalysis | StepState::StepPaused) => {
//!                 Decision::new(input.current_step, target, Action::Pause(None), "waiting for approval")
//!             }
//!             _ => Decision::new(input.current_step, target, Action::Hold(5), "converging"),
//!         })
//!     }
//!
//!     fn describe() -> ModuleInfo {
//!         ModuleInfo::named("ten-percent", "0.1.0")
//!     }
//! }
//!
//! export_strategy!(TenPercent);
//! # fn main() {}
//! ```

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "strategy-module",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "sluice_strategy::bindings",
        generate_all,
        additional_derives: [PartialEq],
    });
}

mod helpers;

pub use bindings::sluice::strategy::types::{
    Action, Decision, MatchKind, MatchSource, ModuleInfo, Observation, ReplicaCounts, Replicas,
    RequestCondition, RequestRoute, Step, StepState, StepTarget, Traffic,
};
pub use helpers::percent_of;

/// The version of the strategy contract this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// A strategy: the decisions of one kind of rollout.
pub trait Strategy {
    /// Decides what the rollout does now. An `Err` pauses the rollout with the message.
    fn decide(input: Observation) -> Result<Decision, String>;

    /// Checks the module's configuration (JSON) before any decision uses it.
    fn validate_config(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Names the module.
    fn describe() -> ModuleInfo;
}

/// Exports a [`Strategy`] implementation as the module's `strategy` interface.
///
/// The export exists only in wasm builds: a native build of the same crate (for its
/// unit tests, or to call the logic directly) has no component exports to link.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            impl $crate::bindings::exports::sluice::strategy::strategy::Guest for $ty {
                fn decide(
                    input: $crate::Observation,
                ) -> ::core::result::Result<$crate::Decision, ::std::string::String> {
                    <$ty as $crate::Strategy>::decide(input)
                }
                fn validate_config(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Strategy>::validate_config(&config)
                }
                fn describe() -> $crate::ModuleInfo {
                    <$ty as $crate::Strategy>::describe()
                }
            }
    $crate::bindings::export_bindings!($ty with_types_in $crate::bindings);
        };
    };
}

/// Writes to the controller's log (needs the `log` capability).
pub mod log {
    use crate::bindings::sluice::strategy::log::{Level, log};

    /// Logs a debug line.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Logs an info line.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs a warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs an error.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Queries metric providers (needs the `metrics` capability).
pub mod metrics {
    pub use crate::bindings::sluice::strategy::metrics::QueryError;

    /// Runs `query` against `provider` and returns its single value.
    pub fn query(provider: &str, query: &str) -> Result<f64, QueryError> {
        crate::bindings::sluice::strategy::metrics::query(provider, query)
    }
}
