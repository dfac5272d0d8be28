//! The controller: serves `rollouts.kruise.io/v1alpha1` Rollouts.
//!
//! Each reconcile is observe → decide → plan → apply → report: `observe` reads the
//! Rollout and everything it touches, the Rollout's strategy module decides, `plan`
//! (pure) turns that into changes and a status, `apply` makes the changes in a safe
//! order, and `report` writes the status, publishes events and counts metrics.

pub mod apply;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod module_status;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod status;
pub mod traffic;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::kruise::v1alpha1::Rollout;
use crate::modules::{Refusal, ResolvedModule};
use crate::strategy::{LoadError, ModuleState, Runtime, Strategy};
use error::Error;
use metrics::ControllerMetrics;
use plan::Decided;

/// The annotation naming a Rollout's strategy module.
pub const MODULE_ANNOTATION: &str = "strategy.sluice.dev/module";
/// The annotation carrying the module's JSON configuration.
pub const CONFIG_ANNOTATION: &str = "strategy.sluice.dev/config";
/// The module a Rollout gets when it names none.
pub const DEFAULT_MODULE: &str = "builtin:steps";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Only Rollouts of this namespace; all when `None`.
    pub namespace: Option<String>,
    /// Leader election; `None` runs unconditionally.
    pub lease: Option<leader::LeaseConfig>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: Option<SocketAddr>,
    /// The name events are reported under.
    pub reporter: String,
    /// Metric providers modules may query (as granted).
    pub providers: Vec<crate::providers::ProviderConfig>,
    /// Extra CA certificates (PEM) trusted for HTTPS module downloads.
    pub module_ca: Option<std::path::PathBuf>,
    /// Where downloaded modules are kept.
    pub download_dir: Option<std::path::PathBuf>,
    /// OCI registries (`host:port`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            namespace: None,
            lease: None,
            metrics_addr: None,
            reporter: "sluice".into(),
            providers: Vec::new(),
            module_ca: None,
            download_dir: None,
            insecure_registries: Vec::new(),
        }
    }
}

/// What every reconcile reaches.
pub struct Context {
    client: kube::Client,
    runtime: Arc<Runtime>,
    providers: Arc<crate::providers::Providers>,
    admission: crate::modules::Admission,
    fetcher: Arc<crate::fetch::Fetcher>,
    recorder: Recorder,
    metrics: Arc<ControllerMetrics>,
    rollouts: Store<Rollout>,
}

/// A resolved module on its way to a call.
enum Usable {
    /// Compiled, with its limits and grants.
    Ready(Strategy),
    /// Not yet: compiling, or waiting for a turn.
    Waiting(String),
    /// Refused.
    Refused(Refusal),
}

impl Context {
    /// Resolves the module a Rollout of `ns` names, within what the operator allows.
    async fn resolve(&self, ns: &str, module_name: &str) -> Result<ResolvedModule, Refusal> {
        crate::modules::resolve(
            &self.client,
            &self.fetcher,
            &self.admission,
            ns,
            module_name,
        )
        .await
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
            ModuleState::Failed(e) => Usable::Refused((e.reason().to_owned(), e.to_string())),
        }
    }

    /// Checks `config` with the module's `validate-config`; Ok names the module;
    /// `None` when the module cannot be asked yet (compiling, or the sandbox busy).
    async fn check_config(
        &self,
        resolved: Result<ResolvedModule, Refusal>,
        module_name: &str,
        config: &str,
        tenant: &str,
    ) -> Option<Result<String, Refusal>> {
        let resolved = match resolved {
            Ok(r) => r,
            Err(refused) => return Some(Err(refused)),
        };
        let strategy = match self.strategy(&resolved, tenant) {
            Usable::Ready(s) => s,
            Usable::Waiting(_) => return None,
            Usable::Refused(refused) => return Some(Err(refused)),
        };
        match self
            .runtime
            .validate_config_async(tenant, &strategy, config)
            .await
        {
            Ok(()) => Some(Ok(module_name.to_owned())),
            Err(e) if e.is_transient() => None,
            Err(e) => Some(Err((e.reason().to_owned(), e.to_string()))),
        }
    }

    /// Runs the Rollout's strategy on `input`, in the sandbox, for `tenant`.
    async fn decide(
        &self,
        resolved: Result<ResolvedModule, Refusal>,
        module_name: &str,
        input: crate::strategy::Observation,
        tenant: &str,
    ) -> Decided {
        let failed = |(reason, message): Refusal| Decided::Failed {
            module: module_name.to_owned(),
            reason,
            message,
        };
        let resolved = match resolved {
            Ok(r) => r,
            Err(refused) => return failed(refused),
        };
        let strategy = match self.strategy(&resolved, tenant) {
            Usable::Ready(s) => s,
            Usable::Waiting(why) => {
                return Decided::Deferred {
                    module: module_name.to_owned(),
                    why,
                };
            }
            Usable::Refused(refused) => return failed(refused),
        };
        // One cache of metric answers per reconcile.
        let metrics = Arc::new(crate::providers::ProviderMetrics::new(
            self.providers.clone(),
        ));
        let started = Instant::now();
        let outcome = match self
            .runtime
            .validate_config_async(tenant, &strategy, &input.config)
            .await
        {
            Ok(()) => {
                self.runtime
                    .decide_async(tenant, &strategy, &input, metrics)
                    .await
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        match outcome {
            Ok(decision) => {
                self.metrics
                    .decided(decision.action.name(), module_name, took);
                Decided::Decision {
                    decision,
                    module: module_name.to_owned(),
                    digest: strategy.module.digest().to_owned(),
                }
            }
            Err(e) if e.is_transient() => Decided::Deferred {
                module: module_name.to_owned(),
                why: e.to_string(),
            },
            Err(e) => {
                self.metrics.decided("error", module_name, took);
                failed((e.reason().to_owned(), e.to_string()))
            }
        }
    }
}

/// Reconciles one Rollout.
async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    let span = tracing::info_span!("reconcile", namespace = %ns, rollout = %name);
    let result = async {
        let others: Vec<Rollout> = ctx
            .rollouts
            .state()
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()) && r.name_any() != name)
            .map(|r| (**r).clone())
            .collect();
        let observed = observe::observe(&ctx.client, &rollout, others).await?;
        let annotations = rollout.annotations();
        let module_name = annotations
            .get(MODULE_ANNOTATION)
            .map_or(DEFAULT_MODULE, String::as_str)
            .to_owned();
        let config = annotations
            .get(CONFIG_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        // The stage runs the spec's validation: work it out once.
        let stage = plan::stage(&observed);
        let idle = stage == plan::Stage::Idle;
        let decided = match plan::strategy_input(&observed, &stage, &config) {
            Some(input) => {
                let resolved = ctx.resolve(&ns, &module_name).await;
                Some(ctx.decide(resolved, &module_name, input, &ns).await)
            }
            None => None,
        };
        let mut plan = plan::plan(&observed, stage, decided.as_ref());
        // Between releases, a named module's configuration is still checked, so a
        // mistake shows as soon as the Rollout names it rather than at the next release.
        if decided.is_none() && annotations.contains_key(MODULE_ANNOTATION) && idle {
            let resolved = ctx.resolve(&ns, &module_name).await;
            match ctx.check_config(resolved, &module_name, &config, &ns).await {
                Some(check) => plan::config_checked(&mut plan, &check, observed.now),
                // Not yet known: look again shortly.
                None => plan.requeue = Some(Duration::from_secs(1)),
            }
        }
        tracing::debug!(changes = ?plan.changes, "plan");
        apply::apply(&ctx.client, &observed, &plan.changes).await?;
        report(&ctx, &observed, &plan).await?;
        Ok::<_, Error>(plan.requeue.map_or_else(
            || Action::requeue(Duration::from_secs(300)),
            Action::requeue,
        ))
    }
    .instrument(span)
    .await;
    ctx.metrics.reconciled(
        match &result {
            Ok(_) => "ok",
            Err(e) => e.metric_label(),
        },
        started.elapsed(),
    );
    result
}

/// Writes the planned status and publishes the planned events.
async fn report(ctx: &Context, o: &observed::Observed, plan: &plan::Plan) -> Result<(), Error> {
    let ns = o.rollout.namespace().unwrap_or_default();
    let name = o.rollout.name_any();
    let removing = plan.changes.contains(&plan::Change::RemoveFinalizer)
        && o.rollout.metadata.deletion_timestamp.is_some();
    let old =
        serde_json::to_value(o.rollout.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let new = serde_json::to_value(&plan.status).unwrap_or(Value::Null);
    if old != new && !removing {
        let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
        let mut patch = json!({"status": merge_diff(&old, &new)});
        // A status written from a stale read would undo a concurrent approval.
        if !plan.changes.iter().any(|c| {
            matches!(
                c,
                plan::Change::AddFinalizer | plan::Change::RemoveFinalizer
            )
        }) {
            patch["metadata"] = json!({"resourceVersion": o.rollout.metadata.resource_version});
        }
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::Report)?;
    }
    let reference = o.rollout.object_ref(&());
    for note in &plan.notes {
        let event = KubeEvent {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(note.message.chars().take(1000).collect()),
            // The recorder folds events by type, reason and action, not by note: the
            // note as action keeps each transition its own Event, and counts repeats.
            action: note.message.chars().take(128).collect(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish an event");
        }
    }
    Ok(())
}

/// A JSON merge patch turning `old` into `new`.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(old_v) if old_v == v => {}
                    Some(old_v) => {
                        out.insert(k.clone(), merge_diff(old_v, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

fn error_policy(_rollout: Arc<Rollout>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        tracing::debug!(%error, "conflict; retrying");
        return Action::requeue(Duration::from_millis(100));
    }
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Rollouts that govern a workload (or own a canary Deployment) named in `meta`.
fn rollouts_for(
    store: &Store<Rollout>,
    ns: Option<String>,
    names: &[String],
) -> Vec<ObjectRef<Rollout>> {
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns)
        .filter(|r| {
            r.spec
                .object_ref
                .workload_ref
                .as_ref()
                .is_some_and(|w| names.contains(&w.name))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Rollouts of `ns` whose strategy annotation names one of `modules`.
fn rollouts_using(
    store: &Store<Rollout>,
    ns: Option<String>,
    modules: &[String],
) -> Vec<ObjectRef<Rollout>> {
    if modules.is_empty() {
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns)
        .filter(|r| {
            r.annotations()
                .get(MODULE_ANNOTATION)
                .is_some_and(|m| modules.contains(m))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Runs the controller until `shutdown` completes (or leadership is lost).
pub async fn run(
    client: kube::Client,
    config: ControllerConfig,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(ControllerMetrics::new());
    let api_for = |_: ()| -> Api<Rollout> {
        match &config.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    };
    let rollouts = api_for(());
    if let Err(e) = rollouts
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        anyhow::bail!(
            "cannot list rollouts.kruise.io Rollouts ({e}); install the CRDs first: `sluice crds | kubectl apply -f -`"
        );
    }
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        tokio::spawn(serve_http(listener, metrics.clone(), ready_rx));
    }
    if let Some(lease) = &config.lease {
        leader::acquire(&client, lease).await;
    }
    let lost = {
        let client = client.clone();
        let lease = config.lease.clone();
        async move {
            match lease {
                Some(lease) => leader::keep(&client, &lease).await,
                None => std::future::pending().await,
            }
        }
    };
    // The controller wants a Sync future: bridge through a oneshot.
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = lost => {}
        }
        let _ = stop_tx.send(());
    });
    let stop = async move {
        let _ = stop_rx.await;
    };

    let scoped = |kind: &str| -> String {
        format!(
            "{kind} in {}",
            config.namespace.as_deref().unwrap_or("all namespaces")
        )
    };
    tracing::info!(scope = %scoped("rollouts"), "controller starting");
    let controller = Controller::new(rollouts, watcher::Config::default().any_semantic());
    let store = controller.store();
    let ns_api = |c: &kube::Client| -> (
        Api<Deployment>,
        Api<StatefulSet>,
        Api<Service>,
        Api<Ingress>,
    ) {
        match &config.namespace {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
            ),
        }
    };
    let (deployments, statefulsets, services, ingresses) = ns_api(&client);
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: config.lease.as_ref().map(|l| l.identity.clone()),
    };
    let fetcher = Arc::new(crate::fetch::Fetcher::with_insecure_registries(
        config.module_ca.as_deref(),
        config.download_dir.clone(),
        config.insecure_registries.clone(),
    )?);
    let providers = Arc::new(
        crate::providers::Providers::new(config.providers.clone())
            .map_err(|e| anyhow::anyhow!("metric providers: {e}"))?,
    );
    let admission = crate::modules::Admission {
        ceilings: *runtime.ceilings(),
        providers: providers.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        runtime: runtime.clone(),
        providers,
        admission: admission.clone(),
        fetcher: fetcher.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        rollouts: store.clone(),
    });
    let deployment_store = store.clone();
    let sts_store = store.clone();
    let cloneset_store = store.clone();
    // CloneSets are watched when OpenKruise's CRD is installed.
    let clonesets: Option<Api<kube::core::DynamicObject>> = {
        let resource = observe::cloneset_resource();
        let api: Api<kube::core::DynamicObject> = match &config.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => Some(api),
            Err(e) => {
                tracing::info!(error = %e, "CloneSets are not served here; not watching them");
                None
            }
        }
    };
    let phase_store = store.clone();
    let phase_metrics = metrics.clone();
    tokio::spawn(async move {
        loop {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for r in phase_store.state() {
                let phase = r
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Initial".into());
                *counts.entry(phase).or_default() += 1;
            }
            phase_metrics.set_phases(&counts.into_iter().collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let _ = ready_tx.send(true);
    tokio::spawn(module_status::run(
        client.clone(),
        runtime.clone(),
        fetcher.clone(),
        admission,
        config.namespace.clone(),
    ));
    // A module's new version (its object or its ConfigMap) reaches the Rollouts using
    // it at once, not at their next recheck.
    let modules_api: Api<crate::modules::StrategyModule> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let modules_served = modules_api
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .is_ok();
    let (module_store, module_writer) =
        kube::runtime::reflector::store::<crate::modules::StrategyModule>();
    if modules_served {
        let reflector = kube::runtime::reflector(
            module_writer,
            watcher(modules_api.clone(), watcher::Config::default()),
        );
        tokio::spawn(async move {
            use kube::runtime::WatchStreamExt;
            reflector.applied_objects().for_each(|_| async {}).await;
        });
    }
    let configmap_rollouts = store.clone();
    let module_rollouts = store.clone();
    let controller = match clonesets {
        Some(api) => controller.watches_with(
            api,
            observe::cloneset_resource(),
            watcher::Config::default(),
            move |cs: kube::core::DynamicObject| {
                rollouts_for(&cloneset_store, cs.namespace(), &[cs.name_any()])
            },
        ),
        None => controller,
    };
    let controller = if modules_served {
        let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = match &config.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        controller
            .watches(
                modules_api,
                watcher::Config::default(),
                move |m: crate::modules::StrategyModule| {
                    rollouts_using(&module_rollouts, m.namespace(), &[m.name_any()])
                },
            )
            .watches(
                configmaps,
                watcher::Config::default(),
                move |cm: k8s_openapi::api::core::v1::ConfigMap| {
                    let ns = cm.namespace();
                    let names: Vec<String> = module_store
                        .state()
                        .iter()
                        .filter(|m| {
                            m.namespace() == ns
                                && m.spec
                                    .source
                                    .config_map
                                    .as_ref()
                                    .is_some_and(|s| s.name == cm.name_any())
                        })
                        .map(|m| m.name_any())
                        .collect();
                    rollouts_using(&configmap_rollouts, ns, &names)
                },
            )
    } else {
        controller
    };
    controller
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| {
                let mut names = vec![d.name_any()];
                if let Some(stable) = d.labels().get(observe::CANARY_LABEL) {
                    names.push(stable.clone());
                }
                rollouts_for(&deployment_store, d.namespace(), &names)
            },
        )
        .watches(
            statefulsets,
            watcher::Config::default(),
            move |s: StatefulSet| rollouts_for(&sts_store, s.namespace(), &[s.name_any()]),
        )
        .owns(services, watcher::Config::default())
        .owns(ingresses, watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    if let Some(lease) = &config.lease {
        match leader::release(&client, lease).await {
            Ok(()) => tracing::info!(lease = %lease.name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
        }
    }
    tracing::info!("controller stopped");
    Ok(())
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<ControllerMetrics>,
    ready: tokio::sync::watch::Receiver<bool>,
) {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = *ready.borrow();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "waiting for leadership")
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_diff_nulls_removed_fields() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [2], "f": true});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"c": 5, "d": null}, "e": [2], "f": true})
        );
    }
}
