//! PATCH bodies: JSON merge patch, JSON patch, strategic merge patch and server-side apply.
//!
//! Strategic merge is implemented for the list fields of the kinds used here (merge
//! keys such as `containers` by `name`); other lists are replaced, as merge patch does.
//! Server-side apply merges the applied configuration into the object the same way;
//! field ownership is not tracked (`managedFields` is not kept).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// The format of a PATCH body by its content type.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let ct = content_type.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a patch body to `current`, returning the patched object.
pub fn apply_patch(kind: PatchKind, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &patch)
                .map_err(|e| ApiError::invalid("", "", vec![("patch", e.to_string())]))?;
            Ok(doc)
        }
        PatchKind::Merge => {
            let patch: Value = parse(body, false)?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchKind::Strategic | PatchKind::Apply => {
            let patch: Value = parse(body, kind == PatchKind::Apply)?;
            let mut doc = current.clone();
            strategic_merge(&mut doc, &patch, "");
            Ok(doc)
        }
    }
}

fn parse(body: &[u8], yaml: bool) -> Result<Value, ApiError> {
    if yaml {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid apply configuration: {e}")))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))
    }
}

/// The key list elements of `field` merge on, for the kinds the simulator serves.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "readinessGates" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" if sample.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Strategic merge of `patch` into `doc`; `field` is the name `doc` sits under.
pub fn strategic_merge(doc: &mut Value, patch: &Value, field: &str) {
    let Some(patch_map) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *doc = Value::Object(replaced);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let _ = field;
    let doc_map = doc.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list_field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (doc_map.get_mut(list_field), value.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            doc_map.remove(key);
            continue;
        }
        match (doc_map.get_mut(key), value) {
            (Some(Value::Array(current)), Value::Array(items)) => {
                let key_field = items
                    .first()
                    .or(current.first())
                    .and_then(|s| merge_key(key, s));
                match key_field {
                    Some(merge_on) => merge_list(current, items, merge_on, key),
                    None if key == "finalizers" => {
                        for item in items {
                            if !current.contains(item) {
                                current.push(item.clone());
                            }
                        }
                    }
                    None => *current = items.iter().map(strip_directives).collect(),
                }
            }
            (Some(current @ Value::Object(_)), Value::Object(_)) => {
                if value.get("$patch").and_then(Value::as_str) == Some("delete") {
                    doc_map.remove(key);
                } else {
                    strategic_merge(current, value, key);
                }
            }
            _ => {
                doc_map.insert(key.clone(), strip_directives(value));
            }
        }
    }
}

fn merge_list(current: &mut Vec<Value>, items: &[Value], merge_on: &str, field: &str) {
    for item in items {
        let id = item.get(merge_on);
        let position = id.and_then(|id| current.iter().position(|c| c.get(merge_on) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                current.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut current[i], item, field),
            (None, false) => current.push(strip_directives(item)),
        }
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "app", "image": "demo:v1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]}}}})
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        // What `kubectl set image deployment/x app=demo:v2` sends.
        let patch =
            br#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"demo:v2"}]}}}}"#;
        let got = apply_patch(PatchKind::Strategic, &deployment(), patch).unwrap();
        let containers = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "demo:v2");
        assert_eq!(containers[0]["env"][0]["value"], "1");
        assert_eq!(containers[1]["image"], "proxy:1");
    }

    #[test]
    fn strategic_merge_deletes_by_directive() {
        let patch = br#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#;
        let got = apply_patch(PatchKind::Strategic, &deployment(), patch).unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn merge_patch_replaces_lists_and_null_deletes() {
        let patch =
            br#"{"spec":{"replicas":null,"template":{"spec":{"containers":[{"name":"only"}]}}}}"#;
        let got = apply_patch(PatchKind::Merge, &deployment(), patch).unwrap();
        assert!(got["spec"].get("replicas").is_none());
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only"}])
        );
    }

    #[test]
    fn json_patch_and_its_errors() {
        let got = apply_patch(
            PatchKind::Json,
            &deployment(),
            br#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        )
        .unwrap();
        assert_eq!(got["spec"]["replicas"], 3);
        let err = apply_patch(
            PatchKind::Json,
            &deployment(),
            br#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Merge
        );
        assert_eq!(
            PatchKind::from_content_type("text/plain").unwrap_err().code,
            415
        );
    }
}
