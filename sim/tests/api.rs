//! The REST protocol through `kube::Client`: CRUD, optimistic concurrency, watch
//! resume and expiry, finalizers, garbage collection, generation, CRD serving.

mod common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::json;

use common::{client, sim, until};

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn crud_and_optimistic_concurrency() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&sim), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");
    assert!(created.metadata.creation_timestamp.is_some());

    let err = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("update");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(updated.metadata.uid.as_deref(), Some(uid.as_str()));

    stale.data = Some([("k".to_owned(), "x".to_owned())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );

    let err = cms.get("missing").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{err}"
    );

    let in_missing_ns: Api<ConfigMap> = Api::namespaced(client(&sim), "nope");
    let err = in_missing_ns
        .create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(cms.get_opt("a").await.expect("get").is_none());
}

#[tokio::test]
async fn generate_name_list_selectors_and_paging() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&sim), "default");
    for i in 0..5 {
        let mut cm = config_map("", json!({"app": "web", "n": i.to_string()}));
        cm.metadata.name = None;
        cm.metadata.generate_name = Some("web-".into());
        let made = cms
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        assert!(made.metadata.name.unwrap().starts_with("web-"));
    }
    cms.create(
        &PostParams::default(),
        &config_map("db", json!({"app": "db"})),
    )
    .await
    .expect("create");

    let web = cms
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(web.items.len(), 5);
    let not_web = cms
        .list(&ListParams::default().labels("app!=web"))
        .await
        .expect("list");
    assert_eq!(not_web.items.len(), 1);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=db"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);

    let first = cms
        .list(&ListParams::default().limit(4))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 4);
    let token = first.metadata.continue_.clone().expect("continue");
    let second = cms
        .list(&ListParams::default().limit(4).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 2);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));
}

#[tokio::test]
async fn watch_resumes_from_a_version_and_expires_when_too_old() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&sim), "default");
    let a = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let from = a.metadata.resource_version.clone().expect("rv");
    cms.create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .expect("create");
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");

    let mut stream = cms
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watch")
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.expect("event").expect("open") {
            WatchEvent::Added(cm) => seen.push(format!("added {}", cm.metadata.name.unwrap())),
            WatchEvent::Deleted(cm) => seen.push(format!("deleted {}", cm.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["added b", "deleted a"]);

    // Push the history past its bound so version 1 is gone.
    let store = sim.store().clone();
    let res = sluice_sim::store::ResKey::new("", "configmaps");
    for i in 0..(sluice_sim::store::HISTORY + 10) {
        let name = format!("churn-{}", i % 3);
        let _ = store.delete(&res, "default", &name);
        store
            .create(
                &res,
                json!({"metadata": {"name": name, "namespace": "default"}}),
            )
            .expect("churn");
    }
    let mut stream = cms
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event").expect("open") {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&sim), "default");
    let mut cm = config_map("held", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    cms.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = cms.get("held").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert!(cms.get_opt("held").await.expect("get").is_none());
}

#[tokio::test]
async fn owners_take_their_dependents_with_them() {
    let sim = sim().await;
    let c = client(&sim);
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let rs: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    deployments
        .create(&PostParams::default(), &web(3, "demo:v1"))
        .await
        .expect("create");
    until(&sim, "3 pods exist", || async {
        pods.list(&ListParams::default()).await.unwrap().items.len() == 3
    })
    .await;
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete");
    until(&sim, "replicasets and pods are collected", || async {
        rs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
}

#[tokio::test]
async fn generation_moves_with_spec_only_and_status_is_a_subresource() {
    let sim = sim().await;
    let deployments: Api<Deployment> = Api::namespaced(client(&sim), "default");
    let d = deployments
        .create(&PostParams::default(), &web(1, "demo:v1"))
        .await
        .expect("create");
    assert_eq!(d.metadata.generation, Some(1));
    let d = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        d.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let d = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scale");
    assert_eq!(d.metadata.generation, Some(2));
    // Status written through the main resource is ignored.
    let d = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 99}})),
        )
        .await
        .expect("patch");
    assert_ne!(d.status.and_then(|s| s.replicas), Some(99));
}

#[tokio::test]
async fn a_created_crd_is_served_at_once_with_status_and_defaults() {
    let sim = sim().await;
    let c = client(&sim);
    let crds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                       "size": {"type": "integer", "default": 3}}}}}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &resource);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}})).unwrap();
    let made = widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create widget");
    assert_eq!(made.data["spec"]["size"], 3, "schema default applied");

    let with_status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .expect("status");
    assert_eq!(with_status.data["status"]["phase"], "Ready");
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status does not bump generation"
    );

    let discovery = kube::Discovery::new(c.clone())
        .run()
        .await
        .expect("discovery");
    assert!(discovery.groups().any(|g| g.name() == "example.com"));

    let namespaces: Api<Namespace> = Api::all(c);
    assert!(namespaces.get("default").await.is_ok());
}

fn web(replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_config_map_over_one_mebibyte_is_refused_as_a_cluster_would() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&sim), "default");
    let at_limit = k8s_openapi::ByteString(vec![7; 1024 * 1024 - "module.wasm".len()]);
    let mut cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "module"}})).unwrap();
    cm.binary_data = Some([("module.wasm".to_owned(), at_limit)].into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("exactly 1 MiB is accepted");

    let mut over = cm.clone();
    over.metadata = serde_json::from_value(json!({"name": "too-big"})).unwrap();
    over.binary_data
        .as_mut()
        .unwrap()
        .get_mut("module.wasm")
        .unwrap()
        .0
        .push(0);
    let err = cms.create(&PostParams::default(), &over).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Too long: must have at most 1048576 bytes"),
        "{err}"
    );
    // Growing an accepted one past the limit is refused too.
    let mut grown = cms.get("module").await.expect("get");
    grown.binary_data = over.binary_data.clone();
    let err = cms
        .replace("module", &PostParams::default(), &grown)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Too long"), "{err}");

    // A request body over 3 MiB is not read at all.
    let mut huge = over.clone();
    huge.metadata = serde_json::from_value(json!({"name": "huge"})).unwrap();
    huge.binary_data = Some([("m".to_owned(), k8s_openapi::ByteString(vec![1; 4 << 20]))].into());
    let err = cms.create(&PostParams::default(), &huge).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Request entity too large: limit is 3145728"),
        "{err}"
    );
}
