//! End-to-end: the controller against the simulator, reproducing OpenKruise Rollout's
//! e2e scenarios for Deployments with NGINX, and the walk-through.

mod support;

use serde_json::{Value, json};
use support::cluster::{Cluster, condition, within_binomial};
use support::echo::{HOST, app, deployment, rollout};

async fn v1_healthy(c: &Cluster, steps: &str, replicas: u32) {
    c.apply(&app("barnett/canarydemo:v1", replicas)).await;
    c.apply(&rollout(steps)).await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
}

async fn stable_selector_hash(c: &Cluster) -> Option<String> {
    c.object("", "services", "echo").await.and_then(|s| {
        s.pointer("/spec/selector/pod-template-hash")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

/// After a release (Kruise's FINAL-OK): nothing canary left, the selector unpinned,
/// the workload an ordinary, unpaused Deployment with every pod updated.
async fn assert_clean(c: &Cluster, image: &str, replicas: usize) {
    c.until("the stable Deployment runs the final version", || async {
        c.ready_pods_with(image).await == replicas
    })
    .await;
    assert!(
        c.canary_deployments().await.is_empty(),
        "a canary Deployment is left"
    );
    assert!(
        c.object("", "services", "echo-canary").await.is_none(),
        "the canary Service is left"
    );
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none(),
        "the canary Ingress is left"
    );
    assert_eq!(
        stable_selector_hash(c).await,
        None,
        "the stable Service is still pinned"
    );
    let d = c.deployment("echo").await;
    assert_ne!(d.spec.paused, Some(true), "the workload is left paused");
    let status = d.status.expect("status");
    assert_eq!(
        (
            status.updated_replicas,
            status.replicas,
            status.ready_replicas
        ),
        (
            Some(replicas as i32),
            Some(replicas as i32),
            Some(replicas as i32)
        )
    );
    assert!(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("rollouts.kruise.io/in-progressing"),
        "the release's mark is left on the workload"
    );
}

#[tokio::test]
async fn the_walkthrough_release_waits_for_approval_then_completes() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1", 5)).await;
    c.apply(&rollout("[{weight: 20, pause: {}}]")).await;
    c.until_healthy("echo").await;
    let r = c.rollout("echo").await;
    assert_eq!(
        r.status.as_ref().unwrap().message.as_deref(),
        Some("workload deployment is completed")
    );
    assert_eq!(c.request(HOST, "/apis/echo", &[]).await, "Demo: V1");

    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    let r = c.rollout("echo").await;
    let status = r.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Progressing"));
    assert_eq!(
        status.message.as_deref(),
        Some("Rollout is in step(1/1), and you need manually confirm to enter the next step")
    );
    // kubectl finds the controller's Events for the Rollout, as for any object.
    let events: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(c.client.clone(), c.ns());
    c.until("the Paused event", || async {
        events
            .list(
                &kube::api::ListParams::default().fields("involvedObject.name=echo,reason=Paused"),
            )
            .await
            .is_ok_and(|l| !l.items.is_empty())
    })
    .await;
    let kubectl = c.kubectl();
    let described = kubectl.run(&["describe", "rollout", "echo"], "").await;
    let listed = described.split("Events:").nth(1).unwrap_or_default();
    assert!(listed.contains("Paused"), "{described}");
    let listed = kubectl.run(&["events", "--for", "rollout/echo"], "").await;
    assert!(listed.contains("Paused"), "{listed}");
    let canary = status.canary_status.clone().unwrap();
    assert_eq!(
        (canary.canary_replicas, canary.canary_ready_replicas),
        (1, 1)
    );
    assert_eq!(
        condition(&r, "Progressing"),
        Some(("True".into(), "InRolling".into()))
    );
    // One canary pod beside five stable ones; the stable Deployment untouched and held.
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 1);
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v1").await, 5);
    let d = c.deployment("echo").await;
    assert_eq!(d.spec.paused, Some(true));
    assert_eq!(d.status.unwrap().updated_replicas.unwrap_or(0), 0);
    // Traffic: stable pinned, canary Service on the canary hash, canary Ingress at 20%.
    assert_eq!(
        stable_selector_hash(&c).await,
        Some(canary.stable_revision.clone())
    );
    let canary_svc = c
        .object("", "services", "echo-canary")
        .await
        .expect("canary Service");
    assert_eq!(
        canary_svc["spec"]["selector"]["pod-template-hash"],
        json!(canary.pod_template_hash)
    );
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("20"));
    let n = 400;
    let v2 = c.share(HOST, "/apis/echo", n, "Demo: V2").await;
    assert!(
        within_binomial(v2, n, 0.2),
        "{v2} of {n} answered V2 at weight 20"
    );

    c.approve("echo").await;
    c.until_rollout("echo", "succeeded", |r| {
        condition(r, "Succeeded") == Some(("True".into(), String::new()))
    })
    .await;
    let r = c.rollout("echo").await;
    let status = r.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Healthy"));
    assert_eq!(
        status.message.as_deref(),
        Some("Rollout progressing has been completed")
    );
    assert_clean(&c, "barnett/canarydemo:v2", 5).await;
    assert_eq!(c.share(HOST, "/apis/echo", 50, "Demo: V2").await, 50);
}

#[tokio::test]
async fn rollback_by_reverting_the_template_cancels_and_keeps_the_original_pods() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 5).await;
    let original: Vec<String> = c
        .objects("", "pods")
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    c.apply(&deployment("barnett/canarydemo:v1", 5)).await;
    c.until_rollout("echo", "canceled", |r| {
        condition(r, "Succeeded") == Some(("False".into(), String::new()))
    })
    .await;
    let r = c.rollout("echo").await;
    assert_eq!(r.status.as_ref().unwrap().phase.as_deref(), Some("Healthy"));
    assert_eq!(
        r.status.as_ref().unwrap().message.as_deref(),
        Some("Rollout progressing has been canceled")
    );
    assert_clean(&c, "barnett/canarydemo:v1", 5).await;
    c.until("the canary pod is gone", || async {
        c.objects("", "pods").await.len() == 5
    })
    .await;
    let mut now: Vec<String> = c
        .objects("", "pods")
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    let mut original = original;
    original.sort();
    now.sort();
    assert_eq!(now, original, "the v1 pods were not restarted");
    assert_eq!(c.share(HOST, "/apis/echo", 30, "Demo: V1").await, 30);
}

#[tokio::test]
async fn five_steps_of_20_40_60_80_90_percent() {
    let c = Cluster::start().await;
    let steps = "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}, {weight: 90, pause: {}}]";
    v1_healthy(&c, steps, 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    for (step, (weight, pods)) in [(20, 1), (40, 2), (60, 3), (80, 4), (90, 5)]
        .into_iter()
        .enumerate()
    {
        let step = step as i32 + 1;
        c.until_paused_at("echo", step).await;
        let status = c.rollout("echo").await.status.unwrap();
        let canary = status.canary_status.unwrap();
        assert_eq!(canary.canary_replicas, pods, "step {step}");
        assert_eq!(
            c.canary_weight("echo").await,
            Some(weight.to_string()),
            "step {step}"
        );
        assert_eq!(
            c.ready_pods_with("barnett/canarydemo:v2").await,
            pods as usize,
            "step {step}"
        );
        assert_eq!(
            status.message,
            Some(format!(
                "Rollout is in step({step}/5), and you need manually confirm to enter the next step"
            ))
        );
        c.approve("echo").await;
    }
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v2", 5).await;
}

/// Kruise's "Deployment V1->V2: Percentage 20%,40%,60%,80%,90%, and replicas=3"
/// (test/e2e/rollout_test.go): three replicas, canary pods marked by
/// `patchPodTemplateMetadata`, a template that already carries a `pod-template-hash`
/// label (Kruise's regression case for a stuck release).
#[tokio::test]
async fn deployment_v1_v2_percentage_20_40_60_80_90_and_replicas_3() {
    let c = Cluster::start().await;
    let app3 = |image: &str| {
        app(image, 3).replace(
            "    metadata: {labels: {app: echo}}",
            "    metadata: {labels: {app: echo, pod: stable, pod-template-hash: abcdefg}, annotations: {pod: stable}}",
        )
    };
    c.apply(&app3("barnett/canarydemo:v1")).await;
    c.apply(&rollout(
        "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}, {weight: 90, pause: {}}]",
    ).replace(
        "      steps:",
        "      patchPodTemplateMetadata: {labels: {pod: canary}, annotations: {pod: canary}}\n      steps:",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(
        app3("barnett/canarydemo:v2")
            .split("\n---")
            .next()
            .expect("deployment"),
    )
    .await;
    for (step, (weight, pods)) in [(20, 1), (40, 2), (60, 2), (80, 3), (90, 3)]
        .into_iter()
        .enumerate()
    {
        let step = step as i32 + 1;
        c.until_paused_at("echo", step).await;
        let canary = c
            .rollout("echo")
            .await
            .status
            .and_then(|s| s.canary_status)
            .expect("canary status");
        assert_eq!(
            (canary.canary_replicas, canary.canary_ready_replicas),
            (pods, pods),
            "step {step}"
        );
        assert_eq!(
            c.canary_weight("echo").await,
            Some(weight.to_string()),
            "step {step}"
        );
        if step == 1 {
            let canary_deployment = c
                .canary_deployments()
                .await
                .pop()
                .expect("the canary Deployment");
            assert_eq!(
                canary_deployment.pointer("/spec/template/metadata/labels/pod"),
                Some(&json!("canary"))
            );
            assert_eq!(
                canary_deployment.pointer("/spec/template/metadata/annotations/pod"),
                Some(&json!("canary"))
            );
        }
        c.approve("echo").await;
    }
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v2", 3).await;
}

/// Kruise's "V1->V2: Percentage, 20%,40%,60%,80%,100%, steps changed v1"
/// (test/e2e/rollout_test.go): five steps become three while step 1 waits; the
/// release goes on at the first new step that covers its canary, without approval.
#[tokio::test]
async fn v1_v2_percentage_20_40_60_80_100_steps_changed_v1() {
    let c = Cluster::start().await;
    v1_healthy(
        &c,
        "[{weight: 20, pause: {}}, {weight: 40, pause: {duration: 10}}, {weight: 60, pause: {duration: 10}}, {weight: 80, pause: {duration: 10}}, {weight: 100, pause: {duration: 0}}]",
        10,
    )
    .await;
    c.apply(&deployment("barnett/canarydemo:v2", 10)).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 2);
    c.apply(&rollout(
        "[{weight: 10, pause: {}}, {weight: 30, pause: {}}, {weight: 100, pause: {duration: 0}}]",
    ))
    .await;
    // New step 1 asks for 1 pod, fewer than the canary's 2: step 2 (3 pods).
    c.until_paused_at("echo", 2).await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("30"));
    let status = c.rollout("echo").await.status.expect("status");
    let canary = status.canary_status.expect("canary status");
    assert_eq!(
        (canary.canary_replicas, canary.canary_ready_replicas),
        (3, 3)
    );
    assert_eq!(canary.current_step_index, 2);
    assert_eq!(
        canary.rollout_hash,
        c.rollout("echo")
            .await
            .metadata
            .annotations
            .and_then(|a| a.get("rollouts.kruise.io/hash").cloned())
    );
    c.approve("echo").await;
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v2", 10).await;
}

/// Kruise's step jump: patch `nextStepIndex`; the rollout goes there at once.
async fn jump_to(c: &Cluster, step: i32) {
    let api: kube::Api<sluice::kruise::v1alpha1::Rollout> =
        kube::Api::namespaced(c.client.clone(), c.ns());
    api.patch_status(
        "echo",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"canaryStatus": {"nextStepIndex": step}}})),
    )
    .await
    .expect("patch nextStepIndex");
}

#[tokio::test]
async fn patching_next_step_index_jumps_forward_and_back() {
    let c = Cluster::start().await;
    let steps = "[{weight: 20, pause: {}}, {weight: 40, pause: {}}, {weight: 60, pause: {}}, {weight: 80, pause: {}}]";
    v1_healthy(&c, steps, 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    let next = |r: &sluice::kruise::v1alpha1::Rollout| {
        r.status
            .as_ref()
            .and_then(|s| s.canary_status.as_ref())
            .map(|c| c.next_step_index)
    };
    assert_eq!(next(&c.rollout("echo").await), Some(2));

    // Forward over step 2.
    jump_to(&c, 3).await;
    c.until_paused_at("echo", 3).await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("60"));
    c.until("3 canary pods", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 3
    })
    .await;
    assert_eq!(next(&c.rollout("echo").await), Some(4));

    // Back to step 1: its traffic, but the canary keeps its three pods (Kruise
    // never scales a canary down within a release).
    jump_to(&c, 1).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("20"));
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 3);
    let canary = c
        .rollout("echo")
        .await
        .status
        .and_then(|s| s.canary_status)
        .expect("canary status");
    assert_eq!(
        (canary.canary_replicas, canary.canary_ready_replicas),
        (3, 3)
    );
    // Each jump is its own event.
    c.until("the jumps are events", || async {
        let jumps: Vec<String> = c
            .objects("", "events")
            .await
            .into_iter()
            .filter(|e| e["reason"] == "StepJumped")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        ["from step 1 to step 3", "from step 3 to step 1"]
            .iter()
            .all(|m| jumps.iter().any(|j| j.contains(m)))
    })
    .await;

    // The steps edited now (Kruise's jump e2e): step 1 planned one pod, and it still
    // covers that, so the release stays at step 1 with the new traffic. Measured by
    // the canary's three pods it would finish step 1 and go on to step 2 (41% of 5).
    c.apply(&rollout(
        "[{weight: 21, pause: {}}, {weight: 41, pause: {}}, {weight: 61, pause: {}}, {weight: 81, pause: {}}]",
    ))
    .await;
    c.until("step 1 again with the new weight", || async {
        let at_1 = c
            .rollout("echo")
            .await
            .status
            .and_then(|s| s.canary_status)
            .is_some_and(|x| x.current_step_index == 1 && x.current_step_state == "StepPaused");
        at_1 && c.canary_weight("echo").await.as_deref() == Some("21")
    })
    .await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 3);

    // An approval without a patch goes on to the following step, as usual.
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("41"));
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 3);
}

#[tokio::test]
async fn a_continuous_release_restarts_at_step_1() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}, {weight: 40, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.apply(&deployment("barnett/canarydemo:v3", 5)).await;
    c.until("v3 has one canary pod at step 1", || async {
        let r = c.rollout("echo").await;
        let at_1 = r
            .status
            .and_then(|s| s.canary_status)
            .is_some_and(|x| x.current_step_index == 1 && x.current_step_state == "StepPaused");
        at_1 && c.ready_pods_with("barnett/canarydemo:v3").await == 1
            && c.ready_pods_with("barnett/canarydemo:v2").await == 0
    })
    .await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v3", 5).await;
}

#[tokio::test]
async fn scaling_during_a_release_rescales_the_canary() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}, {weight: 60, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    c.apply(&deployment("barnett/canarydemo:v2", 10)).await;
    c.until("20% of 10 pods are canaries", || async {
        let r = c.rollout("echo").await;
        r.status
            .and_then(|s| s.canary_status)
            .is_some_and(|x| x.canary_replicas == 2 && x.canary_ready_replicas == 2)
    })
    .await;
    c.until("ten stable pods", || async {
        c.ready_pods_with("barnett/canarydemo:v1").await == 10
    })
    .await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    assert_eq!(
        c.rollout("echo")
            .await
            .status
            .unwrap()
            .canary_status
            .unwrap()
            .canary_replicas,
        6
    );
}

#[tokio::test]
async fn paused_holds_the_rollout_until_resumed() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}, {weight: 40, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"spec": {"strategy": {"paused": true}}}),
    )
    .await;
    c.until_rollout("echo", "paused", |r| {
        condition(r, "Progressing").is_some_and(|(_, reason)| reason == "Paused")
    })
    .await;
    c.approve("echo").await;
    c.until_rollout("echo", "the paused message", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some("Rollout has been paused, you can resume it by kube-cli")
    })
    .await;
    assert_eq!(
        c.rollout("echo")
            .await
            .status
            .unwrap()
            .canary_status
            .unwrap()
            .current_step_index,
        1
    );
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"spec": {"strategy": {"paused": false}}}),
    )
    .await;
    c.until_paused_at("echo", 2).await;
}

#[tokio::test]
async fn deleting_the_rollout_releases_the_workload() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    // The canary Ingress and Service are owned by the Rollout: garbage collection
    // would remove them too, but only after the Rollout is gone. The controller's
    // cleanup is what happens while its finalizer still holds the Rollout.
    let mut changes = c.sim().store().subscribe();
    c.delete_rollout("echo").await;
    let mut before_removal = Vec::new();
    while let Ok(change) = changes.try_recv() {
        let name = change
            .object
            .pointer("/metadata/name")
            .and_then(Value::as_str);
        if change.res.plural == "rollouts" && change.kind == sluice_sim::store::EventType::Deleted {
            break;
        }
        if change.kind == sluice_sim::store::EventType::Deleted {
            before_removal.push(format!("{}/{}", change.res.plural, name.unwrap_or("")));
        }
        if change.res.plural == "deployments"
            && name == Some("echo")
            && change.object.pointer("/spec/paused") != Some(&Value::Bool(true))
        {
            before_removal.push("deployments/echo released".into());
        }
    }
    for done in [
        "ingresses/echo-canary",
        "services/echo-canary",
        "deployments/echo released",
    ] {
        assert!(
            before_removal.iter().any(|d| d == done),
            "{done} by the controller before the Rollout went: {before_removal:?}"
        );
    }
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none()
    );
    assert!(c.object("", "services", "echo-canary").await.is_none());
    assert_eq!(stable_selector_hash(&c).await, None);
    assert_ne!(
        c.deployment("echo").await.spec.paused,
        Some(true),
        "the Deployment is released"
    );
    c.until("v2 rolls out natively", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await >= 5
    })
    .await;
}

#[tokio::test]
async fn a_failed_image_stays_in_upgrade_and_a_fixed_one_goes_on() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2-fail", 5)).await;
    c.until_rollout("echo", "stuck upgrading", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.canary_status.as_ref())
            .is_some_and(|x| x.current_step_state == "StepUpgrade" && x.canary_replicas == 1)
    })
    .await;
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none(),
        "no traffic to pods that are not ready"
    );
    c.apply(&deployment("barnett/canarydemo:v3", 5)).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v3").await, 1);
    c.approve("echo").await;
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v3", 5).await;
}

#[tokio::test]
async fn ab_testing_by_header_and_cookie() {
    let c = Cluster::start().await;
    let steps = r#"[{replicas: 1, matches: [{headers: [{type: Exact, name: user-agent, value: pc}]}], pause: {}},
                   {replicas: 1, matches: [{headers: [{name: canary-by-cookie, value: beta}]}], pause: {}}]"#;
    v1_healthy(&c, steps, 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    let annotations = c
        .object("networking.k8s.io", "ingresses", "echo-canary")
        .await
        .unwrap()["metadata"]["annotations"]
        .clone();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header"],
        "user-agent"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header-value"],
        "pc"
    );
    assert!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .is_none()
    );
    for _ in 0..20 {
        assert_eq!(
            c.request(HOST, "/apis/echo", &[("user-agent", "pc")]).await,
            "Demo: V2"
        );
        assert_eq!(
            c.request(HOST, "/apis/echo", &[("user-agent", "phone")])
                .await,
            "Demo: V1"
        );
    }
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.until("cookie routing", || async {
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_some_and(|i| {
                i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-cookie"]
                    == "beta"
            })
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            c.request(HOST, "/apis/echo", &[("cookie", "beta=always")])
                .await,
            "Demo: V2"
        );
        assert_eq!(
            c.request(HOST, "/apis/echo", &[("user-agent", "pc")]).await,
            "Demo: V1"
        );
    }
}

#[tokio::test]
async fn timed_pauses_advance_when_their_time_has_come() {
    // The controller's clock moves only when the test moves it: a ten-minute pause
    // is tested without waiting ten minutes.
    let clock = sluice::clock::ManualClock::at(sluice::clock::system().now_ms());
    let c = Cluster::start_with(|_| sluice::controller::ControllerConfig {
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    v1_healthy(
        &c,
        "[{weight: 50, pause: {duration: 600}}, {weight: 100}]",
        4,
    )
    .await;
    c.apply(&deployment("barnett/canarydemo:v2", 4)).await;
    c.until_rollout("echo", "the timed message", |r| {
        r.status.as_ref().and_then(|s| s.message.as_deref())
            == Some(
                "Rollout is in step(1/2), and wait duration(600 seconds) to enter the next step",
            )
    })
    .await;
    // Nine minutes on, the controller looks again (a change to the Rollout calls it)
    // and goes on waiting.
    let look_again = |n: u32| json!({"metadata": {"annotations": {"test.sluice.dev/look-again": n.to_string()}}});
    clock.advance(std::time::Duration::from_secs(540));
    let reconciles = c.counter("sluice_reconciles").await;
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        look_again(1),
    )
    .await;
    c.until("the controller looked again", || async {
        c.counter("sluice_reconciles").await > reconciles
    })
    .await;
    let status = c.rollout("echo").await.status.expect("status");
    let canary = status.canary_status.expect("canary status");
    assert_eq!(
        (
            canary.current_step_index,
            canary.current_step_state.as_str()
        ),
        (1, "StepPaused"),
        "still within the pause"
    );
    // Past ten minutes: the next step.
    clock.advance(std::time::Duration::from_secs(61));
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        look_again(2),
    )
    .await;
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v2", 4).await;
}

#[tokio::test]
async fn disabling_mid_release_releases_everything() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 5).await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"spec": {"disabled": true}}),
    )
    .await;
    c.until_rollout("echo", "disabled", |r| {
        r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Disabled")
    })
    .await;
    assert_eq!(
        c.rollout("echo").await.status.unwrap().message.as_deref(),
        Some("Rollout is disabled")
    );
    assert!(
        c.object("networking.k8s.io", "ingresses", "echo-canary")
            .await
            .is_none()
    );
    assert!(c.canary_deployments().await.is_empty());
    c.until("v2 rolls out natively", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await == 5
    })
    .await;
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"spec": {"disabled": false}}),
    )
    .await;
    c.until_rollout("echo", "healthy again", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Healthy")
                && s.message.as_deref() == Some("rollout is healthy")
        })
    })
    .await;
    // As Kruise: it says so at its next looks too, not "workload deployment is
    // completed" (the last release's status is kept).
    let reconciles = c.counter("sluice_reconciles").await;
    c.until("the controller looked again", || async {
        c.counter("sluice_reconciles").await > reconciles
    })
    .await;
    assert_eq!(
        c.rollout("echo")
            .await
            .status
            .and_then(|s| s.message)
            .as_deref(),
        Some("rollout is healthy")
    );
}

/// Kruise's webhook refuses an invalid Rollout at create, naming the field.
#[tokio::test]
async fn an_invalid_rollout_is_refused_in_kruises_words() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1", 3)).await;
    let message =
        sluice_testkit::refused(&c.client, &rollout("[{weight: 60}, {weight: 20}]")).await;
    assert!(
        message.starts_with("admission webhook \"vrollout.kb.io\" denied the request: Spec.Strategy.Canary.Steps.Weight: Invalid value: ")
            && message.ends_with(": Steps.Weight must be a non decreasing sequence"),
        "{message}"
    );
    assert!(
        c.object("rollouts.kruise.io", "rollouts", "echo")
            .await
            .is_none()
    );
}

#[tokio::test]
/// Where no webhook refused it, an invalid Rollout gets a condition and an event,
/// and changes nothing.
async fn without_the_webhook_an_invalid_rollout_gets_a_condition_and_changes_nothing() {
    let c = Cluster::start_without_webhooks().await;
    c.apply(&app("barnett/canarydemo:v1", 3)).await;
    c.apply(&rollout("[{weight: 60}, {weight: 20}]")).await;
    c.until_rollout("echo", "invalid", |r| {
        condition(r, "Valid") == Some(("False".into(), "InvalidSpec".into()))
    })
    .await;
    let r = c.rollout("echo").await;
    let msg = r
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|x| x.type_ == "Valid")
        .unwrap()
        .message;
    assert!(
        msg.starts_with("Spec.Strategy.Canary.Steps.Weight: Invalid value: ")
            && msg.ends_with(": Steps.Weight must be a non decreasing sequence"),
        "{msg}"
    );
    assert_ne!(
        c.deployment("echo").await.spec.paused,
        Some(true),
        "the workload is not touched"
    );
    c.until("an event names the problem", || async {
        c.objects("", "events").await.iter().any(|e| {
            e["reason"] == "InvalidSpec"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Steps.Weight must be a non decreasing sequence"))
        })
    })
    .await;
}

#[tokio::test]
async fn a_failing_strategy_pauses_its_rollout_only() {
    let c = Cluster::start().await;
    // Two teams' workloads in one namespace: one Rollout names a module that
    // cannot be loaded, its neighbour runs the built-in steps.
    c.apply(&app("barnett/canarydemo:v1", 3)).await;
    let broken = rollout("[{weight: 20, pause: {}}]").replace(
        "metadata: {name: echo}",
        "metadata: {name: echo, annotations: {strategy.sluice.dev/module: 'builtin:missing'}}",
    );
    c.apply(&broken).await;
    c.apply(&support::cluster::deployment_yaml(
        "neighbour",
        "barnett/canarydemo:v1",
        3,
    ))
    .await;
    c.apply(
        "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: neighbour}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: neighbour}}\n  strategy: {canary: {steps: [{replicas: 1, pause: {}}]}}\n",
    )
    .await;
    c.until_healthy("echo").await;
    c.until_healthy("neighbour").await;
    for name in ["echo", "neighbour"] {
        c.until_governed("apps", "deployments", name).await;
    }
    c.apply(&deployment("barnett/canarydemo:v2", 3)).await;
    c.apply(&support::cluster::deployment_yaml(
        "neighbour",
        "barnett/canarydemo:v2",
        3,
    ))
    .await;
    c.until_rollout("echo", "strategy failed", |r| {
        condition(r, "StrategyReady")
            .is_some_and(|(s, reason)| s == "False" && reason == "ModuleNotFound")
    })
    .await;
    // The neighbour's release goes on: its canary runs, its step waits for a person.
    c.until_paused_at("neighbour", 1).await;
    assert_eq!(
        condition(&c.rollout("neighbour").await, "StrategyReady"),
        Some(("True".to_owned(), "Decided".to_owned())),
        "the neighbour's strategy decides"
    );
    // A reconcile writes its status after its other writes: by the time the failure
    // is reported, a canary made for it would exist. None was.
    let canaries: Vec<String> = c
        .canary_deployments()
        .await
        .iter()
        .filter_map(|d| d.pointer("/metadata/labels/rollouts.kruise.io~1canary-deployment"))
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(canaries, ["neighbour"], "only the neighbour has a canary");
    assert_eq!(
        c.ready_pods_with("barnett/canarydemo:v2").await,
        1,
        "the neighbour's one canary pod only"
    );
    // Fixing the annotation lets the same rollout go on.
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"metadata": {"annotations": {"strategy.sluice.dev/module": "builtin:steps"}}}),
    )
    .await;
    c.until_paused_at("echo", 1).await;
}

#[tokio::test]
async fn a_workload_that_does_not_exist_yet() {
    let c = Cluster::start().await;
    c.apply(&rollout("[{weight: 20, pause: {}}]")).await;
    c.until_rollout("echo", "workload not found", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Initial")
                && s.message.as_deref() == Some("Workload Not Found")
        })
    })
    .await;
    c.apply(&app("barnett/canarydemo:v1", 2)).await;
    c.until_healthy("echo").await;
}

/// Kruise's "Disabled rollout tests": a second Rollout of a workload is refused at
/// create, in Kruise's words.
#[tokio::test]
async fn a_second_rollout_on_the_same_workload_is_refused() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 2).await;
    let second = rollout("[{weight: 20, pause: {}}]")
        .replace("metadata: {name: echo}", "metadata: {name: echo-2}");
    assert_eq!(
        sluice_testkit::refused(&c.client, &second).await,
        format!(
            "admission webhook \"vrollout.kb.io\" denied the request: Conflict Checker: Invalid value: \"echo-2\": This rollout conflict with Rollout({}/echo), one workload only have less than one Rollout",
            c.ns()
        )
    );
    // Disabled, the first still holds the workload for this rule.
    c.patch(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        "echo",
        json!({"spec": {"disabled": true}}),
    )
    .await;
    assert!(
        sluice_testkit::refused(&c.client, &second)
            .await
            .contains(&format!(
                "This rollout conflict with Rollout({}/echo)",
                c.ns()
            ))
    );
}

/// Where no webhook refused it, the second Rollout is reported invalid and the
/// first keeps the workload.
#[tokio::test]
async fn without_the_webhook_a_second_rollout_is_reported_and_changes_nothing() {
    let c = Cluster::start_without_webhooks().await;
    c.apply(&app("barnett/canarydemo:v1", 2)).await;
    c.apply(&rollout("[{weight: 20, pause: {}}]")).await;
    c.until_healthy("echo").await;
    c.apply(
        &rollout("[{weight: 20, pause: {}}]")
            .replace("metadata: {name: echo}", "metadata: {name: echo-2}"),
    )
    .await;
    c.until_rollout("echo-2", "conflict", |r| {
        condition(r, "Valid").is_some_and(|(s, _)| s == "False")
    })
    .await;
    let r = c.rollout("echo-2").await;
    let msg = r
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|x| x.type_ == "Valid")
        .unwrap()
        .message;
    assert_eq!(
        msg,
        format!(
            "Conflict Checker: Invalid value: \"echo-2\": This rollout conflict with Rollout({}/echo), one workload only have less than one Rollout",
            c.ns()
        )
    );
    assert_eq!(condition(&c.rollout("echo").await, "Valid"), None);
}

#[tokio::test]
async fn the_demo_replays_the_walkthrough() {
    let mut out = Vec::new();
    sluice::demo::run(
        sluice::demo::DemoOptions {
            requests: 300,
            interactive: false,
        },
        &mut out,
    )
    .await
    .expect("the demo runs");
    let text = String::from_utf8(out).expect("utf-8");
    for want in [
        "rollout: phase Healthy, step 1 Completed — \"workload deployment is completed\"",
        "50 x \"Demo: V1\"",
        "step 1 StepPaused — \"Rollout is in step(1/1), and you need manually confirm to enter the next step\"",
        "pods ready: 5 x v1, 1 x v2",
        "Succeeded=False — \"Rollout progressing has been canceled\"",
        "100 x \"Demo: V1\"",
        "Succeeded=True — \"Rollout progressing has been completed\"",
        "100 x \"Demo: V2\"",
        "canary Service and Ingress removed: yes; stable Service selector unpinned: yes",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

/// The names of the pods running `image`, sorted.
async fn pods_of(c: &Cluster, image: &str) -> Vec<String> {
    let mut names: Vec<String> = c
        .pods_with(image)
        .await
        .iter()
        .filter_map(|p| {
            p.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// KubeVela's "Kruise Rollout" page on the objects KubeVela renders for it
/// (examples/canary-demo): v1 of five pods; v2 a one-pod canary with a fifth of
/// the traffic, waiting for approval; `vela workflow rollback` (v1 applied
/// again) brings V1 back everywhere on the original pods; v2 again, approved as
/// `vela workflow resume` does, is V2 everywhere.
#[tokio::test]
async fn the_seed_walkthrough_on_the_objects_kubevela_renders() {
    let c = Cluster::start().await;
    let file = |name: &str| {
        let path = support::workspace().join("examples/canary-demo").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let (host, path) = ("canary-demo.com", "/version");
    let (v1, v2) = ("barnett/canarydemo:v1", "barnett/canarydemo:v2");
    c.apply(&file("v1.yaml")).await;
    c.apply(&file("rollout.yaml")).await;
    c.until_healthy("canary-demo").await;
    c.until_governed("apps", "deployments", "canary-demo").await;
    c.until("five v1 pods", || async {
        c.ready_pods_with(v1).await == 5
    })
    .await;
    assert_eq!(c.share(host, path, 20, "Demo: V1").await, 20);
    let original = pods_of(&c, v1).await;

    c.apply(&file("v2.yaml")).await;
    c.until_paused_at("canary-demo", 1).await;
    let r = c.rollout("canary-demo").await;
    assert_eq!(
        r.status.as_ref().and_then(|s| s.message.as_deref()),
        Some("Rollout is in step(1/1), and you need manually confirm to enter the next step")
    );
    assert_eq!(c.ready_pods_with(v2).await, 1);
    assert_eq!(c.ready_pods_with(v1).await, 5);
    assert_eq!(c.canary_weight("canary-demo").await.as_deref(), Some("20"));
    let n = 400;
    let hits = c.share(host, path, n, "Demo: V2").await;
    assert!(
        within_binomial(hits, n, 0.2),
        "{hits} of {n} answered V2 at weight 20"
    );

    // `vela workflow rollback`: the previous revision's Deployment, v1, again.
    c.apply(&file("v1.yaml")).await;
    c.until_rollout("canary-demo", "canceled", |r| {
        condition(r, "Succeeded") == Some(("False".into(), String::new()))
    })
    .await;
    c.until("the canary pod is gone", || async {
        pods_of(&c, v2).await.is_empty()
    })
    .await;
    assert_eq!(
        pods_of(&c, v1).await,
        original,
        "the v1 pods were not restarted"
    );
    assert_eq!(c.canary_weight("canary-demo").await, None);
    assert_eq!(c.share(host, path, 50, "Demo: V1").await, 50);

    // v2 again; `vela workflow resume` approves the paused step.
    c.apply(&file("v2.yaml")).await;
    c.until_paused_at("canary-demo", 1).await;
    c.approve("canary-demo").await;
    c.until_rollout("canary-demo", "succeeded", |r| {
        condition(r, "Succeeded") == Some(("True".into(), String::new()))
    })
    .await;
    c.until("five v2 pods and no v1", || async {
        c.ready_pods_with(v2).await == 5 && pods_of(&c, v1).await.is_empty()
    })
    .await;
    assert_eq!(c.share(host, path, 50, "Demo: V2").await, 50);
}

#[tokio::test]
async fn the_kubevela_trait_legacy_type_nginx_routes_through_the_ingress_named_like_the_service() {
    let c = Cluster::start().await;
    c.apply(&app("barnett/canarydemo:v1", 5)).await;
    c.apply(&rollout("[{weight: 20, pause: {}}]").replace(
        "{service: echo, gracePeriodSeconds: 0, ingress: {name: echo}}",
        "{service: echo, gracePeriodSeconds: 0, type: nginx}",
    ))
    .await;
    c.until_healthy("echo").await;
    c.until_governed("apps", "deployments", "echo").await;
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until_paused_at("echo", 1).await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("20"));
}

/// Kruise's webhook forbids changing the traffic routing while a release runs.
#[tokio::test]
async fn the_traffic_routing_cannot_change_mid_release() {
    let c = Cluster::start().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 3).await;
    c.apply(&deployment("barnett/canarydemo:v2", 3)).await;
    c.until_paused_at("echo", 1).await;
    let changed = rollout("[{weight: 20, pause: {}}]")
        .replace("ingress: {name: echo}", "ingress: {name: other}");
    assert_eq!(
        sluice_testkit::refused(&c.client, &changed).await,
        "admission webhook \"vrollout.kb.io\" denied the request: Spec.Strategy.Canary.TrafficRoutings: Forbidden: Rollout 'Strategy.Canary.TrafficRoutings' field is immutable"
    );
    // The steps may change: the step runs again with the new weight, then waits.
    c.apply(&rollout("[{weight: 30, pause: {}}]")).await;
    c.until_rollout("echo", "the new plan paused at step 1", |r| {
        let hash = sluice::kruise::hash::plan_hash(r);
        r.status
            .as_ref()
            .and_then(|s| s.canary_status.as_ref())
            .is_some_and(|c| c.rollout_hash == hash && c.current_step_state == "StepPaused")
    })
    .await;
    assert_eq!(c.canary_weight("echo").await.as_deref(), Some("30"));
    c.approve("echo").await;
    c.until_healthy("echo").await;
}

#[tokio::test]
/// Where no webhook refused it, a changed traffic routing stops the release where
/// it is, until it is changed back.
async fn without_the_webhook_a_changed_traffic_routing_stops_the_release() {
    let c = Cluster::start_without_webhooks().await;
    v1_healthy(&c, "[{weight: 20, pause: {}}]", 3).await;
    // What the webhook would have done: the new template arrives paused.
    c.apply(&deployment("barnett/canarydemo:v2", 3).replacen(
        "spec:\n  replicas:",
        "spec:\n  paused: true\n  replicas:",
        1,
    ))
    .await;
    c.until_paused_at("echo", 1).await;
    c.apply(
        &rollout("[{weight: 20, pause: {}}]")
            .replace("ingress: {name: echo}", "ingress: {name: other}"),
    )
    .await;
    c.until_rollout("echo", "invalid", |r| {
        condition(r, "Valid").is_some_and(|(s, _)| s == "False")
    })
    .await;
    let r = c.rollout("echo").await;
    let msg = r
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|x| x.type_ == "Valid")
        .unwrap()
        .message;
    assert!(
        msg.contains("are immutable while the rollout is progressing"),
        "{msg}"
    );
    assert_eq!(
        c.canary_weight("echo").await.as_deref(),
        Some("20"),
        "the release is left as it was"
    );
    c.apply(&rollout("[{weight: 20, pause: {}}]")).await;
    c.until_rollout("echo", "valid again", |r| condition(r, "Valid").is_none())
        .await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
}

/// Kruise's "V1->V2: Percentage 20%,40%, and scale down replicas from(10) -> to(5)"
/// (test/e2e/rollout_test.go): the canary keeps its pods when the workload shrinks.
/// (Kruise's first two steps wait ten seconds each; here none.)
#[tokio::test]
async fn v1_v2_percentage_20_40_and_scale_down_replicas_from_10_to_5() {
    let c = Cluster::start().await;
    v1_healthy(
        &c,
        "[{weight: 20, pause: {duration: 0}}, {weight: 40, pause: {duration: 0}}, {weight: 60, pause: {}}, {weight: 100, pause: {duration: 0}}]",
        10,
    )
    .await;
    c.apply(&deployment("barnett/canarydemo:v2", 10)).await;
    c.until_paused_at("echo", 3).await;
    let canary = |r: sluice::kruise::v1alpha1::Rollout| {
        r.status
            .and_then(|s| s.canary_status)
            .expect("canary status")
    };
    let at_step_3 = canary(c.rollout("echo").await);
    assert_eq!(
        (at_step_3.canary_replicas, at_step_3.canary_ready_replicas),
        (6, 6)
    );
    c.apply(&deployment("barnett/canarydemo:v2", 5)).await;
    c.until("the stable Deployment has 5 ready pods", || async {
        c.ready_pods_with("barnett/canarydemo:v1").await == 5
    })
    .await;
    // The controller saw the smaller workload: it reconciled after it.
    let reconciles = c.counter("sluice_reconciles").await;
    c.until("the controller looked again", || async {
        c.counter("sluice_reconciles").await > reconciles
    })
    .await;
    let after = canary(c.rollout("echo").await);
    assert_eq!(
        (after.current_step_index, after.current_step_state.as_str()),
        (3, "StepPaused")
    );
    assert_eq!((after.canary_replicas, after.canary_ready_replicas), (6, 6));
    assert_eq!(after.pod_template_hash, at_step_3.pod_template_hash);
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 6);
    c.approve("echo").await;
    c.until_healthy("echo").await;
    assert_clean(&c, "barnett/canarydemo:v2", 5).await;
}
