//! Simulated pods: how they are made from a template, and how they behave.
//!
//! Conventions, set on a pod's first container:
//! - an image whose tag starts with `fail` or ends with `-fail` (`demo:v2-fail`), or
//!   the env var `SIM_NEVER_READY=true`, never becomes ready and restarts forever;
//! - `SIM_READY_DELAY_MS` overrides the time to readiness;
//! - `SIM_ERROR_RATE` (0.0-1.0) and `SIM_LATENCY_MS` shape the answers the traffic
//!   gateway gives for the pod.

use std::time::Duration;

use serde_json::{Value, json};

use crate::object::{self, Meta};

/// A pod for `template`, owned by `owner` (a controller reference), named `name`.
pub fn from_template(
    template: &Value,
    owner: Value,
    ns: &str,
    name: &str,
    extra_labels: &[(&str, &str)],
) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    })
}

/// A controller owner reference to `owner`.
pub fn controller_ref(owner: &Value) -> Value {
    let meta = Meta::of(owner);
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta.name(),
        "uid": meta.uid(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether the pod is ready.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether the pod is on its way out.
pub fn is_terminating(pod: &Value) -> bool {
    Meta::of(pod).get("deletionTimestamp").is_some()
}

fn first_container(pod: &Value) -> Option<&Value> {
    pod.pointer("/spec/containers/0")
}

/// The value of an env var of the first container.
pub fn env(pod: &Value, name: &str) -> Option<String> {
    first_container(pod)?
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}

/// The first container's image.
pub fn image(pod: &Value) -> &str {
    first_container(pod)
        .and_then(|c| c["image"].as_str())
        .unwrap_or("")
}

/// Whether the pod's image is one that never becomes ready.
pub fn is_failing(pod: &Value) -> bool {
    if env(pod, "SIM_NEVER_READY").is_some_and(|v| v == "true") {
        return true;
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                let image = c["image"].as_str().unwrap_or("");
                let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
                tag.starts_with("fail") || tag.ends_with("-fail")
            })
        })
}

/// The time from creation to readiness for this pod.
pub fn ready_delay(pod: &Value, default: Duration) -> Duration {
    env(pod, "SIM_READY_DELAY_MS")
        .and_then(|ms| ms.parse().ok())
        .map_or(default, Duration::from_millis)
}

/// The pod's status once its containers are up (or crash-looping).
pub fn running_status(pod: &Value, ip: &str, restarts: u64) -> Value {
    let failing = is_failing(pod);
    let now = object::now_rfc3339();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let state = if failing {
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}})
                    } else {
                        json!({"running": {"startedAt": now}})
                    };
                    // What a kubelet reports: clients (the Python one among them)
                    // require the image's and the container's IDs.
                    let image = c["image"].as_str().unwrap_or("");
                    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    let container = c["name"].as_str().unwrap_or("");
                    json!({"name": c["name"], "image": c["image"], "ready": !failing, "started": !failing,
                           "restartCount": restarts, "state": state,
                           "imageID": format!("{image}@sha256:{}", super::hash::stand_in_digest(image)),
                           "containerID": format!("containerd://{}", super::hash::stand_in_digest(&format!("{uid}/{container}/{restarts}")))})
                })
                .collect()
        })
        .unwrap_or_default();
    let ready = if failing { "False" } else { "True" };
    json!({
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "10.0.0.1",
        "startTime": pod.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
        ],
        "containerStatuses": containers,
    })
}

/// Pods sorted for deletion: not ready first, then the newest.
pub fn deletion_order(mut pods: Vec<std::sync::Arc<Value>>) -> Vec<std::sync::Arc<Value>> {
    pods.sort_by(|a, b| {
        is_ready(a)
            .cmp(&is_ready(b))
            .then_with(|| {
                Meta::of(b)
                    .str("creationTimestamp")
                    .cmp(Meta::of(a).str("creationTimestamp"))
            })
            .then_with(|| Meta::of(b).name().cmp(Meta::of(a).name()))
    });
    pods
}
