//! Kruise's plan hash (`rollouts.kruise.io/hash`): what of a Rollout's canary
//! strategy a release follows — its steps' traffic, matches and replicas, its traffic
//! routing — hashed the way Kruise hashes it, so that the annotation reads the same
//! whichever controller wrote it. Pauses, `failureThreshold` and `paused` are left
//! out: changing them does not change the plan.
//!
//! Kruise hashes its storage version (v1beta1) after converting a v1alpha1 Rollout:
//! a step's `weight: N` is `traffic: "N%"` (and its replicas when it has none); a
//! Deployment released with an extra canary Deployment says so
//! (`enableExtraWorkloadForCanary`). The JSON is Go's: fields in declaration order,
//! empty ones left out, map keys sorted, `<`, `>` and `&` escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::v1alpha1::{CanaryStep, Rollout, TrafficRoutingRef};

/// The annotation Kruise writes the hash to.
pub const ANNOTATION: &str = "rollouts.kruise.io/hash";

/// The annotation naming a TrafficRouting object (Kruise's end-to-end routing).
const TRAFFIC_ROUTING_ANNOTATION: &str = "rollouts.kruise.io/trafficrouting";

/// The plan hash of `rollout`; `None` without a canary strategy.
pub fn plan_hash(rollout: &Rollout) -> Option<String> {
    Some(safe_encode(&hex::encode(Sha256::digest(
        hash_input(rollout)?.as_bytes(),
    ))))
}

/// The JSON Kruise hashes for `rollout`.
pub fn hash_input(rollout: &Rollout) -> Option<String> {
    let canary = rollout.spec.strategy.canary.as_ref()?;
    let annotations = rollout.metadata.annotations.clone().unwrap_or_default();
    let mut out = GoJson::default();
    out.object(|o| {
        if !canary.steps.is_empty() {
            o.field("steps", |j| j.array(&canary.steps, step));
        }
        if !canary.traffic_routings.is_empty() {
            o.field("trafficRoutings", |j| {
                j.array(&canary.traffic_routings, traffic_routing)
            });
        }
        if let Some(patch) = &canary.patch_pod_template_metadata {
            o.field("patchPodTemplateMetadata", |j| {
                j.object(|p| {
                    for (key, map) in [
                        ("annotations", &patch.annotations),
                        ("labels", &patch.labels),
                    ] {
                        if let Some(map) = map.as_ref().filter(|m| !m.is_empty()) {
                            p.field(key, |j| j.string_map(map));
                        }
                    }
                });
            });
        }
        let partition = annotations
            .get(super::validate::ROLLING_STYLE)
            .is_some_and(|s| s.eq_ignore_ascii_case("partition"));
        if !partition {
            o.field("enableExtraWorkloadForCanary", |j| j.raw("true"));
        }
        if let Some(name) = annotations
            .get(TRAFFIC_ROUTING_ANNOTATION)
            .filter(|n| !n.is_empty())
        {
            o.field("trafficRoutingRef", |j| j.string(name));
        }
    });
    Some(out.0)
}

fn step(j: &mut GoJson, s: &CanaryStep) {
    j.object(|o| {
        if let Some(w) = s.weight {
            o.field("traffic", |j| j.string(&format!("{w}%")));
        }
        if let Some(modifier) = &s.request_header_modifier {
            o.field("requestHeaderModifier", |j| header_filter(j, modifier));
        }
        if !s.matches.is_empty() {
            o.field("matches", |j| {
                j.array(&s.matches, |j, m| {
                    j.object(|o| {
                        if !m.headers.is_empty() {
                            o.field("headers", |j| {
                                j.array(&m.headers, |j, h| {
                                    j.object(|o| {
                                        // The CRD's default, applied before Kruise reads it.
                                        let kind = h.kind.as_deref().unwrap_or("Exact");
                                        o.field("type", |j| j.string(kind));
                                        o.field("name", |j| j.string(&h.name));
                                        o.field("value", |j| j.string(&h.value));
                                    });
                                });
                            });
                        }
                    });
                });
            });
        }
        match (&s.replicas, s.weight) {
            (Some(IntOrString::Int(n)), _) => o.field("replicas", |j| j.raw(&n.to_string())),
            (Some(IntOrString::String(r)), _) => o.field("replicas", |j| j.string(r)),
            (None, Some(w)) => o.field("replicas", |j| j.string(&format!("{w}%"))),
            (None, None) => {}
        }
        o.field("pause", |j| j.raw("{}"));
    });
}

fn traffic_routing(j: &mut GoJson, t: &TrafficRoutingRef) {
    j.object(|o| {
        o.field("service", |j| j.string(&t.service));
        // The CRD defaults the grace period to 3 seconds; Go leaves a zero out.
        let grace = t.grace_period_seconds.unwrap_or(3);
        if grace != 0 {
            o.field("gracePeriodSeconds", |j| j.raw(&grace.to_string()));
        }
        if let Some(ingress) = &t.ingress {
            o.field("ingress", |j| {
                j.object(|o| {
                    if let Some(class) = ingress.class_type.as_deref().filter(|c| !c.is_empty()) {
                        o.field("classType", |j| j.string(class));
                    }
                    o.field("name", |j| j.string(&ingress.name));
                });
            });
        }
        if let Some(gateway) = &t.gateway {
            o.field("gateway", |j| {
                j.object(|o| {
                    if let Some(route) = &gateway.http_route_name {
                        o.field("httpRouteName", |j| j.string(route));
                    }
                });
            });
        }
    });
}

/// Gateway API's HTTPHeaderFilter: `set`, `add` (name, value), `remove`.
fn header_filter(j: &mut GoJson, v: &Value) {
    j.object(|o| {
        for key in ["set", "add"] {
            if let Some(headers) = v
                .get(key)
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                o.field(key, |j| {
                    j.array(headers, |j, h| {
                        j.object(|o| {
                            let text = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("");
                            o.field("name", |j| j.string(text("name")));
                            o.field("value", |j| j.string(text("value")));
                        });
                    });
                });
            }
        }
        if let Some(names) = v
            .get("remove")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            o.field("remove", |j| {
                j.array(names, |j, n| j.string(n.as_str().unwrap_or("")));
            });
        }
    });
}

/// Kubernetes' `SafeEncodeString`: each character of the hex digest to one of 27
/// letters and digits that spell no words.
fn safe_encode(hex: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hex.chars()
        .map(|c| ALPHANUMS[(c as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// JSON written as Go's `encoding/json` writes it.
#[derive(Default)]
struct GoJson(String);

/// The fields of an object being written.
struct Fields<'a> {
    json: &'a mut GoJson,
    first: bool,
}

impl Fields<'_> {
    fn field(&mut self, key: &str, value: impl FnOnce(&mut GoJson)) {
        if !self.first {
            self.json.0.push(',');
        }
        self.first = false;
        self.json.string(key);
        self.json.0.push(':');
        value(self.json);
    }
}

impl GoJson {
    fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    fn object(&mut self, fields: impl FnOnce(&mut Fields<'_>)) {
        self.0.push('{');
        fields(&mut Fields {
            json: self,
            first: true,
        });
        self.0.push('}');
    }

    fn array<T>(&mut self, items: &[T], mut item: impl FnMut(&mut GoJson, &T)) {
        self.0.push('[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            item(self, x);
        }
        self.0.push(']');
    }

    fn string_map(&mut self, map: &BTreeMap<String, String>) {
        // BTreeMap iterates in byte order of the keys, as Go sorts them.
        self.object(|o| {
            for (k, v) in map {
                o.field(k, |j| j.string(v));
            }
        });
    }

    fn string(&mut self, s: &str) {
        let out = &mut self.0;
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(yaml: &str) -> Rollout {
        serde_yaml_ng::from_str(yaml).expect("rollout")
    }

    fn hash_of(input: &str) -> String {
        safe_encode(&hex::encode(Sha256::digest(input.as_bytes())))
    }

    /// Kruise's own fixtures (pkg/controller/rollout/rollout_status_test.go), whose
    /// expected values fix the digest and the encoding.
    #[test]
    fn kruises_expected_hashes() {
        assert_eq!(
            hash_of(
                r#"{"steps":[{"traffic":"5%","replicas":1,"pause":{}},{"traffic":"20%","replicas":2,"pause":{}},{"traffic":"60%","replicas":6,"pause":{}},{"traffic":"100%","replicas":10,"pause":{}}],"trafficRoutings":[{"service":"echoserver","ingress":{"name":"echoserver"}}],"enableExtraWorkloadForCanary":true}"#
            ),
            "75746v7d5z9x59v5c7dff4wd9cv9cc28czf6c2z664w7zbb7vw2bzv76v99z6bd9"
        );
        assert_eq!(
            hash_of(
                r#"{"steps":[{"traffic":"50%","pause":{}},{"traffic":"100%","pause":{}}],"trafficRoutings":[{"service":"echoserver","ingress":{"name":"echoserver"}}],"enableExtraWorkloadForCanary":true}"#
            ),
            "db9c2x47d282c84z6684d598bzwf9b4x6ffb45fc456xdfv97945v2vb79w72c7z"
        );
    }

    #[test]
    fn the_first_fixture_written_as_v1alpha1_hashes_the_same() {
        let r = rollout(
            r#"
metadata: {name: rollout-demo}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echoserver}}
  strategy:
    paused: true
    canary:
      failureThreshold: 0
      steps:
      - {weight: 5, replicas: 1, pause: {duration: 10}}
      - {weight: 20, replicas: 2}
      - {weight: 60, replicas: 6}
      - {weight: 100, replicas: 10}
      trafficRoutings: [{service: echoserver, gracePeriodSeconds: 0, ingress: {name: echoserver}}]
"#,
        );
        assert_eq!(
            plan_hash(&r).as_deref(),
            Some("75746v7d5z9x59v5c7dff4wd9cv9cc28czf6c2z664w7zbb7vw2bzv76v99z6bd9")
        );
    }

    #[test]
    fn a_kubevela_rollout_converts_as_kruise_converts_it() {
        let r = rollout(
            r#"
metadata: {name: canary-demo}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: canary-demo}}
  strategy:
    canary:
      steps: [{weight: 20, pause: {}}]
      trafficRoutings: [{service: canary-demo, gracePeriodSeconds: 5, ingress: {name: canary-demo}}]
"#,
        );
        assert_eq!(
            hash_input(&r).as_deref(),
            Some(
                r#"{"steps":[{"traffic":"20%","replicas":"20%","pause":{}}],"trafficRoutings":[{"service":"canary-demo","gracePeriodSeconds":5,"ingress":{"name":"canary-demo"}}],"enableExtraWorkloadForCanary":true}"#
            )
        );
        let with_matches = rollout(
            r#"
metadata: {name: canary-demo}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: canary-demo}}
  strategy:
    canary:
      steps: [{replicas: "50%", weight: 50, matches: [{headers: [{name: x-canary, value: "yes"}]}], pause: {duration: 10}}]
      trafficRoutings: [{service: canary-demo, gracePeriodSeconds: 5, ingress: {name: canary-demo}}]
"#,
        );
        assert_eq!(
            hash_input(&with_matches).as_deref(),
            Some(
                r#"{"steps":[{"traffic":"50%","matches":[{"headers":[{"type":"Exact","name":"x-canary","value":"yes"}]}],"replicas":"50%","pause":{}}],"trafficRoutings":[{"service":"canary-demo","gracePeriodSeconds":5,"ingress":{"name":"canary-demo"}}],"enableExtraWorkloadForCanary":true}"#
            )
        );
    }

    #[test]
    fn what_changes_the_plan_and_what_does_not() {
        let base = r#"
metadata: {name: r, annotations: {}}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}
  strategy:
    canary:
      steps: [{weight: 20, pause: {}}, {weight: 60, pause: {duration: 30}}]
      trafficRoutings: [{service: web, ingress: {name: web}}]
"#;
        let hash = |edit: (&str, &str)| plan_hash(&rollout(&base.replacen(edit.0, edit.1, 1)));
        let original = hash(("", ""));
        for unchanged in [
            ("pause: {duration: 30}", "pause: {duration: 600}"),
            ("canary:\n", "paused: true\n    canary:\n"),
            ("steps:", "failureThreshold: 20%\n      steps:"),
            ("name: web}}", "name: other}}"),
        ] {
            assert_eq!(hash(unchanged), original, "{unchanged:?}");
        }
        for changed in [
            ("{weight: 60", "{weight: 80"),
            (
                "{weight: 20, pause: {}}",
                "{weight: 20, replicas: 1, pause: {}}",
            ),
            ("ingress: {name: web}", "ingress: {name: other}"),
            (
                "annotations: {}",
                "annotations: {rollouts.kruise.io/rolling-style: partition}",
            ),
        ] {
            assert_ne!(hash(changed), original, "{changed:?}");
        }
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut j = GoJson::default();
        j.string("a<b>&\"c\"\n\u{1}é");
        assert_eq!(j.0, r#""a\u003cb\u003e\u0026\"c\"\n\u0001é""#);
    }
}
