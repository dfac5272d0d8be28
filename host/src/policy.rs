//! What the operator grants tenants: which namespaces may query a metric provider,
//! which may use a `ClusterStrategyModule`. A module's author asks; these rules,
//! set by the operator, decide. Pure, so every rule is tested as a table.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A set of namespaces: by name, or by a label selector on the Namespace objects.
/// Empty admits none; an empty selector (`selector: {}`) admits all.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceScope {
    /// Namespaces admitted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces admitted by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A namespace as the rules see it: its name and, when known, its labels.
#[derive(Debug, Clone, Copy)]
pub struct Tenant<'a> {
    /// The namespace's name.
    pub name: &'a str,
    /// Its labels; `None` when the Namespace could not be read.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl NamespaceScope {
    /// Every namespace.
    pub fn all() -> NamespaceScope {
        NamespaceScope {
            names: Vec::new(),
            selector: Some(LabelSelector::default()),
        }
    }

    /// Whether deciding for `ns` needs its labels.
    pub fn needs_labels(&self, ns: &str) -> bool {
        !self.names.iter().any(|n| n == ns)
            && self.selector.as_ref().is_some_and(|s| !selects_all(s))
    }

    /// Whether `tenant` is in the set; `Err` when the selector is malformed.
    pub fn admits(&self, tenant: Tenant<'_>) -> Result<bool, String> {
        if self.names.iter().any(|n| n == tenant.name) {
            return Ok(true);
        }
        let Some(selector) = &self.selector else {
            return Ok(false);
        };
        if selects_all(selector) {
            return Ok(true);
        }
        let selector = Selector::try_from(selector.clone())
            .map_err(|e| format!("the namespace selector is malformed: {e}"))?;
        Ok(tenant.labels.is_some_and(|labels| selector.matches(labels)))
    }

    /// The set in words, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(format!("namespaces {}", self.names.join(", ")));
        }
        match &self.selector {
            Some(s) if selects_all(s) => parts.push("every namespace".to_owned()),
            Some(s) => parts.push(format!("namespaces labelled {}", selector_text(s))),
            None => {}
        }
        if parts.is_empty() {
            "no namespace".to_owned()
        } else {
            parts.join(" and ")
        }
    }
}

fn selects_all(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

fn selector_text(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        parts.push(format!(
            "{} {} ({})",
            e.key,
            e.operator,
            e.values.clone().unwrap_or_default().join(",")
        ));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn scopes_admit_by_name_or_label() {
        let team = labels(&[("tier", "gold")]);
        let other = labels(&[("tier", "bronze")]);
        let by_label = NamespaceScope {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("tier", "gold")])),
                match_expressions: None,
            }),
        };
        let by_expression = NamespaceScope {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["gold".into(), "silver".into()]),
                }]),
            }),
        };
        let by_name = NamespaceScope {
            names: vec!["team-a".into()],
            selector: None,
        };
        let (none, all) = (NamespaceScope::default(), NamespaceScope::all());
        let t = |name, labels| Tenant { name, labels };
        let cases: Vec<(&NamespaceScope, Tenant<'_>, bool)> = vec![
            (&by_name, t("team-a", None), true),
            (&by_name, t("team-b", Some(&team)), false),
            (&by_label, t("team-b", Some(&team)), true),
            (&by_label, t("team-b", Some(&other)), false),
            // Labels that could not be read admit nothing by label.
            (&by_label, t("team-b", None), false),
            (&by_expression, t("x", Some(&team)), true),
            (&by_expression, t("x", Some(&other)), false),
            (&none, t("team-a", Some(&team)), false),
            (&all, t("anything", None), true),
        ];
        for (scope, tenant, want) in cases {
            assert_eq!(
                scope.admits(tenant),
                Ok(want),
                "{} admits {}",
                scope.describe(),
                tenant.name
            );
        }
        assert!(by_label.needs_labels("team-b"));
        assert!(!by_name.needs_labels("team-a"));
        assert!(!NamespaceScope::all().needs_labels("x"));
    }

    #[test]
    fn scopes_describe_themselves() {
        assert_eq!(NamespaceScope::default().describe(), "no namespace");
        assert_eq!(NamespaceScope::all().describe(), "every namespace");
        let s = NamespaceScope {
            names: vec!["a".into(), "b".into()],
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("tier", "gold")])),
                match_expressions: None,
            }),
        };
        assert_eq!(
            s.describe(),
            "namespaces a, b and namespaces labelled tier=gold"
        );
    }
}
