//! What Kruise's validating webhook rejects, checked by the controller instead: an
//! invalid Rollout gets a condition and an event naming the field, and nothing in the
//! cluster changes.

use sha2::{Digest, Sha256};

use super::v1alpha1::{Rollout, RolloutSpec, TrafficRoutingRef};
use crate::rollout::spec;
use crate::strategy::model::Replicas;

/// Ingress controllers Sluice routes for.
pub const SUPPORTED_INGRESS_CLASSES: &[&str] = &["nginx"];

/// A Rollout's problems, each naming its field; empty when valid.
pub fn validate(rollout: &Rollout, others: &[&Rollout]) -> Vec<String> {
    let mut errors = Vec::new();
    let spec = &rollout.spec;
    let ns = rollout.metadata.namespace.as_deref().unwrap_or("");
    match &spec.object_ref.workload_ref {
        None => errors.push("spec.objectRef.workloadRef: is required; name the Deployment, CloneSet or StatefulSet to release".into()),
        Some(w) => {
            if crate::workload::for_ref(&w.api_version, &w.kind).is_none() {
                errors.push(format!(
                    "spec.objectRef.workloadRef: {} {} is not supported; use one of {}",
                    w.api_version,
                    w.kind,
                    crate::workload::supported()
                ));
            }
            if w.name.is_empty() {
                errors.push("spec.objectRef.workloadRef.name: is required".into());
            }
            for other in others {
                let same_workload = other.metadata.namespace.as_deref() == Some(ns)
                    && other.metadata.name != rollout.metadata.name
                    && !other.spec.disabled
                    && other.spec.object_ref.workload_ref.as_ref().is_some_and(|o| o.kind == w.kind && o.name == w.name);
                // The older Rollout keeps the workload; the newer one is the conflict.
                if same_workload && !spec.disabled && other.metadata.creation_timestamp <= rollout.metadata.creation_timestamp {
                    errors.push(format!(
                        "spec.objectRef.workloadRef: This rollout conflict with Rollout({}/{}), one workload only have less than one Rollout",
                        ns,
                        other.metadata.name.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    let Some(canary) = &spec.strategy.canary else {
        errors.push("spec.strategy.canary: is required; add canary steps".into());
        return errors;
    };
    if canary.steps.is_empty() {
        errors.push("spec.strategy.canary.steps: the rollout needs at least one step".into());
    }
    match spec::steps(&canary.steps) {
        Err(step_errors) => errors.extend(step_errors),
        Ok(steps) => {
            let mut last_replicas: Option<(usize, Replicas)> = None;
            let mut last_weight: Option<u8> = None;
            for (i, (written, step)) in canary.steps.iter().zip(&steps).enumerate() {
                let at = format!("spec.strategy.canary.steps[{i}]");
                if step.traffic_weight.is_none() && step.replicas.is_none() {
                    errors.push(format!(
                        "{at}: weight and replicas cannot be empty at the same time"
                    ));
                }
                if let Some(w) = written.weight
                    && !(1..=100).contains(&w)
                {
                    errors.push(format!("{at}.weight: {w} must be between 1 and 100"));
                }
                if step.replicas.is_some_and(|r| r.resolve(100) == 0) {
                    errors.push(format!("{at}.replicas: must be more than 0"));
                }
                if let Some(w) = step.traffic_weight.map(|w| w.get()) {
                    if last_weight.is_some_and(|l| w < l) {
                        errors.push(format!("{at}.weight: {w} is less than the previous step's; steps may not decrease"));
                    }
                    last_weight = Some(w);
                }
                if let Some(r) = step.replicas.or(step.traffic_weight.map(Replicas::Percent)) {
                    if let Some((_, prev)) = last_replicas
                        && decreases(prev, r)
                    {
                        errors.push(format!("{at}.replicas: {r} is less than the previous step's {prev}; steps may not decrease"));
                    }
                    last_replicas = Some((i, r));
                }
            }
        }
    }
    if canary.traffic_routings.len() > 1 {
        errors.push(
            "spec.strategy.canary.trafficRoutings: only one traffic routing is supported".into(),
        );
    }
    for (i, t) in canary.traffic_routings.iter().enumerate() {
        errors.extend(traffic_routing(i, t));
    }
    errors
}

/// Whether going from `a` to `b` lowers the canary: comparable only for the same unit.
fn decreases(a: Replicas, b: Replicas) -> bool {
    match (a, b) {
        (Replicas::Count(x), Replicas::Count(y)) => y < x,
        (Replicas::Percent(x), Replicas::Percent(y)) => y < x,
        _ => false,
    }
}

fn traffic_routing(i: usize, t: &TrafficRoutingRef) -> Vec<String> {
    let at = format!("spec.strategy.canary.trafficRoutings[{i}]");
    let mut errors = Vec::new();
    if t.service.is_empty() {
        errors.push(format!(
            "{at}.service: is required; name the stable Service"
        ));
    }
    if t.grace_period_seconds.is_some_and(|g| g < 0) {
        errors.push(format!("{at}.gracePeriodSeconds: must be zero or more"));
    }
    let legacy_nginx = matches!(t.legacy_type.as_deref(), Some("nginx" | "ingress"));
    match (&t.ingress, &t.gateway) {
        (None, None) if legacy_nginx => {}
        (None, None) => errors.push(format!(
            "{at}: one of ingress or gateway is required (type: {:?} is not a traffic routing Sluice knows)",
            t.legacy_type.as_deref().unwrap_or("")
        )),
        (Some(ingress), _) => {
            if ingress.name.is_empty() {
                errors.push(format!("{at}.ingress.name: is required"));
            }
            let class = ingress.class_type.as_deref().unwrap_or("nginx");
            if !SUPPORTED_INGRESS_CLASSES.contains(&class) {
                errors.push(format!(
                    "{at}.ingress.classType: {class} is not supported; Sluice routes NGINX ingresses and Gateway API HTTPRoutes"
                ));
            }
        }
        (None, Some(gateway)) => {
            if gateway.http_route_name.as_deref().unwrap_or("").is_empty() {
                errors.push(format!("{at}.gateway.httpRouteName: is required"));
            }
        }
    }
    errors
}

/// What may not change while a release is in progress: the workload and the traffic
/// routing. Stored in `status.canaryStatus.rolloutHash` when a release starts.
pub fn fingerprint(spec: &RolloutSpec) -> String {
    let parts = serde_json::json!({
        "workloadRef": spec.object_ref.workload_ref,
        "trafficRoutings": spec.strategy.canary.as_ref().map(|c| &c.traffic_routings),
    });
    let digest = Sha256::digest(parts.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(yaml: &str) -> Rollout {
        serde_yaml_ng::from_str(yaml).expect("rollout yaml")
    }

    const VALID: &str = r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: demo, namespace: default}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: demo}}
  strategy:
    canary:
      steps: [{weight: 20, pause: {}}, {weight: 60}]
      trafficRoutings: [{service: demo, gracePeriodSeconds: 5, ingress: {name: demo}}]
"#;

    #[test]
    fn a_valid_rollout_passes_and_the_legacy_nginx_type_is_accepted() {
        assert_eq!(validate(&rollout(VALID), &[]), Vec::<String>::new());
        let legacy = VALID.replace("ingress: {name: demo}", "type: nginx");
        assert_eq!(validate(&rollout(&legacy), &[]), Vec::<String>::new());
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (
                "steps: [{weight: 20, pause: {}}, {weight: 60}]",
                "steps: []",
                "spec.strategy.canary.steps: the rollout needs at least one step",
            ),
            (
                "steps: [{weight: 20, pause: {}}, {weight: 60}]",
                "steps: [{weight: 0}]",
                "spec.strategy.canary.steps[0].weight: 0 must be between 1 and 100",
            ),
            (
                "steps: [{weight: 20, pause: {}}, {weight: 60}]",
                "steps: [{weight: 60}, {weight: 20}]",
                "spec.strategy.canary.steps[1].weight: 20 is less than the previous step's; steps may not decrease",
            ),
            (
                "steps: [{weight: 20, pause: {}}, {weight: 60}]",
                "steps: [{pause: {}}]",
                "spec.strategy.canary.steps[0]: weight and replicas cannot be empty at the same time",
            ),
            (
                "steps: [{weight: 20, pause: {}}, {weight: 60}]",
                "steps: [{replicas: 3}, {replicas: 1}]",
                "spec.strategy.canary.steps[1].replicas: 1 is less than the previous step's 3; steps may not decrease",
            ),
            (
                "ingress: {name: demo}",
                "ingress: {name: demo, classType: aliyun-alb}",
                "spec.strategy.canary.trafficRoutings[0].ingress.classType: aliyun-alb is not supported",
            ),
            (
                "ingress: {name: demo}",
                "gateway: {}",
                "spec.strategy.canary.trafficRoutings[0].gateway.httpRouteName: is required",
            ),
            (
                "kind: Deployment",
                "kind: DaemonSet",
                "spec.objectRef.workloadRef: apps/v1 DaemonSet is not supported",
            ),
        ];
        for (from, to, want) in cases {
            let r = rollout(&VALID.replace(from, to));
            let errors = validate(&r, &[]);
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{to}: expected {want:?}, got {errors:?}"
            );
        }
    }

    #[test]
    fn a_second_rollout_on_a_workload_conflicts() {
        let mut first = rollout(VALID);
        first.metadata.name = Some("first".into());
        let second = rollout(VALID);
        let errors = validate(&second, &[&first]);
        assert_eq!(
            errors,
            vec![
                "spec.objectRef.workloadRef: This rollout conflict with Rollout(default/first), one workload only have less than one Rollout"
            ]
        );
        let mut disabled = first.clone();
        disabled.spec.disabled = true;
        assert!(validate(&second, &[&disabled]).is_empty());
    }

    #[test]
    fn the_fingerprint_ignores_steps() {
        let a = rollout(VALID);
        let b = rollout(&VALID.replace("{weight: 60}", "{weight: 80}"));
        assert_eq!(fingerprint(&a.spec), fingerprint(&b.spec));
        let c = rollout(&VALID.replace("ingress: {name: demo}", "ingress: {name: other}"));
        assert_ne!(fingerprint(&a.spec), fingerprint(&c.spec));
    }
}
