//! Kruise's own validator tables (pkg/webhook/rollout/validating/
//! rollout_create_update_handler_test.go, v0.6.2), case by case, on the v1alpha1 API
//! Sluice serves; each case keeps Kruise's name. Kruise's v1beta1 cases are
//! carried over where v1alpha1 has the same rule. Kruise's tests run every case but
//! the first with the partition limit left at 30 by the previous one; the limit is
//! written out per case here.

use super::*;

/// Kruise's `rolloutV1alpha1` fixture.
const BASE: &str = r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: rollout-demo, namespace: namespace-unit-test, annotations: {}}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: deployment-demo}}
  strategy:
    canary:
      steps:
      - {weight: 10, pause: {}}
      - {weight: 30, pause: {duration: 86400}}
      - {weight: 100}
      trafficRoutings:
      - {service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}
"#;

fn rollout(yaml: &str) -> Rollout {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"))
}

/// The base with each `(from, to)` replaced once.
fn edited(edits: &[(&str, &str)]) -> Rollout {
    let mut yaml = BASE.to_owned();
    for (from, to) in edits {
        assert!(yaml.contains(from), "{from} not in the fixture");
        yaml = yaml.replacen(from, to, 1);
    }
    rollout(&yaml)
}

/// What a case expects: allowed, or refused with this path and detail.
enum Want {
    Ok,
    Refused(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
    limit: i64,
    want: Want,
}

const PARTITION: (&str, &str) = (
    "annotations: {}",
    "annotations: {rollouts.kruise.io/rolling-style: Partition}",
);
const LAST_STEP: &str = "- {weight: 100}";

fn check(case: &Case, errors: &[FieldError]) {
    match case.want {
        Want::Ok => assert!(
            errors.is_empty(),
            "{}: expected no error, got {}",
            case.name,
            aggregate(errors)
        ),
        Want::Refused(path, detail) => assert!(
            errors
                .first()
                .is_some_and(|e| e.path == path && e.detail() == detail),
            "{}: expected {path}: …{detail}, got {errors:?}",
            case.name
        ),
    }
}

#[test]
fn kruise_v1alpha1_create_cases() {
    let cases = [
        Case {
            name: "Canary style",
            edits: &[],
            limit: 50,
            want: Want::Ok,
        },
        Case {
            name: "Partition style without replicas - 1",
            edits: &[PARTITION],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[2].steps",
                "For patition style rollout: step[x].weight must not greater than replicasLimitWithTraffic if replicas is not specified",
            ),
        },
        Case {
            name: "Partition style without replicas - 2",
            edits: &[PARTITION],
            limit: 100,
            want: Want::Ok,
        },
        Case {
            name: "Partition style without replicas - 3",
            edits: &[PARTITION, (LAST_STEP, "- {weight: 32}")],
            limit: 31,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[2].steps",
                "For patition style rollout: step[x].weight must not greater than replicasLimitWithTraffic if replicas is not specified",
            ),
        },
        Case {
            name: "Partition style without replicas- 3 - canary style",
            edits: &[(LAST_STEP, "- {weight: 32}")],
            limit: 31,
            want: Want::Ok,
        },
        Case {
            name: "Partition style without replicas - 3 - cloneset",
            edits: &[
                PARTITION,
                (LAST_STEP, "- {weight: 32}"),
                (
                    "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
                    "{apiVersion: apps.kruise.io/v1alpha1, kind: CloneSet, name: whatever}",
                ),
            ],
            limit: 31,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[2].steps",
                "For patition style rollout: step[x].weight must not greater than replicasLimitWithTraffic if replicas is not specified",
            ),
        },
        Case {
            name: "Partition style with replicas - 1",
            edits: &[PARTITION, (LAST_STEP, "- {weight: 50, replicas: 32%}")],
            limit: 31,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[2].steps",
                "For patition style rollout: step[x].replicas must not greater than replicasLimitWithTraffic if traffic or matches specified",
            ),
        },
        Case {
            name: "Partition style with replicas - 2",
            edits: &[PARTITION, (LAST_STEP, "- {weight: 50, replicas: 31%}")],
            limit: 31,
            want: Want::Ok,
        },
        Case {
            name: "Partition style with replicas - 3",
            edits: &[PARTITION, (LAST_STEP, "- {replicas: 50%}")],
            limit: 30,
            want: Want::Ok,
        },
    ];
    for case in &cases {
        let errors = validate(
            &edited(case.edits),
            &[],
            Options {
                partition_limit: case.limit,
            },
        );
        check(case, &errors);
    }
}

/// Kruise's v1beta1 create cases whose rule v1alpha1 shares.
#[test]
fn kruise_create_cases_carried_over_from_v1beta1() {
    const SERVICE: &str = "service: service-demo";
    const INGRESS: &str = "name: ingress-nginx-demo";
    let cases = [
        Case {
            name: "Normal case",
            edits: &[],
            limit: 50,
            want: Want::Ok,
        },
        Case {
            name: "Canary is nil",
            edits: &[(
                "    canary:\n      steps:\n      - {weight: 10, pause: {}}\n      - {weight: 30, pause: {duration: 86400}}\n      - {weight: 100}\n      trafficRoutings:\n      - {service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}\n",
                "    paused: false\n",
            )],
            limit: 30,
            want: Want::Refused("Spec.Strategy.Canary", "Canary cannot be empty"),
        },
        Case {
            name: "Service name is empty",
            edits: &[(SERVICE, "service: ''")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.Service",
                "TrafficRouting.Service cannot be empty",
            ),
        },
        Case {
            name: "Nginx ingress name is empty",
            edits: &[(INGRESS, "name: ''")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.Ingress",
                "TrafficRouting.Ingress.Ingress cannot be empty",
            ),
        },
        Case {
            name: "Steps is empty",
            edits: &[(
                "      steps:\n      - {weight: 10, pause: {}}\n      - {weight: 30, pause: {duration: 86400}}\n      - {weight: 100}\n",
                "      steps: []\n",
            )],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps",
                "The number of Canary.Steps cannot be empty",
            ),
        },
        Case {
            name: "WorkloadRef is not Deployment kind",
            edits: &[
                (
                    "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
                    "{apiVersion: apps/v1, kind: StatefulSet, name: whatever}",
                ),
                PARTITION,
            ],
            limit: 100,
            want: Want::Ok,
        },
        Case {
            name: "Steps.Replicas is illegal value, '50'",
            edits: &[("{weight: 30, pause", "{weight: 30, replicas: '50', pause")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[1].Replicas",
                "replicas must be positive number, or a percentage with \"0%\" < canaryReplicas <= \"100%\"",
            ),
        },
        Case {
            name: "Steps.Replicas is illegal value, '101%'",
            edits: &[("{weight: 30, pause", "{weight: 30, replicas: 101%, pause")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[1].Replicas",
                "replicas must be positive number, or a percentage with \"0%\" < canaryReplicas <= \"100%\"",
            ),
        },
        Case {
            name: "Steps.Replicas is illegal value, '0%'",
            edits: &[("{weight: 30, pause", "{weight: 30, replicas: 0%, pause")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[1].Replicas",
                "replicas must be positive number, or a percentage with \"0%\" < canaryReplicas <= \"100%\"",
            ),
        },
        Case {
            name: "Steps.Traffic is illegal value, 0",
            edits: &[("{weight: 30, pause", "{weight: 0, pause")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[1].Weight",
                "weight must be positive number, and less than or equal to replicasLimitWithTraffic (defaults to 30)",
            ),
        },
        Case {
            name: "Steps.Traffic is illegal value, 101",
            edits: &[("{weight: 30, pause", "{weight: 101, pause")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps[1].Weight",
                "weight must be positive number, and less than or equal to replicasLimitWithTraffic (defaults to 30)",
            ),
        },
        Case {
            name: "Steps.Traffic is a decreasing sequence",
            edits: &[(LAST_STEP, "- {weight: 20}")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps.Weight",
                "Steps.Weight must be a non decreasing sequence",
            ),
        },
        Case {
            name: "Steps.Replicas is a decreasing sequence",
            edits: &[
                ("{weight: 10, pause", "{weight: 10, replicas: 3, pause"),
                ("{weight: 30, pause", "{weight: 30, replicas: 1, pause"),
            ],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.Steps.CanaryReplicas",
                "Steps.CanaryReplicas must be a non decreasing sequence",
            ),
        },
        Case {
            name: "A count beside a percentage is not compared",
            edits: &[("{weight: 30, pause", "{weight: 30, replicas: 1, pause")],
            limit: 30,
            want: Want::Ok,
        },
        Case {
            name: "Negative grace period",
            edits: &[(SERVICE, "service: service-demo, gracePeriodSeconds: -1")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.GracePeriodSeconds",
                "TrafficRouting.GracePeriodSeconds cannot be negative",
            ),
        },
        Case {
            name: "No ingress, gateway or custom reference",
            edits: &[(
                ", ingress: {classType: nginx, name: ingress-nginx-demo}",
                "",
            )],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.TrafficRoutings",
                "TrafficRoutings are not set",
            ),
        },
        Case {
            name: "Gateway without an HTTPRoute",
            edits: &[(
                "ingress: {classType: nginx, name: ingress-nginx-demo}",
                "gateway: {}",
            )],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.Gateway",
                "TrafficRouting.Gateway must set the name of HTTPRoute or HTTPsRoute",
            ),
        },
        Case {
            name: "Two traffic routings",
            edits: &[(
                "      - {service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}\n",
                "      - {service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}\n      - {service: other, gateway: {httpRouteName: other}}\n",
            )],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary",
                "Rollout currently only support single TrafficRouting.",
            ),
        },
        Case {
            name: "Unknown rolling style",
            edits: &[(
                "annotations: {}",
                "annotations: {rollouts.kruise.io/rolling-style: bluegreen}",
            )],
            limit: 30,
            want: Want::Refused(
                "RollingStyle",
                "Rolling style must be 'Canary', 'Partition' or empty",
            ),
        },
        Case {
            name: "No workload",
            edits: &[(
                "objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: deployment-demo}}",
                "objectRef: {}",
            )],
            limit: 30,
            want: Want::Refused("Spec.ObjectRef.WorkloadRef", "WorkloadRef is required"),
        },
        Case {
            name: "A kind Sluice does not release",
            edits: &[(
                "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
                "{apiVersion: apps/v1, kind: DaemonSet, name: whatever}",
            )],
            limit: 30,
            want: Want::Refused(
                "Spec.ObjectRef.WorkloadRef",
                "WorkloadRef kind is not supported",
            ),
        },
        Case {
            name: "An ingress class Sluice does not route",
            edits: &[("classType: nginx", "classType: aliyun-alb")],
            limit: 30,
            want: Want::Refused(
                "Spec.Strategy.Canary.TrafficRouting.Ingress.ClassType",
                "Sluice routes NGINX ingresses (classType nginx) and Gateway API HTTPRoutes",
            ),
        },
    ];
    for case in &cases {
        let errors = validate(
            &edited(case.edits),
            &[],
            Options {
                partition_limit: case.limit,
            },
        );
        check(case, &errors);
    }
}

#[test]
fn a_refusal_renders_as_kubernetes_renders_it() {
    let r = edited(&[("{weight: 30, pause", "{weight: 30, replicas: 101%, pause")]);
    assert_eq!(
        aggregate(&validate(&r, &[], Options::default())),
        "Spec.Strategy.Canary.Steps[1].Replicas: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"101%\"}: replicas must be positive number, or a percentage with \"0%\" < canaryReplicas <= \"100%\""
    );
    // Several: in brackets, in Kruise's order.
    let r = edited(&[(
        "{service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}",
        "{service: ''}",
    )]);
    assert_eq!(
        aggregate(&validate(&r, &[], Options::default())),
        "[Spec.Strategy.Canary.TrafficRouting.Service: Invalid value: \"\": TrafficRouting.Service cannot be empty, Spec.Strategy.Canary.TrafficRouting.TrafficRoutings: Invalid value: \"null\": TrafficRoutings are not set]"
    );
    let r = edited(&[(
        "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
        "{apiVersion: apps/v1, kind: Foo, name: x}",
    )]);
    // (Not a Deployment: partition style, under a limit the weights stay within.)
    let loose = Options {
        partition_limit: 100,
    };
    assert_eq!(
        aggregate(&validate(&r, &[], loose)),
        "Spec.ObjectRef.WorkloadRef: Invalid value: v1alpha1.WorkloadRef{APIVersion:\"apps/v1\", Kind:\"Foo\", Name:\"x\"}: WorkloadRef kind is not supported"
    );
}

#[test]
fn kruise_conflict_cases() {
    let named = |name: &str, reference: &str| {
        let mut r = rollout(&BASE.replace(
            "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
            reference,
        ));
        r.metadata.name = Some(name.into());
        r
    };
    let others = [
        named(
            "object-1",
            "{apiVersion: apps/v1, kind: Deployment, name: another}",
        ),
        named(
            "object-2",
            "{apiVersion: another, kind: Deployment, name: deployment-demo}",
        ),
        named(
            "object-3",
            "{apiVersion: apps/v1, kind: another, name: deployment-demo}",
        ),
    ];
    let base = rollout(BASE);
    let refs: Vec<&Rollout> = others.iter().collect();
    assert!(
        validate(&base, &refs, Options::default()).is_empty(),
        "Without conflict"
    );

    let mut with_conflict = others.to_vec();
    let mut disabled = named(
        "object-4",
        "{apiVersion: apps/v1, kind: Deployment, name: deployment-demo}",
    );
    // Kruise counts a disabled Rollout too.
    disabled.spec.disabled = true;
    with_conflict.push(disabled);
    let refs: Vec<&Rollout> = with_conflict.iter().collect();
    assert_eq!(
        aggregate(&validate(&base, &refs, Options::default())),
        "Conflict Checker: Invalid value: \"rollout-demo\": This rollout conflict with Rollout(namespace-unit-test/object-4), one workload only have less than one Rollout",
        "With conflict"
    );
}

#[test]
fn kruise_update_cases() {
    fn in_phase(yaml_edits: &[(&str, &str)], phase: &str) -> Rollout {
        let mut r = edited(yaml_edits);
        r.status = Some(crate::kruise::v1alpha1::RolloutStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        r
    }
    let traffic = &[("{weight: 10, pause", "{weight: 5, pause")][..];
    let other_routing = &[("name: ingress-nginx-demo", "name: other")][..];
    let other_ref = &[("name: deployment-demo", "name: other")][..];
    /// (name, phase, edits of the new object, the refusal if any)
    type UpdateCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [UpdateCase; 8] = [
        ("Normal case", "", traffic, None),
        (
            "Rollout is progressing, but spec not changed",
            "Progressing",
            &[],
            None,
        ),
        (
            "Rollout is progressing, and spec changed",
            "Progressing",
            traffic,
            None,
        ),
        (
            "Rollout is progressing, and rolling style changed",
            "Progressing",
            &[PARTITION],
            Some("Metadata.Annotation: Forbidden: Rollout 'Rolling-Style' annotation is immutable"),
        ),
        (
            "Rollout is terminating, and traffic routing changed",
            "Terminating",
            other_routing,
            Some(
                "Spec.Strategy.Canary.TrafficRoutings: Forbidden: Rollout 'Strategy.Canary.TrafficRoutings' field is immutable",
            ),
        ),
        (
            "Rollout is progressing, and the workload changed",
            "Progressing",
            other_ref,
            Some("Spec.ObjectRef: Forbidden: Rollout 'ObjectRef' field is immutable"),
        ),
        (
            "Rollout is initial, and spec changed",
            "Initial",
            other_routing,
            None,
        ),
        (
            "Rollout is healthy, and spec changed",
            "Healthy",
            other_ref,
            None,
        ),
    ];
    for (name, phase, edits, want) in cases {
        let latest = in_phase(&[], phase);
        let new = in_phase(edits, phase);
        let errors = validate_update(
            &latest,
            &new,
            &[],
            Options {
                partition_limit: 100,
            },
        );
        match want {
            None => assert!(errors.is_empty(), "{name}: {}", aggregate(&errors)),
            Some(message) => assert_eq!(aggregate(&errors), message, "{name}"),
        }
    }
}

#[test]
fn the_legacy_nginx_type_reads_as_an_ingress() {
    let r = edited(&[(
        "{service: service-demo, ingress: {classType: nginx, name: ingress-nginx-demo}}",
        "{service: service-demo, type: nginx}",
    )]);
    assert!(validate(&r, &[], Options::default()).is_empty());
}

#[test]
fn the_fingerprint_ignores_steps() {
    let a = rollout(BASE);
    let b = edited(&[(LAST_STEP, "- {weight: 80}")]);
    assert_eq!(fingerprint(&a.spec), fingerprint(&b.spec));
    let c = edited(&[("name: ingress-nginx-demo", "name: other")]);
    assert_ne!(fingerprint(&a.spec), fingerprint(&c.spec));
}

/// The first traffic routing's grace period.
fn grace(spec: &mut RolloutSpec) -> &mut Option<i32> {
    &mut spec
        .strategy
        .canary
        .as_mut()
        .expect("canary")
        .traffic_routings[0]
        .grace_period_seconds
}

#[test]
fn a_fingerprint_recorded_before_the_crd_defaulted_the_grace_period_still_matches() {
    let mut written = rollout(BASE).spec;
    *grace(&mut written) = None;
    // As an earlier version recorded it: the grace period left out.
    let earlier = serde_json::json!({
        "workloadRef": written.object_ref.workload_ref,
        "trafficRoutings": written.strategy.canary.as_ref().map(|c| &c.traffic_routings),
    });
    let earlier = hex::encode(&Sha256::digest(earlier.to_string().as_bytes())[..8]);
    // Read back after the CRD upgrade, with the default written.
    let mut defaulted = written.clone();
    *grace(&mut defaulted) = Some(3);
    assert!(same_fingerprint(&earlier, &defaulted));
    assert!(same_fingerprint(&fingerprint(&written), &defaulted));
    *grace(&mut defaulted) = Some(5);
    assert!(!same_fingerprint(&earlier, &defaulted));
}
