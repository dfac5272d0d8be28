//! Kruise's table of its workload webhook (pkg/webhook/workload/mutating/
//! workload_update_handler_test.go, v0.6.2), case by case, and the cases its code
//! implies: which updates hold a workload for a release, and how.

use serde_json::{Value, json};

use super::*;

fn deployment(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echoserver", "namespace": "default", "uid": "281ba6f7-ff28-4779-940b-e966640c201f",
                     "labels": {"rollouts.kruise.io/workload-type": "deployment"}},
        "spec": {"selector": {"matchLabels": {"app": "echoserver"}},
                 "template": {"metadata": {"labels": {"app": "echoserver"}},
                              "spec": {"containers": [{"name": "echoserver", "image": image}]}}},
    })
}

fn replica_set(hash: &str, image: &str, replicas: i64, revision: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("echoserver-{hash}"), "namespace": "default",
                     "labels": {"app": "echoserver", "pod-template-hash": hash},
                     "annotations": {"deployment.kubernetes.io/revision": revision},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "echoserver",
                                          "uid": "281ba6f7-ff28-4779-940b-e966640c201f", "controller": true}]},
        "spec": {"replicas": replicas,
                 "template": {"metadata": {"labels": {"app": "echoserver", "pod-template-hash": hash}},
                              "spec": {"containers": [{"name": "echoserver", "image": image}]}}},
    })
}

fn rollout(kind: &str, api_version: &str, name: &str, extra: Value) -> Rollout {
    let mut r = json!({
        "apiVersion": "rollouts.kruise.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "rollout-demo", "namespace": "default"},
        "spec": {"objectRef": {"workloadRef": {"apiVersion": api_version, "kind": kind, "name": name}},
                 "strategy": {"canary": {"steps": [{"weight": 20}]}}},
    });
    json_patch::merge(&mut r, &extra);
    serde_json::from_value(r).expect("rollout")
}

fn kind(api_version: &str, kind: &str) -> Kind {
    crate::workload::for_ref(api_version, kind).expect("a registered kind")
}

fn in_progress(mut d: Value, value: &str) -> Value {
    d["metadata"]["annotations"][IN_PROGRESSING] = json!(value);
    d
}

const HELD: &str = r#"{"rolloutName":"rollout-demo"}"#;

/// A Deployment released in place mid-release: paused, `Recreate`, Kruise's
/// strategy annotation saving `rolling_update`.
fn in_place(rolling_update: Value) -> Value {
    let mut d = in_progress(deployment("echoserver:v2"), HELD);
    d["spec"]["paused"] = json!(true);
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    d["metadata"]["annotations"][crate::workload::STRATEGY_ANNOTATION] = json!(
        json!({"rollingStyle": "Partition", "rollingUpdate": rolling_update, "partition": "20%"})
            .to_string()
    );
    d
}

#[test]
fn kruise_deployment_cases() {
    let deploy = kind("apps/v1", "Deployment");
    let matched = rollout("Deployment", "apps/v1", "echoserver", json!({}));
    let in_place_rollout = rollout(
        "Deployment",
        "apps/v1",
        "echoserver",
        json!({"metadata": {"annotations": {"rollouts.kruise.io/rolling-style": "partition"}}}),
    );
    let routed = rollout(
        "Deployment",
        "apps/v1",
        "echoserver",
        json!({"spec": {"strategy": {"canary": {"trafficRoutings": [{"service": "echoserver", "ingress": {"name": "echoserver"}}]}}}}),
    );
    let v1_set = [replica_set("5b494f7bf", "echoserver:v1", 5, "1")];
    let two_sets = [
        replica_set("5b494f7bf", "echoserver:v1", 5, "1"),
        replica_set("6c5f8dd9c", "echoserver:v2", 2, "2"),
    ];
    let with_id = |image: &str, id: &str| {
        let mut d = deployment(image);
        d["metadata"]["annotations"][ROLLOUT_ID] = json!(id);
        d
    };
    /// (Kruise's name, old, new, rollouts, replica sets, the object written)
    type Case<'a> = (
        &'a str,
        Value,
        Value,
        Vec<Rollout>,
        &'a [Value],
        Option<Value>,
    );
    let cases: Vec<Case> = vec![
        (
            "deployment image v1->v2, matched rollout",
            deployment("echoserver:v1"),
            deployment("echoserver:v2"),
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["metadata"]["labels"]["rollouts.kruise.io/stable-revision"] = json!("5b494f7bf");
                d
            }),
        ),
        (
            "deployment image v1->v2, no matched rollout",
            deployment("echoserver:v1"),
            deployment("echoserver:v2"),
            vec![rollout("Deployment", "apps/v1", "other", json!({}))],
            &v1_set,
            None,
        ),
        (
            "deployment image v2->v3, matched rollout, but multiple rss",
            deployment("echoserver:v2"),
            deployment("echoserver:v3"),
            vec![routed.clone()],
            &two_sets,
            None,
        ),
        (
            "set deployment paused = false, matched rollout, in progressing, reject",
            in_progress(deployment("echoserver:v2"), HELD),
            {
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(false);
                d
            },
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d
            }),
        ),
        (
            "set deployment paused = false, matched rollout, in finalising, allow",
            in_progress(
                deployment("echoserver:v2"),
                r#"{"rolloutName":"rollout-demo","RolloutDone":true}"#,
            ),
            {
                let mut d = in_progress(
                    deployment("echoserver:v2"),
                    r#"{"rolloutName":"rollout-demo","RolloutDone":true}"#,
                );
                d["spec"]["paused"] = json!(false);
                d
            },
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(
                    deployment("echoserver:v2"),
                    r#"{"rolloutName":"rollout-demo","RolloutDone":true}"#,
                );
                d["spec"]["paused"] = json!(true);
                d
            }),
        ),
        (
            "rolloutId and podTemplateSpec changed",
            with_id("echoserver:v1", "v1"),
            with_id("echoserver:v2", "v2"),
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(with_id("echoserver:v2", "v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["metadata"]["labels"]["rollouts.kruise.io/stable-revision"] = json!("5b494f7bf");
                d
            }),
        ),
        (
            "rolloutId change, and podTemplateSpec no change",
            with_id("echoserver:v1", "v1"),
            with_id("echoserver:v1", "v2"),
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(with_id("echoserver:v1", "v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d
            }),
        ),
        (
            "rolloutId no change, and podTemplateSpec change",
            with_id("echoserver:v1", "v1"),
            with_id("echoserver:v2", "v1"),
            vec![matched.clone()],
            &v1_set,
            None,
        ),
        (
            "partition style, in progressing: a rolling update written meanwhile is kept for later, Recreate and paused stay",
            in_place(json!({"maxSurge": "25%", "maxUnavailable": "25%"})),
            {
                let mut d = in_place(json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
                d["spec"]["paused"] = json!(false);
                d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
                d
            },
            vec![in_place_rollout.clone()],
            &v1_set,
            Some(in_place(json!({"maxSurge": 1, "maxUnavailable": 0}))),
        ),
        (
            "partition style, in progressing: the controller's own hold (Recreate, the strategy annotation) goes through",
            {
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
                d
            },
            in_place(json!({"maxSurge": "25%", "maxUnavailable": "25%"})),
            vec![in_place_rollout.clone()],
            &v1_set,
            None,
        ),
        (
            "a disabled Rollout does not hold its workload",
            deployment("echoserver:v1"),
            deployment("echoserver:v2"),
            vec![{
                let mut r = matched.clone();
                r.status = Some(crate::kruise::v1alpha1::RolloutStatus {
                    phase: Some("Disabled".into()),
                    ..Default::default()
                });
                r
            }],
            &v1_set,
            None,
        ),
        (
            "a Deployment scaled to zero is not held",
            deployment("echoserver:v1"),
            {
                let mut d = deployment("echoserver:v2");
                d["spec"]["replicas"] = json!(0);
                d
            },
            vec![matched.clone()],
            &v1_set,
            None,
        ),
        (
            "a change that is not the template (a scale) is not a release",
            deployment("echoserver:v1"),
            {
                let mut d = deployment("echoserver:v1");
                d["spec"]["replicas"] = json!(10);
                d
            },
            vec![matched.clone()],
            &v1_set,
            None,
        ),
        (
            "a Recreate strategy set mid-release goes back to the old strategy",
            {
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["spec"]["strategy"] = json!({"type": "RollingUpdate"});
                d
            },
            {
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["spec"]["strategy"] = json!({"type": "Recreate"});
                d
            },
            vec![matched.clone()],
            &v1_set,
            Some({
                let mut d = in_progress(deployment("echoserver:v2"), HELD);
                d["spec"]["paused"] = json!(true);
                d["spec"]["strategy"] = json!({"type": "RollingUpdate"});
                d
            }),
        ),
    ];
    for (name, old, new, rollouts, sets, want) in cases {
        assert_eq!(mutate(deploy, &old, &new, &rollouts, sets), want, "{name}");
    }
}

#[test]
fn the_stable_revision_is_the_oldest_live_replica_set_of_another_template() {
    let deploy = kind("apps/v1", "Deployment");
    let matched = rollout("Deployment", "apps/v1", "echoserver", json!({}));
    // Revision 1 scaled away, revision 2 running, revision 3 the new template.
    let sets = [
        replica_set("aaaaaaaaa", "echoserver:v0", 0, "1"),
        replica_set("bbbbbbbbb", "echoserver:v1", 5, "2"),
    ];
    let held = mutate(
        deploy,
        &deployment("echoserver:v1"),
        &deployment("echoserver:v2"),
        &[matched],
        &sets,
    )
    .expect("held");
    assert_eq!(
        held.pointer("/metadata/labels/rollouts.kruise.io~1stable-revision"),
        Some(&json!("bbbbbbbbb"))
    );
}

fn cloneset(image: &str, status: Value) -> Value {
    json!({
        "apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
        "metadata": {"name": "echoserver", "namespace": "default"},
        "spec": {"replicas": 5, "updateStrategy": {"paused": false},
                 "template": {"metadata": {"labels": {"app": "echoserver"}},
                              "spec": {"containers": [{"name": "echoserver", "image": image}]}}},
        "status": status,
    })
}

#[test]
fn kruise_cloneset_and_statefulset_cases() {
    let cs = kind("apps.kruise.io/v1alpha1", "CloneSet");
    let matched = rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "echoserver",
        json!({}),
    );
    let settled = json!({"replicas": 5, "updatedReplicas": 5});
    let held = mutate(
        cs,
        &cloneset("echoserver:v1", settled.clone()),
        &cloneset("echoserver:v2", settled.clone()),
        std::slice::from_ref(&matched),
        &[],
    )
    .expect("cloneSet image v1->v2, matched rollout");
    assert_eq!(
        held.pointer("/spec/updateStrategy/partition"),
        Some(&json!("100%"))
    );
    assert_eq!(
        held.pointer("/spec/updateStrategy/paused"),
        Some(&json!(false))
    );
    assert_eq!(
        held.pointer("/metadata/annotations/rollouts.kruise.io~1in-progressing"),
        Some(&json!(HELD))
    );
    // With traffic routing, a CloneSet still rolling out is not held.
    let routed = rollout(
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        "echoserver",
        json!({"spec": {"strategy": {"canary": {"trafficRoutings": [{"service": "echoserver", "ingress": {"name": "echoserver"}}]}}}}),
    );
    let rolling = json!({"replicas": 5, "updatedReplicas": 2});
    assert_eq!(
        mutate(
            cs,
            &cloneset("echoserver:v1", rolling.clone()),
            &cloneset("echoserver:v2", rolling),
            &[routed],
            &[]
        ),
        None
    );

    let sts = kind("apps/v1", "StatefulSet");
    let statefulset = |image: &str, strategy: Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "echoserver", "namespace": "default"},
            "spec": {"replicas": 10, "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "echoserver"}},
                                  "spec": {"containers": [{"name": "echoserver", "image": image}]}}},
        })
    };
    let matched = rollout("StatefulSet", "apps/v1", "echoserver", json!({}));
    let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 7}});
    let held = mutate(
        sts,
        &statefulset("echoserver:v1", rolling.clone()),
        &statefulset("echoserver:v2", rolling),
        std::slice::from_ref(&matched),
        &[],
    )
    .expect("statefulSet image v1->v2, matched rollout");
    assert_eq!(
        held.pointer("/spec/updateStrategy/rollingUpdate/partition"),
        Some(&json!(32767))
    );
    // A new template mid-release (a continuous release at partition 3) is held
    // again in the same request, as Kruise's webhook does: left at 3, the
    // StatefulSet controller would update ordinals 3 and up to it at once.
    let mid = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 3}});
    let held = mutate(
        sts,
        &in_progress(statefulset("echoserver:v2", mid.clone()), HELD),
        &in_progress(statefulset("echoserver:v3", mid), HELD),
        std::slice::from_ref(&matched),
        &[],
    )
    .expect("statefulSet image v2->v3 mid-release, held again");
    assert_eq!(
        held.pointer("/spec/updateStrategy/rollingUpdate/partition"),
        Some(&json!(32767))
    );
    // No update strategy written: the partition is made.
    let held = mutate(
        sts,
        &statefulset("echoserver:v1", Value::Null),
        &statefulset("echoserver:v2", Value::Null),
        std::slice::from_ref(&matched),
        &[],
    )
    .expect("held");
    assert_eq!(
        held.pointer("/spec/updateStrategy"),
        Some(&json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 32767}}))
    );
    // Updated on delete: nothing to hold.
    let on_delete = json!({"type": "OnDelete"});
    assert_eq!(
        mutate(
            sts,
            &statefulset("echoserver:v1", on_delete.clone()),
            &statefulset("echoserver:v2", on_delete),
            &[matched],
            &[]
        ),
        None
    );
}
