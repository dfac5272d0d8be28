//! CRDs of the kinds the simulator drives, with schemas loose enough for any valid
//! object (the simulator does not validate custom resources), and the defaults the
//! real CRDs write (an HTTPRoute's `backendRefs` come back with their `group`,
//! `kind` and `weight`, as from a real API server).

use serde_json::{Value, json};

fn crd(
    group: &str,
    kind: &str,
    plural: &str,
    short: &[&str],
    version: &str,
    scale: bool,
    schema: Value,
) -> Value {
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
                "schema": {"openAPIV3Schema": schema},
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
        open_object(json!({})),
    )
}

/// An object schema keeping any field, with these `properties`.
fn open_object(properties: Value) -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": properties})
}

/// A list of objects with these `properties`.
fn list_of(properties: Value) -> Value {
    json!({"type": "array", "items": open_object(properties)})
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
        httproute_schema(),
    )
}

/// The defaults of Gateway API v1.6's HTTPRoute (its standard channel's CRD).
fn httproute_schema() -> Value {
    let path_prefix = json!({"type": "PathPrefix", "value": "/"});
    let typed = |default: &str| list_of(json!({"type": {"type": "string", "default": default}}));
    let mut matches = list_of(json!({
        "path": {
            "type": "object",
            "default": path_prefix,
            "properties": {
                "type": {"type": "string", "default": "PathPrefix"},
                "value": {"type": "string", "default": "/"},
            },
        },
        "headers": typed("Exact"),
        "queryParams": typed("Exact"),
    }));
    matches["default"] = json!([{"path": path_prefix}]);
    let mut rules = list_of(json!({
        "matches": matches,
        "backendRefs": list_of(json!({
            "group": {"type": "string", "default": ""},
            "kind": {"type": "string", "default": "Service"},
            "weight": {"type": "integer", "default": 1},
        })),
    }));
    rules["default"] = json!([{"matches": [{"path": path_prefix}]}]);
    open_object(json!({
        "spec": open_object(json!({
            "parentRefs": list_of(json!({
                "group": {"type": "string", "default": "gateway.networking.k8s.io"},
                "kind": {"type": "string", "default": "Gateway"},
            })),
            "rules": rules,
        })),
    }))
}
