//! Which Service a request goes to.
//!
//! Ingress, as ingress-nginx routes it: the longest matching path of the rules for the
//! request's host; a canary Ingress (`nginx.ingress.kubernetes.io/canary: "true"`) for
//! the same host and path takes the request when its `canary-by-header`, then
//! `canary-by-cookie`, then `canary-weight` rule says so. HTTPRoute: the most specific
//! matching rule, then a backend by weight.

use axum::http::HeaderMap;
use serde_json::Value;

use super::Dice;
use super::Objects;
use crate::object::Meta;
use crate::store::ResKey;

const ANNOTATION: &str = "nginx.ingress.kubernetes.io/";

/// A Service a request is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub service: String,
}

/// The backend for a request, if any Ingress or HTTPRoute routes it.
pub fn resolve(
    objects: &dyn Objects,
    host: &str,
    path: &str,
    headers: &HeaderMap,
    dice: &Dice,
) -> Option<Backend> {
    ingress(objects, host, path, headers, dice)
        .or_else(|| http_route(objects, host, path, headers, dice))
}

struct IngressMatch {
    namespace: String,
    service: String,
    path_len: usize,
    annotations: serde_json::Map<String, Value>,
}

fn ingress_matches(ingress: &Value, host: &str, path: &str) -> Option<IngressMatch> {
    let meta = Meta::of(ingress);
    let class = ingress
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str)
        .or_else(|| meta.annotation("kubernetes.io/ingress.class"));
    if class.is_some_and(|c| c != "nginx") {
        return None;
    }
    let mut best: Option<IngressMatch> = None;
    for rule in ingress.pointer("/spec/rules").and_then(Value::as_array)? {
        let rule_host = rule.get("host").and_then(Value::as_str).unwrap_or("");
        if !rule_host.is_empty() && rule_host != host {
            continue;
        }
        for p in rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rule_path = p.get("path").and_then(Value::as_str).unwrap_or("/");
            let exact = p.get("pathType").and_then(Value::as_str) == Some("Exact");
            let matched = if exact {
                path == rule_path
            } else {
                let prefix = rule_path.trim_end_matches('/');
                prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
            };
            let Some(service) = p.pointer("/backend/service/name").and_then(Value::as_str) else {
                continue;
            };
            if matched && best.as_ref().is_none_or(|b| rule_path.len() > b.path_len) {
                best = Some(IngressMatch {
                    namespace: meta.namespace().to_owned(),
                    service: service.to_owned(),
                    path_len: rule_path.len(),
                    annotations: meta
                        .get("annotations")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        }
    }
    best
}

fn ingress(
    objects: &dyn Objects,
    host: &str,
    path: &str,
    headers: &HeaderMap,
    dice: &Dice,
) -> Option<Backend> {
    let all = objects.list(&ResKey::new("networking.k8s.io", "ingresses"), None);
    let mut main: Option<IngressMatch> = None;
    let mut canaries: Vec<IngressMatch> = Vec::new();
    for ingress in &all {
        let Some(m) = ingress_matches(ingress, host, path) else {
            continue;
        };
        let is_canary = m
            .annotations
            .get(&format!("{ANNOTATION}canary"))
            .and_then(Value::as_str)
            == Some("true");
        if is_canary {
            canaries.push(m);
        } else if main.as_ref().is_none_or(|b| m.path_len > b.path_len) {
            main = Some(m);
        }
    }
    let main = main?;
    let canary = canaries
        .into_iter()
        .find(|c| c.path_len == main.path_len && c.namespace == main.namespace);
    let chosen = match canary {
        Some(c) if takes_request(&c.annotations, headers, dice) => c,
        _ => main,
    };
    Some(Backend {
        namespace: chosen.namespace,
        service: chosen.service,
    })
}

/// ingress-nginx's canary rules, in their order of precedence.
pub fn takes_request(
    annotations: &serde_json::Map<String, Value>,
    headers: &HeaderMap,
    dice: &Dice,
) -> bool {
    let get = |k: &str| {
        annotations
            .get(&format!("{ANNOTATION}{k}"))
            .and_then(Value::as_str)
    };
    if let Some(name) = get("canary-by-header")
        && let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
    {
        if let Some(expected) = get("canary-by-header-value") {
            if value == expected {
                return true;
            }
        } else if let Some(pattern) = get("canary-by-header-pattern") {
            if regex::Regex::new(pattern).is_ok_and(|re| re.is_match(value)) {
                return true;
            }
        } else if value == "always" {
            return true;
        } else if value == "never" {
            return false;
        }
    }
    if let Some(name) = get("canary-by-cookie")
        && let Some(value) = cookie(headers, name)
    {
        match value.as_str() {
            "always" => return true,
            "never" => return false,
            _ => {}
        }
    }
    let weight: u64 = get("canary-weight")
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    let total: u64 = get("canary-weight-total")
        .and_then(|w| w.parse().ok())
        .unwrap_or(100);
    weight > 0 && dice.below(total.max(1)) < weight
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn http_route(
    objects: &dyn Objects,
    host: &str,
    path: &str,
    headers: &HeaderMap,
    dice: &Dice,
) -> Option<Backend> {
    let routes = objects.list(
        &ResKey::new("gateway.networking.k8s.io", "httproutes"),
        None,
    );
    let mut best: Option<((bool, usize, usize), &Value, String)> = None;
    for route in &routes {
        let hostnames: Vec<&str> = route
            .pointer("/spec/hostnames")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let host_ok = hostnames.is_empty()
            || hostnames.iter().any(|h| {
                *h == host
                    || h.strip_prefix("*.")
                        .is_some_and(|s| host.ends_with(&format!(".{s}")))
            });
        if !host_ok {
            continue;
        }
        for rule in route
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let matches: Vec<&Value> = rule
                .get("matches")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let default_match = serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}});
            let candidates = if matches.is_empty() {
                vec![&default_match]
            } else {
                matches
            };
            for m in candidates {
                if let Some(score) = route_match_score(m, path, headers)
                    && best.as_ref().is_none_or(|(s, _, _)| score > *s)
                {
                    best = Some((score, rule, Meta::of(route).namespace().to_owned()));
                }
            }
        }
    }
    let (_, rule, namespace) = best?;
    let backends: Vec<(&str, u64)> = rule
        .get("backendRefs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    Some((
                        b.get("name")?.as_str()?,
                        b.get("weight").and_then(Value::as_u64).unwrap_or(1),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let total: u64 = backends.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = dice.below(total);
    for (name, weight) in backends {
        if pick < weight {
            return Some(Backend {
                namespace,
                service: name.to_owned(),
            });
        }
        pick -= weight;
    }
    None
}

/// How specifically an HTTPRoute match fits the request, or `None`.
fn route_match_score(m: &Value, path: &str, headers: &HeaderMap) -> Option<(bool, usize, usize)> {
    let path_type = m
        .pointer("/path/type")
        .and_then(Value::as_str)
        .unwrap_or("PathPrefix");
    let value = m
        .pointer("/path/value")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let exact = path_type == "Exact";
    let path_ok = if exact {
        path == value
    } else {
        let prefix = value.trim_end_matches('/');
        prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
    };
    if !path_ok {
        return None;
    }
    let header_matches = m
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for h in header_matches {
        let name = h.get("name").and_then(Value::as_str).unwrap_or("");
        let want = h.get("value").and_then(Value::as_str).unwrap_or("");
        let got = headers.get(name).and_then(|v| v.to_str().ok())?;
        let ok = if h.get("type").and_then(Value::as_str) == Some("RegularExpression") {
            regex::Regex::new(want).is_ok_and(|re| re.is_match(got))
        } else {
            got == want
        };
        if !ok {
            return None;
        }
    }
    Some((exact, value.len(), header_matches.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dice() -> Dice {
        Dice::new(Some(1))
    }

    fn annotations(v: Value) -> serde_json::Map<String, Value> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (format!("{ANNOTATION}{k}"), v.clone()))
            .collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn header_rules() {
        let exact = annotations(
            json!({"canary": "true", "canary-by-header": "x-canary", "canary-by-header-value": "yes"}),
        );
        assert!(takes_request(
            &exact,
            &headers(&[("x-canary", "yes")]),
            &dice()
        ));
        assert!(!takes_request(
            &exact,
            &headers(&[("x-canary", "no")]),
            &dice()
        ));
        assert!(!takes_request(&exact, &headers(&[]), &dice()));
        let pattern = annotations(
            json!({"canary": "true", "canary-by-header": "user-agent", "canary-by-header-pattern": ".*Android.*"}),
        );
        assert!(takes_request(
            &pattern,
            &headers(&[("user-agent", "Mozilla (Linux; Android 14)")]),
            &dice()
        ));
        assert!(!takes_request(
            &pattern,
            &headers(&[("user-agent", "curl/8")]),
            &dice()
        ));
        let plain = annotations(
            json!({"canary": "true", "canary-by-header": "x-canary", "canary-weight": "100"}),
        );
        assert!(
            !takes_request(&plain, &headers(&[("x-canary", "never")]), &dice()),
            "never beats weight 100"
        );
        assert!(
            takes_request(&plain, &headers(&[("x-canary", "other")]), &dice()),
            "other values fall through to the weight"
        );
    }

    #[test]
    fn cookie_rules_and_precedence() {
        let a = annotations(
            json!({"canary": "true", "canary-by-header": "x-canary", "canary-by-cookie": "beta", "canary-weight": "0"}),
        );
        assert!(takes_request(
            &a,
            &headers(&[("cookie", "theme=dark; beta=always")]),
            &dice()
        ));
        assert!(!takes_request(
            &a,
            &headers(&[("cookie", "beta=never")]),
            &dice()
        ));
        assert!(
            !takes_request(
                &a,
                &headers(&[("x-canary", "never"), ("cookie", "beta=always")]),
                &dice()
            ),
            "header first"
        );
        assert!(
            takes_request(
                &a,
                &headers(&[("x-canary", "always"), ("cookie", "beta=never")]),
                &dice()
            ),
            "header first"
        );
    }

    #[test]
    fn weight_zero_and_full() {
        assert!(!takes_request(
            &annotations(json!({"canary": "true", "canary-weight": "0"})),
            &headers(&[]),
            &dice()
        ));
        assert!(takes_request(
            &annotations(json!({"canary": "true", "canary-weight": "100"})),
            &headers(&[]),
            &dice()
        ));
    }
}
