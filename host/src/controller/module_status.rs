//! Keeps each StrategyModule's and ClusterStrategyModule's status: loads the module
//! from its source, checks its pin and contract, and reports ready (with the digest,
//! contract version and exports) or why not.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::modules::{
    self, Admission, ClusterStrategyModule, ModuleCapabilities, ModuleLimits, ModuleSource,
    StrategyModule, StrategyModuleStatus,
};
use crate::policy::Tenant;
use crate::strategy::{Grants, ModuleState, Runtime, Strategy};

/// The sandbox tenant cluster modules are loaded as (not a valid namespace name,
/// so no namespace shares its turn).
const CLUSTER_TENANT: &str = "(cluster modules)";

/// How soon a module still compiling, or waiting for the sandbox, is looked at again.
const AGAIN_SOON: Duration = Duration::from_secs(2);

struct Ctx {
    client: kube::Client,
    clock: Arc<dyn crate::clock::Clock>,
    runtime: Arc<Runtime>,
    fetcher: Arc<crate::fetch::Fetcher>,
    admission: Admission,
}

/// A module object, whichever its scope.
struct Module<'a> {
    source: &'a ModuleSource,
    limits: Option<&'a ModuleLimits>,
    capabilities: &'a ModuleCapabilities,
    /// The namespace of a namespaced module.
    namespace: Option<&'a str>,
    generation: Option<i64>,
}

/// Runs both status loops until the process ends (each only if its CRD is served).
pub async fn run(
    client: kube::Client,
    runtime: Arc<Runtime>,
    fetcher: Arc<crate::fetch::Fetcher>,
    admission: Admission,
    namespace: Option<String>,
    clock: Arc<dyn crate::clock::Clock>,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        clock,
        runtime,
        fetcher,
        admission,
    });
    let namespaced: Api<StrategyModule> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster: Api<ClusterStrategyModule> = Api::all(client.clone());
    let served_namespaced = namespaced.list(&Default::default()).await.is_ok();
    let served_cluster = cluster.list(&Default::default()).await.is_ok();
    if !served_namespaced && !served_cluster {
        tracing::info!(
            "the sluice.dev CRDs are not installed; only built-in strategies are available"
        );
        return;
    }
    let a = async {
        if served_namespaced {
            let controller = Controller::new(namespaced, watcher::Config::default());
            // A new module in a ConfigMap is a new status at once, not at the next
            // look: Rollouts wait for the status to show a digest before deciding with it.
            let modules = controller.store();
            let configmaps: Api<ConfigMap> = match &namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            controller
                .watches(
                    configmaps,
                    watcher::Config::default(),
                    move |cm: ConfigMap| {
                        let ns = cm.namespace();
                        let name = cm.name_any();
                        modules
                            .state()
                            .iter()
                            .filter(|m| {
                                m.namespace() == ns
                                    && m.spec
                                        .source
                                        .config_map
                                        .as_ref()
                                        .is_some_and(|s| s.name == name)
                            })
                            .map(|m| ObjectRef::from_obj(&**m))
                            .collect::<Vec<_>>()
                    },
                )
                .run(reconcile_namespaced, error_policy, ctx.clone())
                .for_each(|_| async {})
                .await;
        }
    };
    let b = async {
        if served_cluster {
            Controller::new(cluster, watcher::Config::default())
                .run(reconcile_cluster, error_policy, ctx.clone())
                .for_each(|_| async {})
                .await;
        }
    };
    futures::join!(a, b);
}

fn error_policy<K>(_: Arc<K>, error: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "module status not written");
    Action::requeue(Duration::from_secs(10))
}

fn not_ready(reason: &str, message: String, generation: Option<i64>) -> StrategyModuleStatus {
    StrategyModuleStatus {
        ready: false,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        ..StrategyModuleStatus::default()
    }
}

/// The module's status, and how soon to look again if it is not settled.
async fn status_for(ctx: &Ctx, m: Module<'_>) -> (StrategyModuleStatus, Option<Duration>) {
    let generation = m.generation;
    let now = crate::controller::status::time(ctx.clock.now_ms())
        .0
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    if m.namespace.is_none()
        && let Err(refused) = modules::check_cluster_source(m.source)
    {
        return (
            not_ready(&refused.reason, refused.message, generation),
            None,
        );
    }
    let labels = match m.namespace {
        Some(ns) => {
            match modules::labels_for_grants(&ctx.client, &ctx.admission, m.capabilities, ns).await
            {
                Ok(labels) => labels,
                Err(refused) => {
                    return (
                        not_ready(&refused.reason, refused.message, generation),
                        Some(AGAIN_SOON),
                    );
                }
            }
        }
        None => None,
    };
    let tenant = m.namespace.map(|ns| Tenant {
        name: ns,
        labels: labels.as_ref(),
    });
    let limits = match modules::admit(&ctx.admission, m.limits, m.capabilities, tenant) {
        Ok((limits, _)) => limits,
        Err(refused) => {
            return (
                not_ready(&refused.reason, refused.message, generation),
                None,
            );
        }
    };
    let bytes = match modules::read_source(
        &ctx.client,
        &ctx.fetcher,
        m.source,
        m.namespace,
        ctx.admission.ceilings.module_bytes,
    )
    .await
    {
        Ok(b) => b,
        Err(message) => return (not_ready("SourceUnavailable", message, generation), None),
    };
    let bucket = m.namespace.unwrap_or(CLUSTER_TENANT);
    let module = match ctx
        .runtime
        .module_state(bucket, bytes, m.source.sha256.as_deref())
    {
        ModuleState::Ready(module) => module,
        ModuleState::Compiling => {
            return (
                not_ready(
                    "Compiling",
                    "the module is being compiled".into(),
                    generation,
                ),
                Some(AGAIN_SOON),
            );
        }
        ModuleState::Failed(crate::strategy::LoadError::Busy(busy)) => {
            return (
                not_ready(
                    "Compiling",
                    format!("waiting to compile: {busy}"),
                    generation,
                ),
                Some(AGAIN_SOON),
            );
        }
        ModuleState::Failed(e) => {
            return (not_ready(e.reason(), e.to_string(), generation), None);
        }
    };
    // What the module says of itself, asked within its own limits and its
    // namespace's share of the sandbox; a module that cannot describe itself still runs.
    let strategy = Strategy::new(module.clone(), limits, Grants::none());
    let (info, described, again) = match ctx.runtime.describe_async(bucket, &strategy).await {
        Ok(info) => (Some(info), String::new(), None),
        Err(e) if e.is_transient() => (None, String::new(), Some(AGAIN_SOON)),
        Err(e) => (None, format!("; describe failed ({})", e.reason()), None),
    };
    (
        StrategyModuleStatus {
            ready: true,
            reason: String::new(),
            message: format!("loaded, {} bytes{described}", module.size()),
            digest: module.digest().to_owned(),
            contract_version: module.contract_version().to_owned(),
            exports: module.surface().exports.clone(),
            loaded_at: now,
            describes_as: info
                .as_ref()
                .map(|i| format!("{} {}", i.name, i.version))
                .unwrap_or_default(),
            config_schema: info.and_then(|i| i.config_schema),
            observed_generation: generation,
        },
        again,
    )
}

/// Writes `status` unless it says the same as the current one (the load time aside),
/// as a merge diff, so that a field the new status no longer has (a module that no
/// longer describes itself) is removed rather than left from the old module.
async fn write<K>(
    api: Api<K>,
    object: &K,
    current: Option<&StrategyModuleStatus>,
    (status, again): (StrategyModuleStatus, Option<Duration>),
) -> Result<Action, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let same = current.is_some_and(|current| {
        StrategyModuleStatus {
            loaded_at: String::new(),
            ..current.clone()
        } == StrategyModuleStatus {
            loaded_at: String::new(),
            ..status.clone()
        }
    });
    if !same {
        let new = serde_json::to_value(&status).map_err(kube::Error::SerdeError)?;
        let patch = match current {
            Some(current) => {
                let old = serde_json::to_value(current).map_err(kube::Error::SerdeError)?;
                super::report::merge_diff(&old, &new)
            }
            // The first status is written whole.
            None => new,
        };
        api.patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": patch})),
        )
        .await?;
    }
    // ConfigMap contents can change without the module changing: look again.
    Ok(Action::requeue(again.unwrap_or(Duration::from_secs(30))))
}

async fn reconcile_namespaced(
    m: Arc<StrategyModule>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::Error> {
    let ns = m.namespace().unwrap_or_default();
    let status = status_for(
        &ctx,
        Module {
            source: &m.spec.source,
            limits: m.spec.limits.as_ref(),
            capabilities: &m.spec.capabilities,
            namespace: Some(&ns),
            generation: m.metadata.generation,
        },
    )
    .await;
    write(
        Api::<StrategyModule>::namespaced(ctx.client.clone(), &ns),
        &*m,
        m.status.as_ref(),
        status,
    )
    .await
}

async fn reconcile_cluster(
    m: Arc<ClusterStrategyModule>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::Error> {
    let status = status_for(
        &ctx,
        Module {
            source: &m.spec.source,
            limits: m.spec.limits.as_ref(),
            capabilities: &m.spec.capabilities,
            namespace: None,
            generation: m.metadata.generation,
        },
    )
    .await;
    write(
        Api::<ClusterStrategyModule>::all(ctx.client.clone()),
        &*m,
        m.status.as_ref(),
        status,
    )
    .await
}
