//! End-to-end: the reconcile pipeline's promises — a Rollout is decided at the rate
//! its strategy asks for, not in a loop on its own status; a canary create whose
//! answer is lost makes no second canary.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cluster::Cluster;
use support::modules::{app_and_rollout, configmap, module, release_v2, until_module_ready};

/// The memo count of the `countdown` module: its decisions so far.
async fn decisions(c: &Cluster) -> u64 {
    c.rollout("echo")
        .await
        .status
        .and_then(|s| s.strategy)
        .and_then(|s| s.memo.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_module_asking_every_second_is_decided_about_once_a_second_not_in_a_loop() {
    let c = Cluster::start().await;
    c.apply(&configmap(c.ns(), "m", sluice_test_guests::HOSTILE))
        .await;
    c.apply(&module(c.ns(), "countdown", "m", None)).await;
    until_module_ready(&c, "countdown").await;
    c.apply(&app_and_rollout(
        "countdown",
        Some("\"countdown\""),
        "[{weight: 20, pause: {}}]",
    ))
    .await;
    release_v2(&c).await;
    // Its message and memo change at every decision, and so its status: each write
    // of it is an event on the Rollout the controller must not act on.
    c.until_paused_at("echo", 1).await;
    let (before, writes_before) = (decisions(&c).await, c.counter("sluice_api_writes").await);
    // The measuring window; a slow machine decides less, never more.
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let decided = decisions(&c).await - before;
    let writes = c.counter("sluice_api_writes").await - writes_before;
    // Once a second for 4 s, and one in flight at each end.
    assert!(
        (1..=6).contains(&decided),
        "{decided} decisions in {window:?}, asking for one a second"
    );
    // One status write per decision, nothing else changes.
    assert!(
        writes <= decided as f64 + 1.0,
        "{writes} API writes for {decided} decisions"
    );
}

#[tokio::test]
async fn a_canary_create_whose_answer_is_lost_makes_no_second_canary() {
    let c = Cluster::start().await;
    c.apply(&app_and_rollout(
        "builtin:steps",
        None,
        "[{weight: 20, pause: {}}]",
    ))
    .await;
    c.until_healthy("echo").await;
    // The canary Deployment is the next Deployment created: its create is carried
    // out, its answer lost.
    c.sim().faults().lose_create_responses("deployments", 1);
    release_v2(&c).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(
        c.sim().faults().armed("deployments"),
        0,
        "the canary's create lost its answer"
    );
    let canaries: Vec<Value> = c
        .objects("apps", "deployments")
        .await
        .into_iter()
        .filter(|d| {
            d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment")
                .is_some()
        })
        .collect();
    assert_eq!(
        canaries.len(),
        1,
        "one canary, whatever the retries: {:?}",
        canaries
            .iter()
            .map(|d| d["metadata"]["name"].clone())
            .collect::<Vec<_>>()
    );
}
