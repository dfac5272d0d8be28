//! Traffic routing, as pure functions from a step's traffic to the objects that carry
//! it: the annotations of an NGINX canary Ingress, and the rules of an HTTPRoute.
//! Each router is one `Router` value, so more can be added beside these.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::kruise::v1alpha1::TrafficRoutingRef;
use crate::strategy::model::{MatchKind, MatchSource, Percent, Traffic};

/// The annotation prefix of ingress-nginx.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// How a Rollout's traffic is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Router {
    /// An NGINX Ingress and its `<name>-canary` twin.
    Nginx {
        /// The stable Ingress.
        ingress: String,
    },
    /// A Gateway API HTTPRoute whose backends are weighted.
    Gateway {
        /// The HTTPRoute.
        http_route: String,
    },
}

/// A Rollout's traffic routing, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The stable Service.
    pub service: String,
    /// The canary Service (`<service>-canary`, or the stable one when generation is off).
    pub canary_service: String,
    /// Seconds to wait after each traffic change.
    pub grace_seconds: u32,
    /// The router.
    pub router: Router,
}

impl Routing {
    /// The routing of a Rollout, if it routes traffic.
    pub fn of_rollout(rollout: &crate::kruise::v1alpha1::Rollout) -> Option<Routing> {
        let canary = rollout.spec.strategy.canary.as_ref()?;
        Routing::of(
            &canary.traffic_routings,
            canary.disable_generate_canary_service,
        )
    }

    /// The routing of a Rollout's first traffic routing, if it has one.
    pub fn of(refs: &[TrafficRoutingRef], disable_canary_service: bool) -> Option<Routing> {
        let r = refs.first()?;
        let router = match (&r.ingress, &r.gateway) {
            (Some(ingress), _) => Router::Nginx {
                ingress: ingress.name.clone(),
            },
            (None, Some(gateway)) => Router::Gateway {
                http_route: gateway.http_route_name.clone().unwrap_or_default(),
            },
            // KubeVela's first traits: `type: nginx`, the Ingress named like the Service.
            (None, None) => Router::Nginx {
                ingress: r.service.clone(),
            },
        };
        Some(Routing {
            service: r.service.clone(),
            canary_service: if disable_canary_service {
                r.service.clone()
            } else {
                format!("{}-canary", r.service)
            },
            grace_seconds: r.grace_period_seconds.map_or(3, |g| g.max(0) as u32),
            router,
        })
    }
}

/// The name of the canary Ingress of `ingress`.
pub fn canary_ingress_name(ingress: &str) -> String {
    format!("{ingress}-canary")
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

/// The rules of an HTTPRoute sending `traffic` to the canary: every rule with the
/// stable Service as a backend splits its weight; each header match adds a rule to
/// the canary. `None` traffic (finalising) restores the stable-only rules.
pub fn http_route_rules(
    rules: &[Value],
    routing: &Routing,
    traffic: Option<&Traffic>,
) -> Vec<Value> {
    let is_canary_ref =
        |b: &Value| b.get("name").and_then(Value::as_str) == Some(routing.canary_service.as_str());
    let is_stable_ref =
        |b: &Value| b.get("name").and_then(Value::as_str) == Some(routing.service.as_str());
    // Rules Sluice added send everything to the canary: drop them, then rebuild.
    let base: Vec<Value> = rules
        .iter()
        .filter(|r| {
            let refs = r.get("backendRefs").and_then(Value::as_array);
            !refs.is_some_and(|refs| !refs.is_empty() && refs.iter().all(is_canary_ref))
        })
        .cloned()
        .collect();
    let mut out = Vec::new();
    for rule in &base {
        let mut rule = rule.clone();
        let refs: Vec<Value> = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let stable = refs.iter().find(|b| is_stable_ref(b)).cloned();
        let mut new_refs: Vec<Value> = refs.iter().filter(|b| !is_canary_ref(b)).cloned().collect();
        if let Some(stable) = stable {
            let weight = traffic
                .and_then(|t| t.weight)
                .map_or(0, |w| u32::from(w.get()));
            for b in new_refs.iter_mut().filter(|b| is_stable_ref(b)) {
                b["weight"] = json!(if traffic.is_some() { 100 - weight } else { 1 });
            }
            if traffic.is_some() {
                let mut canary = stable.clone();
                canary["name"] = json!(routing.canary_service);
                canary["weight"] = json!(weight);
                new_refs.push(canary);
            }
        }
        rule["backendRefs"] = Value::Array(new_refs);
        out.push(rule);
    }
    if let Some(traffic) = traffic {
        for rule in &base {
            let Some(refs) = rule.get("backendRefs").and_then(Value::as_array) else {
                continue;
            };
            let Some(stable) = refs.iter().find(|b| is_stable_ref(b)) else {
                continue;
            };
            let original: Vec<Value> = rule
                .get("matches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]);
            for route in &traffic.matches {
                let headers: Vec<Value> = route
                    .conditions
                    .iter()
                    .filter(|c| c.source == MatchSource::Header)
                    .map(|c| {
                        json!({"type": if c.kind == MatchKind::Exact { "Exact" } else { "RegularExpression" }, "name": c.name, "value": c.value})
                    })
                    .collect();
                let matches: Vec<Value> = original
                    .iter()
                    .map(|m| {
                        let mut m = m.clone();
                        let mut all = m
                            .get("headers")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        all.extend(headers.clone());
                        m["headers"] = Value::Array(all);
                        m
                    })
                    .collect();
                let mut canary = stable.clone();
                canary["name"] = json!(routing.canary_service);
                canary.as_object_mut().map(|o| o.remove("weight"));
                out.push(json!({"matches": matches, "backendRefs": [canary]}));
            }
        }
    }
    out
}

/// The canary weight of observed HTTPRoute rules.
pub fn http_route_weight(rules: &[Value], routing: &Routing) -> Option<Percent> {
    rules
        .iter()
        .filter_map(|r| r.get("backendRefs").and_then(Value::as_array))
        .flatten()
        .filter(|b| b.get("name").and_then(Value::as_str) == Some(routing.canary_service.as_str()))
        .find_map(|b| b.get("weight").and_then(Value::as_u64))
        .and_then(|w| Percent::new(u8::try_from(w).ok()?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::model::{RequestCondition, RequestRoute};

    fn routing() -> Routing {
        Routing {
            service: "demo".into(),
            canary_service: "demo-canary".into(),
            grace_seconds: 3,
            router: Router::Nginx {
                ingress: "demo".into(),
            },
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

    #[test]
    fn http_route_weights_and_matches_round_trip() {
        let routing = Routing {
            router: Router::Gateway {
                http_route: "demo".into(),
            },
            ..routing()
        };
        let original = vec![
            json!({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "demo", "port": 80}]}),
        ];
        let traffic = Traffic {
            weight: Some(Percent::new(20).unwrap()),
            matches: vec![header("x-canary", "yes", MatchKind::Exact)],
        };
        let rules = http_route_rules(&original, &routing, Some(&traffic));
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["backendRefs"][0]["weight"], 80);
        assert_eq!(
            rules[0]["backendRefs"][1],
            json!({"name": "demo-canary", "port": 80, "weight": 20})
        );
        assert_eq!(rules[1]["matches"][0]["headers"][0]["name"], "x-canary");
        assert_eq!(
            rules[1]["backendRefs"],
            json!([{"name": "demo-canary", "port": 80}])
        );
        assert_eq!(
            http_route_weight(&rules, &routing),
            Some(Percent::new(20).unwrap())
        );

        // A later step rebuilds from the same rules, and finalising restores them.
        let again = http_route_rules(&rules, &routing, Some(&traffic));
        assert_eq!(again, rules);
        let restored = http_route_rules(&rules, &routing, None);
        assert_eq!(
            restored,
            vec![
                json!({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "demo", "port": 80, "weight": 1}]})
            ]
        );
    }
}
