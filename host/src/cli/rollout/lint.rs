//! `lint FILE…`: Rollout manifests checked offline, as the cluster would check them —
//! the CRD's schema (unknown fields, wrong types), the admission webhook's rules
//! (Kruise's, in Kruise's words) and the strategy module's own `validate-config` for
//! the configuration annotation — each finding at its file and line.

use serde_json::Value;

use crate::kruise::v1alpha1::Rollout;
use crate::kruise::validate::{self, Options};

/// One thing wrong, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// `namespace/name` of the Rollout.
    pub rollout: String,
    /// What is wrong, naming the field.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: rollout {}: {}",
            self.file, self.line, self.rollout, self.message
        )
    }
}

/// A YAML document of a file: its text and the line it starts at.
#[derive(Debug, Clone)]
pub struct Document {
    /// 1-based line of its first line.
    pub line: usize,
    /// Its text.
    pub text: String,
}

/// The documents of a multi-document YAML text.
pub fn documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    let mut current = Document {
        line: 1,
        text: String::new(),
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            if !current.text.trim().is_empty() {
                out.push(current);
            }
            current = Document {
                line: i + 2,
                text: String::new(),
            };
            continue;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    if !current.text.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The line in `doc` where the field at `path` is written (`Spec.Strategy.Canary.
/// Steps[1].Weight` or `spec.strategy.canary.steps[1].weight`): the `i`th occurrence
/// of its key after the list's key for an indexed path, the document's first line
/// when the key is not written (a missing field).
pub fn line_of(doc: &Document, path: &str) -> usize {
    let lower_first = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let lines: Vec<&str> = doc.text.lines().collect();
    let key_at = |key: &str, from: usize| {
        let re = regex::Regex::new(&format!(r"(^|[\s{{,-]){}\s*:", regex::escape(key))).ok()?;
        (from..lines.len()).find(|&i| re.is_match(lines[i]))
    };
    let mut from = 0;
    let mut found = None;
    for segment in segments {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let key = lower_first(key);
        let Some(at) = key_at(&key, from) else {
            break;
        };
        found = Some(at);
        from = at;
        if let Some(i) = index {
            // The i-th item: the i-th `- ` below the list's key, or the key's own
            // line for a flow list.
            let items: Vec<usize> = (at + 1..lines.len())
                .filter(|&l| lines[l].trim_start().starts_with("- "))
                .collect();
            if let Some(&item) = items.get(i) {
                found = Some(item);
                from = item;
            }
        }
    }
    doc.line + found.unwrap_or(0)
}

/// Fields of `value` that the schema does not have, as dotted paths.
pub fn unknown_fields(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (k, v) in map {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match properties.get(k) {
                    // The type and the object's metadata are the API server's.
                    _ if path.is_empty()
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    Some(s) => unknown_fields(v, s, &at, out),
                    None => out.push(at),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item, s, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The parent of a field, as `kubectl explain` takes it (no list indices).
fn explain_path(path: &str) -> String {
    let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
    let mut out = String::new();
    let mut skipping = false;
    for c in parent.chars() {
        match c {
            '[' => skipping = true,
            ']' => skipping = false,
            c if !skipping => out.push(c),
            _ => {}
        }
    }
    out
}

/// The schema of Rollouts the CRD serves.
fn rollout_schema() -> Value {
    let crd = serde_json::to_value(crate::crds::rollout()).unwrap_or_default();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .unwrap_or_default()
}

/// A Rollout of a file, read.
pub struct Manifest {
    /// The file.
    pub file: String,
    /// Its document.
    pub doc: Document,
    /// The Rollout, when it reads as one.
    pub rollout: Option<Rollout>,
    /// Its JSON.
    pub value: Value,
}

impl Manifest {
    fn name(&self) -> String {
        let ns = self
            .value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = self
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<no name>");
        format!("{ns}/{name}")
    }

    fn finding(&self, path: &str, message: String) -> Finding {
        Finding {
            file: self.file.clone(),
            line: line_of(&self.doc, path),
            rollout: self.name(),
            message,
        }
    }
}

/// The Rollouts of a file's text; other kinds are skipped. A document that is not
/// YAML is a finding.
pub fn manifests(file: &str, text: &str) -> (Vec<Manifest>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut findings = Vec::new();
    for doc in documents(text) {
        let value: Value = match serde_yaml_ng::from_str(&doc.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map_or(doc.line, |l| doc.line + l.line() - 1);
                findings.push(Finding {
                    file: file.to_owned(),
                    line,
                    rollout: "?".into(),
                    message: format!("not YAML: {e}"),
                });
                continue;
            }
        };
        if value.get("kind").and_then(Value::as_str) != Some("Rollout")
            || !value
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("rollouts.kruise.io/"))
        {
            continue;
        }
        let rollout = serde_path_to_error::deserialize::<_, Rollout>(value.clone());
        let mut m = Manifest {
            file: file.to_owned(),
            doc,
            rollout: None,
            value,
        };
        match rollout {
            Ok(r) => m.rollout = Some(r),
            Err(e) => {
                let path = e.path().to_string();
                findings.push(m.finding(&path, format!("{path}: {}", e.inner())));
            }
        }
        out.push(m);
    }
    (out, findings)
}

/// The schema's and the webhook's findings for every manifest (a second Rollout on
/// the same workload counts across all of them).
pub fn check(manifests: &[Manifest], options: Options) -> Vec<Finding> {
    let schema = rollout_schema();
    let mut findings = Vec::new();
    let all: Vec<&Rollout> = manifests
        .iter()
        .filter_map(|m| m.rollout.as_ref())
        .collect();
    for (i, m) in manifests.iter().enumerate() {
        let mut unknown = Vec::new();
        unknown_fields(&m.value, &schema, "", &mut unknown);
        for path in unknown {
            findings.push(m.finding(
                &path,
                format!(
                    "{path}: unknown field (the API server drops it; check its spelling against `kubectl explain rollout.{}`)",
                    explain_path(&path)
                ),
            ));
        }
        let Some(rollout) = &m.rollout else { continue };
        // Earlier documents are the Rollouts already there.
        let others: Vec<&Rollout> = all
            .iter()
            .take(
                manifests[..i]
                    .iter()
                    .filter(|m| m.rollout.is_some())
                    .count(),
            )
            .copied()
            .collect();
        for e in validate::validate(rollout, &others, options) {
            findings.push(m.finding(&e.path, e.to_string()));
        }
    }
    findings
}

#[cfg(test)]
mod tests;
