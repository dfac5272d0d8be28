//! The simulator calls admission webhooks as kube-apiserver does: mutating, then
//! validating; over HTTPS trusting the configured caBundle; by rules, object and
//! namespace selectors; with a timeout and a failure policy. kubectl sees what a
//! webhook says.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_testkit::https::{Handler, Request};
use sluice_testkit::{HttpsServer, apply, https_server};

/// A webhook's decision for a review request.
type Decide = dyn Fn(&Value) -> Value + Send + Sync;

/// A webhook server answering each AdmissionReview with `decide(request)` as its
/// response (uid filled in), and recording the requests it saw.
async fn webhook(decide: Arc<Decide>) -> (HttpsServer, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let handler: Handler = Arc::new(move |req: Request| {
        let review: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let request = review["request"].clone();
        recorded.lock().expect("seen").push(request.clone());
        let mut response = decide(&request);
        response["uid"] = request["uid"].clone();
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
        Box::pin(std::future::ready((200, Bytes::from(body.to_string()))))
    });
    (https_server(handler).await, seen)
}

/// A webhook that never answers.
async fn silent_webhook() -> HttpsServer {
    https_server(Arc::new(|_req: Request| {
        Box::pin(std::future::pending::<(u16, Bytes)>())
            as std::pin::Pin<Box<dyn std::future::Future<Output = (u16, Bytes)> + Send>>
    }))
    .await
}

fn ca_bundle(server: &HttpsServer) -> String {
    base64::engine::general_purpose::STANDARD.encode(&server.ca_pem)
}

/// A configuration with one webhook of `kind` (Mutating or Validating).
fn configuration(kind: &str, name: &str, webhook: Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": format!("{kind}WebhookConfiguration"),
        "metadata": {"name": name},
        "webhooks": [webhook],
    })
}

fn webhook_entry(name: &str, url: &str, ca: &str, rules: Value) -> Value {
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
    })
}

fn deployments_rule(operations: &[&str]) -> Value {
    json!([{"operations": operations, "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "scope": "Namespaced"}])
}

async fn install(client: &kube::Client, configuration: Value) {
    apply(
        client,
        &serde_yaml_ng::to_string(&configuration).expect("yaml"),
    )
    .await;
}

fn patch_adding_label(key: &str, value: &str) -> String {
    let patch = json!([{"op": "add", "path": format!("/metadata/labels/{}", key.replace('/', "~1")), "value": value}]);
    base64::engine::general_purpose::STANDARD.encode(patch.to_string())
}

async fn deployments(client: &kube::Client) -> Api<DynamicObject> {
    sluice_testkit::api_for(client, "apps/v1", "Deployment", None)
}

fn deployment(name: &str, labels: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i:v1"}]}}},
    }))
    .expect("deployment")
}

fn message(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => (0, other.to_string()),
    }
}

#[tokio::test]
async fn a_mutating_webhook_patches_what_its_selectors_and_rules_match() {
    let sim = common::sim().await;
    let client = common::client(&sim);
    let (server, seen) = webhook(Arc::new(|_| {
        json!({"allowed": true, "patchType": "JSONPatch", "patch": patch_adding_label("mutated", "yes")})
    }))
    .await;
    let mut entry = webhook_entry(
        "mutate.test",
        &server.ip_url,
        &ca_bundle(&server),
        deployments_rule(&["UPDATE"]),
    );
    entry["objectSelector"] =
        json!({"matchExpressions": [{"key": "watched", "operator": "Exists"}]});
    install(&client, configuration("Mutating", "test", entry)).await;
    let api = deployments(&client).await;

    // CREATE is not in the rules; an unlabelled object is not selected.
    api.create(
        &PostParams::default(),
        &deployment("watched", json!({"watched": "true"})),
    )
    .await
    .expect("create");
    api.create(&PostParams::default(), &deployment("other", json!({})))
        .await
        .expect("create");
    assert!(
        seen.lock().expect("seen").is_empty(),
        "no call for a create"
    );
    let bump = json!({"spec": {"replicas": 1}});
    let other = api
        .patch("other", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("patch");
    assert_eq!(
        other.metadata.labels.unwrap_or_default().get("mutated"),
        None
    );
    assert!(
        seen.lock().expect("seen").is_empty(),
        "no call for an unselected object"
    );

    let watched = api
        .patch("watched", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("patch");
    assert_eq!(
        watched
            .metadata
            .labels
            .unwrap_or_default()
            .get("mutated")
            .map(String::as_str),
        Some("yes"),
        "the webhook's patch is applied"
    );
    let requests = seen.lock().expect("seen").clone();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(
        r["kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(r["resource"]["resource"], "deployments");
    assert_eq!(
        (r["namespace"].as_str(), r["name"].as_str()),
        (Some("default"), Some("watched"))
    );
    assert_eq!(r["object"]["spec"]["replicas"], 1);
    assert_eq!(r["oldObject"]["spec"]["replicas"], 0);
    assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // A status write is the status subresource: not in the rules.
    let status = json!({"status": {"observedGeneration": 7}});
    api.patch_status("watched", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[tokio::test]
async fn a_validating_refusal_reaches_kubectl_in_the_webhooks_words() {
    let sim = common::sim().await;
    let client = common::client(&sim);
    let (server, _) = webhook(Arc::new(|request| {
        if request["name"] == "forbidden" {
            json!({"allowed": false, "status": {"code": 422, "message": "spec.data: Invalid value: \"x\": not allowed here"}})
        } else {
            json!({"allowed": true})
        }
    }))
    .await;
    let rules = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    install(
        &client,
        configuration(
            "Validating",
            "test",
            webhook_entry("deny.test", &server.url, &ca_bundle(&server), rules),
        ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let home = dir.path().to_owned();
    let kubectl = move |manifest: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", &home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write");
        child.wait_with_output().expect("kubectl runs")
    };
    let manifest = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
    };
    let refused = tokio::task::spawn_blocking(move || {
        let ok = kubectl(&manifest("allowed"));
        let refused = kubectl(&manifest("forbidden"));
        (ok, refused)
    })
    .await
    .expect("join");
    assert!(
        refused.0.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.0.stderr)
    );
    assert!(!refused.1.status.success());
    let stderr = String::from_utf8_lossy(&refused.1.stderr);
    assert!(
        stderr.contains(
            "admission webhook \"deny.test\" denied the request: spec.data: Invalid value: \"x\": not allowed here"
        ),
        "{stderr}"
    );
    assert!(
        sim.store()
            .get(
                &sluice_sim::store::ResKey::new("", "configmaps"),
                "default",
                "forbidden"
            )
            .is_none(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn an_unreachable_webhook_fails_the_request_or_is_ignored_by_its_policy() {
    let sim = common::sim().await;
    let client = common::client(&sim);
    let silent = silent_webhook().await;
    let mut entry = webhook_entry(
        "slow.test",
        &silent.url,
        &ca_bundle(&silent),
        deployments_rule(&["CREATE"]),
    );
    entry["timeoutSeconds"] = json!(1);
    install(&client, configuration("Validating", "test", entry.clone())).await;
    let api = deployments(&client).await;
    let (code, text) = message(
        api.create(&PostParams::default(), &deployment("a", json!({})))
            .await
            .expect_err("refused: the webhook never answers"),
    );
    assert_eq!(code, 500);
    assert!(
        text.contains("failed calling webhook \"slow.test\""),
        "{text}"
    );
    assert!(text.contains("context deadline exceeded"), "{text}");

    entry["failurePolicy"] = json!("Ignore");
    install(&client, configuration("Validating", "test", entry.clone())).await;
    api.create(&PostParams::default(), &deployment("b", json!({})))
        .await
        .expect("Ignore lets the request through");

    // A CA that did not sign the server's certificate: the call fails.
    let other = silent_webhook().await;
    entry["failurePolicy"] = json!("Fail");
    entry["clientConfig"]["caBundle"] = json!(ca_bundle(&other));
    install(&client, configuration("Validating", "test", entry.clone())).await;
    let (code, text) = message(
        api.create(&PostParams::default(), &deployment("c", json!({})))
            .await
            .expect_err("refused: the server is not trusted"),
    );
    assert_eq!(code, 500, "{text}");

    // A webhook that does not take v1 reviews cannot be called.
    entry["clientConfig"]["caBundle"] = json!(ca_bundle(&silent));
    entry["admissionReviewVersions"] = json!(["v1beta1"]);
    install(&client, configuration("Validating", "test", entry)).await;
    let (_, text) = message(
        api.create(&PostParams::default(), &deployment("d", json!({})))
            .await
            .expect_err("refused"),
    );
    assert!(text.contains("the simulator sends v1"), "{text}");
}

#[tokio::test]
async fn a_namespace_selector_picks_by_the_namespaces_labels() {
    let sim = common::sim().await;
    let client = common::client(&sim);
    let (server, seen) = webhook(Arc::new(|_| json!({"allowed": true}))).await;
    let mut entry = webhook_entry(
        "ns.test",
        &server.url,
        &ca_bundle(&server),
        json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]),
    );
    entry["namespaceSelector"] = json!({"matchLabels": {"team": "a"}});
    install(&client, configuration("Validating", "test", entry)).await;
    apply(&client, "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-b, labels: {team: b}}\n").await;
    for ns in ["team-a", "team-b"] {
        apply(
            &client,
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {ns}}}\n"),
        )
        .await;
    }
    let namespaces: Vec<Value> = seen
        .lock()
        .expect("seen")
        .iter()
        .map(|r| r["namespace"].clone())
        .collect();
    assert_eq!(namespaces, [json!("team-a")]);
}

#[tokio::test]
async fn a_dry_run_reaches_only_webhooks_without_side_effects() {
    let sim = common::sim().await;
    let client = common::client(&sim);
    let (server, seen) = webhook(Arc::new(|_| json!({"allowed": true}))).await;
    let mut entry = webhook_entry(
        "effects.test",
        &server.url,
        &ca_bundle(&server),
        deployments_rule(&["CREATE"]),
    );
    entry["sideEffects"] = json!("Some");
    install(&client, configuration("Validating", "test", entry.clone())).await;
    let api = deployments(&client).await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let (code, text) = message(
        api.create(&dry, &deployment("a", json!({})))
            .await
            .expect_err("refused"),
    );
    assert_eq!(code, 400);
    assert!(
        text.contains("has side effects and does not support dry run"),
        "{text}"
    );
    entry["sideEffects"] = json!("None");
    install(&client, configuration("Validating", "test", entry)).await;
    api.create(&dry, &deployment("a", json!({})))
        .await
        .expect("a dry run");
    assert_eq!(seen.lock().expect("seen")[0]["dryRun"], true);
    assert!(
        sim.store()
            .get(
                &sluice_sim::store::ResKey::new("apps", "deployments"),
                "default",
                "a"
            )
            .is_none(),
        "a dry run stores nothing"
    );
}
