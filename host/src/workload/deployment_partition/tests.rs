use serde_json::json;

use super::*;

/// A ReplicaSet: `name`, revision, `spec.replicas`, available pods; the new
/// template's when `name` starts with "new"; sized for 5 replicas.
fn rs(name: &str, revision: i64, replicas: u32, available: u32) -> ReplicaSetView {
    ReplicaSetView {
        name: name.to_owned(),
        hash: format!("{name}-hash"),
        revision,
        replicas,
        available,
        current: name.starts_with("new"),
        sized_for: Some(5),
    }
}

fn sized_for(mut s: ReplicaSetView, replicas: u32) -> ReplicaSetView {
    s.sized_for = Some(replicas);
    s
}

fn bounds(replicas: u32, limit: u32) -> Bounds {
    // 25% each, as a Deployment has them by default: surge rounded up, unavailable down.
    Bounds {
        replicas,
        limit,
        max_surge: (replicas * 25).div_ceil(100),
        max_unavailable: replicas * 25 / 100,
    }
}

fn resize(pairs: &[(&str, u32)]) -> Option<Move> {
    Some(Move::Resize(
        pairs
            .iter()
            .map(|(n, r)| Resize {
                name: (*n).to_owned(),
                replicas: *r,
            })
            .collect(),
    ))
}

#[test]
fn replica_sets_move_as_kruises_advanced_deployment_controller_moves_them() {
    let cases: Vec<(&str, Vec<ReplicaSetView>, Bounds, Option<Move>)> = vec![
        (
            "the first step makes the new ReplicaSet with the step's pods",
            vec![rs("old", 1, 5, 5)],
            bounds(5, 1),
            Some(Move::Create(1)),
        ),
        (
            "without surge the new ReplicaSet still starts with a pod (Kruise's lower bound)",
            vec![rs("old", 1, 5, 5)],
            Bounds {
                max_surge: 0,
                max_unavailable: 1,
                ..bounds(5, 1)
            },
            Some(Move::Create(1)),
        ),
        (
            "an abandoned release's pods go before the stable ones: the newest old ReplicaSet shrinks first",
            vec![rs("v1", 1, 2, 2), rs("v2", 2, 3, 3), rs("new", 3, 3, 3)],
            Bounds {
                max_unavailable: 1,
                ..bounds(5, 3)
            },
            resize(&[("v2", 0)]),
        ),
        (
            "an old pod goes while the new one starts, as far as maxUnavailable allows",
            vec![rs("old", 1, 5, 5), rs("new", 2, 1, 0)],
            bounds(5, 1),
            resize(&[("old", 4)]),
        ),
        (
            "nothing goes when that would leave fewer than replicas - maxUnavailable available",
            vec![rs("old", 1, 4, 3), rs("new", 2, 1, 0)],
            bounds(5, 1),
            None,
        ),
        (
            "the next step grows the new ReplicaSet first, within the surge",
            vec![rs("old", 1, 4, 4), rs("new", 2, 1, 1)],
            bounds(5, 3),
            resize(&[("new", 3)]),
        ),
        (
            "then the old shrinks by what availability allows, not yet to what the step leaves",
            vec![rs("old", 1, 4, 4), rs("new", 2, 3, 1)],
            bounds(5, 3),
            resize(&[("old", 3)]),
        ),
        (
            "unavailable old pods go before available ones, the oldest ReplicaSet first",
            vec![rs("older", 1, 1, 0), rs("old", 2, 4, 4), rs("new", 3, 2, 2)],
            bounds(5, 2),
            resize(&[("older", 0), ("old", 3)]),
        ),
        (
            "at the step nothing moves",
            vec![rs("old", 1, 3, 3), rs("new", 2, 2, 2)],
            bounds(5, 2),
            None,
        ),
        (
            "the new ReplicaSet never shrinks for the step (the partition only rises)",
            vec![rs("old", 1, 2, 2), rs("new", 2, 3, 3)],
            bounds(5, 2),
            None,
        ),
        (
            "every pod new: the old ReplicaSets are empty and nothing moves",
            vec![rs("old", 1, 0, 0), rs("new", 2, 5, 5)],
            bounds(5, 5),
            None,
        ),
        (
            "scaled from 5 to 10 at 20%: both ReplicaSets double (Kruise's scaling case: 2 new pods)",
            vec![rs("old", 1, 4, 4), rs("new", 2, 1, 1)],
            bounds(10, 2),
            resize(&[("old", 8), ("new", 2)]),
        ),
        (
            "scaled back from 10 to 5: both halve (1 new pod), the new one shrinking with it",
            vec![
                sized_for(rs("old", 1, 8, 8), 10),
                sized_for(rs("new", 2, 2, 2), 10),
            ],
            bounds(5, 1),
            resize(&[("old", 4), ("new", 1)]),
        ),
        (
            "a ReplicaSet never sized for the Deployment is no sign of a scale",
            vec![
                ReplicaSetView {
                    sized_for: None,
                    ..rs("old", 1, 4, 4)
                },
                rs("new", 2, 1, 1),
            ],
            bounds(5, 1),
            None,
        ),
        (
            "fewer old pods than the step leaves: the largest old ReplicaSet gets them",
            vec![rs("old", 1, 2, 2), rs("new", 2, 1, 1)],
            bounds(5, 1),
            resize(&[("old", 4)]),
        ),
    ];
    for (name, sets, b, want) in cases {
        assert_eq!(moves(&sets, b), want, "{name}");
    }
}

#[test]
fn the_partition_limits_new_pods_as_kruise_does() {
    for (partition, replicas, want) in [
        (json!("20%"), 5, 1),
        (json!("40%"), 5, 2),
        // A share short of the whole leaves one old pod.
        (json!("90%"), 5, 4),
        (json!("99%"), 200, 198),
        (json!("100%"), 5, 5),
        (json!("50%"), 1, 1),
        (json!(3), 5, 3),
        (json!(7), 5, 5),
        (json!(0), 5, 0),
        (json!("0%"), 5, 0),
        (json!(null), 5, 0),
    ] {
        assert_eq!(
            limit_of(&partition, replicas),
            want,
            "{partition} of {replicas}"
        );
    }
}

#[test]
fn rolling_bounds_default_to_a_quarter_and_are_never_both_zero() {
    assert_eq!(rolling_bounds(None, 5), (2, 1));
    assert_eq!(
        rolling_bounds(Some(&json!({"maxSurge": 1, "maxUnavailable": 0})), 5),
        (1, 0)
    );
    assert_eq!(
        rolling_bounds(
            Some(&json!({"maxSurge": "50%", "maxUnavailable": "50%"})),
            5
        ),
        (3, 2)
    );
    assert_eq!(
        rolling_bounds(Some(&json!({"maxSurge": 0, "maxUnavailable": 0})), 5),
        (0, 1)
    );
}

#[test]
fn a_made_replica_set_hash_follows_the_template_not_its_hash_label() {
    let t = json!({"metadata": {"labels": {"app": "echo"}}, "spec": {"containers": [{"name": "e", "image": "v2"}]}});
    let mut labelled = t.clone();
    labelled["metadata"]["labels"]["pod-template-hash"] = json!("abc");
    let h = pod_template_hash(&t);
    assert_eq!(h, pod_template_hash(&labelled));
    let mut other = t.clone();
    other["spec"]["containers"][0]["image"] = json!("v3");
    assert_ne!(h, pod_template_hash(&other));
}
