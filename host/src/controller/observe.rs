//! The reading end of a reconcile: everything about one Rollout, read from the cluster
//! into an [`Observed`] value. Only this stage reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::error::Error;
use super::observed::{
    CanaryView, Observed, TrafficView, WorkloadKind, WorkloadView, same_template,
};
use super::traffic::{self, Router, Routing};
use crate::kruise::v1alpha1::Rollout;
use crate::strategy::model::ReplicaCounts;

/// The label on a canary Deployment naming the Deployment it is the canary of.
pub const CANARY_LABEL: &str = "rollouts.kruise.io/canary-deployment";

/// The CloneSet kind.
pub fn cloneset_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apps.kruise.io",
        "v1alpha1",
        "CloneSet",
    ))
}

/// The HTTPRoute kind.
pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

/// Reads everything the plan needs about `rollout`.
pub async fn observe(
    client: &kube::Client,
    rollout: &Rollout,
    others: Vec<Rollout>,
) -> Result<Observed, Error> {
    let ns = rollout.metadata.namespace.clone().unwrap_or_default();
    let now = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    let mut observed = Observed {
        rollout: rollout.clone(),
        others,
        workload: None,
        canary: None,
        traffic: TrafficView::default(),
        now,
    };
    let Some(wref) = rollout.spec.object_ref.workload_ref.as_ref() else {
        return Ok(observed);
    };
    let Some(kind) = WorkloadKind::from_ref(&wref.api_version, &wref.kind) else {
        return Ok(observed);
    };
    match kind {
        WorkloadKind::Deployment => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            if let Some(d) = deployments
                .get_opt(&wref.name)
                .await
                .map_err(Error::read("Deployment"))?
            {
                let (view, canary) = deployment_view(client, &ns, &d, rollout).await?;
                observed.workload = Some(view);
                observed.canary = canary;
            }
        }
        WorkloadKind::CloneSet => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &cloneset_resource());
            match api.get_opt(&wref.name).await {
                Ok(Some(cs)) => {
                    observed.workload = Some(
                        partition_view(
                            client,
                            &ns,
                            kind,
                            &wref.name,
                            &serde_json::to_value(&cs).unwrap_or_default(),
                        )
                        .await?,
                    )
                }
                Ok(None) => {}
                // Without Kruise's CRD there are no CloneSets.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::read("CloneSet")(e)),
            }
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            if let Some(sts) = api
                .get_opt(&wref.name)
                .await
                .map_err(Error::read("StatefulSet"))?
            {
                observed.workload = Some(
                    partition_view(
                        client,
                        &ns,
                        kind,
                        &wref.name,
                        &serde_json::to_value(&sts).unwrap_or_default(),
                    )
                    .await?,
                );
            }
        }
    }
    if let Some(routing) = Routing::of_rollout(rollout) {
        observed.traffic = traffic_view(client, &ns, &routing).await?;
    }
    Ok(observed)
}

async fn deployment_view(
    client: &kube::Client,
    ns: &str,
    d: &Deployment,
    rollout: &Rollout,
) -> Result<(WorkloadView, Option<CanaryView>), Error> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone();
    let status = d.status.clone().unwrap_or_default();
    let replicas = u32::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
    // One list of the namespace's ReplicaSets serves the stable and the canary Deployment.
    let all_sets: Vec<ReplicaSet> = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::read("ReplicaSet"))?
        .items;
    let owned: Vec<&ReplicaSet> = all_sets
        .iter()
        .filter(|rs| controller_uid(&rs.metadata) == Some(uid.as_str()))
        .collect();
    let revision = |rs: &ReplicaSet| -> i64 {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    // The newest ReplicaSet: while the Deployment is held, a new template makes none.
    let stable = owned.iter().max_by_key(|rs| revision(rs));
    let stable_revision = stable
        .and_then(|rs| {
            rs.metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")
                .cloned()
        })
        .unwrap_or_default();
    let stable_template = stable
        .and_then(|rs| rs.spec.template.as_ref())
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null));
    let generation = d.metadata.generation.unwrap_or(0);
    let rolled_out = status.observed_generation == Some(generation)
        && status.updated_replicas.unwrap_or(0) == spec.replicas.unwrap_or(1)
        && status.replicas.unwrap_or(0) == spec.replicas.unwrap_or(1)
        && status.available_replicas.unwrap_or(0) == spec.replicas.unwrap_or(1);
    let view = WorkloadView {
        kind: WorkloadKind::Deployment,
        name: name.clone(),
        generation,
        replicas,
        template: template.clone(),
        held: spec.paused == Some(true),
        stable_revision,
        stable_template,
        update_revision: None,
        rolled_out,
        counts: ReplicaCounts {
            desired: replicas,
            ready: u32::try_from(status.ready_replicas.unwrap_or(0)).unwrap_or(0),
            updated: u32::try_from(status.updated_replicas.unwrap_or(0)).unwrap_or(0),
            failed: 0,
        },
        updated: ReplicaCounts::default(),
        partition: None,
        labels: d.metadata.labels.clone().unwrap_or_default(),
        spec: serde_json::to_value(&spec).unwrap_or(Value::Null),
    };

    // The canary Deployment: owned by this Rollout, labelled with the stable's name.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rollout_uid = rollout.metadata.uid.clone().unwrap_or_default();
    let canaries: Vec<Deployment> = deployments
        .list(&ListParams::default().labels(&format!("{CANARY_LABEL}={name}")))
        .await
        .map_err(Error::read("Deployment"))?
        .items
        .into_iter()
        .filter(|c| {
            controller_uid(&c.metadata) == Some(rollout_uid.as_str())
                && c.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let canary = match canaries.first() {
        None => None,
        Some(c) => {
            let cuid = c.metadata.uid.clone().unwrap_or_default();
            let cstatus = c.status.clone().unwrap_or_default();
            let ctemplate = serde_json::to_value(&c.spec.template).unwrap_or(Value::Null);
            let hash = all_sets
                .iter()
                .filter(|rs| controller_uid(&rs.metadata) == Some(cuid.as_str()))
                .filter(|rs| {
                    rs.spec.template.as_ref().is_some_and(|t| {
                        same_template(&serde_json::to_value(t).unwrap_or(Value::Null), &ctemplate)
                    })
                })
                .find_map(|rs| {
                    rs.metadata
                        .labels
                        .as_ref()?
                        .get("pod-template-hash")
                        .cloned()
                });
            let failed = match &hash {
                Some(h) => failed_pods(client, ns, "pod-template-hash", h).await?,
                None => 0,
            };
            Some(CanaryView {
                name: c.metadata.name.clone().unwrap_or_default(),
                template: ctemplate,
                counts: ReplicaCounts {
                    desired: u32::try_from(c.spec.replicas.unwrap_or(0)).unwrap_or(0),
                    ready: u32::try_from(cstatus.ready_replicas.unwrap_or(0)).unwrap_or(0),
                    updated: u32::try_from(cstatus.updated_replicas.unwrap_or(0)).unwrap_or(0),
                    failed,
                },
                pod_template_hash: hash,
            })
        }
    };
    Ok((view, canary))
}

fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// Pods of a revision that will not become ready without a change.
async fn failed_pods(
    client: &kube::Client,
    ns: &str,
    label: &str,
    value: &str,
) -> Result<u32, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{label}={value}")))
        .await
        .map_err(Error::read("Pod"))?;
    let failed = list
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        let waiting = c
                            .state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref());
                        !c.ready
                            && (c.restart_count > 0
                                || matches!(
                                    waiting,
                                    Some(
                                        "CrashLoopBackOff"
                                            | "ImagePullBackOff"
                                            | "ErrImagePull"
                                            | "CreateContainerConfigError"
                                            | "InvalidImageName"
                                    )
                                ))
                    })
                })
        })
        .count();
    Ok(u32::try_from(failed).unwrap_or(u32::MAX))
}

async fn partition_view(
    client: &kube::Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
    w: &Value,
) -> Result<WorkloadView, Error> {
    let int = |path: &str| w.pointer(path).and_then(Value::as_i64);
    let replicas = u32::try_from(int("/spec/replicas").unwrap_or(1)).unwrap_or(0);
    let update_revision = w
        .pointer("/status/updateRevision")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let current_revision = w
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| update_revision.clone())
        .unwrap_or_default();
    let partition_path = match kind {
        WorkloadKind::CloneSet => "/spec/updateStrategy/partition",
        _ => "/spec/updateStrategy/rollingUpdate/partition",
    };
    let partition = match w.pointer(partition_path) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| (i64::from(replicas) * p + 99) / 100),
        _ => None,
    };
    let generation = w
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let updated = u32::try_from(int("/status/updatedReplicas").unwrap_or(0)).unwrap_or(0);
    // Revision labels: CloneSet pods carry the template hash, StatefulSet pods the revision.
    let (label, update_label) = match kind {
        WorkloadKind::CloneSet => (
            "pod-template-hash",
            update_revision
                .as_ref()
                .and_then(|r| r.rsplit_once('-').map(|(_, h)| h.to_owned())),
        ),
        _ => ("controller-revision-hash", update_revision.clone()),
    };
    let stable_label = match kind {
        WorkloadKind::CloneSet => current_revision
            .rsplit_once('-')
            .map_or(current_revision.clone(), |(_, h)| h.to_owned()),
        _ => current_revision.clone(),
    };
    let (updated_ready, failed) = match &update_label {
        Some(rev) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = pods
                .list(&ListParams::default().labels(&format!("{label}={rev}")))
                .await
                .map_err(Error::read("Pod"))?;
            let ready = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            (
                u32::try_from(ready).unwrap_or(0),
                failed_pods(client, ns, label, rev).await?,
            )
        }
        None => (0, 0),
    };
    let observed_generation = int("/status/observedGeneration").unwrap_or(0);
    let ready = u32::try_from(int("/status/readyReplicas").unwrap_or(0)).unwrap_or(0);
    Ok(WorkloadView {
        kind,
        name: name.to_owned(),
        generation,
        replicas,
        template: w.pointer("/spec/template").cloned().unwrap_or(Value::Null),
        held: partition.is_some_and(|p| p >= i64::from(replicas)),
        stable_revision: stable_label,
        stable_template: None,
        update_revision: update_label,
        rolled_out: observed_generation == generation && updated == replicas && ready == replicas,
        counts: ReplicaCounts {
            desired: replicas,
            ready,
            updated,
            failed,
        },
        updated: ReplicaCounts {
            desired: replicas
                .saturating_sub(u32::try_from(partition.unwrap_or(0).max(0)).unwrap_or(0)),
            ready: updated_ready,
            updated,
            failed,
        },
        partition,
        labels: w
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default(),
        spec: w.get("spec").cloned().unwrap_or(Value::Null),
    })
}

async fn traffic_view(
    client: &kube::Client,
    ns: &str,
    routing: &Routing,
) -> Result<TrafficView, Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let stable = services
        .get_opt(&routing.service)
        .await
        .map_err(Error::read("Service"))?;
    let selector = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default()
    };
    let canary = if routing.canary_service == routing.service {
        None
    } else {
        services
            .get_opt(&routing.canary_service)
            .await
            .map_err(Error::read("Service"))?
    };
    let mut view = TrafficView {
        stable_selector: stable.as_ref().map(selector),
        stable_service: stable
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        canary_selector: canary.as_ref().map(selector),
        ..TrafficView::default()
    };
    match &routing.router {
        Router::Nginx { ingress } => {
            let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
            view.ingress = ingresses
                .get_opt(ingress)
                .await
                .map_err(Error::read("Ingress"))?
                .map(|i| serde_json::to_value(i).unwrap_or(Value::Null));
            view.canary_ingress = ingresses
                .get_opt(&traffic::canary_ingress_name(ingress))
                .await
                .map_err(Error::read("Ingress"))?
                .map(|i| {
                    i.metadata
                        .annotations
                        .unwrap_or_default()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>()
                });
        }
        Router::Gateway { http_route } => {
            let routes: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &httproute_resource());
            view.http_route = match routes.get_opt(http_route).await {
                Ok(r) => r.map(|r| serde_json::to_value(r).unwrap_or(Value::Null)),
                Err(kube::Error::Api(e)) if e.code == 404 => None,
                Err(e) => return Err(Error::read("HTTPRoute")(e)),
            };
        }
    }
    Ok(view)
}
