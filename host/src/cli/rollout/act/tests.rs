use serde_json::json;

use super::*;

fn rollout(state: &str, paused: bool) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "rollouts.kruise.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "echo", "namespace": "default", "resourceVersion": "42"},
        "spec": {
            "objectRef": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "echo"}},
            "strategy": {"paused": paused, "canary": {"steps": [{"weight": 20}, {"weight": 60}]}},
        },
        "status": {"phase": "Progressing", "canaryStatus": {"currentStepIndex": 1, "currentStepState": state}},
    }))
    .expect("a Rollout")
}

fn approval() -> Request {
    Request {
        target: Target::RolloutStatus,
        body: Body::Json(json!([
            {"op": "test", "path": "/status/canaryStatus/currentStepIndex", "value": 1},
            {"op": "test", "path": "/status/canaryStatus/currentStepState", "value": "StepPaused"},
            {"op": "replace", "path": "/status/canaryStatus/currentStepState", "value": "StepReady"},
        ])),
    }
}

fn paused_to(value: bool) -> Request {
    Request {
        target: Target::Rollout,
        body: Body::Merge(json!({"spec": {"strategy": {"paused": value}}})),
    }
}

#[test]
fn approve_resume_pause_promote() {
    // (state, spec paused, approve, resume, pause, promote)
    type Case = (
        &'static str,
        bool,
        Result<Request, &'static str>,
        Vec<Request>,
        Result<Request, &'static str>,
        Result<Vec<Request>, &'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "StepPaused",
            false,
            Ok(approval()),
            vec![approval()],
            Ok(paused_to(true)),
            Ok(vec![approval()]),
        ),
        (
            "StepPaused",
            true,
            Ok(approval()),
            vec![paused_to(false), approval()],
            Err("already paused"),
            Ok(vec![paused_to(false), approval()]),
        ),
        (
            "StepUpgrade",
            false,
            Err("current canary state is not 'StepPaused'"),
            vec![],
            Ok(paused_to(true)),
            Err("it moves on by itself"),
        ),
        (
            "StepUpgrade",
            true,
            Err("current canary state is not 'StepPaused'"),
            vec![paused_to(false)],
            Err("already paused"),
            Ok(vec![paused_to(false)]),
        ),
        (
            "Completed",
            false,
            Err("current canary state is not 'StepPaused'"),
            vec![],
            Ok(paused_to(true)),
            Err("no release is waiting"),
        ),
    ];
    fn check<T: PartialEq + std::fmt::Debug>(
        what: &str,
        got: Result<T, String>,
        want: &Result<T, &str>,
    ) {
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(&g, w, "{what}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{what}: {g:?} should say {w:?}"),
            (g, w) => panic!("{what}: got {g:?}, want {w:?}"),
        }
    }
    for (state, paused, approve_want, resume_want, pause_want, promote_want) in cases {
        let r = rollout(state, paused);
        let what = format!("{state}, paused {paused}");
        check(&format!("approve {what}"), approve(&r), &approve_want);
        assert_eq!(resume(&r), resume_want, "resume {what}");
        check(&format!("pause {what}"), pause(&r), &pause_want);
        check(&format!("promote {what}"), promote(&r), &promote_want);
    }
}

#[test]
fn a_rolled_back_release_keeps_step_paused_and_nothing_is_approved() {
    // As Kruise: a rollback leaves the step's state; the phase says no release runs.
    let mut r = rollout("StepPaused", false);
    r.status.as_mut().expect("status").phase = Some("Healthy".into());
    let err = approve(&r).expect_err("nothing to approve");
    assert!(
        err.contains("no release is in progress (phase 'Healthy')"),
        "{err}"
    );
    assert_eq!(resume(&r), vec![]);
    let err = promote(&r).expect_err("nothing to promote");
    assert!(err.contains("nothing to promote"), "{err}");
}

fn workload() -> Value {
    json!({
        "metadata": {"name": "echo", "resourceVersion": "7", "annotations": {REVISION: "3"}},
        "spec": {"template": {
            "metadata": {"labels": {"app": "echo"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "init:v1"}],
                "containers": [{"name": "app", "image": "demo:v3"}, {"name": "proxy", "image": "envoy:1"}],
            },
        }},
    })
}

#[test]
fn set_image_replaces_by_name_and_guards_the_index() {
    let pairs = image_pairs(&["proxy=envoy:2".into(), "init=init:v2".into()]).unwrap();
    let request = set_image(&workload(), &pairs).unwrap();
    assert_eq!(request.target, Target::Workload);
    assert_eq!(
        request.body,
        Body::Json(json!([
            {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "proxy"},
            {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "envoy:2"},
            {"op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": "init"},
            {"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": "init:v2"},
        ]))
    );
    let err = set_image(&workload(), &[("web".into(), "x".into())]).unwrap_err();
    assert!(
        err.contains("no container \"web\" (it has: app, proxy, init)"),
        "{err}"
    );
    for bad in ["app", "=x", "app="] {
        let err = image_pairs(&[bad.into()]).unwrap_err();
        assert!(err.contains("is not CONTAINER=IMAGE"), "{bad}: {err}");
    }
}

fn replica_set(revision: &str, image: &str) -> Value {
    json!({
        "metadata": {"annotations": {REVISION: revision}},
        "spec": {"template": {
            "metadata": {"labels": {"app": "echo", "pod-template-hash": format!("h{revision}")}},
            "spec": {
                "initContainers": [{"name": "init", "image": "init:v1"}],
                "containers": [{"name": "app", "image": image}, {"name": "proxy", "image": "envoy:1"}],
            },
        }},
    })
}

fn image_of(request: &Request) -> Value {
    let Body::Json(ops) = &request.body else {
        panic!("a JSON patch")
    };
    assert_eq!(
        ops[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"})
    );
    assert!(
        ops[1]["value"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    ops[1]["value"]["spec"]["containers"][0]["image"].clone()
}

#[test]
fn undo_goes_back_to_the_previous_or_the_given_revision() {
    let history = vec![
        replica_set("1", "demo:v1"),
        replica_set("2", "demo:v2"),
        replica_set("3", "demo:v3"),
    ];
    // The Deployment runs revision 3: the previous is 2.
    let (revision, request) = undo(&workload(), &history, None).unwrap();
    assert_eq!((revision, image_of(&request)), (2, json!("demo:v2")));
    let (revision, request) = undo(&workload(), &history, Some(1)).unwrap();
    assert_eq!((revision, image_of(&request)), (1, json!("demo:v1")));
    // Mid-release under a Rollout the new template has no ReplicaSet yet: the
    // previous is the latest one there is.
    let mid_release = &history[..2];
    let (revision, _) = undo(&workload(), mid_release, None).unwrap();
    assert_eq!(revision, 2);

    let err = undo(&workload(), &history, Some(9)).unwrap_err();
    assert!(
        err.contains("unable to find specified revision 9 in history (revisions: 1, 2, 3)"),
        "{err}"
    );
    let err = undo(&workload(), &history, Some(3)).unwrap_err();
    assert!(
        err.contains("revision 3 is the workload's template already"),
        "{err}"
    );
    let err = undo(&workload(), &history[2..], None).unwrap_err();
    assert!(err.contains("no rollout history found"), "{err}");
}

#[test]
fn restart_writes_the_annotation_kubectl_writes() {
    assert_eq!(
        restart("2026-12-03T13:00:00Z"),
        Request {
            target: Target::Workload,
            body: Body::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-12-03T13:00:00Z"
            }}}}})),
        }
    );
}
