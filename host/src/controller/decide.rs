//! The deciding stage: one call into the Rollout's strategy module per reconcile.
//! Whether a module accepts a configuration is asked once per (module digest,
//! configuration) and remembered, so a steady reconcile makes exactly one guest
//! call: `decide`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::metrics::ControllerMetrics;
use super::observed::Observed;
use super::plan::{self, Decided, Stage};
use crate::modules::{Refusal, ResolvedModule, refusal};
use crate::providers::{ProviderMetrics, Providers};
use crate::strategy::{LoadError, ModuleState, Runtime, Strategy};

/// Configuration verdicts remembered; past this the memory starts over.
const MAX_VERDICTS: usize = 4096;

/// What this stage learned for the plan.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The stage asks nothing of the module.
    Nothing,
    /// The strategy's answer (a decision, a wait, a failure).
    Decided(Decided),
    /// Between releases: whether the named module accepts its configuration; `None`
    /// when it cannot be asked yet.
    ConfigChecked(Option<Result<String, Refusal>>),
}

/// Calls strategy modules for reconciles.
pub struct Decider {
    runtime: Arc<Runtime>,
    providers: Arc<Providers>,
    metrics: Arc<ControllerMetrics>,
    verdicts: Mutex<HashMap<(String, String), Result<(), Refusal>>>,
}

/// A resolved module on its way to a call.
enum Usable {
    Ready(Strategy),
    Waiting(String),
    Refused(Refusal),
}

impl Decider {
    /// A decider running modules in `runtime`, querying `providers`.
    pub fn new(
        runtime: Arc<Runtime>,
        providers: Arc<Providers>,
        metrics: Arc<ControllerMetrics>,
    ) -> Decider {
        Decider {
            runtime,
            providers,
            metrics,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Asks the module what `stage` needs of it.
    pub async fn decide(&self, o: &Observed, stage: &Stage) -> Outcome {
        let Some(resolved) = &o.module.resolved else {
            return Outcome::Nothing;
        };
        let tenant = o.namespace();
        if let Some(input) = plan::strategy_input(o, stage) {
            return Outcome::Decided(self.decision(o, resolved, input, tenant).await);
        }
        Outcome::ConfigChecked(self.check(o, resolved, tenant).await)
    }

    async fn decision(
        &self,
        o: &Observed,
        resolved: &Result<ResolvedModule, Refusal>,
        input: crate::strategy::Observation,
        tenant: &str,
    ) -> Decided {
        let module = o.module.name.clone();
        let failed = |r: Refusal| Decided::Failed {
            module: module.clone(),
            reason: r.reason,
            message: r.message,
        };
        let strategy = match resolved {
            Err(r) => return failed(r.clone()),
            Ok(resolved) => match self.strategy(resolved, tenant) {
                Usable::Ready(s) => {
                    if let Some(published) = &resolved.published_digest
                        && published != s.module.digest()
                    {
                        // The module status is written when the module changes, and a
                        // write of it reconciles this Rollout again.
                        return Decided::Deferred {
                            module,
                            why: format!(
                                "the status of module {} does not show digest {} yet",
                                resolved.name,
                                s.module.digest()
                            ),
                        };
                    }
                    s
                }
                Usable::Waiting(why) => return Decided::Deferred { module, why },
                Usable::Refused(r) => return failed(r),
            },
        };
        match self.accepts(&strategy, &input.config, tenant).await {
            Some(Ok(())) => {}
            Some(Err(r)) => return failed(r),
            None => {
                return Decided::Deferred {
                    module,
                    why: "the sandbox is busy".into(),
                };
            }
        }
        let metrics = Arc::new(ProviderMetrics::new(self.providers.clone()));
        let started = Instant::now();
        let outcome = self
            .runtime
            .decide_async(tenant, &strategy, &input, metrics.clone())
            .await;
        let took = started.elapsed();
        match outcome {
            Ok(decision) => {
                self.metrics.decided(decision.action.name(), &module, took);
                Decided::Decision {
                    decision,
                    module,
                    digest: strategy.module.digest().to_owned(),
                    metrics: metrics.answers(),
                }
            }
            Err(e) if e.is_transient() => Decided::Deferred {
                module,
                why: e.to_string(),
            },
            Err(e) => {
                self.metrics.decided("error", &module, took);
                failed(refusal(e.reason(), e.to_string()))
            }
        }
    }

    async fn check(
        &self,
        o: &Observed,
        resolved: &Result<ResolvedModule, Refusal>,
        tenant: &str,
    ) -> Option<Result<String, Refusal>> {
        let resolved = match resolved {
            Ok(r) => r,
            Err(r) => return Some(Err(r.clone())),
        };
        let strategy = match self.strategy(resolved, tenant) {
            Usable::Ready(s) => s,
            Usable::Waiting(_) => return None,
            Usable::Refused(r) => return Some(Err(r)),
        };
        self.accepts(&strategy, &o.module.config, tenant)
            .await
            .map(|verdict| verdict.map(|()| o.module.name.clone()))
    }

    /// Whether the module accepts `config`: asked once per digest and configuration;
    /// `None` when it cannot be asked now.
    async fn accepts(
        &self,
        strategy: &Strategy,
        config: &str,
        tenant: &str,
    ) -> Option<Result<(), Refusal>> {
        let key = (strategy.module.digest().to_owned(), config.to_owned());
        if let Some(verdict) = self.lock().get(&key) {
            return Some(verdict.clone());
        }
        let (verdict, lasting) = match self
            .runtime
            .validate_config_async(tenant, strategy, config)
            .await
        {
            Ok(()) => (Ok(()), true),
            Err(e) if e.is_transient() => return None,
            // The module's own answer is the same every time; a trap or a deadline
            // may not be, and is asked again.
            Err(e) => (
                Err(refusal(e.reason(), e.to_string())),
                matches!(e, crate::strategy::StrategyError::Config { .. }),
            ),
        };
        if !lasting {
            return Some(verdict);
        }
        let mut verdicts = self.lock();
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, verdict.clone());
        Some(verdict)
    }

    /// The strategy for a resolved module, without waiting for its compilation.
    fn strategy(&self, resolved: &ResolvedModule, tenant: &str) -> Usable {
        match self
            .runtime
            .module_state(tenant, resolved.bytes.clone(), resolved.pin.as_deref())
        {
            ModuleState::Ready(module) => Usable::Ready(Strategy::new(
                module,
                resolved.limits.clone(),
                resolved.grants.clone(),
            )),
            ModuleState::Compiling => {
                Usable::Waiting(format!("module {} is being compiled", resolved.name))
            }
            ModuleState::Failed(LoadError::Busy(busy)) => Usable::Waiting(busy.to_string()),
            ModuleState::Failed(e) => Usable::Refused(refusal(e.reason(), e.to_string())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Result<(), Refusal>>> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
