//! Keeps each StrategyModule's and ClusterStrategyModule's status: loads the module
//! from its source, checks its pin and contract, and reports ready (with the digest,
//! contract version and exports) or why not.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::modules::{
    self, ClusterStrategyModule, ModuleSource, StrategyModule, StrategyModuleStatus,
};
use crate::strategy::Runtime;

struct Ctx {
    client: kube::Client,
    runtime: Arc<Runtime>,
    fetcher: Arc<crate::fetch::Fetcher>,
}

/// Runs both status loops until the process ends (each only if its CRD is served).
pub async fn run(
    client: kube::Client,
    runtime: Arc<Runtime>,
    fetcher: Arc<crate::fetch::Fetcher>,
    namespace: Option<String>,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        runtime,
        fetcher,
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
            Controller::new(namespaced, watcher::Config::default())
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

async fn status_for(
    ctx: &Ctx,
    source: &ModuleSource,
    ns: Option<&str>,
    generation: Option<i64>,
) -> StrategyModuleStatus {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let bytes = match modules::read_source(&ctx.client, &ctx.fetcher, source, ns).await {
        Ok(b) => b,
        Err(message) => {
            return StrategyModuleStatus {
                ready: false,
                reason: "SourceUnavailable".into(),
                message,
                observed_generation: generation,
                ..StrategyModuleStatus::default()
            };
        }
    };
    let runtime = ctx.runtime.clone();
    let pin = source.sha256.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let module = match pin {
            Some(pin) => runtime.load_pinned(&bytes, &pin),
            None => runtime.load(&bytes),
        }?;
        // What the module says of itself; a module that cannot describe itself still runs.
        let strategy = crate::strategy::Strategy::new(
            module.clone(),
            crate::strategy::Limits::default(),
            crate::strategy::Grants::none(),
        );
        let info = runtime.describe(&strategy).ok();
        Ok::<_, crate::strategy::LoadError>((module, info))
    })
    .await;
    match loaded {
        Ok(Ok((module, info))) => StrategyModuleStatus {
            ready: true,
            reason: String::new(),
            message: format!("loaded, {} bytes", module.size()),
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
        Ok(Err(e)) => StrategyModuleStatus {
            ready: false,
            reason: match e {
                crate::strategy::LoadError::DigestMismatch { .. } => "DigestMismatch",
                crate::strategy::LoadError::UnsupportedContract { .. } => "UnsupportedContract",
                _ => "NotLoadable",
            }
            .into(),
            message: e.to_string(),
            observed_generation: generation,
            ..StrategyModuleStatus::default()
        },
        Err(join) => StrategyModuleStatus {
            ready: false,
            reason: "NotLoadable".into(),
            message: join.to_string(),
            observed_generation: generation,
            ..StrategyModuleStatus::default()
        },
    }
}

/// Writes `status` unless it says the same as the current one (the load time aside).
async fn write<K>(
    api: Api<K>,
    object: &K,
    current: Option<&StrategyModuleStatus>,
    status: StrategyModuleStatus,
) -> Result<Action, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let same = current.is_some_and(|c| {
        c.ready == status.ready
            && c.digest == status.digest
            && c.message == status.message
            && c.observed_generation == status.observed_generation
    });
    if !same {
        api.patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    }
    // ConfigMap contents can change without the module changing: look again.
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn reconcile_namespaced(
    m: Arc<StrategyModule>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::Error> {
    let ns = m.namespace().unwrap_or_default();
    let status = status_for(&ctx, &m.spec.source, Some(&ns), m.metadata.generation).await;
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
    let status = status_for(&ctx, &m.spec.source, None, m.metadata.generation).await;
    write(
        Api::<ClusterStrategyModule>::all(ctx.client.clone()),
        &*m,
        m.status.as_ref(),
        status,
    )
    .await
}
