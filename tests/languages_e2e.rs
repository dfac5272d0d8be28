//! End-to-end: strategies written in JavaScript and in Python, published the way
//! modules of their size are (HTTPS, OCI: a ConfigMap holds at most 1 MiB), drive
//! releases through the controller like any Rust module.

mod support;

use support::cluster::Cluster;
use support::modules::{
    app_and_rollout, module_status, oci_module, release_v2, set_config, sha, strategy_status,
    until_module_ready, url_module,
};
use support::sources::{https_server, push, registry};

const COMPLETED: &str = "Rollout progressing has been completed";

fn status_message(r: &sluice::kruise::v1alpha1::Rollout) -> Option<&str> {
    r.status.as_ref()?.message.as_deref()
}

#[tokio::test]
async fn a_javascript_module_over_https_drives_a_release() {
    let bytes = sluice_test_guests::LINEAR_JS.unwrap_or_else(|e| panic!("{e}"));
    let server = https_server(bytes).await;
    let ca = server.ca_file.path().to_path_buf();
    let c = Cluster::start_with(|_| sluice::controller::ControllerConfig {
        module_ca: Some(ca),
        ..Default::default()
    })
    .await;
    c.apply(&url_module(
        "linear",
        &format!("{}/module.wasm", server.url),
        &sha(bytes),
    ))
    .await;
    until_module_ready(&c, "linear").await;
    let status = module_status(&c, c.ns(), "linear").await;
    assert_eq!(status["describesAs"], "linear 0.1.0", "{status}");
    assert_eq!(status["contractVersion"], "0.1.0", "{status}");

    // An hour per step: the first step (25% of four) holds.
    c.apply(&app_and_rollout(
        "linear",
        Some(r#"{"interval": 3600}"#),
        "[{weight: 1}, {weight: 1}, {weight: 1}, {weight: 1}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_paused_at("echo", 1).await;
    c.until("25% of the traffic on the canary", || async {
        c.canary_weight("echo").await.as_deref() == Some("25")
    })
    .await;
    let r = c.rollout("echo").await;
    assert!(
        status_message(&r).is_some_and(|m| m.contains("next step in")),
        "{:?}",
        r.status
    );
    // The module's own configuration check runs as soon as the Rollout names it.
    set_config(&c, r#"{"interval": "soon"}"#).await;
    c.until_rollout(
        "echo",
        "the JavaScript module refuses the configuration",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "StrategyReady"
                        && c.reason == "InvalidConfig"
                        && c.message
                            .contains(r#"interval: "soon" is not a whole number"#)
                })
            })
        },
    )
    .await;
    // No interval: it walks the remaining steps by itself.
    set_config(&c, r#"{"interval": 0}"#).await;
    c.until_rollout("echo", "completed by the JavaScript module", |r| {
        status_message(r) == Some(COMPLETED)
    })
    .await;
    assert_eq!(
        strategy_status(&c.rollout("echo").await),
        ("linear".to_owned(), sha(bytes))
    );
    c.until("all v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
}

#[tokio::test]
async fn a_python_module_from_a_registry_waits_for_approval_at_every_step() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bytes = sluice_test_guests::APPROVAL_PY.unwrap_or_else(|e| panic!("{e}"));
    let registry = registry().await;
    let reference = push(&registry, "strategies/approval:0.1.0", bytes).await;
    let insecure = registry.addr.clone();
    let c = Cluster::start_with(|_| sluice::controller::ControllerConfig {
        insecure_registries: vec![insecure],
        ..Default::default()
    })
    .await;
    c.apply(&oci_module("approval", &reference, &sha(bytes)))
        .await;
    until_module_ready(&c, "approval").await;
    assert_eq!(
        module_status(&c, c.ns(), "approval").await["describesAs"],
        "approval 0.1.0"
    );

    // The first step's pause is zero seconds: Kruise would move on; this module waits.
    c.apply(&app_and_rollout(
        "approval",
        None,
        "[{weight: 20, pause: {duration: 0}}, {weight: 60}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_paused_at("echo", 1).await;
    c.until("20% of the traffic on the canary", || async {
        c.canary_weight("echo").await.as_deref() == Some("20")
    })
    .await;
    let r = c.rollout("echo").await;
    assert!(
        status_message(&r).is_some_and(|m| m.contains("waiting for approval")),
        "{:?}",
        r.status
    );
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.until("60% of the traffic on the canary", || async {
        c.canary_weight("echo").await.as_deref() == Some("60")
    })
    .await;
    // The last step waits for a person too.
    c.approve("echo").await;
    c.until_rollout("echo", "completed by the Python module", |r| {
        status_message(r) == Some(COMPLETED)
    })
    .await;
    assert_eq!(
        strategy_status(&c.rollout("echo").await),
        ("approval".to_owned(), sha(bytes))
    );
    c.until("all v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
}
