//! Strategy modules as cluster objects: `StrategyModule` (namespaced) and
//! `ClusterStrategyModule` in `sluice.dev/v1alpha1`, and how a Rollout's annotation
//! resolves to module bytes, limits and capabilities.

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResource;
use kube::api::Api;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fetch::Fetcher;
use crate::strategy::{Grants, Limits, builtin};

/// A strategy module, usable by Rollouts of its namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "StrategyModule",
    namespaced,
    status = "StrategyModuleStatus",
    shortname = "smod",
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"DIGEST","type":"string","jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"CONTRACT","type":"string","jsonPath":".status.contractVersion"}"#,
    printcolumn = r#"{"name":"MESSAGE","type":"string","jsonPath":".status.message"}"#
)]
#[kube(derive = "PartialEq", derive = "Default")]
#[serde(rename_all = "camelCase")]
pub struct StrategyModuleSpec {
    /// Where the module's component comes from.
    pub source: ModuleSource,
    /// Bounds on each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ModuleLimits>,
    /// Host capabilities granted; all are denied otherwise.
    #[serde(default)]
    pub capabilities: ModuleCapabilities,
}

/// A strategy module, usable by Rollouts of every namespace (`cluster/<name>`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterStrategyModule",
    status = "StrategyModuleStatus",
    shortname = "csmod",
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"DIGEST","type":"string","jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"CONTRACT","type":"string","jsonPath":".status.contractVersion"}"#,
    printcolumn = r#"{"name":"MESSAGE","type":"string","jsonPath":".status.message"}"#
)]
#[kube(derive = "PartialEq", derive = "Default")]
#[serde(rename_all = "camelCase")]
pub struct ClusterStrategyModuleSpec {
    /// Where the module's component comes from.
    pub source: ModuleSource,
    /// Bounds on each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ModuleLimits>,
    /// Host capabilities granted; all are denied otherwise.
    #[serde(default)]
    pub capabilities: ModuleCapabilities,
}

/// Exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSource {
    /// A key of a ConfigMap's `binaryData` (in the module's namespace; a cluster
    /// module names the namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// An HTTPS URL (with `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An OCI artifact reference (with `sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// A module compiled into the controller, e.g. `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// The sha256 the bytes must hash to (required for `url` and `oci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A ConfigMap key holding a component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapSource {
    /// The ConfigMap.
    pub name: String,
    /// The `binaryData` key.
    pub key: String,
    /// Its namespace (cluster modules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Limits of a module's calls (defaults where absent).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleLimits {
    /// Linear memory, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Wall-clock time per call, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Instructions per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// Granted capabilities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ModuleCapabilities {
    /// The module may log.
    #[serde(default)]
    pub log: bool,
    /// The module may query these metric providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsCapability>,
}

/// The metrics capability.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct MetricsCapability {
    /// Provider names.
    #[serde(default)]
    pub providers: Vec<String>,
}

/// What the controller found when it loaded the module.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyModuleStatus {
    /// Loaded and usable.
    pub ready: bool,
    /// Why not, in one word.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Why not, or what it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// sha256 of the loaded bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The contract version it was built against.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub contract_version: String,
    /// Its exports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
    /// When it was loaded (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub loaded_at: String,
    /// `name version` as the module describes itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub describes_as: String,
    /// The JSON Schema of its configuration, if it declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A module resolved from a Rollout's annotation: its bytes and what it may do.
#[derive(Debug, Clone)]
pub struct ResolvedModule {
    /// The name as the Rollout wrote it.
    pub name: String,
    /// The component.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// The pinned sha256, if any.
    pub pin: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// Capabilities.
    pub grants: Grants,
}

impl ModuleLimits {
    fn apply(&self) -> Limits {
        let d = Limits::default();
        Limits {
            memory_bytes: self.memory_bytes.unwrap_or(d.memory_bytes),
            deadline_ms: self.deadline_ms.unwrap_or(d.deadline_ms),
            fuel: self.fuel.unwrap_or(d.fuel),
            ..d
        }
    }
}

impl ModuleCapabilities {
    fn grants(&self) -> Grants {
        Grants {
            log: self.log,
            metrics: self
                .metrics
                .as_ref()
                .map(|m| m.providers.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Resolves a Rollout's `strategy.sluice.dev/module` annotation in namespace `ns`:
/// `builtin:<name>`, `<name>` (a StrategyModule of `ns`), or `cluster/<name>`.
pub async fn resolve(
    client: &kube::Client,
    fetcher: &Fetcher,
    ns: &str,
    name: &str,
) -> Result<ResolvedModule, (String, String)> {
    let fail = |reason: &str, message: String| (reason.to_owned(), message);
    if let Some(builtin_name) = name.strip_prefix("builtin:") {
        let bytes = builtin::builtin(builtin_name).ok_or_else(|| {
            fail(
                "ModuleNotFound",
                format!(
                    "no built-in strategy `{builtin_name}`; built-ins: {}",
                    builtin::names()
                ),
            )
        })?;
        return Ok(ResolvedModule {
            name: name.to_owned(),
            bytes: std::sync::Arc::new(bytes.to_vec()),
            pin: None,
            limits: Limits::default(),
            grants: Grants::all(),
        });
    }
    let (source, limits, capabilities, default_ns, ready) = if let Some(cluster_name) =
        name.strip_prefix("cluster/")
    {
        let api: Api<ClusterStrategyModule> = Api::all(client.clone());
        let m = api
            .get_opt(cluster_name)
            .await
            .map_err(|e| {
                fail(
                    "ModuleNotFound",
                    format!("reading ClusterStrategyModule {cluster_name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                fail(
                    "ModuleNotFound",
                    format!("ClusterStrategyModule {cluster_name} does not exist"),
                )
            })?;
        (
            m.spec.source,
            m.spec.limits,
            m.spec.capabilities,
            None,
            m.status.map(|s| s.ready),
        )
    } else {
        if name.contains('/') {
            return Err(fail(
                "ModuleNotFound",
                format!(
                    "{name:?}: a Rollout can use StrategyModules of its own namespace only (`<name>`), cluster modules (`cluster/<name>`) or built-ins (`builtin:<name>`)"
                ),
            ));
        }
        let api: Api<StrategyModule> = Api::namespaced(client.clone(), ns);
        let m = api
            .get_opt(name)
            .await
            .map_err(|e| {
                fail(
                    "ModuleNotFound",
                    format!("reading StrategyModule {ns}/{name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                fail(
                    "ModuleNotFound",
                    format!("StrategyModule {ns}/{name} does not exist in the Rollout's namespace"),
                )
            })?;
        (
            m.spec.source,
            m.spec.limits,
            m.spec.capabilities,
            Some(ns.to_owned()),
            m.status.map(|s| s.ready),
        )
    };
    if ready == Some(false) {
        return Err(fail(
            "ModuleNotReady",
            format!("module {name} is not ready; see its status"),
        ));
    }
    let bytes = read_source(client, fetcher, &source, default_ns.as_deref())
        .await
        .map_err(|m| fail("ModuleNotAvailable", m))?;
    Ok(ResolvedModule {
        name: name.to_owned(),
        bytes,
        pin: source.sha256.clone(),
        limits: limits.map(|l| l.apply()).unwrap_or_default(),
        grants: capabilities.grants(),
    })
}

/// Reads a source's bytes.
pub async fn read_source(
    client: &kube::Client,
    fetcher: &Fetcher,
    source: &ModuleSource,
    default_ns: Option<&str>,
) -> Result<std::sync::Arc<Vec<u8>>, String> {
    let given = [
        source.config_map.is_some(),
        source.url.is_some(),
        source.oci.is_some(),
        source.builtin.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err("spec.source: give exactly one of configMap, url, oci or builtin".into());
    }
    if let Some(name) = &source.builtin {
        return builtin::builtin(name)
            .map(|b| std::sync::Arc::new(b.to_vec()))
            .ok_or_else(|| {
                format!(
                    "spec.source.builtin: no built-in strategy `{name}`; built-ins: {}",
                    builtin::names()
                )
            });
    }
    if let Some(cm) = &source.config_map {
        let ns = cm.namespace.as_deref().or(default_ns).ok_or(
            "spec.source.configMap.namespace: a cluster module names the ConfigMap's namespace",
        )?;
        if default_ns.is_some()
            && cm
                .namespace
                .as_deref()
                .is_some_and(|n| Some(n) != default_ns)
        {
            return Err("spec.source.configMap.namespace: a namespaced module reads ConfigMaps of its own namespace only".into());
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let map = api
            .get_opt(&cm.name)
            .await
            .map_err(|e| format!("reading ConfigMap {ns}/{}: {e}", cm.name))?
            .ok_or_else(|| {
                format!(
                    "spec.source.configMap: ConfigMap {ns}/{} does not exist",
                    cm.name
                )
            })?;
        if let Some(bytes) = map.binary_data.as_ref().and_then(|b| b.get(&cm.key)) {
            return Ok(std::sync::Arc::new(bytes.0.clone()));
        }
        // kubectl create configmap --from-file puts binary files in binaryData; some
        // tools base64 them into data instead.
        if let Some(text) = map.data.as_ref().and_then(|d| d.get(&cm.key)) {
            return base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(std::sync::Arc::new)
                .map_err(|_| format!("spec.source.configMap.key: {} in data is not base64; put the component in binaryData", cm.key));
        }
        return Err(format!(
            "spec.source.configMap.key: ConfigMap {ns}/{} has no key {:?} in binaryData",
            cm.name, cm.key
        ));
    }
    let Some(pin) = &source.sha256 else {
        return Err("spec.source.sha256: url and oci sources must pin the module's sha256".into());
    };
    if let Some(url) = &source.url {
        return fetcher.fetch(url, pin).await;
    }
    match &source.oci {
        Some(reference) => fetcher.fetch_oci(reference, pin).await,
        None => Err("spec.source: give exactly one of configMap, url, oci or builtin".into()),
    }
}
