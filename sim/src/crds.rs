//! CRDs of the kinds the simulator drives, with schemas loose enough for any valid
//! object (the simulator does not validate custom resources).

use serde_json::{Value, json};

fn crd(group: &str, kind: &str, plural: &str, short: &[&str], version: &str, scale: bool) -> Value {
    let mut subresources = json!({"status": {}});
    if scale {
        subresources["scale"] = json!({
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.labelSelector",
        });
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "shortNames": short, "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": subresources,
            }],
        },
    })
}

/// OpenKruise's `CloneSet` (`apps.kruise.io/v1alpha1`).
pub fn cloneset() -> Value {
    crd(
        "apps.kruise.io",
        "CloneSet",
        "clonesets",
        &["clone"],
        "v1alpha1",
        true,
    )
}

/// Gateway API's `HTTPRoute` (`gateway.networking.k8s.io/v1`).
pub fn httproute() -> Value {
    crd(
        "gateway.networking.k8s.io",
        "HTTPRoute",
        "httproutes",
        &[],
        "v1",
        false,
    )
}
