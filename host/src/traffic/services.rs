//! The Services every router sends traffic to: the stable Service, pinned to the
//! stable pods during a release, and the canary Service `<service>-canary`, a copy of
//! it selecting the canary pods.

use serde_json::{Value, json};

use super::Routing;
use crate::controller::observed::Observed;
use crate::controller::write::{Target, Write};
use crate::workload::{WorkloadView, owner};

fn target(o: &Observed, name: &str) -> Target {
    Target::new("v1", "Service", o.namespace(), name)
}

/// Whether the stable Service selects the stable pods only.
pub fn pinned(o: &Observed, w: &WorkloadView) -> bool {
    o.traffic
        .stable_selector()
        .is_some_and(|s| s.contains_key(w.kind.revision_label()))
}

/// Writes that keep the stable Service to the stable pods.
pub fn pin_stable(o: &Observed, routing: &Routing, w: &WorkloadView) -> Vec<Write> {
    let label = w.kind.revision_label();
    let pinned_to_stable = o
        .traffic
        .stable_selector()
        .is_none_or(|s| s.get(label) == Some(&w.stable_revision));
    if routing.canary_service == routing.service || pinned_to_stable {
        return Vec::new();
    }
    vec![Write::Patch {
        target: target(o, &routing.service),
        patch: json!({"spec": {"selector": {label: w.stable_revision}}}),
        missing_ok: true,
    }]
}

/// Writes that let the stable Service select every pod again.
pub fn unpin_stable(o: &Observed, routing: &Routing, w: &WorkloadView) -> Vec<Write> {
    if !pinned(o, w) {
        return Vec::new();
    }
    vec![Write::Patch {
        target: target(o, &routing.service),
        patch: json!({"spec": {"selector": {w.kind.revision_label(): Value::Null}}}),
        missing_ok: true,
    }]
}

/// Writes that make the canary Service select the pods of `revision`.
pub fn ensure_canary(
    o: &Observed,
    routing: &Routing,
    w: &WorkloadView,
    revision: &str,
) -> Vec<Write> {
    if routing.canary_service == routing.service {
        return Vec::new();
    }
    let label = w.kind.revision_label();
    match o.traffic.canary_selector() {
        Some(selector) if selector.get(label).map(String::as_str) == Some(revision) => Vec::new(),
        Some(_) => vec![Write::patch(
            target(o, &routing.canary_service),
            json!({"spec": {"selector": {label: revision}}}),
        )],
        None => match &o.traffic.stable_service {
            Some(stable) => vec![Write::Create {
                target: target(o, &routing.canary_service),
                object: canary_service(o, stable, routing, w, revision),
            }],
            // Nothing to copy: the traffic routing names a Service that does not exist.
            None => Vec::new(),
        },
    }
}

/// Writes that delete the canary Service.
pub fn delete_canary(o: &Observed, routing: &Routing) -> Vec<Write> {
    if routing.canary_service == routing.service || o.traffic.canary_service.is_none() {
        return Vec::new();
    }
    vec![Write::Delete {
        target: target(o, &routing.canary_service),
        background: false,
    }]
}

/// The canary Service: the stable one, selecting the canary pods.
fn canary_service(
    o: &Observed,
    stable: &Value,
    routing: &Routing,
    w: &WorkloadView,
    revision: &str,
) -> Value {
    let mut spec = stable.get("spec").cloned().unwrap_or(json!({}));
    if let Some(m) = spec.as_object_mut() {
        for field in [
            "clusterIP",
            "clusterIPs",
            "externalIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "loadBalancerIP",
            "healthCheckNodePort",
        ] {
            m.remove(field);
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
    spec["selector"][w.kind.revision_label()] = json!(revision);
    // As Kruise: the stable Service's spec only, none of its labels or
    // annotations (a tool selecting Services by label sees one, not two).
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": routing.canary_service,
            "namespace": o.namespace(),
            "ownerReferences": [owner(&o.rollout)],
        },
        "spec": spec,
    })
}
