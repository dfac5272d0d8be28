//! The kinds the simulator serves: the built-in ones Sluice and its users touch,
//! and every kind a CustomResourceDefinition declares, served as soon as it exists.

use serde_json::{Value, json};

/// Where a kind's `scale` subresource reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// Dotted path of the desired replicas, e.g. `spec.replicas`.
    pub spec_replicas: String,
    /// Dotted path of the observed replicas.
    pub status_replicas: String,
    /// Dotted path of the label selector (a selector object or a string).
    pub label_selector: Option<String>,
}

/// A column of `kubectl get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header.
    pub name: String,
    /// Type, as a Table column declares it.
    pub type_: String,
    /// Dotted path of the value (JSONPath without the leading `.`).
    pub path: String,
}

/// A kind at one version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group; empty for core.
    pub group: String,
    /// Version served.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (e.g. `all`).
    pub categories: Vec<String>,
    /// Has a `status` subresource.
    pub status: bool,
    /// Has a `scale` subresource.
    pub scale: Option<ScalePaths>,
    /// Extra kubectl columns.
    pub columns: Vec<Column>,
    /// OpenAPI schema (for defaults), for custom resources; shared, as types are
    /// looked up on every request.
    pub schema: Option<std::sync::Arc<Value>>,
    /// Whether this version is the one objects are stored at.
    pub storage: bool,
    /// Whether the server keeps `metadata.generation` for its objects (custom
    /// resources, and the built-in kinds whose strategy does: Deployments, Pods,
    /// Ingresses…, but not ConfigMaps, Secrets, Services or Namespaces).
    pub generation: bool,
    /// Whether a CRD declares it (its list items carry their kind).
    pub custom: bool,
}

/// The built-in kinds the simulator serves whose objects kube-apiserver gives a
/// `metadata.generation` (their registry strategies set it; checked against
/// v1.36's).
const GENERATION_KINDS: &[(&str, &str)] = &[
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
];

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status: false,
            scale: None,
            columns: Vec::new(),
            schema: None,
            storage: true,
            generation: GENERATION_KINDS.contains(&(group, plural)),
            custom: false,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    fn all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale = Some(ScalePaths {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            label_selector: Some("spec.selector".into()),
        });
        self
    }

    fn columns(mut self, cols: &[(&str, &str, &str)]) -> Self {
        self.columns = cols
            .iter()
            .map(|(n, t, p)| Column {
                name: (*n).into(),
                type_: (*t).into(),
                path: (*p).into(),
            })
            .collect();
        self
    }

    /// The `APIResource` entry of discovery.
    pub fn api_resource(&self) -> Value {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        verbs.sort_unstable();
        let mut r = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            r["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            r["categories"] = json!(self.categories);
        }
        r
    }
}

/// Every kind served.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    /// The built-in kinds.
    pub fn builtin() -> Self {
        let b = ResourceType::builtin;
        Registry {
            types: vec![
                b("", "v1", "Namespace", "namespaces", false)
                    .short(&["ns"])
                    .with_status(),
                b("", "v1", "Service", "services", true)
                    .short(&["svc"])
                    .with_status()
                    .all(),
                b("", "v1", "Pod", "pods", true)
                    .short(&["po"])
                    .with_status()
                    .all(),
                b("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
                b("", "v1", "Secret", "secrets", true),
                b("", "v1", "Event", "events", true).short(&["ev"]),
                b("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
                b("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
                b("apps", "v1", "Deployment", "deployments", true)
                    .short(&["deploy"])
                    .with_status()
                    .with_scale()
                    .all()
                    .columns(&[
                        ("Ready", "string", "status.readyReplicas"),
                        ("Up-to-date", "integer", "status.updatedReplicas"),
                        ("Available", "integer", "status.availableReplicas"),
                    ]),
                b("apps", "v1", "ReplicaSet", "replicasets", true)
                    .short(&["rs"])
                    .with_status()
                    .with_scale()
                    .all()
                    .columns(&[
                        ("Desired", "integer", "spec.replicas"),
                        ("Current", "integer", "status.replicas"),
                        ("Ready", "integer", "status.readyReplicas"),
                    ]),
                b("apps", "v1", "StatefulSet", "statefulsets", true)
                    .short(&["sts"])
                    .with_status()
                    .with_scale()
                    .all(),
                b(
                    "apps",
                    "v1",
                    "ControllerRevision",
                    "controllerrevisions",
                    true,
                ),
                b("networking.k8s.io", "v1", "Ingress", "ingresses", true)
                    .short(&["ing"])
                    .with_status(),
                b(
                    "networking.k8s.io",
                    "v1",
                    "IngressClass",
                    "ingressclasses",
                    false,
                ),
                b("coordination.k8s.io", "v1", "Lease", "leases", true),
                // Stored as they are: the simulator runs no Jobs and enforces no RBAC.
                b("batch", "v1", "Job", "jobs", true).with_status().all(),
                b("batch", "v1", "CronJob", "cronjobs", true)
                    .short(&["cj"])
                    .with_status()
                    .all(),
                b("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "RoleBinding",
                    "rolebindings",
                    true,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "ClusterRole",
                    "clusterroles",
                    false,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "ClusterRoleBinding",
                    "clusterrolebindings",
                    false,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "MutatingWebhookConfiguration",
                    "mutatingwebhookconfigurations",
                    false,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingWebhookConfiguration",
                    "validatingwebhookconfigurations",
                    false,
                ),
                b("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
                b(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    false,
                )
                .short(&["crd", "crds"])
                .with_status(),
            ],
        }
    }

    /// Every type.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Adds (or replaces) a type.
    pub fn add(&mut self, ty: ResourceType) {
        self.types
            .retain(|t| !(t.group == ty.group && t.version == ty.version && t.plural == ty.plural));
        self.types.push(ty);
    }

    /// Removes every version of a kind.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.group == group && t.plural == plural));
    }

    /// The type at a version.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The storage version of a kind, by plural.
    pub fn find_plural(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        let mut matching = self
            .types
            .iter()
            .filter(|t| t.group == group && t.plural == plural);
        let first = matching.clone().next();
        matching.find(|t| t.storage).or(first)
    }

    /// The storage version of a kind, by kind.
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        let plural = self
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)?
            .plural
            .clone();
        self.find_plural(group, &plural)
    }

    /// The groups and their versions, core first, in a stable order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// The types served at `group`/`version`.
    pub fn at(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect()
    }
}

/// The types a CustomResourceDefinition declares, one per served version.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind is required")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural is required")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map_or_else(|| kind.to_lowercase(), str::to_owned);
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let mut types = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name is required")?;
        let sub = v.get("subresources");
        let scale = sub.and_then(|s| s.get("scale")).map(|s| {
            let path = |k: &str| {
                s.get(k)
                    .and_then(Value::as_str)
                    .map(|p| p.trim_start_matches('.').to_owned())
            };
            ScalePaths {
                spec_replicas: path("specReplicasPath").unwrap_or_else(|| "spec.replicas".into()),
                status_replicas: path("statusReplicasPath")
                    .unwrap_or_else(|| "status.replicas".into()),
                label_selector: path("labelSelectorPath"),
            }
        });
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some(Column {
                            name: c.get("name")?.as_str()?.to_owned(),
                            type_: c
                                .get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("string")
                                .to_owned(),
                            path: c
                                .get("jsonPath")?
                                .as_str()?
                                .trim_start_matches('.')
                                .to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        types.push(ResourceType {
            group: group.to_owned(),
            version: name.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            status: sub.and_then(|s| s.get("status")).is_some(),
            scale,
            columns,
            schema: v
                .get("schema")
                .and_then(|s| s.get("openAPIV3Schema"))
                .cloned()
                .map(std::sync::Arc::new),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(true),
            generation: true,
            custom: true,
        });
    }
    if types.is_empty() {
        return Err("spec.versions: no version is served".into());
    }
    Ok(types)
}

/// Where a schema node sits, for the messages of [`structural_errors`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// What kube-apiserver refuses in a CRD's schemas because they are not
/// structural: every node, from the root through `properties`, `items` and
/// `additionalProperties`, must say its `type` (unless it is
/// `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`), and an
/// array its `items`. The (field, message) pairs, sorted as the server sorts
/// them. A CRD with a single version has its schema reported where the server
/// hoists it, `spec.validation.openAPIV3Schema`.
pub fn structural_errors(crd: &Value) -> Vec<(String, String)> {
    fn walk(node: &Value, level: Level, path: String, out: &mut Vec<(String, String)>) {
        let kind = node.get("type").and_then(Value::as_str).unwrap_or("");
        let exempt = |k: &str| node.get(k).and_then(Value::as_bool) == Some(true);
        if kind == "array" && node.get("items").is_none() {
            out.push((
                format!("{path}.items"),
                "Required value: must be specified".into(),
            ));
        }
        if let Some(items) = node.get("items") {
            walk(items, Level::Item, format!("{path}.items"), out);
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, Level::Field, format!("{path}.properties[{k}]"), out);
            }
        }
        if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(
                extra,
                Level::Field,
                format!("{path}.additionalProperties"),
                out,
            );
        }
        if kind.is_empty()
            && !exempt("x-kubernetes-int-or-string")
            && !exempt("x-kubernetes-preserve-unknown-fields")
        {
            let detail = match level {
                Level::Root => "must not be empty at the root",
                Level::Item => "must not be empty for specified array items",
                Level::Field => "must not be empty for specified object fields",
            };
            out.push((format!("{path}.type"), format!("Required value: {detail}")));
        }
    }
    let versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        let path = if versions.len() == 1 {
            "spec.validation.openAPIV3Schema".to_owned()
        } else {
            format!("spec.versions[{i}].schema.openAPIV3Schema")
        };
        walk(schema, Level::Root, path, &mut out);
    }
    out.sort_by(|a, b| format!("{}: {}", a.0, a.1).cmp(&format!("{}: {}", b.0, b.1)));
    out
}

/// Fills in the `default` values an OpenAPI schema declares, where fields are absent.
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    match object {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (field, prop) in props {
                    match map.get_mut(field) {
                        Some(value) => apply_defaults(prop, value),
                        None => {
                            if let Some(default) = prop.get("default") {
                                let mut value = default.clone();
                                apply_defaults(prop, &mut value);
                                map.insert(field.clone(), value);
                            }
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_node_without_a_type_is_refused_where_kube_apiserver_refuses_it() {
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "modifier": {"description": "no type"},
                "free": {"x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
                "list": {"type": "array"},
                "names": {"type": "array", "items": {"description": "no type"}},
            }}},
        }}}]}});
        assert_eq!(
            structural_errors(&crd),
            vec![
                (
                    "spec.validation.openAPIV3Schema.properties[spec].properties[list].items"
                        .to_owned(),
                    "Required value: must be specified".to_owned()
                ),
                (
                    "spec.validation.openAPIV3Schema.properties[spec].properties[modifier].type"
                        .to_owned(),
                    "Required value: must not be empty for specified object fields".to_owned()
                ),
                (
                    "spec.validation.openAPIV3Schema.properties[spec].properties[names].items.type"
                        .to_owned(),
                    "Required value: must not be empty for specified array items".to_owned()
                ),
            ]
        );
        let fine = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
        assert!(structural_errors(&fine).is_empty());
    }

    #[test]
    fn defaults_fill_absent_fields_only() {
        let schema = json!({"properties": {"spec": {"properties": {
            "disabled": {"type": "boolean", "default": false},
            "steps": {"items": {"properties": {"pause": {"default": {}}}}},
            "keep": {"default": "x"},
        }}}});
        let mut object = json!({"spec": {"keep": "mine", "steps": [{"weight": 20}]}});
        apply_defaults(&schema, &mut object);
        assert_eq!(
            object,
            json!({"spec": {"keep": "mine", "disabled": false, "steps": [{"weight": 20, "pause": {}}]}})
        );
    }
}
