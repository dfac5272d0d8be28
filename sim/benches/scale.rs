//! Scale harness: 2,000 Deployments of 5 pods created through the API, until every
//! pod is ready; then one change to every Deployment, until all are rolled out.
//!
//! `cargo bench -p sluice-sim --bench scale [-- DEPLOYMENTS]`; figures in docs/benchmarks.md.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_sim::store::ResKey;
use sluice_sim::{PodBehaviour, Sim, SimConfig};

const REPLICAS: usize = 5;
const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let sim = Sim::start(SimConfig {
        pods: PodBehaviour {
            ready_delay: Duration::from_millis(100),
            ..PodBehaviour::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let client = kube::Client::try_from(kube::Config::new(sim.api_url().parse()?))?;
    let api: Api<Deployment> = Api::namespaced(client, "default");

    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": format!("app-{i}")},
                    "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                             "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                                          "spec": {"containers": [{"name": "c", "image": "demo:v1"}]}}}
                }))
                .expect("deployment");
                api.create(&PostParams::default(), &d).await.expect("create");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();
    wait_all_ready(&sim, count * REPLICAS, "demo:v1").await;
    let ready = started.elapsed();
    println!(
        "create {count} Deployments through the API: {:.2} s ({:.0}/s); all {} pods ready after {:.2} s",
        created.as_secs_f64(),
        count as f64 / created.as_secs_f64(),
        count * REPLICAS,
        ready.as_secs_f64()
    );

    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "demo:v2"}]}}}});
                api.patch(&format!("app-{i}"), &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .expect("patch");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    wait_all_ready(&sim, count * REPLICAS, "demo:v2").await;
    println!(
        "roll all {count} Deployments to a new image: every pod replaced and ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let store = sim.store();
    println!(
        "objects in the store: {} pods, {} replicasets; resourceVersion {}",
        store.list(&ResKey::new("", "pods"), None).items.len(),
        store
            .list(&ResKey::new("apps", "replicasets"), None)
            .items
            .len(),
        store.resource_version()
    );
    Ok(())
}

async fn wait_all_ready(sim: &Sim, want: usize, image: &str) {
    let mut events = sim.store().subscribe();
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        // Counting 10,000 pods on every event would dominate: count at most every 50 ms.
        if last_check.elapsed() > Duration::from_millis(50) {
            last_check = Instant::now();
            let pods = sim.store().list(&ResKey::new("", "pods"), None).items;
            let ready = pods
                .iter()
                .filter(|p| {
                    p.pointer("/spec/containers/0/image")
                        .and_then(|i| i.as_str())
                        == Some(image)
                        && p.pointer("/metadata/deletionTimestamp").is_none()
                        && p.pointer("/status/conditions")
                            .and_then(|c| c.as_array())
                            .is_some_and(|c| {
                                c.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                })
                .count();
            if ready == want && pods.len() == want {
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
}
