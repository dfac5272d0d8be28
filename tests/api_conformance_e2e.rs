//! The simulator answers as kube-apiserver does, where Sluice's tests lean on it.
//!
//! Each test runs on the backend of the run and asserts what kube-apiserver
//! v1.36 does: the simulated run (`cargo test`) holds the simulator to it, and the
//! real-cluster run (`SLUICE_TEST_BACKEND=real`) shows it is what the real server
//! does. A difference found between the two is pinned here once fixed.

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_testkit::real::{self, BackendKind, Real};

/// A namespace to work in, on the backend of the run; kept for the test's length.
#[allow(dead_code)]
enum Backend {
    Sim(sluice_sim::Sim),
    Real(Box<Real>),
}

struct Cluster {
    client: kube::Client,
    namespace: String,
    _backend: Backend,
}

async fn cluster(name: &str) -> Cluster {
    match real::backend() {
        BackendKind::Sim => {
            let sim = sluice_testkit::sim().await;
            Cluster {
                client: sluice_testkit::client(&sim),
                namespace: "default".into(),
                _backend: Backend::Sim(sim),
            }
        }
        BackendKind::Real => {
            let real = Real::start(std::path::Path::new(env!("CARGO_BIN_EXE_sluice")), name).await;
            // No controller serves here: what an earlier one configured would
            // refuse every Rollout write.
            real.remove_webhook_configurations().await;
            Cluster {
                client: real.client.clone(),
                namespace: real.namespace.clone(),
                _backend: Backend::Real(Box::new(real)),
            }
        }
    }
}

fn generation(object: &DynamicObject) -> Option<i64> {
    object.metadata.generation
}

#[tokio::test]
async fn generation_is_kept_for_workloads_and_ingresses_not_for_configmaps_secrets_or_services() {
    let c = cluster("generation").await;
    let ns = c.namespace.as_str();
    sluice_testkit::apply(
        &c.client,
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: conf, namespace: {ns}}}
data: {{a: "1"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: secret, namespace: {ns}}}
stringData: {{a: "1"}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: {ns}}}
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
{}"#,
            sluice_testkit::deployment_yaml("web", "web:v1", 0)
        ),
    )
    .await;
    let api = |group: &str, plural: &str| real::dynamic(&c.client, group, plural, Some(ns));
    let get = |group: &'static str, plural: &'static str, name: &'static str| {
        let api = api(group, plural);
        async move { api.get(name).await.expect("stored") }
    };
    for (group, plural, name, kept) in [
        ("", "configmaps", "conf", false),
        ("", "secrets", "secret", false),
        ("", "services", "web", false),
        ("networking.k8s.io", "ingresses", "web", true),
        ("apps", "deployments", "web", true),
    ] {
        let object = get(group, plural, name).await;
        assert_eq!(
            generation(&object).is_some(),
            kept,
            "{plural}: generation {:?}",
            generation(&object)
        );
    }

    // A workload's generation moves with its spec, not with its labels.
    let deployments = api("apps", "deployments");
    let merge = |patch: Value| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patched")
        }
    };
    assert_eq!(
        generation(&merge(json!({"metadata": {"labels": {"tier": "front"}}})).await),
        Some(1)
    );
    assert_eq!(
        generation(&merge(json!({"spec": {"replicas": 1}})).await),
        Some(2)
    );
    // A ConfigMap gets none, however its data changes.
    let configmaps = api("", "configmaps");
    let changed = configmaps
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect("patched");
    assert_eq!(generation(&changed), None);
}

#[tokio::test]
async fn a_crd_whose_schema_is_not_structural_is_refused_in_the_servers_words_and_not_stored() {
    let c = cluster("structural").await;
    // A name no other test uses: CRDs are cluster-wide.
    let name = "widgets.conformance.sluice.dev";
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "conformance.sluice.dev",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "modifier": {"description": "no type"},
                }}},
            }}}],
        },
    });
    let crds = real::dynamic(
        &c.client,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        None,
    );
    let object: DynamicObject = serde_json::from_value(crd).expect("a CRD");
    let refused = match crds.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => status,
        other => panic!("a non-structural CRD was not refused: {other:?}"),
    };
    assert_eq!(refused.code, 422);
    assert!(
        refused.message.ends_with(&format!(
            "\"{name}\" is invalid: spec.validation.openAPIV3Schema.properties[spec].properties[modifier].type: Required value: must not be empty for specified object fields"
        )),
        "{}",
        refused.message
    );
    assert!(
        crds.get_opt(name).await.expect("a read").is_none(),
        "the refused CRD was stored"
    );
    let _ = c.namespace;
}

#[tokio::test]
async fn list_items_of_built_in_kinds_leave_their_kind_to_the_list_and_custom_resources_keep_it() {
    let c = cluster("list-kinds").await;
    let ns = c.namespace.as_str();
    let crds =
        std::fs::read_to_string(sluice_testkit::workspace_root().join("deploy/crds/crds.yaml"))
            .expect("CRDs");
    sluice_testkit::apply(&c.client, &crds).await;
    let crd_api: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(c.client.clone());
    tokio::time::timeout(
        sluice_testkit::PATIENCE,
        kube::runtime::wait::await_condition(
            crd_api,
            "rollouts.rollouts.kruise.io",
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the Rollout CRD is established")
    .expect("watching CRDs");
    sluice_testkit::apply(
        &c.client,
        &format!(
            "{}---\napiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}}}\n  strategy: {{canary: {{steps: [{{replicas: 1}}]}}}}\n",
            sluice_testkit::deployment_yaml("web", "web:v1", 0)
        ),
    )
    .await;
    // Read raw, as a client that does not fill kinds in sees them.
    let raw = |path: String| {
        let client = c.client.clone();
        async move {
            let request = hyper::Request::get(path)
                .body(Vec::new())
                .expect("a request");
            client.request::<Value>(request).await.expect("a list")
        }
    };
    let deployments = raw(format!("/apis/apps/v1/namespaces/{ns}/deployments")).await;
    assert_eq!(deployments["kind"], "DeploymentList");
    assert_eq!(deployments["apiVersion"], "apps/v1");
    assert_eq!(deployments["items"][0]["metadata"]["name"], "web");
    assert_eq!(deployments["items"][0].get("kind"), None);
    assert_eq!(deployments["items"][0].get("apiVersion"), None);
    let rollouts = raw(format!(
        "/apis/rollouts.kruise.io/v1alpha1/namespaces/{ns}/rollouts"
    ))
    .await;
    assert_eq!(rollouts["kind"], "RolloutList");
    assert_eq!(rollouts["items"][0]["kind"], "Rollout");
    assert_eq!(
        rollouts["items"][0]["apiVersion"],
        "rollouts.kruise.io/v1alpha1"
    );
}

#[tokio::test]
async fn a_namespace_is_labelled_with_its_name_whatever_its_writer_says() {
    let c = cluster("namespace-label").await;
    let name = format!("{}-labelled", c.namespace);
    let namespaces = real::dynamic(&c.client, "", "namespaces", None);
    sluice_testkit::apply(
        &c.client,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{team: a}}}}\n"
        ),
    )
    .await;
    let labels = |ns: DynamicObject| ns.metadata.labels.unwrap_or_default();
    let created = labels(namespaces.get(&name).await.expect("created"));
    assert_eq!(created.get("kubernetes.io/metadata.name"), Some(&name));
    assert_eq!(created.get("team").map(String::as_str), Some("a"));
    // Told otherwise, the server keeps it.
    let patched = namespaces
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"kubernetes.io/metadata.name": "other"}}}),
            ),
        )
        .await
        .expect("patched");
    assert_eq!(
        labels(patched).get("kubernetes.io/metadata.name"),
        Some(&name)
    );
    namespaces
        .delete(&name, &Default::default())
        .await
        .expect("deleted");
}
