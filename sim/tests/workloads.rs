//! Simulated workloads behave as their controllers do.

mod common;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_sim::object::Meta;
use sluice_sim::store::{ResKey, Store};

use common::{client, sim, until};

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))
    .unwrap()
}

fn pods_of(store: &Store, app: &str) -> Vec<Arc<Value>> {
    store
        .list(&ResKey::new("", "pods"), Some("default"))
        .items
        .into_iter()
        .filter(|p| Meta::of(p).label("app") == Some(app))
        .collect()
}

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn image(p: &Value) -> &str {
    p.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn deployment_done(api: &Api<Deployment>, name: &str, replicas: i32) -> bool {
    let d = api.get(name).await.unwrap();
    let s = d.status.unwrap_or_default();
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.replicas == Some(replicas)
}

#[tokio::test]
async fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    api.create(
        &PostParams::default(),
        &deployment("web", 5, "demo:v1", strategy),
    )
    .await
    .unwrap();
    until(&sim, "v1 is rolled out", || deployment_done(&api, "web", 5)).await;

    // Check the bounds at every change of the cluster while v2 rolls out.
    let store = sim.store().clone();
    let mut events = store.subscribe();
    api.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:v2"}]}}}})))
        .await
        .unwrap();
    let mut checked = 0;
    loop {
        let pods: Vec<_> = pods_of(&store, "web")
            .into_iter()
            .filter(|p| Meta::of(p).get("deletionTimestamp").is_none())
            .collect();
        let ready_count = pods.iter().filter(|p| ready(p)).count();
        assert!(
            pods.len() <= 6,
            "more than replicas + maxSurge pods: {}",
            pods.len()
        );
        assert!(
            ready_count >= 5,
            "fewer than replicas - maxUnavailable pods ready: {ready_count}"
        );
        checked += 1;
        if pods.len() == 5 && pods.iter().all(|p| ready(p) && image(p) == "demo:v2") {
            break;
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), events.recv())
            .await
            .expect("progress")
            .unwrap();
    }
    assert!(
        checked > 5,
        "the rollout went through several states ({checked})"
    );
    until(&sim, "v2 is rolled out", || deployment_done(&api, "web", 5)).await;
    let rs: Api<ReplicaSet> = Api::namespaced(client(&sim), "default");
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2);
    let revisions: Vec<String> = sets
        .iter()
        .map(|s| {
            s.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone()
        })
        .collect();
    assert!(
        revisions.contains(&"1".to_owned()) && revisions.contains(&"2".to_owned()),
        "{revisions:?}"
    );
}

#[tokio::test]
async fn paused_holds_template_changes_but_scales() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    api.create(
        &PostParams::default(),
        &deployment("web", 4, "demo:v1", json!({})),
    )
    .await
    .unwrap();
    until(&sim, "v1 is rolled out", || deployment_done(&api, "web", 4)).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    api.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:v2"}]}}}})))
        .await
        .unwrap();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 6}})),
    )
    .await
    .unwrap();
    let store = sim.store().clone();
    until(&sim, "six v1 pods", || {
        let store = store.clone();
        async move {
            let pods = pods_of(&store, "web");
            pods.len() == 6 && pods.iter().all(|p| ready(p) && image(p) == "demo:v1")
        }
    })
    .await;
    let rs: Api<ReplicaSet> = Api::namespaced(client(&sim), "default");
    assert_eq!(
        rs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "no new ReplicaSet while paused"
    );

    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    until(&sim, "v2 rolled out after resuming", || {
        let store = store.clone();
        async move {
            let pods = pods_of(&store, "web");
            pods.len() == 6 && pods.iter().all(|p| ready(p) && image(p) == "demo:v2")
        }
    })
    .await;
}

/// The ReplicaSets' names and sizes.
async fn replica_set_sizes(rs: &Api<ReplicaSet>) -> Vec<(String, i32)> {
    rs.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.spec.replicas.unwrap_or(0)))
        .collect()
}

/// Deployment `web` of 4 rolled out on v1, then paused with the v2 template and
/// `strategy`; a ReplicaSet `web-made` of 1 pod, made for v2 by another controller,
/// and v1's down to 3. Returns the v1 ReplicaSet's name.
async fn paused_between_two_replicasets(
    sim: &sluice_sim::Sim,
    api: &Api<Deployment>,
    rs: &Api<ReplicaSet>,
    strategy: Value,
) -> String {
    api.create(
        &PostParams::default(),
        &deployment("web", 4, "demo:v1", json!({})),
    )
    .await
    .unwrap();
    until(sim, "v1 is rolled out", || deployment_done(api, "web", 4)).await;
    let v1_name = replica_set_sizes(rs).await.remove(0).0;
    let uid = api.get("web").await.unwrap().metadata.uid.unwrap();
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {
        "paused": true,
        "strategy": strategy,
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "demo:v2"}]}},
    }})))
    .await
    .unwrap();
    let sized = json!({"deployment.kubernetes.io/desired-replicas": "4", "deployment.kubernetes.io/revision": "2"});
    let made: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web-made", "labels": {"app": "web", "pod-template-hash": "made"}, "annotations": sized,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": uid, "controller": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "made"}},
                 "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "made"}}, "spec": {"containers": [{"name": "app", "image": "demo:v2"}]}}}
    }))
    .unwrap();
    rs.create(&PostParams::default(), &made).await.unwrap();
    rs.patch(
        &v1_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    until(sim, "one v2 pod counted as updated", || async {
        let d = api.get("web").await.unwrap();
        let s = d.status.unwrap_or_default();
        s.updated_replicas == Some(1) && s.ready_replicas == Some(4)
    })
    .await;
    v1_name
}

/// What an advanced Deployment controller (Kruise's, Sluice's release in place)
/// relies on: a paused `Recreate` Deployment with two active ReplicaSets is left
/// to whoever moves them, and a ReplicaSet another controller made for the
/// Deployment's template is its new ReplicaSet, whatever its name.
#[tokio::test]
async fn a_paused_recreate_deployment_leaves_its_replicasets_to_their_mover_then_adopts_them() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    let rs: Api<ReplicaSet> = Api::namespaced(client(&sim), "default");
    let recreate = json!({"type": "Recreate", "rollingUpdate": null});
    let v1_name = paused_between_two_replicasets(&sim, &api, &rs, recreate).await;
    let sizes = replica_set_sizes(&rs).await;
    assert_eq!(sizes.len(), 2, "no ReplicaSet of its own: {sizes:?}");
    assert!(
        sizes.contains(&(v1_name.clone(), 3)) && sizes.contains(&("web-made".into(), 1)),
        "{sizes:?}"
    );

    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {
        "paused": false,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    }})))
    .await
    .unwrap();
    until(&sim, "v2 rolled out by the adopted ReplicaSet", || {
        deployment_done(&api, "web", 4)
    })
    .await;
    assert_eq!(replica_set_sizes(&rs).await.len(), 2);
    let made = rs.get("web-made").await.unwrap();
    assert_eq!(made.spec.replicas, Some(4));
}

/// Kubernetes' `sync/scale` of a paused rolling-update Deployment: a change of
/// replicas is spread over its active ReplicaSets by size, and once the new one
/// alone is enough (saturated), the old ones go to 0.
#[tokio::test]
async fn a_paused_rolling_deployment_scales_its_replicasets_by_size_and_a_saturated_new_one_empties_the_old()
 {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    let rs: Api<ReplicaSet> = Api::namespaced(client(&sim), "default");
    let rolling =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    let v1_name = paused_between_two_replicasets(&sim, &api, &rs, rolling).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 8}})),
    )
    .await
    .unwrap();
    // 3 of 4 and 1 of 4, at 8: 6 and 2.
    until(&sim, "the scale spread by size", || async {
        let sizes = replica_set_sizes(&rs).await;
        sizes.contains(&(v1_name.clone(), 6)) && sizes.contains(&("web-made".into(), 2))
    })
    .await;

    rs.patch(
        "web-made",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 8}})),
    )
    .await
    .unwrap();
    until(&sim, "the old ReplicaSet emptied", || async {
        let sizes = replica_set_sizes(&rs).await;
        sizes.contains(&(v1_name.clone(), 0)) && sizes.contains(&("web-made".into(), 8))
    })
    .await;
    assert_eq!(replica_set_sizes(&rs).await.len(), 2);
}

#[tokio::test]
async fn going_back_to_an_old_template_reuses_its_replicaset() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    api.create(
        &PostParams::default(),
        &deployment("web", 2, "demo:v1", json!({})),
    )
    .await
    .unwrap();
    until(&sim, "v1", || deployment_done(&api, "web", 2)).await;
    let set_image = |img: &'static str| json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": img}]}}}});
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(set_image("demo:v2")),
    )
    .await
    .unwrap();
    until(&sim, "v2", || deployment_done(&api, "web", 2)).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(set_image("demo:v1")),
    )
    .await
    .unwrap();
    until(&sim, "back to v1", || deployment_done(&api, "web", 2)).await;
    let rs: Api<ReplicaSet> = Api::namespaced(client(&sim), "default");
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        sets.len(),
        2,
        "the v1 ReplicaSet came back instead of a third"
    );
    let d = api.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );
}

#[tokio::test]
async fn a_failing_image_never_gets_ready_and_counts_restarts() {
    let sim = sim().await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "default");
    api.create(
        &PostParams::default(),
        &deployment("bad", 1, "demo:v2-fail", json!({})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&sim), "default");
    until(&sim, "the pod restarted twice", || async {
        pods.list(&ListParams::default().labels("app=bad"))
            .await
            .unwrap()
            .items
            .iter()
            .any(|p| {
                let s = p.status.clone().unwrap_or_default();
                let c = s.container_statuses.unwrap_or_default();
                c.first().is_some_and(|c| c.restart_count >= 2 && !c.ready)
            })
    })
    .await;
    let d = api.get("bad").await.unwrap();
    assert_eq!(d.status.unwrap().available_replicas.unwrap_or(0), 0);
}

#[tokio::test]
async fn statefulset_partition_keeps_low_ordinals_on_the_old_revision() {
    let sim = sim().await;
    let api: Api<StatefulSet> = Api::namespaced(client(&sim), "default");
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 4, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 4}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:v1"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &sts).await.unwrap();
    let store = sim.store().clone();
    until(&sim, "four v1 pods", || {
        let store = store.clone();
        async move { pods_of(&store, "db").iter().filter(|p| ready(p)).count() == 4 }
    })
    .await;
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
        "template": {"spec": {"containers": [{"name": "db", "image": "db:v2"}]}},
        "updateStrategy": {"rollingUpdate": {"partition": 2}}}})),
    )
    .await
    .unwrap();
    until(&sim, "ordinals 2 and 3 on v2", || {
        let store = store.clone();
        async move {
            let pods = pods_of(&store, "db");
            let by = |n: &str| {
                pods.iter()
                    .find(|p| Meta::of(p).name() == n)
                    .map(|p| (image(p).to_owned(), ready(p)))
            };
            by("db-0") == Some(("db:v1".into(), true))
                && by("db-1") == Some(("db:v1".into(), true))
                && by("db-2") == Some(("db:v2".into(), true))
                && by("db-3") == Some(("db:v2".into(), true))
        }
    })
    .await;
    until(&sim, "status reports two updated", || async {
        api.get("db")
            .await
            .unwrap()
            .status
            .unwrap()
            .updated_replicas
            == Some(2)
    })
    .await;
}

#[tokio::test]
async fn cloneset_partition_counts_pods_on_the_old_revision() {
    let sim = sim().await;
    let resource = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "apps.kruise.io",
        "v1alpha1",
        "CloneSet",
    ));
    let api: Api<kube::core::DynamicObject> =
        Api::namespaced_with(client(&sim), "default", &resource);
    let cs: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
        "metadata": {"name": "cs"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "cs"}},
                 "updateStrategy": {"partition": "100%"},
                 "template": {"metadata": {"labels": {"app": "cs"}}, "spec": {"containers": [{"name": "c", "image": "cs:v1"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &cs).await.unwrap();
    let store = sim.store().clone();
    until(&sim, "five v1 pods", || {
        let store = store.clone();
        async move { pods_of(&store, "cs").iter().filter(|p| ready(p)).count() == 5 }
    })
    .await;
    api.patch(
        "cs",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "cs:v2"}]}},
        "updateStrategy": {"partition": 3}}})),
    )
    .await
    .unwrap();
    until(&sim, "two v2 pods, three v1", || {
        let store = store.clone();
        async move {
            let pods = pods_of(&store, "cs");
            let live: Vec<_> = pods
                .iter()
                .filter(|p| Meta::of(p).get("deletionTimestamp").is_none())
                .collect();
            live.len() == 5
                && live.iter().all(|p| ready(p))
                && live.iter().filter(|p| image(p) == "cs:v2").count() == 2
        }
    })
    .await;
    until(&sim, "status counts them", || async {
        let cs = api.get("cs").await.unwrap();
        cs.data["status"]["updatedReplicas"] == 2 && cs.data["status"]["updatedReadyReplicas"] == 2
    })
    .await;
}
