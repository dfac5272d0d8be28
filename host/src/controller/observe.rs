//! The reading end of a reconcile: everything about one Rollout — its workload and
//! canary, its Services and routes, and the strategy module it names — read into
//! one [`Observed`] value. Only this stage reads. Reads are of the Rollout's own
//! objects (by name, or by label), never of a whole namespace.

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use serde_json::{Value, json};

use super::error::Error;
use super::observed::{Observed, Snapshot};
use super::plan::{self, Stage};
use crate::kruise::v1alpha1::Rollout;
use crate::modules::Admission;
use crate::traffic::Routing;
use crate::workload;

/// What observe reaches besides the cluster.
pub struct Sources<'a> {
    /// The API.
    pub client: &'a kube::Client,
    /// Where module bytes come from.
    pub fetcher: &'a crate::fetch::Fetcher,
    /// What the operator allows modules.
    pub admission: &'a Admission,
    /// Now.
    pub now_ms: u64,
    /// What the validating rules are told.
    pub validation: crate::kruise::validate::Options,
}

/// Reads everything the plan needs about `rollout`, and the stage it is in.
pub async fn observe(
    sources: &Sources<'_>,
    rollout: &Rollout,
    conflicting: Vec<Rollout>,
) -> Result<(Observed, Stage), Error> {
    let snapshot = read(sources.client, rollout, conflicting, sources.now_ms).await?;
    let mut observed = Observed::from_snapshot(&snapshot);
    observed.validation = sources.validation;
    let stage = plan::stage(&observed);
    // The module is resolved (its object read, its bytes fetched) only when this
    // reconcile asks it something: a decision, or a check of a named module's
    // configuration between releases.
    let named = rollout
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(super::MODULE_ANNOTATION));
    if stage.decides() || (named && stage == Stage::Idle) {
        observed.module.resolved = Some(
            crate::modules::resolve(
                sources.client,
                sources.fetcher,
                sources.admission,
                observed.namespace(),
                &observed.module.name,
            )
            .await,
        );
    }
    Ok((observed, stage))
}

/// The Rollout's objects, as the API server has them.
pub async fn read(
    client: &kube::Client,
    rollout: &Rollout,
    conflicting: Vec<Rollout>,
    now_ms: u64,
) -> Result<Snapshot, Error> {
    let ns = workload::namespace(rollout).to_owned();
    let failed = |what: &str| {
        let rollout = format!("{ns}/{}", rollout.metadata.name.as_deref().unwrap_or(""));
        let what = what.to_owned();
        move |source| Error::Observe {
            rollout,
            what,
            source,
        }
    };
    let mut snapshot = Snapshot {
        conflicting,
        ..Snapshot::of(rollout.clone(), now_ms)
    };
    if let Some(wref) = rollout.spec.object_ref.workload_ref.as_ref()
        && let Some(kind) = workload::of_rollout(rollout)
    {
        kind.read(client, rollout, &wref.name, &mut snapshot)
            .await
            .map_err(failed(&format!("{} {}", wref.kind, wref.name)))?;
    }
    if let Some(routing) = Routing::of_rollout(rollout) {
        snapshot.services = services(client, &ns, &routing)
            .await
            .map_err(failed(&format!("Service {}", routing.service)))?;
        snapshot.routes = routing
            .router
            .read(client, &ns, &routing)
            .await
            .map_err(failed(&format!(
                "{} route {}",
                routing.router.name(),
                routing.object
            )))?;
    }
    Ok(snapshot)
}

async fn services(
    client: &kube::Client,
    ns: &str,
    routing: &Routing,
) -> Result<Vec<Value>, kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let mut names = vec![routing.service.clone()];
    if routing.canary_service != routing.service {
        names.push(routing.canary_service.clone());
    }
    let mut found = Vec::new();
    for name in names {
        if let Some(s) = api.get_opt(&name).await? {
            let mut v = serde_json::to_value(s).map_err(kube::Error::SerdeError)?;
            v["apiVersion"] = json!("v1");
            v["kind"] = json!("Service");
            found.push(v);
        }
    }
    Ok(found)
}
