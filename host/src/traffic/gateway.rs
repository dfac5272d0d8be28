//! Gateway API HTTPRoute: the rules' backends are weighted between the stable and
//! the canary Service, and each header match adds a rule to the canary; the rules
//! are restored when the release ends.

use futures::future::BoxFuture;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::{Router, Routing};
use crate::controller::observed::{Observed, TrafficView};
use crate::controller::write::{Target, Write};
use crate::kruise::v1alpha1::TrafficRoutingRef;
use crate::strategy::model::{MatchKind, MatchSource, Percent, Traffic};

/// The Gateway API router.
pub struct Gateway;

/// The HTTPRoute kind.
pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

fn rules(traffic: &TrafficView, routing: &Routing) -> Option<Vec<Value>> {
    traffic
        .route("HTTPRoute", &routing.object)?
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
}

fn set_rules(o: &Observed, routing: &Routing, rules: Vec<Value>) -> Write {
    Write::patch(
        Target::new(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            o.namespace(),
            &routing.object,
        ),
        json!({"spec": {"rules": rules}}),
    )
}

impl Router for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn claims(&self, r: &TrafficRoutingRef) -> Option<String> {
        match (&r.ingress, &r.gateway) {
            (None, Some(gateway)) => Some(gateway.http_route_name.clone().unwrap_or_default()),
            _ => None,
        }
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        routing: &'a Routing,
    ) -> BoxFuture<'a, Result<Vec<Value>, kube::Error>> {
        Box::pin(async move {
            let routes: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &httproute_resource());
            match routes.get_opt(&routing.object).await {
                Ok(Some(r)) => {
                    let mut v = serde_json::to_value(r).map_err(kube::Error::SerdeError)?;
                    v["kind"] = json!("HTTPRoute");
                    Ok(vec![v])
                }
                Ok(None) => Ok(Vec::new()),
                // Without the Gateway API's CRDs there are no HTTPRoutes.
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        })
    }

    fn applied_weight(&self, traffic: &TrafficView, routing: &Routing) -> Option<Percent> {
        rules(traffic, routing).and_then(|rules| http_route_weight(&rules, routing))
    }

    fn is(&self, traffic: &TrafficView, routing: &Routing, wanted: &Traffic) -> bool {
        rules(traffic, routing)
            .is_some_and(|rules| http_route_rules(&rules, routing, Some(wanted)) == rules)
    }

    fn present(&self, traffic: &TrafficView, routing: &Routing) -> bool {
        // A route is there when some rule sends traffic to the canary Service: a
        // route never weighted (no weights at all) is not one to take down.
        rules(traffic, routing).is_some_and(|rules| {
            rules
                .iter()
                .filter_map(|r| r.get("backendRefs").and_then(Value::as_array))
                .flatten()
                .any(|b| {
                    b.get("name").and_then(Value::as_str) == Some(routing.canary_service.as_str())
                })
        })
    }

    fn route(&self, o: &Observed, routing: &Routing, wanted: &Traffic) -> Vec<Write> {
        // A missing HTTPRoute has no rules to weight: nothing to write.
        rules(&o.traffic, routing)
            .map(|rules| set_rules(o, routing, http_route_rules(&rules, routing, Some(wanted))))
            .into_iter()
            .collect()
    }

    fn remove(&self, o: &Observed, routing: &Routing) -> Vec<Write> {
        let Some(rules) = rules(&o.traffic, routing) else {
            return Vec::new();
        };
        if !self.present(&o.traffic, routing) {
            return Vec::new();
        }
        let restored = http_route_rules(&rules, routing, None);
        if restored == rules {
            Vec::new()
        } else {
            vec![set_rules(o, routing, restored)]
        }
    }
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
    use crate::traffic::RouterRef;

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
    fn http_route_weights_and_matches_round_trip() {
        let routing = Routing {
            service: "demo".into(),
            canary_service: "demo-canary".into(),
            grace_seconds: 3,
            router: RouterRef(&Gateway),
            object: "demo".into(),
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
