//! Helpers shared by the end-to-end tests of the strategy runtime.
#![allow(dead_code)]

pub mod cluster;
pub mod echo;
pub mod modules;
pub mod sdk;
pub mod sources;

use std::path::Path;
use std::sync::Arc;

use sluice::strategy::model::{Observation, Percent, ReplicaCounts, Step, StepState, Traffic};
use sluice::strategy::{
    CompiledModule, Grants, Limits, MetricsError, MetricsSource, Runtime, RuntimeConfig, Strategy,
};

/// A runtime with the default configuration.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

/// The sandbox as the controller runs it: modules compiled by the `sluice` binary's
/// bounded helper process.
pub fn sandbox_config() -> RuntimeConfig {
    RuntimeConfig {
        compiler: sluice::strategy::Compiler::Isolated(
            sluice::strategy::IsolatedCompiler::with_program(env!("CARGO_BIN_EXE_sluice").into()),
        ),
        ..RuntimeConfig::default()
    }
}

/// A runtime configured by `f`.
pub fn runtime_with(f: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::default();
    f(&mut config);
    Runtime::new(config).expect("runtime")
}

/// Loads the built-in `steps`.
pub fn steps(runtime: &Runtime) -> Arc<CompiledModule> {
    let bytes = sluice::strategy::builtin::builtin("steps").expect("built in");
    runtime.load(bytes).expect("load steps")
}

/// A strategy with default limits and the given grants.
pub fn strategy(module: Arc<CompiledModule>, grants: Grants) -> Strategy {
    Strategy::new(module, Limits::default(), grants)
}

/// A step of `weight` percent with an empty pause.
pub fn weight_step(weight: u8) -> Step {
    Step {
        traffic_weight: Some(Percent::new(weight).expect("weight")),
        ..Step::default()
    }
}

/// An observation of a 5-replica Deployment at `step`/`state`.
pub fn observation(steps: Vec<Step>, step: u32, state: StepState) -> Observation {
    Observation {
        rollout: "default/canary-demo".into(),
        steps,
        current_step: step,
        step_state: state,
        last_update_time: 1_700_000_000_000,
        traffic_routing: true,
        stable_revision: "v1".into(),
        canary_revision: "v2".into(),
        workload: ReplicaCounts {
            desired: 5,
            ready: 5,
            ..ReplicaCounts::default()
        },
        traffic: Traffic::default(),
        now: 1_700_000_000_000,
        ..Observation::default()
    }
}

/// Answers every query with one value.
pub struct FixedMetrics(pub Result<f64, MetricsError>);

impl MetricsSource for FixedMetrics {
    fn query<'a>(
        &'a self,
        _provider: &'a str,
        _query: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}

/// A component built from WIT alone, as a module built elsewhere would look: it has
/// the right imports and exports, and traps if called.
pub fn component_from_wit(dir_or_text: WitSource<'_>, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let package = match dir_or_text {
        WitSource::Dir(dir) => resolve.push_dir(dir).expect("wit dir").0,
        WitSource::Text(text) => resolve.push_str("test.wit", text).expect("wit text"),
    };
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("world");
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .expect("embed");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode")
}

/// Where WIT comes from.
pub enum WitSource<'a> {
    /// A folder such as `wit/v0.1.0`.
    Dir(&'a Path),
    /// WIT text.
    Text(&'a str),
}

/// The workspace's root folder.
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
}
