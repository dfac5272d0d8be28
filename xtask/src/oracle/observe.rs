//! A namespace's observable state, reduced to what a user or a tool could tell
//! apart and written the same way whichever engine made it: no timestamps, uids or
//! resourceVersions; hashes and generated names numbered by first appearance (an
//! engine's hash of a template is its own, when it changes is not).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

/// Keys whose values are an engine's hashes: compared by when they change.
const HASH_KEYS: &[&str] = &[
    "canaryRevision",
    "stableRevision",
    "podTemplateHash",
    "observedRolloutID",
    "pod-template-hash",
    "controller-revision-hash",
    "rollouts.kruise.io/rollout-id",
    "currentRevision",
    "updateRevision",
];

/// Keys that say when, not what.
const TIME_KEYS: &[&str] = &["lastUpdateTime", "lastTransitionTime", "creationTimestamp"];

/// Annotations and labels that say nothing of the engine.
const NOISE: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

/// Numbers values of one class (a hash key, a generated name) by first appearance
/// in one engine's run.
#[derive(Default)]
pub struct Renamer {
    classes: HashMap<String, HashMap<String, usize>>,
}

impl Renamer {
    fn name(&mut self, class: &str, value: &str) -> String {
        let class_map = self.classes.entry(class.to_string()).or_default();
        let next = class_map.len() + 1;
        let n = *class_map.entry(value.to_string()).or_insert(next);
        format!("<{class} #{n}>")
    }
}

fn strip(value: &mut Value, renamer: &mut Renamer) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !TIME_KEYS.contains(&k.as_str()) && !NOISE.contains(&k.as_str()));
            for (k, v) in map.iter_mut() {
                if HASH_KEYS.contains(&k.as_str())
                    && let Some(s) = v.as_str()
                    && !s.is_empty()
                {
                    *v = Value::String(renamer.name(k, s));
                } else {
                    strip(v, renamer);
                }
            }
        }
        Value::Array(items) => {
            items.iter_mut().for_each(|v| strip(v, renamer));
            // Conditions are compared by type, not by where they stand in the list.
            if !items.is_empty()
                && items
                    .iter()
                    .all(|c| c["type"].is_string() && c.get("status").is_some())
            {
                let by_type: Map<String, Value> = items
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        let t = c["type"].as_str().unwrap_or_default().to_string();
                        if let Value::Object(m) = &mut c {
                            m.remove("type");
                        }
                        (t, c)
                    })
                    .collect();
                *value = Value::Object(by_type);
            }
        }
        Value::String(s) => {
            // Annotations holding JSON (Kruise's control info, a workload's
            // in-progress mark) are compared as what they hold.
            if (s.starts_with('{') || s.starts_with('['))
                && let Ok(mut inner) = serde_json::from_str::<Value>(s)
            {
                if let Value::Object(m) = &mut inner {
                    m.remove("uid");
                }
                strip(&mut inner, renamer);
                *value = inner;
            }
        }
        _ => {}
    }
}

fn pick(object: &Value, paths: &[&str]) -> Value {
    let mut out = Map::new();
    for path in paths {
        let value = path.split('.').fold(object, |v, k| &v[k]);
        if !value.is_null() {
            out.insert((*path).to_string(), value.clone());
        }
    }
    Value::Object(out)
}

fn metadata(object: &Value) -> Value {
    let mut m = pick(
        object,
        &[
            "metadata.labels",
            "metadata.annotations",
            "metadata.finalizers",
        ],
    );
    if let Some(owners) = object["metadata"]["ownerReferences"].as_array() {
        let kinds: Vec<Value> = owners.iter().map(|o| o["kind"].clone()).collect();
        m["metadata.ownerReferences"] = Value::Array(kinds);
    }
    m
}

fn merge(a: Value, b: Value) -> Value {
    let (Value::Object(mut a), Value::Object(b)) = (a, b) else {
        return Value::Null;
    };
    a.extend(b);
    Value::Object(a)
}

/// What is kept of one object of `resource`, or nothing for the resources only
/// summarised.
fn reduce(resource: &str, object: &Value) -> Option<Value> {
    let kept = match resource {
        "rollouts.v1alpha1.rollouts.kruise.io" => {
            let mut kept = merge(metadata(object), pick(object, &["spec", "status"]));
            // Sluice's decision log (its own extension) is compared by presence:
            // what a module saw has no counterpart in Kruise.
            if let Some(log) = kept["status"].get_mut("strategy") {
                *log = json!("(the decision log)");
            }
            kept
        }
        "deployments.apps" => merge(
            metadata(object),
            pick(
                object,
                &[
                    "spec.replicas",
                    "spec.paused",
                    "spec.strategy",
                    "spec.selector",
                    "spec.template.metadata",
                    "status.replicas",
                    "status.updatedReplicas",
                    "status.readyReplicas",
                ],
            ),
        ),
        "statefulsets.apps" => merge(
            metadata(object),
            pick(
                object,
                &[
                    "spec.replicas",
                    "spec.updateStrategy",
                    "spec.template.metadata",
                    "status.replicas",
                    "status.updatedReplicas",
                    "status.readyReplicas",
                    "status.currentRevision",
                    "status.updateRevision",
                ],
            ),
        ),
        "services" => merge(metadata(object), pick(object, &["spec.selector"])),
        "ingresses.networking.k8s.io" => merge(
            metadata(object),
            pick(object, &["spec.ingressClassName", "spec.rules"]),
        ),
        "httproutes.gateway.networking.k8s.io" => {
            merge(metadata(object), pick(object, &["spec.rules"]))
        }
        _ => return None,
    };
    Some(kept)
}

fn short(resource: &str) -> &str {
    match resource {
        "rollouts.v1alpha1.rollouts.kruise.io" => "rollout",
        "deployments.apps" => "deployment",
        "statefulsets.apps" => "statefulset",
        "services" => "service",
        "ingresses.networking.k8s.io" => "ingress",
        "httproutes.gateway.networking.k8s.io" => "httproute",
        other => other,
    }
}

fn image(pod_template: &Value) -> String {
    pod_template["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["image"].as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The state of a namespace. `given` holds the names the scenario's manifests
/// create; other names (an engine's canary Deployment) are numbered by kind.
pub fn state(
    objects: &BTreeMap<(String, String), Value>,
    given: &BTreeSet<String>,
    renamer: &mut Renamer,
) -> Value {
    let mut out = Map::new();
    let mut pods: BTreeMap<String, u64> = BTreeMap::new();
    let mut replicasets: BTreeMap<String, i64> = BTreeMap::new();
    let mut reasons: BTreeSet<String> = BTreeSet::new();
    for ((resource, name), object) in objects {
        match resource.as_str() {
            "pods" => {
                let ready = object["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                let going = !object["metadata"]["deletionTimestamp"].is_null();
                let mut labels = object["metadata"]["labels"].clone();
                // Kruise's BatchRelease writes `controller-revision-hash` on a
                // Deployment's pods for its own revision check (StatefulSet pods
                // have it from their controller, and keep it here). Sluice keeps
                // no such bookkeeping: kept out, and said so in
                // kruise-compatibility.md.
                if object["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
                    && let Some(l) = labels.as_object_mut()
                {
                    l.remove("controller-revision-hash");
                }
                strip(&mut labels, renamer);
                let key = format!(
                    "{} {}{} {}",
                    image(object),
                    if ready { "ready" } else { "not-ready" },
                    if going { " going" } else { "" },
                    labels
                );
                *pods.entry(key).or_default() += 1;
            }
            "replicasets.apps" => {
                let replicas = object["spec"]["replicas"].as_i64().unwrap_or(0);
                let owner = object["metadata"]["ownerReferences"][0]["name"]
                    .as_str()
                    .unwrap_or("-");
                let owner = if given.contains(owner) {
                    owner.to_string()
                } else {
                    renamer.name("deployment", owner)
                };
                *replicasets
                    .entry(format!("{owner} {}", image(&object["spec"]["template"])))
                    .or_default() += replicas;
            }
            "events" => {
                if object["involvedObject"]["kind"] == "Rollout" {
                    reasons.insert(object["reason"].as_str().unwrap_or("").to_string());
                }
            }
            _ => {
                let Some(mut kept) = reduce(resource, object) else {
                    continue;
                };
                let kind = short(resource);
                let generated = !given.contains(name)
                    && !name
                        .strip_suffix("-canary")
                        .is_some_and(|n| given.contains(n));
                let shown = if generated {
                    renamer.name(kind, name)
                } else {
                    name.clone()
                };
                strip(&mut kept, renamer);
                out.insert(format!("{kind}/{shown}"), kept);
            }
        }
    }
    out.insert("pods".into(), json!(pods));
    out.insert(
        "replicasets".into(),
        json!(
            replicasets
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect::<BTreeMap<_, _>>()
        ),
    );
    out.insert("events".into(), json!(reasons));
    Value::Object(out)
}

/// Where two states differ: the path to each leaf that differs, with both values
/// (`null` where one has nothing).
pub fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push((path.to_string(), a.clone(), b.clone())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_numbered_by_first_appearance_per_key() {
        let mut r = Renamer::default();
        let mut v = json!({"status": {"canaryRevision": "abc", "stableRevision": "xyz"},
                           "later": {"canaryRevision": "def"}, "again": {"canaryRevision": "abc"}});
        strip(&mut v, &mut r);
        assert_eq!(v["status"]["canaryRevision"], "<canaryRevision #1>");
        assert_eq!(v["status"]["stableRevision"], "<stableRevision #1>");
        assert_eq!(v["later"]["canaryRevision"], "<canaryRevision #2>");
        assert_eq!(v["again"]["canaryRevision"], "<canaryRevision #1>");
    }

    #[test]
    fn conditions_are_compared_by_type() {
        let mut r = Renamer::default();
        let mut v = json!({"conditions": [{"type": "B", "status": "True"}, {"type": "A", "status": "False"}]});
        strip(&mut v, &mut r);
        assert_eq!(
            v,
            json!({"conditions": {"A": {"status": "False"}, "B": {"status": "True"}}})
        );
    }

    #[test]
    fn times_and_noise_go_and_json_annotations_are_read() {
        let mut r = Renamer::default();
        let mut v = json!({"lastUpdateTime": "now", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "info": "{\"uid\":\"1\",\"rolloutName\":\"echo\"}"}});
        strip(&mut v, &mut r);
        assert_eq!(v, json!({"annotations": {"info": {"rolloutName": "echo"}}}));
    }

    #[test]
    fn differences_name_their_leaf() {
        let mut out = Vec::new();
        diff(
            "",
            &json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"}),
            &json!({"a": {"b": 2, "c": [1, 2]}, "e": "y"}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ("a.b".to_string(), json!(1), json!(2)),
                ("d".to_string(), json!("x"), Value::Null),
                ("e".to_string(), Value::Null, json!("y")),
            ]
        );
    }
}
