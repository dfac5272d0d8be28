//! Contract `sluice:strategy@0.1.x`: bindings and conversions to the host's model.

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::strategy::host_state::{HostState, QueryOutcome};
use crate::strategy::model;
use crate::strategy::validate::Violations;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "strategy-module",
    // Async, so that a call's deadline covers the time spent in host imports (a
    // metric query) as well as in wasm: the whole call is one future with a timeout.
    imports: { default: async | trappable },
    exports: { default: async },
});

use sluice::strategy::types as wire;

impl sluice::strategy::types::Host for HostState {}

impl sluice::strategy::log::Host for HostState {
    async fn log(
        &mut self,
        level: sluice::strategy::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use sluice::strategy::log::Level;
        let level = match level {
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        HostState::log(self, level, &message)
    }
}

impl sluice::strategy::metrics::Host for HostState {
    async fn query(
        &mut self,
        provider: String,
        query: String,
    ) -> wasmtime::Result<Result<f64, sluice::strategy::metrics::QueryError>> {
        use sluice::strategy::metrics::QueryError;
        Ok(match HostState::query(self, &provider, &query).await? {
            QueryOutcome::Value(v) => Ok(v),
            QueryOutcome::NoData => Err(QueryError::NoData),
            QueryOutcome::NotPermitted(m) => Err(QueryError::NotPermitted(m)),
            QueryOutcome::Failed(m) => Err(QueryError::Failed(m)),
        })
    }
}

/// Adds this version's imports to a linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    StrategyModule::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// A module of this version, linked and type-checked once.
pub struct Pre(StrategyModulePre<HostState>);

impl Pre {
    /// Links `component`.
    pub fn new(linker: &Linker<HostState>, component: &Component) -> wasmtime::Result<Pre> {
        Ok(Pre(StrategyModulePre::new(
            linker.instantiate_pre(component)?,
        )?))
    }

    /// Instantiates the module in `store`.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Instance> {
        Ok(Instance(self.0.instantiate_async(&mut *store).await?))
    }
}

/// A live instance of a module of this version.
pub struct Instance(StrategyModule);

impl Instance {
    /// Calls `decide`; the decision is converted, with range violations collected.
    pub async fn decide(
        &self,
        store: &mut Store<HostState>,
        input: &model::Observation,
        violations: &mut Violations,
    ) -> wasmtime::Result<Result<model::Decision, String>> {
        let wire_input = observation(input);
        let answer = self
            .0
            .sluice_strategy_strategy()
            .call_decide(&mut *store, &wire_input)
            .await?;
        Ok(answer.map(|d| decision(d, violations)))
    }

    /// Calls `validate-config`.
    pub async fn validate_config(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.0
            .sluice_strategy_strategy()
            .call_validate_config(&mut *store, config)
            .await
    }

    /// Calls `describe`.
    pub async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<model::ModuleInfo> {
        let info = self
            .0
            .sluice_strategy_strategy()
            .call_describe(&mut *store)
            .await?;
        Ok(model::ModuleInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema,
        })
    }
}

fn observation(o: &model::Observation) -> wire::Observation {
    wire::Observation {
        rollout: o.rollout.clone(),
        steps: o.steps.iter().map(step).collect(),
        current_step: o.current_step,
        step_state: step_state(o.step_state),
        last_update_time: o.last_update_time,
        approved: o.approved,
        paused: o.paused,
        traffic_routing: o.traffic_routing,
        failure_threshold: o.failure_threshold.map(replicas),
        stable_revision: o.stable_revision.clone(),
        canary_revision: o.canary_revision.clone(),
        workload: counts(o.workload),
        canary: counts(o.canary),
        traffic: traffic(&o.traffic),
        now: o.now,
        config: o.config.clone(),
        memo: o.memo.clone(),
    }
}

fn step(s: &model::Step) -> wire::Step {
    wire::Step {
        traffic_weight: s.traffic_weight.map(model::Percent::get),
        replicas: s.replicas.map(replicas),
        matches: s.matches.iter().map(route).collect(),
        pause_seconds: s.pause_seconds,
    }
}

fn replicas(r: model::Replicas) -> wire::Replicas {
    match r {
        model::Replicas::Count(n) => wire::Replicas::Count(n),
        model::Replicas::Percent(p) => wire::Replicas::Percent(p.get()),
    }
}

fn route(r: &model::RequestRoute) -> wire::RequestRoute {
    wire::RequestRoute {
        conditions: r
            .conditions
            .iter()
            .map(|c| wire::RequestCondition {
                source: match c.source {
                    model::MatchSource::Header => wire::MatchSource::Header,
                    model::MatchSource::Cookie => wire::MatchSource::Cookie,
                },
                name: c.name.clone(),
                value: c.value.clone(),
                kind: match c.kind {
                    model::MatchKind::Exact => wire::MatchKind::Exact,
                    model::MatchKind::RegularExpression => wire::MatchKind::RegularExpression,
                },
            })
            .collect(),
    }
}

fn step_state(s: model::StepState) -> wire::StepState {
    use model::StepState as S;
    match s {
        S::BeforeStepUpgrade => wire::StepState::BeforeStepUpgrade,
        S::StepUpgrade => wire::StepState::StepUpgrade,
        S::StepTrafficRouting => wire::StepState::StepTrafficRouting,
        S::StepMetricsAnalysis => wire::StepState::StepMetricsAnalysis,
        S::StepPaused => wire::StepState::StepPaused,
        S::StepReady => wire::StepState::StepReady,
        S::Completed => wire::StepState::Completed,
    }
}

fn counts(c: model::ReplicaCounts) -> wire::ReplicaCounts {
    wire::ReplicaCounts {
        desired: c.desired,
        ready: c.ready,
        updated: c.updated,
        failed: c.failed,
    }
}

fn traffic(t: &model::Traffic) -> wire::Traffic {
    wire::Traffic {
        weight: t.weight.map(model::Percent::get),
        matches: t.matches.iter().map(route).collect(),
    }
}

fn decision(d: wire::Decision, found: &mut Violations) -> model::Decision {
    let replicas = match d.target.replicas {
        wire::Replicas::Count(n) => model::Replicas::Count(n),
        wire::Replicas::Percent(p) => {
            model::Replicas::Percent(found.percent("target.replicas.percent", p))
        }
    };
    let weight = d
        .target
        .traffic
        .weight
        .map(|w| found.percent("target.traffic.weight", w));
    let action = match d.action {
        wire::Action::Hold(s) => model::Action::Hold { recheck_seconds: s },
        wire::Action::Pause(s) => model::Action::Pause { recheck_seconds: s },
        wire::Action::Advance => model::Action::Advance,
        wire::Action::Complete => model::Action::Complete,
        wire::Action::Abort(reason) => model::Action::Abort { reason },
    };
    model::Decision {
        step: d.step,
        target: model::StepTarget {
            replicas,
            traffic: model::Traffic {
                weight,
                matches: d
                    .target
                    .traffic
                    .matches
                    .into_iter()
                    .map(route_from)
                    .collect(),
            },
        },
        action,
        message: d.message,
        memo: d.memo,
    }
}

fn route_from(r: wire::RequestRoute) -> model::RequestRoute {
    model::RequestRoute {
        conditions: r
            .conditions
            .into_iter()
            .map(|c| model::RequestCondition {
                source: match c.source {
                    wire::MatchSource::Header => model::MatchSource::Header,
                    wire::MatchSource::Cookie => model::MatchSource::Cookie,
                },
                name: c.name,
                value: c.value,
                kind: match c.kind {
                    wire::MatchKind::Exact => model::MatchKind::Exact,
                    wire::MatchKind::RegularExpression => model::MatchKind::RegularExpression,
                },
            })
            .collect(),
    }
}
