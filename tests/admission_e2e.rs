//! End-to-end: the admission webhooks the controller serves, as the simulated API
//! server calls them — the configurations it writes, a release held in the same
//! request as the template change, what kubectl shows of a refusal, and the
//! certificates renewed (the serving one yearly, without a request failing; the
//! authority before it expires, its caBundle published).

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice_sim::store::ResKey;
use support::cluster::Cluster;

fn configuration(c: &Cluster, plural: &str, name: &str) -> Value {
    c.sim()
        .store()
        .get(
            &ResKey::new("admissionregistration.k8s.io", plural),
            "",
            name,
        )
        .map(|v| (*v).clone())
        .unwrap_or_else(|| panic!("{plural} {name}"))
}

fn secret_field(c: &Cluster, key: &str) -> String {
    let secret = c
        .sim()
        .store()
        .get(
            &ResKey::new("", "secrets"),
            "default",
            "sluice-webhook-certs",
        )
        .expect("the certificates' Secret");
    let encoded = secret["data"][key].as_str().expect("the key").to_owned();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64"),
    )
    .expect("PEM")
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec: {containers: [{name: echo, image: "barnett/canarydemo:v1"}]}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: echo}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}
  strategy: {canary: {steps: [{replicas: 1, pause: {}}, {replicas: 2, pause: {}}]}}
"#;

#[tokio::test]
async fn the_configurations_are_kruises_with_the_controllers_ca() {
    let c = Cluster::start().await;
    let mutating = configuration(
        &c,
        "mutatingwebhookconfigurations",
        "sluice-mutating-webhook-configuration",
    );
    let names: Vec<&str> = mutating["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["mdeployment.kb.io", "mcloneset.kb.io", "mstatefulset.kb.io"]
    );
    let deployment = &mutating["webhooks"][0];
    assert_eq!(deployment["failurePolicy"], "Fail");
    assert_eq!(deployment["sideEffects"], "None");
    assert_eq!(deployment["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(
        deployment["rules"],
        json!([{"operations": ["UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"], "scope": "Namespaced"}])
    );
    assert_eq!(
        deployment["objectSelector"],
        json!({"matchExpressions": [{"key": "rollouts.kruise.io/workload-type", "operator": "Exists"}]})
    );
    assert!(deployment["clientConfig"]["url"].as_str().is_some_and(|u| {
        u.starts_with("https://127.0.0.1:") && u.ends_with("/mutate-apps-v1-deployment")
    }));
    let validating = configuration(
        &c,
        "validatingwebhookconfigurations",
        "sluice-validating-webhook-configuration",
    );
    let rollouts = &validating["webhooks"][0];
    assert_eq!(rollouts["name"], "vrollout.kb.io");
    assert!(
        rollouts["clientConfig"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/validate-rollouts-kruise-io-rollout"))
    );
    // The caBundle is the authority in the Secret.
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            rollouts["clientConfig"]["caBundle"]
                .as_str()
                .expect("caBundle"),
        )
        .expect("base64");
    assert_eq!(
        String::from_utf8(ca).expect("PEM"),
        secret_field(&c, "ca.crt")
    );
}

#[tokio::test]
async fn a_template_change_is_held_in_the_same_request_and_only_then() {
    let c = Cluster::start().await;
    c.apply(APP).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    // Between releases the Deployment is an ordinary one.
    let d = c.deployment("echo").await;
    assert_ne!(d.spec.paused, Some(true));
    // A scale is not a release: it goes through untouched.
    c.patch(
        "apps/v1",
        "Deployment",
        "echo",
        json!({"spec": {"replicas": 4}}),
    )
    .await;
    assert_ne!(c.deployment("echo").await.spec.paused, Some(true));
    // The new template comes back paused, marked, and labelled with the stable
    // revision: read at once, without waiting for the controller.
    let v2 = json!({"spec": {"template": {"spec": {"containers": [{"name": "echo", "image": "barnett/canarydemo:v2"}]}}}});
    c.patch("apps/v1", "Deployment", "echo", v2).await;
    let d = c.deployment("echo").await;
    assert_eq!(d.spec.paused, Some(true));
    let annotations = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("rollouts.kruise.io/in-progressing")
            .map(String::as_str),
        Some(r#"{"rolloutName":"echo"}"#)
    );
    let stable = c
        .rollout("echo")
        .await
        .status
        .and_then(|s| s.canary_status)
        .map(|s| s.stable_revision)
        .expect("the stable revision");
    assert_eq!(
        d.metadata
            .labels
            .unwrap_or_default()
            .get("rollouts.kruise.io/stable-revision"),
        Some(&stable)
    );
    c.until_paused_at("echo", 1).await;
    // Unpausing it by hand mid-release is set back in the same request.
    c.patch(
        "apps/v1",
        "Deployment",
        "echo",
        json!({"spec": {"paused": false}}),
    )
    .await;
    assert_eq!(c.deployment("echo").await.spec.paused, Some(true));
    for step in [1, 2] {
        c.until_paused_at("echo", step).await;
        c.approve("echo").await;
    }
    c.until_healthy("echo").await;
    c.until("v2 everywhere", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 4
    })
    .await;
    let d = c.deployment("echo").await;
    assert_ne!(d.spec.paused, Some(true), "released after the release");
    assert!(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("rollouts.kruise.io/in-progressing")
    );
}

#[tokio::test]
async fn certificates_are_renewed_before_they_expire_and_the_webhooks_go_on() {
    let clock = sluice::clock::ManualClock::at(sluice::clock::system().now_ms());
    let c = Cluster::start_with(|_| {
        let mut webhook = sluice::admission::WebhookConfig::local(0);
        webhook.renewal_check = Duration::from_millis(50);
        sluice::controller::ControllerConfig {
            clock: clock.clone(),
            webhook: Some(webhook),
            ..Default::default()
        }
    })
    .await;
    let (ca, serving) = (secret_field(&c, "ca.crt"), secret_field(&c, "tls.crt"));
    c.apply(APP).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;

    // Eleven months on, the serving certificate is renewed by the same authority:
    // the caBundle stays.
    clock.advance(Duration::from_secs(335 * 24 * 3600));
    c.until("the serving certificate is renewed", || async {
        secret_field(&c, "tls.crt") != serving
    })
    .await;
    assert_eq!(secret_field(&c, "ca.crt"), ca);
    // The webhooks answer with it: a release is held.
    let v2 = json!({"spec": {"template": {"spec": {"containers": [{"name": "echo", "image": "barnett/canarydemo:v2"}]}}}});
    c.patch("apps/v1", "Deployment", "echo", v2).await;
    assert_eq!(c.deployment("echo").await.spec.paused, Some(true));

    // Nine years and a half on, the authority too; the configurations trust the new one.
    clock.advance(Duration::from_secs(9 * 365 * 24 * 3600 + 180 * 24 * 3600));
    c.until("the authority is renewed", || async {
        secret_field(&c, "ca.crt") != ca
    })
    .await;
    let new_ca = secret_field(&c, "ca.crt");
    c.until("the caBundle is the new authority", || async {
        let bundle = configuration(
            &c,
            "validatingwebhookconfigurations",
            "sluice-validating-webhook-configuration",
        )["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .map(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default()
            });
        bundle == Some(new_ca.clone().into_bytes())
    })
    .await;
    // (The new authority starts at the moved clock, years ahead of the simulated
    // API server's: no request is made with it here.)
}

#[tokio::test]
async fn kubectl_shows_kruises_refusal() {
    let c = Cluster::start().await;
    let kubectl = c.kubectl();
    let stderr = kubectl
        .fails(
            &["apply", "-f", "-"],
            "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: echo}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}\n  strategy:\n    canary:\n      steps: [{weight: 20}]\n      trafficRoutings: [{service: echo, gracePeriodSeconds: -1, ingress: {name: echo}}]\n",
        )
        .await;
    assert!(
        stderr.contains("admission webhook \"vrollout.kb.io\" denied the request: Spec.Strategy.Canary.TrafficRouting.GracePeriodSeconds: Invalid value: \"echo\": TrafficRouting.GracePeriodSeconds cannot be negative"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_crd_defaults_as_kruises_do_and_steps_left_out_reach_the_webhook_left_out() {
    let c = Cluster::start().await;
    let kubectl = c.kubectl();
    let head = "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: echo}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}\n  strategy:\n    canary:\n";
    // Kruise's CRD leaves steps without a default: its webhook sees a nil slice.
    let stderr = kubectl
        .fails(
            &["apply", "-f", "-"],
            &format!("{head}      failureThreshold: 1\n"),
        )
        .await;
    assert!(
        stderr.contains("Spec.Strategy.Canary.Steps: Invalid value: []v1alpha1.CanaryStep(nil): The number of Canary.Steps cannot be empty"),
        "{stderr}"
    );
    // The grace period and a header's match type are written by the defaults.
    kubectl
        .run(
            &["apply", "-f", "-"],
            &format!(
                "{head}      steps: [{{weight: 20, matches: [{{headers: [{{name: x-canary, value: \"yes\"}}]}}]}}]\n      trafficRoutings: [{{service: echo, ingress: {{name: echo}}}}]\n"
            ),
        )
        .await;
    let rollout = kubectl.json(&["get", "rollout", "echo"]).await;
    let canary = &rollout["spec"]["strategy"]["canary"];
    assert_eq!(canary["trafficRoutings"][0]["gracePeriodSeconds"], 3);
    assert_eq!(
        canary["steps"][0]["matches"][0]["headers"][0]["type"],
        "Exact"
    );
}

/// Deleting the namespace the controller lives in (uninstalling deploy/, which
/// deletes `sluice-system`) deletes its webhook configurations: none is left to
/// refuse writes fail-closed when no controller answers. Here the controller is
/// installed in a namespace of the test's own, with deploy/'s Role for its
/// certificates there.
#[tokio::test]
async fn uninstalling_deletes_the_webhook_configurations() {
    let pending = Cluster::prepare().await;
    pending.forget_controller_state().await;
    let admin = pending.client();
    let home = format!(
        "sluice-home-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    sluice_testkit::apply(
        &admin,
        &format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {home}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: sluice-controller-certs, namespace: {home}}}
rules:
- {{apiGroups: [""], resources: [secrets], resourceNames: [sluice-webhook-certs], verbs: [get, update]}}
- {{apiGroups: [""], resources: [secrets], verbs: [create]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: sluice-controller-certs, namespace: {home}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: sluice-controller-certs}}
subjects: [{{kind: ServiceAccount, name: sluice-controller, namespace: sluice-system}}]
"#
        ),
    )
    .await;
    let mut webhook = sluice::admission::WebhookConfig::local(0);
    webhook.secret_namespace = home.clone();
    let mut c = pending
        .start(sluice::controller::ControllerConfig {
            webhook: Some(webhook),
            lease: Some(sluice::controller::leader::LeaseConfig::new(
                "default",
                "sluice-controller",
                "uninstall-e2e",
            )),
            ..Default::default()
        })
        .await;
    let owners = |config: &Value| {
        config
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|o| {
                o.iter()
                    .map(|r| (r["kind"].clone(), r["name"].clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    for plural in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        let name = format!(
            "sluice-{}-webhook-configuration",
            &plural[..plural.find("webhook").unwrap_or(0)]
        );
        let config = c
            .object_in("", "admissionregistration.k8s.io", plural, &name)
            .await
            .unwrap_or_else(|| panic!("{plural} {name}"));
        assert_eq!(owners(&config), vec![(json!("Namespace"), json!(home))]);
    }
    // The controller goes, then its namespace.
    c.stop_controller().await;
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .delete(&home, &Default::default())
        .await
        .expect("deleting the namespace");
    c.until("the webhook configurations are collected", || async {
        c.object_in(
            "",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "sluice-mutating-webhook-configuration",
        )
        .await
        .is_none()
            && c.object_in(
                "",
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                "sluice-validating-webhook-configuration",
            )
            .await
            .is_none()
    })
    .await;
}
