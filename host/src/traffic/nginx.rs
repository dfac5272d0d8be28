//! NGINX Ingress: a canary Ingress `<ingress>-canary` beside the stable one, with
//! ingress-nginx's `canary*` annotations (weight, by-header, by-cookie); deleted when
//! the release ends.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::core::ApiResource;
use serde_json::{Value, json};

use super::{Router, Routing};
use crate::controller::observed::{Observed, TrafficView};
use crate::controller::write::{Target, Write};
use crate::kruise::v1alpha1::TrafficRoutingRef;
use crate::strategy::model::{MatchKind, MatchSource, Percent, Traffic};
use crate::workload::owner;

/// The annotation prefix of ingress-nginx.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// The NGINX Ingress router.
pub struct Nginx;

/// The name of the canary Ingress of `ingress`.
pub fn canary_ingress_name(ingress: &str) -> String {
    format!("{ingress}-canary")
}

fn annotations(ingress: &Value) -> BTreeMap<String, String> {
    crate::workload::string_map(ingress, "/metadata/annotations")
}

fn canary<'a>(traffic: &'a TrafficView, routing: &Routing) -> Option<&'a Value> {
    traffic.route("Ingress", &canary_ingress_name(&routing.object))
}

impl Router for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn claims(&self, r: &TrafficRoutingRef) -> Option<String> {
        match (&r.ingress, &r.gateway) {
            (Some(ingress), _) => Some(ingress.name.clone()),
            // KubeVela's first traits: `type: nginx`, the Ingress named like the Service.
            (None, None) => Some(r.service.clone()),
            (None, Some(_)) => None,
        }
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        routing: &'a Routing,
    ) -> BoxFuture<'a, Result<Vec<Value>, kube::Error>> {
        Box::pin(async move {
            let ingresses: Api<Ingress> = Api::namespaced(client.clone(), namespace);
            let mut found = Vec::new();
            for name in [routing.object.clone(), canary_ingress_name(&routing.object)] {
                if let Some(i) = ingresses.get_opt(&name).await? {
                    let mut v = serde_json::to_value(i).map_err(kube::Error::SerdeError)?;
                    v["apiVersion"] = json!("networking.k8s.io/v1");
                    v["kind"] = json!("Ingress");
                    found.push(v);
                }
            }
            Ok(found)
        })
    }

    fn owned(&self) -> Option<ApiResource> {
        Some(ApiResource::erase::<Ingress>(&()))
    }

    fn applied_weight(&self, traffic: &TrafficView, routing: &Routing) -> Option<Percent> {
        canary(traffic, routing).and_then(|c| nginx_weight(&annotations(c)))
    }

    fn is(&self, traffic: &TrafficView, routing: &Routing, wanted: &Traffic) -> bool {
        canary(traffic, routing)
            .is_some_and(|c| canary_annotations_of(&annotations(c)) == nginx_annotations(wanted))
    }

    fn present(&self, traffic: &TrafficView, routing: &Routing) -> bool {
        canary(traffic, routing).is_some()
    }

    fn route(&self, o: &Observed, routing: &Routing, wanted: &Traffic) -> Vec<Write> {
        let name = canary_ingress_name(&routing.object);
        let target = Target::new("networking.k8s.io/v1", "Ingress", o.namespace(), &name);
        let wanted = nginx_annotations(wanted);
        match canary(&o.traffic, routing) {
            Some(current) => {
                // Every canary annotation not wanted any more goes: a weight after
                // a header match, say.
                let mut patch = serde_json::Map::new();
                for key in annotations(current)
                    .keys()
                    .filter(|k| k.starts_with(&format!("{NGINX}canary")))
                {
                    patch.insert(key.clone(), Value::Null);
                }
                for (k, v) in &wanted {
                    patch.insert(k.clone(), json!(v));
                }
                vec![Write::patch(
                    target,
                    json!({"metadata": {"annotations": patch}}),
                )]
            }
            None => match o.traffic.route("Ingress", &routing.object) {
                Some(stable) => {
                    let mut object = canary_ingress(stable, routing, &wanted);
                    object["metadata"]["namespace"] = json!(o.namespace());
                    object["metadata"]["ownerReferences"] = json!([owner(&o.rollout)]);
                    vec![Write::Create { target, object }]
                }
                // No stable Ingress to copy: nothing to route (the Rollout's status
                // says so through its step, which does not get its traffic).
                None => Vec::new(),
            },
        }
    }

    fn remove(&self, o: &Observed, routing: &Routing) -> Vec<Write> {
        if !self.present(&o.traffic, routing) {
            return Vec::new();
        }
        vec![Write::Delete {
            target: Target::new(
                "networking.k8s.io/v1",
                "Ingress",
                o.namespace(),
                &canary_ingress_name(&routing.object),
            ),
            background: false,
        }]
    }
}

/// The canary annotations ingress-nginx reads for `traffic`.
pub fn nginx_annotations(traffic: &Traffic) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(format!("{NGINX}canary"), "true".to_owned());
    if let Some(w) = traffic.weight {
        a.insert(format!("{NGINX}canary-weight"), w.get().to_string());
    }
    for route in &traffic.matches {
        let Some(c) = route.conditions.first() else {
            continue;
        };
        match c.source {
            MatchSource::Cookie => {
                a.insert(format!("{NGINX}canary-by-cookie"), c.name.clone());
            }
            MatchSource::Header => {
                a.insert(format!("{NGINX}canary-by-header"), c.name.clone());
                let key = match c.kind {
                    MatchKind::Exact => "canary-by-header-value",
                    MatchKind::RegularExpression => "canary-by-header-pattern",
                };
                a.insert(format!("{NGINX}{key}"), c.value.clone());
            }
        }
    }
    a
}

/// The canary annotations among an Ingress' annotations.
pub fn canary_annotations_of(all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    all.iter()
        .filter(|(k, _)| k.starts_with(&format!("{NGINX}canary")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The weight an observed canary Ingress sends to the canary.
pub fn nginx_weight(annotations: &BTreeMap<String, String>) -> Option<Percent> {
    annotations
        .get(&format!("{NGINX}canary-weight"))
        .and_then(|w| w.parse::<u8>().ok())
        .and_then(|w| Percent::new(w).ok())
}

/// The canary Ingress for `stable`: its host rules for the stable Service, sent to the
/// canary Service, with the canary annotations.
pub fn canary_ingress(
    stable: &Value,
    routing: &Routing,
    annotations: &BTreeMap<String, String>,
) -> Value {
    let name = stable
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut all_annotations: BTreeMap<String, String> = stable
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !k.starts_with(&format!("{NGINX}canary"))
                        && *k != "kubectl.kubernetes.io/last-applied-configuration"
                })
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    all_annotations.extend(annotations.clone());
    let rules: Vec<Value> = stable
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|rule| {
                    let paths: Vec<Value> = rule
                        .pointer("/http/paths")
                        .and_then(Value::as_array)?
                        .iter()
                        .filter(|p| {
                            p.pointer("/backend/service/name").and_then(Value::as_str)
                                == Some(routing.service.as_str())
                        })
                        .map(|p| {
                            let mut p = p.clone();
                            p["backend"]["service"]["name"] = json!(routing.canary_service);
                            p
                        })
                        .collect();
                    if paths.is_empty() {
                        return None;
                    }
                    let mut rule = rule.clone();
                    rule["http"]["paths"] = Value::Array(paths);
                    Some(rule)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut spec = json!({"rules": rules});
    for field in ["ingressClassName", "tls"] {
        if let Some(v) = stable.pointer(&format!("/spec/{field}")) {
            spec[field] = v.clone();
        }
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_ingress_name(name),
            "labels": stable.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": all_annotations,
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::model::{RequestCondition, RequestRoute};
    use crate::traffic::RouterRef;

    fn routing() -> Routing {
        Routing {
            service: "demo".into(),
            canary_service: "demo-canary".into(),
            grace_seconds: 3,
            router: RouterRef(&Nginx),
            object: "demo".into(),
        }
    }

    fn header(name: &str, value: &str, kind: MatchKind) -> RequestRoute {
        RequestRoute {
            conditions: vec![RequestCondition {
                source: MatchSource::Header,
                name: name.into(),
                value: value.into(),
                kind,
            }],
        }
    }

    #[test]
    fn nginx_annotations_for_weight_header_and_cookie() {
        let weight = Traffic {
            weight: Some(Percent::new(20).unwrap()),
            matches: vec![],
        };
        assert_eq!(
            nginx_annotations(&weight),
            BTreeMap::from([
                (format!("{NGINX}canary"), "true".into()),
                (format!("{NGINX}canary-weight"), "20".into())
            ])
        );
        let ab = Traffic {
            weight: None,
            matches: vec![
                header("user-agent", ".*Android.*", MatchKind::RegularExpression),
                RequestRoute {
                    conditions: vec![RequestCondition {
                        source: MatchSource::Cookie,
                        name: "beta".into(),
                        value: "always".into(),
                        kind: MatchKind::Exact,
                    }],
                },
            ],
        };
        let a = nginx_annotations(&ab);
        assert_eq!(a[&format!("{NGINX}canary-by-header")], "user-agent");
        assert_eq!(
            a[&format!("{NGINX}canary-by-header-pattern")],
            ".*Android.*"
        );
        assert_eq!(a[&format!("{NGINX}canary-by-cookie")], "beta");
        assert!(!a.contains_key(&format!("{NGINX}canary-weight")));
    }

    #[test]
    fn canary_ingress_copies_only_the_stable_service_paths() {
        let stable = json!({
            "metadata": {"name": "demo", "annotations": {"a": "b", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"ingressClassName": "nginx", "rules": [
                {"host": "demo.com", "http": {"paths": [
                    {"path": "/version", "backend": {"service": {"name": "demo", "port": {"number": 80}}}},
                    {"path": "/other", "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}},
                {"host": "x.com", "http": {"paths": [{"path": "/", "backend": {"service": {"name": "other"}}}]}}]}
        });
        let c = canary_ingress(
            &stable,
            &routing(),
            &BTreeMap::from([(format!("{NGINX}canary"), "true".to_owned())]),
        );
        assert_eq!(c["metadata"]["name"], "demo-canary");
        assert_eq!(c["metadata"]["annotations"]["a"], "b");
        assert!(
            c["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        let rules = c["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["http"]["paths"].as_array().unwrap().len(), 1);
        assert_eq!(
            rules[0]["http"]["paths"][0]["backend"]["service"]["name"],
            "demo-canary"
        );
        assert_eq!(c["spec"]["ingressClassName"], "nginx");
    }
}
