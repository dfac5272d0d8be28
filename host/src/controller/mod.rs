//! The controller: serves `rollouts.kruise.io/v1alpha1` Rollouts.
//!
//! Each reconcile is a pipeline of stages, one module each (docs/architecture.md):
//! [`observe`] reads everything — the Rollout's objects and its strategy module —
//! into one [`observed::Observed`]; [`decide`] makes the one guest call; [`plan`]
//! (pure) turns both into concrete writes and a status; [`apply`] makes the writes
//! in order; [`report`] writes the status and the events. Workload kinds and
//! routers are behind traits in `crate::workload` and `crate::traffic`.

pub mod apply;
pub mod decide;
pub mod endpoints;
pub mod error;
pub mod finalise;
pub mod leader;
pub mod metrics;
pub mod module_status;
pub mod observe;
pub mod observed;
pub mod plan;
pub mod report;
pub mod status;
pub mod watches;
pub mod write;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::Instrument;

use crate::clock::Clock;
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::Runtime;
use decide::{Decider, Outcome};
use error::Error;
use metrics::ControllerMetrics;

/// The annotation naming a Rollout's strategy module.
pub const MODULE_ANNOTATION: &str = "strategy.sluice.dev/module";
/// How long reconciles under way may go on once the controller is told to stop
/// (within the 30 seconds deploy/controller.yaml gives the pod to stop).
const STOP_GRACE: Duration = Duration::from_secs(10);
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
    /// Where `/metrics`, `/healthz` and `/readyz` are served (port 0: any free port).
    pub metrics_addr: Option<SocketAddr>,
    /// Told the address `/metrics` and the probes are served on, once bound: how a
    /// caller that asked for port 0 learns the port.
    pub on_serving: Option<tokio::sync::mpsc::UnboundedSender<SocketAddr>>,
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
    /// The clock reconciles read `now` from.
    pub clock: Arc<dyn Clock>,
    /// What the Rollout validation rules are told (`--partition-percent-limit`).
    pub validation: crate::kruise::validate::Options,
    /// The admission webhooks, served by every replica; none when `None`.
    pub webhook: Option<crate::admission::WebhookConfig>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            namespace: None,
            lease: None,
            metrics_addr: None,
            on_serving: None,
            reporter: "sluice".into(),
            providers: Vec::new(),
            module_ca: None,
            download_dir: None,
            insecure_registries: Vec::new(),
            clock: crate::clock::system(),
            validation: crate::kruise::validate::Options::default(),
            webhook: None,
        }
    }
}

/// What every reconcile reaches.
pub struct Context {
    client: kube::Client,
    fetcher: Arc<crate::fetch::Fetcher>,
    admission: crate::modules::Admission,
    decider: Decider,
    recorder: Recorder,
    metrics: Arc<ControllerMetrics>,
    rollouts: Store<Rollout>,
    clock: Arc<dyn Clock>,
    validation: crate::kruise::validate::Options,
    /// Conflicts in a row, per Rollout: a conflict means the watch cache is behind
    /// the cluster, and retrying at once from the same cache only adds load.
    conflicts: std::sync::Mutex<std::collections::HashMap<(String, String), u32>>,
}

/// How long to wait after the `n`th conflict in a row (from 1): 100 ms, doubling,
/// at most 5 s — exponential per object, as controller-runtime's rate limiter is
/// for Kruise (5 ms to 1,000 s there).
pub fn conflict_backoff(n: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << n.saturating_sub(1).min(6))
        .min(Duration::from_secs(5))
}

fn key_of(rollout: &Rollout) -> (String, String) {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// Reconciles one Rollout: observe → decide → plan → apply → report.
async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        namespace = %rollout.namespace().unwrap_or_default(),
        rollout = %rollout.name_any()
    );
    let result = async {
        let sources = observe::Sources {
            client: &ctx.client,
            fetcher: &ctx.fetcher,
            admission: &ctx.admission,
            now_ms: ctx.clock.now_ms(),
            validation: ctx.validation,
        };
        let conflicting = watches::conflicting(&ctx.rollouts, &rollout);
        let (observed, stage) = observe::observe(&sources, &rollout, conflicting).await?;
        let outcome = ctx.decider.decide(&observed, &stage).await;
        let decided = match &outcome {
            Outcome::Decided(d) => Some(d),
            Outcome::Nothing | Outcome::ConfigChecked(_) => None,
        };
        let mut plan = plan::plan(&observed, stage, decided);
        if let Outcome::ConfigChecked(check) = &outcome {
            match check {
                Some(check) => plan::config_checked(&mut plan, check, observed.now),
                // Not known yet (compiling, the sandbox busy): look again shortly.
                None => plan.requeue = Some(Duration::from_secs(1)),
            }
        }
        tracing::debug!(writes = ?plan.writes, "plan");
        apply::apply(&ctx.client, &plan.writes).await?;
        ctx.metrics.wrote(plan.writes.len());
        let status_written = report::report(&ctx.client, &ctx.recorder, &observed, &plan).await?;
        ctx.metrics.wrote(usize::from(status_written));
        Ok::<_, Error>(Action::requeue(
            plan.requeue.unwrap_or(Duration::from_secs(300)),
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
    if result.is_ok()
        && let Ok(mut conflicts) = ctx.conflicts.lock()
    {
        conflicts.remove(&key_of(&rollout));
    }
    result
}

fn error_policy(rollout: Arc<Rollout>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        let n = ctx.conflicts.lock().map_or(1, |mut conflicts| {
            let n = conflicts.entry(key_of(&rollout)).or_insert(0);
            *n += 1;
            *n
        });
        let wait = conflict_backoff(n);
        tracing::debug!(%error, conflicts = n, ?wait, "conflict; retrying");
        return Action::requeue(wait);
    }
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// An API for `resource` in the controller's scope.
fn scoped_api(
    client: &kube::Client,
    namespace: Option<&str>,
    resource: &kube::core::ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Whether the API server serves `api` here (a CRD may be missing).
async fn served<K>(api: &Api<K>) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .map(|_| ())
}

/// Runs the controller until `shutdown` completes (or leadership is lost). Serves
/// `/readyz` from the start, leading or not; releases the lease on the way out.
pub async fn run(
    client: kube::Client,
    mut config: ControllerConfig,
    runtime: Arc<Runtime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(ControllerMetrics::new());
    // One clock for everything the controller times: reconciles, module statuses
    // and the lease.
    if let Some(lease) = config.lease.as_mut() {
        lease.clock = config.clock.clone();
    }
    let ns = config.namespace.as_deref();
    let rollouts: Api<Rollout> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = served(&rollouts).await {
        anyhow::bail!(
            "cannot list rollouts.kruise.io Rollouts ({e}); install the CRDs first: `sluice crds | kubectl apply -f -`"
        );
    }
    if let Some(lease) = &config.lease {
        lease.check().map_err(|e| anyhow::anyhow!(e))?;
    }
    // Every replica serves the webhooks (the API server may call any of them),
    // before it says it is up.
    if let Some(webhook) = config.webhook.clone() {
        crate::admission::start(
            client.clone(),
            webhook,
            config.validation,
            config.clock.clone(),
        )
        .await?;
    }
    // Ready once it can serve: a standby is Ready too, so that a rolling update
    // of the controller's own Deployment goes on while another replica leads.
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        // The address bound, port 0 resolved: what a probe or a test connects to.
        if let Ok(bound) = listener.local_addr() {
            tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
            if let Some(tell) = &config.on_serving {
                let _ = tell.send(bound);
            }
        }
        tokio::spawn(endpoints::serve(listener, metrics.clone(), ready_rx));
    }
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let shutdown = {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        rx
    };
    let stopped = {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }
    };
    if let Some(lease) = &config.lease {
        tokio::select! {
            () = leader::acquire(&client, lease) => {}
            () = stopped => {
                tracing::info!("stopped while standing by");
                drop(ready_tx);
                return Ok(());
            }
        }
    }
    {
        let client = client.clone();
        let lease = config.lease.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let lost = async {
                match &lease {
                    Some(lease) => leader::keep(&client, lease).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {}
                () = lost => {}
            }
            let _ = stop_tx.send(());
        });
    }
    let stop = async move {
        let _ = stop_rx.await;
    }
    .shared();

    tracing::info!(
        scope = ns.unwrap_or("all namespaces"),
        "controller starting"
    );
    let (store, writer) = reflector::store::<Rollout>();
    // Rollouts are reconciled when what calls for it changes — never because of the
    // status the controller wrote itself (watches::rollout_changed).
    let trigger = watcher(rollouts, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(watches::rollout_changed, Default::default());
    let controller = Controller::for_stream(trigger, store.clone());
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
        fetcher: fetcher.clone(),
        admission: admission.clone(),
        decider: Decider::new(runtime.clone(), providers, metrics.clone()),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        rollouts: store.clone(),
        clock: config.clock.clone(),
        validation: config.validation,
        conflicts: Default::default(),
    });
    tokio::spawn(count_phases(store.clone(), metrics.clone()));
    tokio::spawn(module_status::run(
        client.clone(),
        runtime.clone(),
        fetcher.clone(),
        admission,
        config.namespace.clone(),
        config.clock.clone(),
    ));

    // Each workload kind served here is watched; an event on one reaches the
    // Rollouts releasing it (or whose canary it is).
    let mut controller = controller;
    for kind in crate::workload::KINDS {
        let kind = crate::workload::Kind(*kind);
        let resource = kind.resource();
        let api = scoped_api(&client, ns, &resource);
        if let Err(e) = served(&api).await {
            tracing::info!(kind = %resource.kind, error = %e, "not served here; not watching it");
            continue;
        }
        let rollouts = store.clone();
        controller = controller.watches_with(
            api,
            resource,
            watcher::Config::default(),
            move |object: DynamicObject| {
                watches::rollouts_for(
                    &rollouts,
                    object.namespace(),
                    kind.kind(),
                    &watches::names_of(kind, &object),
                )
            },
        );
    }
    // The objects the routers create for a Rollout, owned by it.
    let mut owned: Vec<kube::core::ApiResource> = Vec::new();
    for router in crate::traffic::ROUTERS {
        if let Some(resource) = router.owned()
            && !owned
                .iter()
                .any(|r| r.kind == resource.kind && r.group == resource.group)
        {
            owned.push(resource);
        }
    }
    for resource in owned {
        let api = scoped_api(&client, ns, &resource);
        if served(&api).await.is_ok() {
            controller = controller.owns_with(api, resource, watcher::Config::default());
        }
    }
    let services: Api<Service> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    controller = controller.owns(services, watcher::Config::default());

    // A module's new version (its object or its ConfigMap) reaches the Rollouts using
    // it at once, not at their next recheck.
    let modules_api: Api<crate::modules::StrategyModule> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if served(&modules_api).await.is_ok() {
        let (module_store, module_writer) = reflector::store::<crate::modules::StrategyModule>();
        let module_events = watcher(modules_api, watcher::Config::default())
            .default_backoff()
            .reflect(module_writer)
            .applied_objects();
        let module_rollouts = store.clone();
        let configmap_rollouts = store.clone();
        let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        controller = controller
            .watches_stream(module_events, move |m: crate::modules::StrategyModule| {
                watches::rollouts_using(&module_rollouts, m.namespace(), &[m.name_any()])
            })
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
                    watches::rollouts_using(&configmap_rollouts, ns, &names)
                },
            );
    }
    let running = controller
        .graceful_shutdown_on(stop.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    // Told to stop, the reconciles under way may finish, within a bound: a stop
    // that comes before the watch caches are filled would otherwise wait for
    // them for ever, and the kubelet kills what outlives its grace period
    // without the lease being let go.
    tokio::select! {
        () = running => {}
        () = async {
            stop.await;
            tokio::time::sleep(STOP_GRACE).await;
        } => {
            tracing::warn!(grace = ?STOP_GRACE, "reconciles still running after the stop's grace; stopping without them");
        }
    }
    drop(ready_tx);
    if let Some(lease) = &config.lease {
        match leader::release(&client, lease).await {
            Ok(()) => tracing::info!(lease = %lease.name, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
        }
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// Counts Rollouts per phase for the metrics, every few seconds.
async fn count_phases(store: Store<Rollout>, metrics: Arc<ControllerMetrics>) {
    loop {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for r in store.state() {
            let phase = r
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Initial".into());
            *counts.entry(phase).or_default() += 1;
        }
        metrics.set_phases(&counts.into_iter().collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn conflicts_back_off_doubling_to_five_seconds() {
        let waits: Vec<u128> = (1..=9).map(|n| conflict_backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(conflict_backoff(u32::MAX), Duration::from_secs(5));
    }
}
