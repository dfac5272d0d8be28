//! End-to-end: partition-style releases (CloneSet, StatefulSet), Gateway API routing,
//! a NodePort Service, and the controller's operational endpoints.

mod support;

use serde_json::{Value, json};
use support::cluster::{Cluster, SERVICE_AND_INGRESS, condition, edited, within_binomial};

const HOST: &str = "echo.example.com";

fn cloneset(image: &str) -> String {
    format!(
        r#"
apiVersion: apps.kruise.io/v1alpha1
kind: CloneSet
metadata: {{name: echo}}
spec:
  replicas: 5
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers: [{{name: echo, image: "{image}"}}]
"#
    )
}

/// A Rollout of the workload `echo`; `routing` empty for none.
fn rollout(kind: &str, api_version: &str, steps: &str, routing: &str) -> String {
    let routings = if routing.is_empty() {
        String::new()
    } else {
        format!("      trafficRoutings: [{routing}]\n")
    };
    format!(
        r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {{name: echo}}
spec:
  objectRef: {{workloadRef: {{apiVersion: {api_version}, kind: {kind}, name: echo}}}}
  strategy:
    canary:
      steps: {steps}
{routings}"#
    )
}

async fn partition(c: &Cluster, path: &str) -> Value {
    c.object("apps.kruise.io", "clonesets", "echo")
        .await
        .and_then(|cs| cs.pointer(path).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn cloneset_releases_by_partition_with_traffic() {
    let c = Cluster::start().await;
    c.apply(&cloneset("barnett/canarydemo:v1")).await;
    c.apply(SERVICE_AND_INGRESS).await;
    c.apply(&rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        // A partition-style step with traffic updates at most half the pods by
        // percentage (Kruise's partition limit): the 60% step names its count.
        "[{weight: 20, pause: {}}, {weight: 60, replicas: 3, pause: {}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps.kruise.io", "clonesets", "echo")
        .await;
    c.apply(&cloneset("barnett/canarydemo:v2")).await;
    c.until_paused_at("echo", 1).await;
    // A step given by its weight alone is that share of pods, a share partition.
    assert_eq!(
        partition(&c, "/spec/updateStrategy/partition").await,
        json!("80%")
    );
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 1);
    let n = 300;
    let v2 = c.share(HOST, "/", n, "Demo: V2").await;
    assert!(within_binomial(v2, n, 0.2), "{v2} of {n} at weight 20");
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_eq!(
        partition(&c, "/spec/updateStrategy/partition").await,
        json!(2)
    );
    c.until("three v2 pods", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 3
    })
    .await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
    c.until("all v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none()
    );
    assert!(c.object("", "services", "echo-canary").await.is_none());
    // Released: no partition holds the CloneSet until its next template.
    assert_eq!(
        partition(&c, "/spec/updateStrategy/partition").await,
        json!(0)
    );
}

#[tokio::test]
async fn cloneset_rollback_reverts_the_updated_pods() {
    let c = Cluster::start().await;
    c.apply(&cloneset("barnett/canarydemo:v1")).await;
    c.apply(SERVICE_AND_INGRESS).await;
    c.apply(&rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "[{weight: 40, pause: {}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps.kruise.io", "clonesets", "echo")
        .await;
    c.apply(&cloneset("barnett/canarydemo:v2")).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 2);
    c.apply(&cloneset("barnett/canarydemo:v1")).await;
    c.until_rollout("echo", "canceled", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been canceled")
    })
    .await;
    c.until("all v1", || async {
        c.ready_pods_with("barnett/canarydemo:v1").await == 5
    })
    .await;
    assert_eq!(c.share(HOST, "/", 30, "Demo: V1").await, 30);
}

#[tokio::test]
async fn statefulset_releases_by_partition() {
    let c = Cluster::start().await;
    let sts = |image: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: echo}}
spec:
  replicas: 4
  serviceName: echo
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers: [{{name: echo, image: "{image}"}}]
"#
        )
    };
    c.apply(&sts("db:v1")).await;
    c.apply(&rollout("StatefulSet", "apps/v1", "[{replicas: 1, pause: {}}, {replicas: \"50%\", pause: {}}]", "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}").replace("      trafficRoutings: [{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}]\n", "")).await;
    c.until_healthy("echo").await;
    c.apply(&sts("db:v2")).await;
    c.until_paused_at("echo", 1).await;
    c.until("ordinal 3 on v2", || async {
        c.object("", "pods", "echo-3")
            .await
            .is_some_and(|p| p["spec"]["containers"][0]["image"] == "db:v2")
            && c.ready_pods_with("db:v2").await == 1
    })
    .await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.until("two on v2", || async {
        c.ready_pods_with("db:v2").await == 2
    })
    .await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
    c.until("all v2", || async { c.ready_pods_with("db:v2").await == 4 })
        .await;
}

#[tokio::test]
async fn gateway_api_httproute_weights() {
    let c = Cluster::start().await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v1",
        5,
    ))
    .await;
    c.apply(
        SERVICE_AND_INGRESS
            .split("\n---")
            .next()
            .unwrap_or_default(),
    )
    .await;
    c.apply(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  hostnames: [echo.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: echo, port: 80}]
"#,
    )
    .await;
    let steps = "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}, {weight: 90, pause: {}}]";
    c.apply(&rollout(
        "Deployment",
        "apps/v1",
        steps,
        "{service: echo, gracePeriodSeconds: 0, gateway: {httpRouteName: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v2",
        5,
    ))
    .await;
    for (step, weight) in [20, 40, 60, 80, 90].into_iter().enumerate() {
        let step = step as i32 + 1;
        c.until_paused_at("echo", step).await;
        let route = c
            .object("gateway.networking.k8s.io", "httproutes", "echo")
            .await
            .expect("route");
        let refs = route["spec"]["rules"][0]["backendRefs"].clone();
        assert_eq!(refs[0]["name"], "echo");
        assert_eq!(refs[0]["weight"], 100 - weight, "step {step}");
        assert_eq!(refs[1]["name"], "echo-canary");
        assert_eq!(refs[1]["weight"], weight, "step {step}");
        c.approve("echo").await;
    }
    c.until_healthy("echo").await;
    let route = c
        .object("gateway.networking.k8s.io", "httproutes", "echo")
        .await
        .expect("route");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        // The CRD's defaults: group, kind and weight, as the API server writes them.
        json!([{"group": "", "kind": "Service", "name": "echo", "port": 80, "weight": 1}])
    );
    assert_eq!(c.share(HOST, "/", 30, "Demo: V2").await, 30);
}

#[tokio::test]
async fn a_nodeport_service_gets_a_canary_without_node_ports() {
    let c = Cluster::start().await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v1",
        5,
    ))
    .await;
    c.apply(&SERVICE_AND_INGRESS.replace(
        "spec:\n  selector: {app: echo}",
        "spec:\n  type: NodePort\n  selector: {app: echo}",
    ))
    .await;
    c.apply(&rollout(
        "Deployment",
        "apps/v1",
        "[{weight: 20, pause: {}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v2",
        5,
    ))
    .await;
    c.until_paused_at("echo", 1).await;
    let stable = c.object("", "services", "echo").await.expect("stable");
    let canary = c
        .object("", "services", "echo-canary")
        .await
        .expect("canary");
    assert_eq!(canary["spec"]["type"], "NodePort");
    assert_ne!(
        canary["spec"]["ports"][0]["nodePort"], stable["spec"]["ports"][0]["nodePort"],
        "the canary gets its own node port"
    );
    c.approve("echo").await;
    c.until_healthy("echo").await;
}

#[tokio::test]
async fn steps_changed_mid_release_clamp_to_the_new_plan() {
    let c = Cluster::start().await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v1",
        5,
    ))
    .await;
    c.apply(SERVICE_AND_INGRESS).await;
    let five = "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}, {weight: 100}]";
    let routing = "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}";
    c.apply(&rollout("Deployment", "apps/v1", five, routing))
        .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v2",
        5,
    ))
    .await;
    c.until_paused_at("echo", 1).await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.approve("echo").await;
    c.until_paused_at("echo", 3).await;
    // Now two steps only: step 3 no longer exists, the rollout goes on from the last one.
    c.apply(&rollout(
        "Deployment",
        "apps/v1",
        "[{weight: 20, pause: {}}, {weight: 50, pause: {}}]",
        routing,
    ))
    .await;
    c.until_paused_at("echo", 2).await;
    c.until("50% traffic", || async {
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_some_and(|i| {
                i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "50"
            })
    })
    .await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
}

#[tokio::test]
async fn one_of_two_replicas_leads_and_the_other_takes_over_when_the_lease_lapses() {
    use sluice::controller::leader::{LeaseConfig, try_acquire};
    let c = Cluster::start().await;
    // Both replicas read one clock that moves only when the test says so.
    let clock = sluice::clock::ManualClock::at(1_700_000_000_000);
    let replica = |id: &str| {
        let mut l = LeaseConfig::new(c.ns(), "sluice-test", id);
        l.clock = clock.clone();
        l
    };
    let (a, b) = (replica("a"), replica("b"));
    assert!(
        try_acquire(&c.client, &a).await.expect("a"),
        "the first replica leads"
    );
    assert!(
        !try_acquire(&c.client, &b).await.expect("b"),
        "the second waits"
    );
    clock.advance(a.duration - std::time::Duration::from_secs(1));
    assert!(
        !try_acquire(&c.client, &b).await.expect("b"),
        "a lease within its duration is not taken"
    );
    assert!(
        try_acquire(&c.client, &a).await.expect("a renews"),
        "the leader renews"
    );
    clock.advance(a.duration - std::time::Duration::from_secs(1));
    assert!(
        !try_acquire(&c.client, &b).await.expect("b"),
        "the renewal counts from when it was made"
    );
    clock.advance(std::time::Duration::from_secs(1));
    assert!(
        try_acquire(&c.client, &b).await.expect("b"),
        "b takes over once a has not renewed for the lease's duration"
    );
    let lease = c
        .object("coordination.k8s.io", "leases", "sluice-test")
        .await
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(
        !try_acquire(&c.client, &a).await.expect("a"),
        "a is no longer the leader"
    );
}

#[tokio::test]
async fn the_controller_serves_metrics_and_health() {
    let c = Cluster::start().await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v1",
        2,
    ))
    .await;
    c.apply(SERVICE_AND_INGRESS).await;
    c.apply(&rollout(
        "Deployment",
        "apps/v1",
        "[{weight: 50, pause: {}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&support::cluster::deployment_yaml(
        "echo",
        "barnett/canarydemo:v2",
        2,
    ))
    .await;
    c.until_paused_at("echo", 1).await;
    let addr = c.metrics_addr();
    let health = support::cluster::http_get(&format!("http://{addr}/healthz")).await;
    assert_eq!(health, (200, "ok".to_owned()));
    let (code, text) = support::cluster::http_get(&format!("http://{addr}/metrics")).await;
    assert_eq!(code, 200);
    for want in [
        "sluice_reconciles_total{result=\"ok\"}",
        "sluice_decisions_total{action=\"pause\",module=\"builtin:steps\"}",
        "sluice_decision_duration_seconds_count",
        "sluice_reconcile_duration_seconds_count",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

/// The CloneSet carrying the workload label `rollouts.kruise.io/rollout-id: 1`.
fn labelled_cloneset(image: &str) -> String {
    edited(
        &cloneset(image),
        "metadata: {name: echo}",
        "metadata: {name: echo, labels: {rollouts.kruise.io/rollout-id: \"1\"}}",
    )
}

/// Pods with rollout id `id`, by batch id: `[pods of batch 1, of batch 2, …]`.
async fn batch_counts(c: &Cluster, id: &str, batches: usize) -> Vec<usize> {
    let pods = c.objects("", "pods").await;
    (1..=batches)
        .map(|b| {
            pods.iter()
                .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
                .filter(|p| {
                    let labels = &p["metadata"]["labels"];
                    labels["rollouts.kruise.io/rollout-id"] == id
                        && labels["rollouts.kruise.io/rollout-batch-id"]
                            .as_str()
                            .and_then(|s| s.parse::<usize>().ok())
                            == Some(b)
                })
                .count()
        })
        .collect()
}

async fn until_batches_of(c: &Cluster, id: &str, want: &[usize]) {
    c.until(
        &format!("pods of rollout id {id} by batch {want:?}"),
        || async { batch_counts(c, id, want.len()).await == want },
    )
    .await;
}

/// Kruise's e2e "patch batch id to pods: scaling case": a CloneSet scaled from 5 to 10
/// while step 2 (40%) waits keeps the step's share — 4 of 10 pods updated, by its
/// percentage partition — and the scaled-up new pods join batches 1 and 2 (two each);
/// the release ends with batches of 2, 2, 2 and 4. Kruise's 10-second pauses are
/// `duration: 0` here: they only move the release on.
#[tokio::test]
async fn patch_batch_id_to_pods_scaling_case() {
    let c = Cluster::start().await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v1")).await;
    c.apply(SERVICE_AND_INGRESS).await;
    c.apply(&rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "[{weight: 20, replicas: 20%, pause: {duration: 0}}, {replicas: 40%, pause: {}}, {replicas: 60%, pause: {duration: 0}}, {replicas: 100%, pause: {duration: 0}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps.kruise.io", "clonesets", "echo")
        .await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v2")).await;
    c.until_paused_at("echo", 2).await;
    until_batches_of(&c, "1", &[1, 1]).await;
    assert_eq!(
        partition(&c, "/spec/updateStrategy/partition").await,
        json!("60%")
    );

    c.patch(
        "apps.kruise.io/v1alpha1",
        "CloneSet",
        "echo",
        json!({"spec": {"replicas": 10}}),
    )
    .await;
    c.until_canary_ready("echo", 4).await;
    until_batches_of(&c, "1", &[2, 2]).await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 4);
    assert_eq!(
        partition(&c, "/spec/updateStrategy/partition").await,
        json!("60%")
    );

    c.approve("echo").await;
    c.until_healthy("echo").await;
    c.until("every pod on v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 10
    })
    .await;
    until_batches_of(&c, "1", &[2, 2, 2, 4]).await;
}

/// Kruise's e2e "patch batch id to pods: only rollout-id changes", from its change of
/// id on: a workload whose `rollouts.kruise.io/rollout-id` changes mid-release stays
/// at its step, and its pods are labelled again under the new id, batch by batch.
/// (Kruise's case starts that release by the id alone, with no new template; a
/// release here needs a new template, so it starts with v2.)
#[tokio::test]
async fn patch_batch_id_to_pods_when_the_rollout_id_changes_mid_release() {
    let c = Cluster::start().await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v1")).await;
    c.apply(&rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "[{replicas: 20%, pause: {}}, {replicas: 40%, pause: {}}, {replicas: 60%, pause: {}}, {replicas: 80%, pause: {}}, {replicas: 100%, pause: {}}]",
        "",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps.kruise.io", "clonesets", "echo")
        .await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v2")).await;
    c.until_paused_at("echo", 1).await;
    for step in 2..=3 {
        c.approve("echo").await;
        c.until_paused_at("echo", step).await;
    }
    until_batches_of(&c, "1", &[1, 1, 1]).await;

    c.patch(
        "apps.kruise.io/v1alpha1",
        "CloneSet",
        "echo",
        json!({"metadata": {"labels": {"rollouts.kruise.io/rollout-id": "2"}}}),
    )
    .await;
    until_batches_of(&c, "2", &[1, 1, 1]).await;
    let status = c.rollout("echo").await.status.expect("status");
    let cs = status.canary_status.expect("canary status");
    assert_eq!(
        (cs.current_step_index, cs.current_step_state.as_str()),
        (3, "StepPaused"),
        "the release stays at its step"
    );
    c.approve("echo").await;
    c.until_paused_at("echo", 4).await;
    until_batches_of(&c, "2", &[1, 1, 1, 1]).await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
    until_batches_of(&c, "2", &[1, 1, 1, 1, 1]).await;
}

/// Kruise's e2e "Patch batch id to pods: normal case": each step's new pod carries
/// the rollout id and its step's batch id, the last step (every pod) included.
#[tokio::test]
async fn patch_batch_id_to_pods_normal_case() {
    let c = Cluster::start().await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v1")).await;
    c.apply(&rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "[{replicas: 20%, pause: {}}, {replicas: 40%, pause: {}}, {replicas: 60%, pause: {}}, {replicas: 80%, pause: {}}, {replicas: 100%, pause: {}}]",
        "",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps.kruise.io", "clonesets", "echo")
        .await;
    c.apply(&labelled_cloneset("barnett/canarydemo:v2")).await;
    c.until_paused_at("echo", 1).await;
    until_batches_of(&c, "1", &[1, 0, 0, 0, 0]).await;
    for step in 2..=4 {
        c.approve("echo").await;
        c.until_paused_at("echo", step).await;
        let mut want = vec![0; 5];
        want[..step as usize].fill(1);
        until_batches_of(&c, "1", &want).await;
    }
    // The last step updates every pod and completes the release (a workload whose
    // own rollout is done is not a rollback); its pod is batch 5.
    c.approve("echo").await;
    c.until_rollout("echo", "completed", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout progressing has been completed")
    })
    .await;
    until_batches_of(&c, "1", &[1, 1, 1, 1, 1]).await;
    let r = c.rollout("echo").await;
    let releases = r
        .status
        .and_then(|s| s.strategy)
        .map(|s| s.releases)
        .unwrap_or_default();
    assert_eq!(
        releases
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["Succeeded"]
    );
}

/// A Rollout of the Deployment `echo` released in place (Kruise's "advanced
/// deployment": `rollouts.kruise.io/rolling-style: partition`).
fn in_place_rollout(steps: &str, routing: &str) -> String {
    edited(
        &rollout("Deployment", "apps/v1", steps, routing),
        "metadata: {name: echo}",
        "metadata: {name: echo, annotations: {rollouts.kruise.io/rolling-style: partition}}",
    )
}

async fn in_place_v1_healthy(c: &Cluster, steps: &str, routing: &str) {
    c.apply(&support::echo::app("barnett/canarydemo:v1", 5))
        .await;
    c.apply(&in_place_rollout(steps, routing)).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
}

/// Kruise's advanced-deployment e2e start: v1 of 5 under a Rollout released in place
/// by 20%, 60%, 100% with no traffic routing, then v2 at step 1.
async fn in_place_v2_at_step_1() -> Cluster {
    let c = Cluster::start().await;
    in_place_v1_healthy(
        &c,
        "[{replicas: 20%, pause: {}}, {replicas: 60%, pause: {}}, {replicas: 100%, pause: {}}]",
        "",
    )
    .await;
    c.apply(&support::echo::deployment("barnett/canarydemo:v2", 5))
        .await;
    c.until_paused_at("echo", 1).await;
    c
}

/// Every pod on `image`, and the Deployment given back.
async fn until_let_go_on(c: &Cluster, image: &str) {
    c.until(&format!("every pod on {image}"), || async {
        c.ready_pods_with(image).await == 5
    })
    .await;
    assert_let_go(c).await;
}

/// The Deployment's ReplicaSet running `image`, if any.
async fn replica_set_of(c: &Cluster, image: &str) -> Option<Value> {
    c.objects("apps", "replicasets")
        .await
        .into_iter()
        .find(|rs| {
            rs.pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                == Some(image)
        })
}

/// The Deployment `echo` as JSON.
async fn echo_deployment(c: &Cluster) -> Value {
    c.object("apps", "deployments", "echo")
        .await
        .expect("the Deployment")
}

/// Kruise's `rollouts.kruise.io/deployment-strategy` or `-extra-status` annotation.
fn kruise_annotation(d: &Value, which: &str) -> Option<Value> {
    d.pointer(&format!(
        "/metadata/annotations/rollouts.kruise.io~1deployment-{which}"
    ))
    .and_then(Value::as_str)
    .and_then(|s| serde_json::from_str(s).ok())
}

/// What Kruise's advanced-deployment e2e checks at a step: the Deployment's
/// updated pods, its extra status, its strategy not paused; and what holds it:
/// paused, `Recreate`, no canary Deployment.
async fn assert_in_place_step(c: &Cluster, updated: i64) {
    c.until(
        &format!("{updated} updated ready pods reported"),
        || async {
            let d = echo_deployment(c).await;
            d.pointer("/status/updatedReplicas").and_then(Value::as_i64) == Some(updated)
                && kruise_annotation(&d, "extra-status")
                    .and_then(|e| e["updatedReadyReplicas"].as_i64())
                    == Some(updated)
        },
    )
    .await;
    let d = echo_deployment(c).await;
    let strategy = kruise_annotation(&d, "strategy").expect("the strategy annotation");
    assert_eq!(strategy["rollingStyle"], "Partition");
    assert_ne!(strategy["paused"], json!(true));
    assert_eq!(d["spec"]["paused"], json!(true));
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        d.pointer(
            "/metadata/labels/rollouts.kruise.io~1controlled-by-advanced-deployment-controller"
        ),
        Some(&json!("true"))
    );
    assert!(
        c.canary_deployments().await.is_empty(),
        "no canary Deployment in place"
    );
}

/// Once released the Deployment rolls by its own `rollingUpdate` again.
async fn assert_let_go(c: &Cluster) {
    let d = echo_deployment(c).await;
    assert_ne!(d["spec"]["paused"], json!(true));
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        json!({"maxUnavailable": 0, "maxSurge": 1}),
        "the Deployment's own rolling update is given back"
    );
    assert!(kruise_annotation(&d, "strategy").is_none());
    assert!(kruise_annotation(&d, "extra-status").is_none());
    assert!(
        d.pointer(
            "/metadata/labels/rollouts.kruise.io~1controlled-by-advanced-deployment-controller"
        )
        .is_none()
    );
    assert!(
        d.pointer("/metadata/annotations/rollouts.kruise.io~1in-progressing")
            .is_none(),
        "the release's mark is left on the Deployment"
    );
}

/// Kruise's e2e "advanced deployment rolling with traffic case"
/// (rollout_v1beta1_test.go, as a v1alpha1 Rollout): the Deployment's own pods
/// are updated in place, 1 then 3 of 5, with 20% of the traffic at step 1 to the
/// new pods; the stable and canary revisions are the ReplicaSets' hashes.
#[tokio::test]
async fn advanced_deployment_rolling_with_traffic_case() {
    let c = Cluster::start().await;
    in_place_v1_healthy(
        &c,
        "[{weight: 20, replicas: 20%, pause: {}}, {replicas: 60%, pause: {}}]",
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
    )
    .await;
    let stable = replica_set_of(&c, "barnett/canarydemo:v1")
        .await
        .expect("v1's ReplicaSet");
    c.apply(&support::echo::deployment("barnett/canarydemo:v2", 5))
        .await;
    c.until_paused_at("echo", 1).await;
    assert_in_place_step(&c, 1).await;
    let canary = replica_set_of(&c, "barnett/canarydemo:v2")
        .await
        .expect("v2's ReplicaSet");
    let hash = |rs: &Value| rs["metadata"]["labels"]["pod-template-hash"].clone();
    let status = c.rollout("echo").await.status.expect("status");
    let cs = status.canary_status.expect("canary status");
    assert_eq!(json!(cs.stable_revision), hash(&stable));
    assert_eq!(json!(cs.pod_template_hash), hash(&canary));
    assert_eq!(cs.current_step_index, 1);
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 1);
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("20"));
    let n = 300;
    let v2 = c.share(HOST, "/apis/echo", n, "Demo: V2").await;
    assert!(within_binomial(v2, n, 0.2), "{v2} of {n} at weight 20");

    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_in_place_step(&c, 3).await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 3);

    c.approve("echo").await;
    c.until_healthy("echo").await;
    c.until("every pod on v2", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
            && echo_deployment(&c)
                .await
                .pointer("/status/updatedReplicas")
                .and_then(Value::as_i64)
                == Some(5)
    })
    .await;
    assert_let_go(&c).await;
    let r = c.rollout("echo").await;
    let succeeded = condition(&r, "Succeeded").map(|(status, _)| status);
    assert_eq!(succeeded.as_deref(), Some("True"));
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none()
    );
    // The ReplicaSet the release made is the one the Deployment kept: no third.
    assert_eq!(c.objects("apps", "replicasets").await.len(), 2);
}

/// Kruise's e2e "advanced deployment scaling case": scaled 5 → 10 at step 1 (20%)
/// the new pods double with the old (2 of 10); scaled back to 5 they halve (1).
#[tokio::test]
async fn advanced_deployment_scaling_case() {
    let c = in_place_v2_at_step_1().await;
    assert_in_place_step(&c, 1).await;
    for (replicas, canary) in [(10, 2), (5, 1)] {
        c.patch(
            "apps/v1",
            "Deployment",
            "echo",
            json!({"spec": {"replicas": replicas}}),
        )
        .await;
        c.until_canary_ready("echo", canary).await;
        c.until(&format!("{replicas} pods, {canary} new"), || async {
            c.ready_pods_with("barnett/canarydemo:v2").await == canary as usize
                && c.ready_pods_with("barnett/canarydemo:v1").await == replicas - canary as usize
        })
        .await;
    }
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    // The last step (every pod) ends the release without a pause, as in Kruise.
    c.approve("echo").await;
    c.until_healthy("echo").await;
    until_let_go_on(&c, "barnett/canarydemo:v2").await;
}

/// Kruise's e2e "advanced deployment rollback case": the template back to v1 at
/// step 2 ends the release; the Deployment rolls its pods back to v1 itself.
#[tokio::test]
async fn advanced_deployment_rollback_case() {
    let c = in_place_v2_at_step_1().await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_in_place_step(&c, 3).await;
    c.apply(&support::echo::deployment("barnett/canarydemo:v1", 5))
        .await;
    c.until_healthy("echo").await;
    c.until("every pod back on v1", || async {
        c.ready_pods_with("barnett/canarydemo:v1").await == 5
            && c.ready_pods_with("barnett/canarydemo:v2").await == 0
    })
    .await;
    assert_let_go(&c).await;
}

/// Kruise's e2e "advanced deployment delete rollout case": deleting the Rollout at
/// step 1 gives the Deployment back (rolling update, not paused), which then rolls
/// v2 out itself.
#[tokio::test]
async fn advanced_deployment_delete_rollout_case() {
    let c = in_place_v2_at_step_1().await;
    assert_in_place_step(&c, 1).await;
    c.delete_rollout("echo").await;
    assert_let_go(&c).await;
    c.until("v2 rolls out natively", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
}

/// Kruise's e2e "advanced deployment continuous rolling case": v3 while v2 is at
/// step 2 starts again at step 1 with one v3 pod, then three.
#[tokio::test]
async fn advanced_deployment_continuous_rolling_case() {
    let c = in_place_v2_at_step_1().await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_in_place_step(&c, 3).await;
    c.apply(&support::echo::deployment("barnett/canarydemo:v3", 5))
        .await;
    c.until_paused_at("echo", 1).await;
    assert_in_place_step(&c, 1).await;
    c.until("one v3 pod", || async {
        c.ready_pods_with("barnett/canarydemo:v3").await == 1
    })
    .await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_in_place_step(&c, 3).await;
    // The last step (every pod) ends the release without a pause, as in Kruise.
    c.approve("echo").await;
    c.until_healthy("echo").await;
    until_let_go_on(&c, "barnett/canarydemo:v3").await;
}
