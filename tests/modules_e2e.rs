//! End-to-end: strategy modules as cluster objects — a module published in a
//! ConfigMap, swapped while a rollout is paused, kept to its namespace, pinned.

mod support;

use serde_json::json;
use support::cluster::Cluster;
use support::modules::{
    app_and_rollout, configmap, module, module_status, oci_module, release_v2, set_config, sha,
    strategy_condition, strategy_status, until_module_ready, url_module,
};
use support::sources::{https_server, push, registry};

#[tokio::test]
async fn a_configmap_module_drives_a_release_and_its_digest_is_recorded() {
    let c = Cluster::start().await;
    let bytes = sluice_test_guests::DOUBLING;
    c.apply(&configmap(c.ns(), "doubling", bytes)).await;
    c.apply(&module(c.ns(), "doubling", "doubling", Some(&sha(bytes))))
        .await;
    until_module_ready(&c, "doubling").await;
    let status = module_status(&c, c.ns(), "doubling").await;
    assert_eq!(status["digest"], sha(bytes));
    assert_eq!(status["contractVersion"], "0.1.0");
    assert_eq!(status["exports"], json!(["sluice:strategy/strategy@0.1.0"]));
    assert_eq!(status["describesAs"], "doubling 0.1.0");
    assert!(
        status["configSchema"]
            .as_str()
            .is_some_and(|s| s.contains("maxFailedPods")),
        "{status}"
    );

    c.apply(&app_and_rollout(
        "doubling",
        Some(r#"{"start": 20, "interval": 0}"#),
        "[{weight: 1}, {weight: 1}, {weight: 1}]",
    ))
    .await;
    release_v2(&c).await;
    // No approvals: the module advances by itself, 20% then 40% then 100%.
    c.until_rollout("echo", "completed by the module", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been completed")
    })
    .await;
    let r = c.rollout("echo").await;
    assert_eq!(strategy_status(&r), ("doubling".to_owned(), sha(bytes)));
    c.until("all v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
}

#[tokio::test]
async fn swapping_a_module_takes_effect_at_the_next_decision() {
    let c = Cluster::start().await;
    let steps = sluice::strategy::builtin::builtin("steps").expect("steps");
    c.apply(&configmap(c.ns(), "team-strategy", steps)).await;
    c.apply(&module(c.ns(), "team", "team-strategy", None))
        .await;
    c.apply(&app_and_rollout(
        "team",
        None,
        "[{weight: 20, pause: {}}, {weight: 40, pause: {}}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(strategy_status(&c.rollout("echo").await).1, sha(steps));

    // A new version of the module, published while the rollout waits: no restart.
    // Every change from here on is recorded, to check the order of two of them.
    let mut changes = c.sim().store().subscribe();
    let hostile = sluice_test_guests::HOSTILE;
    c.apply(&configmap(c.ns(), "team-strategy", hostile)).await;
    c.until_rollout("echo", "the new module decided", |r| {
        strategy_status(r).1 == sha(hostile)
    })
    .await;
    // The module's status showed the new digest no later than the first decision
    // made by the new module.
    let new = json!(sha(hostile));
    let (mut module_rv, mut decision_rv) = (None, None);
    while let Ok(change) = changes.try_recv() {
        let plural = change.res.plural.as_str();
        if plural == "strategymodules" && change.object.pointer("/status/digest") == Some(&new) {
            module_rv.get_or_insert(change.rv);
        }
        if plural == "rollouts" && change.object.pointer("/status/strategy/digest") == Some(&new) {
            decision_rv.get_or_insert(change.rv);
        }
    }
    let (module_rv, decision_rv) = (
        module_rv.expect("the module's status shows the new digest"),
        decision_rv.expect("a decision by the new module"),
    );
    assert!(
        module_rv < decision_rv,
        "the module status (rv {module_rv}) came after the decision (rv {decision_rv})"
    );
    assert_eq!(module_status(&c, c.ns(), "team").await["digest"], new);
    let r = c.rollout("echo").await;
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap_or_default()
            .starts_with("good at"),
        "the new module's message"
    );
}

#[tokio::test]
async fn a_rollout_cannot_use_another_namespaces_module() {
    let c = Cluster::start().await;
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n")
        .await;
    let bytes = sluice_test_guests::DOUBLING;
    c.apply(&configmap("team-b", "m", bytes)).await;
    c.apply(&module("team-b", "theirs", "m", None)).await;
    c.apply(&app_and_rollout(
        "team-b/theirs",
        None,
        "[{weight: 20, pause: {}}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_rollout("echo", "refused", |r| {
        strategy_condition(r)
            .is_some_and(|(s, reason, _)| s == "False" && reason == "ModuleNotFound")
    })
    .await;
    let (_, _, message) = strategy_condition(&c.rollout("echo").await).unwrap();
    assert!(
        message.contains("StrategyModules of its own namespace only"),
        "{message}"
    );
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"metadata": {"annotations": {"strategy.sluice.dev/module": "theirs"}}}),
    )
    .await;
    let missing = format!(
        "StrategyModule {}/theirs does not exist in the Rollout's namespace",
        c.ns()
    );
    c.until_rollout("echo", "not found here", |r| {
        strategy_condition(r).is_some_and(|(_, _, m)| m.contains(&missing))
    })
    .await;
    assert_eq!(
        c.ready_pods_with("barnett/canarydemo:v2").await,
        0,
        "nothing ran without a module"
    );
}

#[tokio::test]
async fn a_digest_mismatch_is_refused_naming_both_digests() {
    let c = Cluster::start().await;
    let bytes = sluice_test_guests::DOUBLING;
    let wrong = "0".repeat(64);
    c.apply(&configmap(c.ns(), "m", bytes)).await;
    c.apply(&module(c.ns(), "pinned", "m", Some(&wrong))).await;
    c.until("the module is refused", || async {
        module_status(&c, c.ns(), "pinned").await["reason"] == "DigestMismatch"
    })
    .await;
    let message = module_status(&c, c.ns(), "pinned").await["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(&wrong) && message.contains(&sha(bytes)),
        "{message}"
    );
    c.apply(&app_and_rollout(
        "pinned",
        None,
        "[{weight: 20, pause: {}}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_rollout("echo", "paused on the module", |r| {
        strategy_condition(r).is_some_and(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 0);
}

#[tokio::test]
async fn an_https_module_with_a_pinned_digest_loads_through_the_configured_ca() {
    let bytes = sluice_test_guests::DOUBLING;
    let server = https_server(bytes).await;
    let ca = server.ca_file.path().to_path_buf();
    let c = Cluster::start_with(|_| sluice::controller::ControllerConfig {
        module_ca: Some(ca),
        ..Default::default()
    })
    .await;
    c.apply(&url_module(
        "fetched",
        &format!("{}/module.wasm", server.url),
        &sha(bytes),
    ))
    .await;
    until_module_ready(&c, "fetched").await;
    assert_eq!(
        module_status(&c, c.ns(), "fetched").await["digest"],
        sha(bytes)
    );

    let wrong = "1".repeat(64);
    c.apply(&url_module(
        "mismatched",
        &format!("{}/module.wasm", server.url),
        &wrong,
    ))
    .await;
    c.until("the mismatch is reported", || async {
        module_status(&c, c.ns(), "mismatched").await["message"]
            .as_str()
            .is_some_and(|m| m.contains(&wrong) && m.contains(&sha(bytes)))
    })
    .await;

    // (A pin already downloaded is served from the cache: this one never was.)
    c.apply(&url_module(
        "missing",
        &format!("{}/nothing.wasm", server.url),
        &"2".repeat(64),
    ))
    .await;
    c.until("the 404 is reported", || async {
        module_status(&c, c.ns(), "missing").await["message"]
            .as_str()
            .is_some_and(|m| m.contains("404"))
    })
    .await;

    // A Rollout uses the downloaded module like any other.
    c.apply(&app_and_rollout(
        "fetched",
        Some(r#"{"start": 50, "interval": 0}"#),
        "[{weight: 1}, {weight: 1}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_rollout("echo", "completed by the downloaded module", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been completed")
    })
    .await;
    assert_eq!(strategy_status(&c.rollout("echo").await).1, sha(bytes));
}

#[tokio::test]
async fn an_https_module_from_an_untrusted_server_is_refused() {
    let bytes = sluice_test_guests::DOUBLING;
    let server = https_server(bytes).await;
    let c = Cluster::start().await;
    c.apply(&url_module(
        "untrusted",
        &format!("{}/module.wasm", server.url),
        &sha(bytes),
    ))
    .await;
    c.until("refused", || async {
        module_status(&c, c.ns(), "untrusted").await["reason"] == "SourceUnavailable"
    })
    .await;
}

#[tokio::test]
async fn an_oci_module_is_pulled_from_a_registry_and_checked_against_its_pin() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = registry().await;
    let bytes = sluice_test_guests::DOUBLING;
    let reference = push(&registry, "strategies/doubling:1.0", bytes).await;
    let insecure = registry.addr.clone();
    let c = Cluster::start_with(|_| sluice::controller::ControllerConfig {
        insecure_registries: vec![insecure],
        ..Default::default()
    })
    .await;
    c.apply(&oci_module("pulled", &reference, &sha(bytes)))
        .await;
    until_module_ready(&c, "pulled").await;
    assert_eq!(
        module_status(&c, c.ns(), "pulled").await["digest"],
        sha(bytes)
    );

    let wrong = "3".repeat(64);
    c.apply(&oci_module("mismatched", &reference, &wrong)).await;
    c.until("the mismatch is reported", || async {
        module_status(&c, c.ns(), "mismatched").await["message"]
            .as_str()
            .is_some_and(|m| m.contains(&wrong) && m.contains(&sha(bytes)))
    })
    .await;

    c.apply(&app_and_rollout(
        "pulled",
        Some(r#"{"start": 50, "interval": 0}"#),
        "[{weight: 1}, {weight: 1}]",
    ))
    .await;
    release_v2(&c).await;
    c.until_rollout("echo", "completed by the pulled module", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been completed")
    })
    .await;
}

#[tokio::test]
async fn a_bad_configuration_is_reported_as_soon_as_the_rollout_names_the_module() {
    let c = Cluster::start().await;
    let bytes = sluice_test_guests::DOUBLING;
    c.apply(&configmap(c.ns(), "doubling", bytes)).await;
    c.apply(&module(c.ns(), "doubling", "doubling", None)).await;
    c.apply(&app_and_rollout(
        "doubling",
        Some(r#"{"start": 0}"#),
        "[{weight: 20}]",
    ))
    .await;
    c.until_rollout("echo", "the configuration is refused", |r| {
        strategy_condition(r).is_some_and(|(s, reason, m)| {
            s == "False" && reason == "InvalidConfig" && m.contains("start: 0 is outside 1-100")
        })
    })
    .await;
    c.until("a warning event", || async {
        c.objects("", "events").await.iter().any(|e| {
            e["reason"] == "StrategyFailed"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("start: 0"))
        })
    })
    .await;
    set_config(&c, r#"{"start": 10}"#).await;
    c.until_rollout("echo", "accepted", |r| {
        strategy_condition(r)
            .is_some_and(|(s, reason, _)| s == "True" && reason == "ConfigAccepted")
    })
    .await;
}

#[tokio::test]
async fn an_oci_layer_above_the_ceiling_is_refused_from_its_descriptor() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = registry().await;
    let bytes = sluice_test_guests::DOUBLING;
    let reference = push(&registry, "strategies/doubling:big", bytes).await;
    let fetcher =
        sluice::fetch::Fetcher::with_insecure_registries(None, None, vec![registry.addr.clone()])
            .expect("fetcher");
    let ceiling = bytes.len() as u64 - 1;
    let err = fetcher
        .fetch_oci(&reference, &sha(bytes), ceiling)
        .await
        .expect_err("above the ceiling");
    assert!(
        err.contains(&format!(
            "the module layer is {} bytes, above the controller's ceiling of {ceiling} bytes",
            bytes.len()
        )) && err.contains("nothing was downloaded"),
        "{err}"
    );
    // At the ceiling it is pulled, and checked against its pin.
    let pulled = fetcher
        .fetch_oci(&reference, &sha(bytes), bytes.len() as u64)
        .await
        .expect("pulled");
    assert_eq!(pulled.as_slice(), bytes);
}
