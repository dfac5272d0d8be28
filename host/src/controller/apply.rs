//! The writing end of a reconcile: each planned change, made idempotently, in order.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::error::Error;
use super::observe::{CANARY_LABEL, cloneset_resource, httproute_resource};
use super::observed::{Observed, WorkloadKind, WorkloadView};
use super::plan::{Change, FINALIZER};
use super::traffic::{self, NGINX, Router, Routing};
use crate::kruise::v1alpha1::Rollout;

/// Who writes: the field manager of Sluice's patches.
pub const MANAGER: &str = "sluice";

/// Makes `changes`, stopping at the first that fails.
pub async fn apply(client: &kube::Client, o: &Observed, changes: &[Change]) -> Result<(), Error> {
    let ns = o.rollout.metadata.namespace.clone().unwrap_or_default();
    for change in changes {
        apply_one(client, &ns, o, change)
            .await
            .map_err(|source| Error::Apply {
                change: format!("{change:?}").chars().take(120).collect(),
                source,
            })?;
    }
    Ok(())
}

fn merge(value: Value) -> Patch<Value> {
    Patch::Merge(value)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

fn owner(rollout: &Rollout) -> Value {
    json!({
        "apiVersion": "rollouts.kruise.io/v1alpha1",
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn routing(o: &Observed) -> Option<Routing> {
    Routing::of_rollout(&o.rollout)
}

async fn apply_one(
    client: &kube::Client,
    ns: &str,
    o: &Observed,
    change: &Change,
) -> Result<(), kube::Error> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let name = o.rollout.metadata.name.clone().unwrap_or_default();
    match change {
        Change::AddFinalizer | Change::RemoveFinalizer => {
            let mut finalizers: Vec<String> =
                o.rollout.metadata.finalizers.clone().unwrap_or_default();
            finalizers.retain(|f| f != FINALIZER);
            if *change == Change::AddFinalizer {
                finalizers.push(FINALIZER.into());
            }
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": o.rollout.metadata.resource_version}});
            match rollouts.patch(&name, &params(), &merge(patch)).await {
                // Gone already: nothing holds it.
                Err(kube::Error::Api(e)) if e.code == 404 && *change == Change::RemoveFinalizer => {
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        }
        Change::HoldWorkload => match &o.workload {
            Some(w) if !w.held => hold(client, ns, w, true).await,
            _ => Ok(()),
        },
        Change::ReleaseWorkload => match &o.workload {
            Some(w) if w.held || w.partition.is_some() => hold(client, ns, w, false).await,
            _ => Ok(()),
        },
        Change::SetPartition(n) => match &o.workload {
            Some(w) if w.partition != Some(i64::from(*n)) => {
                partition(client, ns, w, json!(n)).await
            }
            _ => Ok(()),
        },
        Change::EnsureCanaryDeployment { replicas } => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            match (&o.canary, &o.workload) {
                (Some(c), _) if c.counts.desired == *replicas => Ok(()),
                (Some(c), _) => deployments
                    .patch(
                        &c.name,
                        &params(),
                        &merge(json!({"spec": {"replicas": replicas}})),
                    )
                    .await
                    .map(|_| ()),
                (None, Some(w)) => {
                    let canary = canary_deployment(o, w, *replicas);
                    let canary: Deployment =
                        serde_json::from_value(canary).map_err(kube::Error::SerdeError)?;
                    deployments
                        .create(&PostParams::default(), &canary)
                        .await
                        .map(|_| ())
                }
                (None, None) => Ok(()),
            }
        }
        Change::DeleteCanaryDeployment => match &o.canary {
            Some(c) => ignore_missing(
                Api::<Deployment>::namespaced(client.clone(), ns)
                    .delete(&c.name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            ),
            None => Ok(()),
        },
        Change::PinStableService { .. } | Change::UnpinStableService => {
            let (Some(r), Some(w)) = (routing(o), &o.workload) else {
                return Ok(());
            };
            let value = match change {
                Change::PinStableService { revision } => json!(revision),
                _ => Value::Null,
            };
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            let patch = json!({"spec": {"selector": {w.kind.revision_label(): value}}});
            ignore_missing(
                services
                    .patch(&r.service, &params(), &merge(patch))
                    .await
                    .map(|_| ()),
            )
        }
        Change::EnsureCanaryService { revision } => {
            let (Some(r), Some(w)) = (routing(o), &o.workload) else {
                return Ok(());
            };
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            if o.traffic.canary_selector.is_some() {
                let patch = json!({"spec": {"selector": {w.kind.revision_label(): revision}}});
                return services
                    .patch(&r.canary_service, &params(), &merge(patch))
                    .await
                    .map(|_| ());
            }
            let Some(stable) = &o.traffic.stable_service else {
                return Ok(());
            };
            let canary = canary_service(o, stable, &r, w, revision);
            let canary: Service =
                serde_json::from_value(canary).map_err(kube::Error::SerdeError)?;
            match services.create(&PostParams::default(), &canary).await {
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Change::DeleteCanaryService => {
            let Some(r) = routing(o) else { return Ok(()) };
            ignore_missing(
                Api::<Service>::namespaced(client.clone(), ns)
                    .delete(&r.canary_service, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )
        }
        Change::EnsureCanaryIngress(annotations) => {
            let Some(r) = routing(o) else { return Ok(()) };
            let Router::Nginx { ingress } = &r.router else {
                return Ok(());
            };
            let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
            let canary_name = traffic::canary_ingress_name(ingress);
            match &o.traffic.canary_ingress {
                Some(current) => {
                    let mut patch = serde_json::Map::new();
                    for key in current
                        .keys()
                        .filter(|k| k.starts_with(&format!("{NGINX}canary")))
                    {
                        patch.insert(key.clone(), Value::Null);
                    }
                    for (k, v) in annotations {
                        patch.insert(k.clone(), json!(v));
                    }
                    ingresses
                        .patch(
                            &canary_name,
                            &params(),
                            &merge(json!({"metadata": {"annotations": patch}})),
                        )
                        .await
                        .map(|_| ())
                }
                None => {
                    let Some(stable) = &o.traffic.ingress else {
                        return Ok(());
                    };
                    let mut canary = traffic::canary_ingress(stable, &r, annotations);
                    canary["metadata"]["namespace"] = json!(ns);
                    canary["metadata"]["ownerReferences"] = json!([owner(&o.rollout)]);
                    let canary: Ingress =
                        serde_json::from_value(canary).map_err(kube::Error::SerdeError)?;
                    match ingresses.create(&PostParams::default(), &canary).await {
                        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            }
        }
        Change::DeleteCanaryIngress => {
            let Some(r) = routing(o) else { return Ok(()) };
            let Router::Nginx { ingress } = &r.router else {
                return Ok(());
            };
            ignore_missing(
                Api::<Ingress>::namespaced(client.clone(), ns)
                    .delete(
                        &traffic::canary_ingress_name(ingress),
                        &DeleteParams::default(),
                    )
                    .await
                    .map(|_| ()),
            )
        }
        Change::SetHttpRouteRules(rules) => {
            let Some(r) = routing(o) else { return Ok(()) };
            let Router::Gateway { http_route } = &r.router else {
                return Ok(());
            };
            let routes: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &httproute_resource());
            routes
                .patch(
                    http_route,
                    &params(),
                    &merge(json!({"spec": {"rules": rules}})),
                )
                .await
                .map(|_| ())
        }
    }
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// Holds (or releases) a workload.
async fn hold(
    client: &kube::Client,
    ns: &str,
    w: &WorkloadView,
    held: bool,
) -> Result<(), kube::Error> {
    match w.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(
                &w.name,
                &params(),
                &merge(json!({"spec": {"paused": held}})),
            )
            .await
            .map(|_| ()),
        WorkloadKind::CloneSet | WorkloadKind::StatefulSet => {
            let value = if held {
                match w.kind {
                    WorkloadKind::CloneSet => json!("100%"),
                    _ => json!(w.replicas),
                }
            } else {
                Value::Null
            };
            partition(client, ns, w, value).await
        }
    }
}

async fn partition(
    client: &kube::Client,
    ns: &str,
    w: &WorkloadView,
    value: Value,
) -> Result<(), kube::Error> {
    match w.kind {
        WorkloadKind::CloneSet => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &cloneset_resource());
            api.patch(
                &w.name,
                &params(),
                &merge(json!({"spec": {"updateStrategy": {"partition": value}}})),
            )
            .await
            .map(|_| ())
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            let patch = json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": value}}}});
            api.patch(&w.name, &params(), &merge(patch))
                .await
                .map(|_| ())
        }
        WorkloadKind::Deployment => Ok(()),
    }
}

/// The canary Deployment: the stable Deployment's spec with the new template.
fn canary_deployment(o: &Observed, w: &WorkloadView, replicas: u32) -> Value {
    let mut spec = w.spec.clone();
    if let Some(m) = spec.as_object_mut() {
        m.remove("paused");
        m.insert("replicas".into(), json!(replicas));
    }
    let patch_meta = o
        .rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.patch_pod_template_metadata.clone());
    if let Some(pm) = patch_meta {
        for (k, v) in pm.labels.unwrap_or_default() {
            spec["template"]["metadata"]["labels"][k] = json!(v);
        }
        for (k, v) in pm.annotations.unwrap_or_default() {
            spec["template"]["metadata"]["annotations"][k] = json!(v);
        }
    }
    let mut labels = w.labels.clone();
    labels.insert(CANARY_LABEL.into(), w.name.clone());
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "generateName": format!("{}-", w.name),
            "namespace": o.rollout.metadata.namespace,
            "labels": labels,
            "ownerReferences": [owner(&o.rollout)],
        },
        "spec": spec,
    })
}

/// The canary Service: the stable one, selecting the canary pods.
fn canary_service(
    o: &Observed,
    stable: &Value,
    r: &Routing,
    w: &WorkloadView,
    revision: &str,
) -> Value {
    let mut spec = stable.get("spec").cloned().unwrap_or(json!({}));
    if let Some(m) = spec.as_object_mut() {
        for field in [
            "clusterIP",
            "clusterIPs",
            "externalIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "loadBalancerIP",
            "healthCheckNodePort",
        ] {
            m.remove(field);
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    spec["selector"][w.kind.revision_label()] = json!(revision);
    let mut annotations = stable
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": r.canary_service,
            "namespace": o.rollout.metadata.namespace,
            "labels": stable.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": annotations,
            "ownerReferences": [owner(&o.rollout)],
        },
        "spec": spec,
    })
}
