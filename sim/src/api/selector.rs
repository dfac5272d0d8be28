//! Label and field selectors, as list and watch take them.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `app=web,tier!=db,env in (a,b),!legacy`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {part:?}"));
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_owned(), set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().to_owned(), set(rest).ok_or_else(bad)?)
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.to_owned())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// A selector from a `matchLabels`/`matchExpressions` object.
    pub fn from_object(selector: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                reqs.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => reqs.push(Requirement::In(key, values)),
                    Some("NotIn") => reqs.push(Requirement::NotIn(key, values)),
                    Some("Exists") => reqs.push(Requirement::Exists(key)),
                    Some("DoesNotExist") => reqs.push(Requirement::DoesNotExist(key)),
                    _ => {}
                }
            }
        }
        LabelSelector(reqs)
    }

    /// A selector requiring exactly these labels (a Service's selector).
    pub fn from_map(labels: &Map<String, Value>) -> Self {
        LabelSelector(
            labels
                .iter()
                .map(|(k, v)| Requirement::Equals(k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect(),
        )
    }

    /// Whether it selects nothing in particular (everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// The selector as a string, as a Scale's `status.selector` carries it.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A field selector, over the fields the API server indexes for the resource: the
/// name and namespace of anything, and per kind those kube-apiserver registers
/// (a Pod's node and phase, an Event's object, reason and type…).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<FieldRequirement>);

#[derive(Debug, Clone)]
struct FieldRequirement {
    /// Where the field is in the object, as a JSON pointer.
    pointer: &'static str,
    equal: bool,
    value: String,
}

/// The selectable fields of a kind beyond `metadata.name` and `metadata.namespace`,
/// with where each is in the object (kube-apiserver's field label sets).
fn selectable(group: &str, kind: &str) -> &'static [(&'static str, &'static str)] {
    match (group, kind) {
        ("", "Pod") => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        ("", "Event") => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            (
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        ("events.k8s.io", "Event") => &[
            ("regarding.kind", "/regarding/kind"),
            ("regarding.namespace", "/regarding/namespace"),
            ("regarding.name", "/regarding/name"),
            ("regarding.uid", "/regarding/uid"),
            ("regarding.apiVersion", "/regarding/apiVersion"),
            ("regarding.resourceVersion", "/regarding/resourceVersion"),
            ("regarding.fieldPath", "/regarding/fieldPath"),
            ("reason", "/reason"),
            ("reportingController", "/reportingController"),
            ("type", "/type"),
        ],
        ("", "Namespace") => &[("status.phase", "/status/phase")],
        ("", "Secret") => &[("type", "/type")],
        ("", "Node") => &[("spec.unschedulable", "/spec/unschedulable")],
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            &[("status.replicas", "/status/replicas")]
        }
        ("batch", "Job") => &[("status.successful", "/status/succeeded")],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses `metadata.name=web,involvedObject.kind!=Pod` for objects of
    /// `group`/`kind`; a field the kind does not index is refused in the API
    /// server's words.
    pub fn parse(text: &str, group: &str, kind: &str) -> Result<Self, ApiError> {
        const COMMON: &[(&str, &str)] = &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
        ];
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {part:?}"
                )));
            };
            let field = field.trim();
            let pointer = COMMON
                .iter()
                .chain(selectable(group, kind))
                .find(|(name, _)| *name == field)
                .map(|(_, pointer)| *pointer)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("field label not supported: {field}"))
                })?;
            reqs.push(FieldRequirement {
                pointer,
                equal,
                value: value.trim().to_owned(),
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether `object` satisfies every requirement. A field the object lacks
    /// reads as its zero value, as the API server's field sets hold it.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|req| {
            let actual = match object.pointer(req.pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if req.pointer.ends_with("hostNetwork")
                    || req.pointer.ends_with("unschedulable") =>
                {
                    "false".to_owned()
                }
                _ if req.pointer.starts_with("/status/replicas")
                    || req.pointer.ends_with("succeeded") =>
                {
                    "0".to_owned()
                }
                _ => String::new(),
            };
            (actual == req.value) == req.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let labels = json!({"app": "web", "tier": "front", "env": "prod"});
        let labels = labels.as_object();
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,env in (dev)", false),
        ];
        for (text, want) in cases {
            assert_eq!(
                LabelSelector::parse(text).unwrap().matches(labels),
                want,
                "{text}"
            );
        }
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selectors() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "default"}});
        let event = json!({
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Rollout", "name": "web", "namespace": "default", "uid": "u-1"},
            "reason": "StepPaused", "type": "Normal", "source": {"component": "sluice"},
        });
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "sim-node"}, "status": {"phase": "Running"},
        });
        let rs = json!({"metadata": {"name": "web-1"}, "status": {"replicas": 3}});
        let cases: &[(&str, &str, &Value, &str, bool)] = &[
            ("apps", "Deployment", &deployment, "metadata.name=web", true),
            (
                "apps",
                "Deployment",
                &deployment,
                "metadata.name==web",
                true,
            ),
            (
                "apps",
                "Deployment",
                &deployment,
                "metadata.namespace!=default",
                false,
            ),
            (
                "apps",
                "Deployment",
                &deployment,
                "metadata.name=web,metadata.namespace=x",
                false,
            ),
            (
                "",
                "Event",
                &event,
                "involvedObject.kind=Rollout,involvedObject.name=web",
                true,
            ),
            (
                "",
                "Event",
                &event,
                "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Rollout,involvedObject.uid=u-1",
                true,
            ),
            ("", "Event", &event, "involvedObject.uid=u-2", false),
            ("", "Event", &event, "reason=StepPaused,type=Normal", true),
            ("", "Event", &event, "type!=Warning", true),
            ("", "Event", &event, "source=sluice", true),
            ("", "Event", &event, "involvedObject.fieldPath=", true),
            (
                "",
                "Pod",
                &pod,
                "spec.nodeName=sim-node,status.phase=Running",
                true,
            ),
            ("", "Pod", &pod, "status.phase!=Running", false),
            ("", "Pod", &pod, "spec.hostNetwork=false", true),
            ("apps", "ReplicaSet", &rs, "status.replicas!=0", true),
        ];
        for (group, kind, object, text, want) in cases {
            let selector = FieldSelector::parse(text, group, kind).unwrap();
            assert_eq!(selector.matches(object), *want, "{kind} {text}");
        }
        for (group, kind, text) in [
            ("apps", "Deployment", "spec.nodeName=x"),
            ("apps", "Deployment", "status.phase=Running"),
            ("", "Pod", "involvedObject.kind=Pod"),
            ("events.k8s.io", "Event", "involvedObject.kind=Pod"),
        ] {
            let err = FieldSelector::parse(text, group, kind).unwrap_err();
            assert!(
                err.to_string().contains("field label not supported"),
                "{kind} {text}: {err}"
            );
        }
        let regarding = json!({"regarding": {"kind": "Rollout", "name": "web"}});
        assert!(
            FieldSelector::parse(
                "regarding.kind=Rollout,regarding.name=web",
                "events.k8s.io",
                "Event"
            )
            .unwrap()
            .matches(&regarding)
        );
    }
}
