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
use crate::policy::{NamespaceScope, Tenant};
use crate::providers::Providers;
use crate::strategy::{Ceilings, Grants, Limits, builtin};

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
    /// Where the module's component comes from; pinned by `sha256` (ConfigMaps too).
    pub source: ModuleSource,
    /// The namespaces whose Rollouts may use it, by name or label selector; none
    /// when left out.
    #[serde(default)]
    pub allowed_namespaces: NamespaceScope,
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
    /// The sha256 the bytes must hash to (required for `url`, `oci`, and every
    /// source of a ClusterStrategyModule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(sha256:)?[0-9a-fA-F]{64}$"))]
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

/// Limits of a module's calls (defaults where absent), within the controller's ceilings.
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

/// The metrics capability: the providers it asks for. The controller's operator
/// grants each provider to some namespaces; a module asking for one its namespace
/// is not granted is refused.
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
    #[serde(default)]
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
    /// The digest the module object's status shows (empty before its first status);
    /// `None` for a built-in, which has no object. A decision waits until the status
    /// shows the digest that makes it, so that what a module object says is never
    /// behind what Rollouts run.
    pub published_digest: Option<String>,
}

impl ModuleLimits {
    /// The limits granted, or why not: a value above its ceiling.
    pub fn admit(&self, ceilings: &Ceilings) -> Result<Limits, String> {
        ceilings
            .admit(self.memory_bytes, self.deadline_ms, self.fuel)
            .map_err(|refused| {
                refused
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }
}

/// Why a module may not be used, for a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// One word (`ModuleNotFound`, `LimitAboveCeiling`, …).
    pub reason: String,
    /// What is wrong and what to do, naming the field.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

/// A refusal for `reason`.
pub fn refusal(reason: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.to_owned(),
        message: message.into(),
    }
}

impl ModuleCapabilities {
    /// The capabilities granted, checked against the operator's providers: every
    /// provider asked for must be declared and, when `tenant` is given, granted to it.
    pub fn grants(
        &self,
        providers: &Providers,
        tenant: Option<Tenant<'_>>,
    ) -> Result<Grants, Refusal> {
        let asked = self
            .metrics
            .as_ref()
            .map(|m| m.providers.clone())
            .unwrap_or_default();
        for name in &asked {
            if name == "*" {
                return Err(refusal(
                    "CapabilityNotGranted",
                    "spec.capabilities.metrics.providers: name each provider; `*` is not allowed",
                ));
            }
            let Some(provider) = providers.configs().find(|p| &p.name == name) else {
                return Err(refusal(
                    "CapabilityNotGranted",
                    format!(
                        "spec.capabilities.metrics.providers: no metric provider `{name}` is declared in the controller's configuration (metricProviders)"
                    ),
                ));
            };
            if let Some(tenant) = tenant {
                let granted = provider.grants(tenant).map_err(|e| {
                    refusal(
                        "CapabilityNotGranted",
                        format!("metric provider `{name}`: {e}"),
                    )
                })?;
                if !granted {
                    return Err(refusal(
                        "CapabilityNotGranted",
                        format!(
                            "spec.capabilities.metrics.providers: metric provider `{name}` is not granted to namespace {}; the controller's configuration grants it to {} (metricProviders[].namespaces)",
                            tenant.name,
                            provider.namespaces.describe()
                        ),
                    ));
                }
            }
        }
        Ok(Grants {
            log: self.log,
            metrics: asked.into_iter().collect(),
        })
    }

    /// Whether checking these grants for a namespace needs its labels.
    fn needs_labels(&self, providers: &Providers, ns: &str) -> bool {
        self.metrics.iter().flat_map(|m| &m.providers).any(|name| {
            providers
                .configs()
                .any(|p| &p.name == name && p.namespaces.needs_labels(ns))
        })
    }
}

/// What the operator allows, as module resolution needs it.
#[derive(Clone)]
pub struct Admission {
    /// The most a module may ask for.
    pub ceilings: Ceilings,
    /// The declared metric providers.
    pub providers: std::sync::Arc<Providers>,
}

/// A module's object, whichever its scope.
struct ModuleObject {
    source: ModuleSource,
    limits: Option<ModuleLimits>,
    capabilities: ModuleCapabilities,
    /// The namespace of a namespaced module; `None` for a cluster module.
    namespace: Option<String>,
    allowed: Option<NamespaceScope>,
    /// The digest its status shows; empty before the first status.
    published_digest: String,
}

/// The labels of namespace `ns`; `None` when it does not exist, a refusal when it
/// cannot be read (a grant by label is then neither given nor denied).
async fn namespace_labels(
    client: &kube::Client,
    ns: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, Refusal> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.get_opt(ns).await {
        Ok(found) => Ok(found.map(|n| n.metadata.labels.unwrap_or_default())),
        Err(e) => Err(refusal(
            "NamespaceUnreadable",
            format!(
                "reading namespace {ns}'s labels for a grant by label selector: {e}; tried again shortly"
            ),
        )),
    }
}

/// Checks a module object against what the operator allows: its limits against the
/// ceilings, its capabilities against the providers granted to `tenant` (the
/// namespace it is used in or, for a namespaced module, belongs to).
pub fn admit(
    admission: &Admission,
    limits: Option<&ModuleLimits>,
    capabilities: &ModuleCapabilities,
    tenant: Option<Tenant<'_>>,
) -> Result<(Limits, Grants), Refusal> {
    let limits = match limits {
        Some(l) => l
            .admit(&admission.ceilings)
            .map_err(|m| refusal("LimitAboveCeiling", m))?,
        None => admission.ceilings.defaults(),
    };
    let grants = capabilities.grants(&admission.providers, tenant)?;
    Ok((limits, grants))
}

/// A ClusterStrategyModule's own rule: its source is pinned.
pub fn check_cluster_source(source: &ModuleSource) -> Result<(), Refusal> {
    if source.builtin.is_none() && source.sha256.is_none() {
        return Err(refusal(
            "PinRequired",
            "spec.source.sha256: a ClusterStrategyModule pins its module's sha256, ConfigMap sources included; add the digest `sluice strategy inspect` prints",
        ));
    }
    Ok(())
}

/// Whether a Rollout of namespace `tenant` may use a cluster module allowing `allowed`.
pub fn check_allowed(
    name: &str,
    allowed: &NamespaceScope,
    tenant: Tenant<'_>,
) -> Result<(), Refusal> {
    let admitted = allowed.admits(tenant).map_err(|e| {
        refusal(
            "NamespaceNotAllowed",
            format!("ClusterStrategyModule {name}: spec.allowedNamespaces: {e}"),
        )
    })?;
    if admitted {
        Ok(())
    } else {
        Err(refusal(
            "NamespaceNotAllowed",
            format!(
                "ClusterStrategyModule {name} may be used by {}, not by namespace {}; add the namespace to its spec.allowedNamespaces (names, or a selector its labels match)",
                allowed.describe(),
                tenant.name
            ),
        ))
    }
}

/// Resolves a Rollout's `strategy.sluice.dev/module` annotation in namespace `ns`:
/// `builtin:<name>`, `<name>` (a StrategyModule of `ns`), or `cluster/<name>`, and
/// checks it against what the operator allows for `ns`.
pub async fn resolve(
    client: &kube::Client,
    fetcher: &Fetcher,
    admission: &Admission,
    ns: &str,
    name: &str,
) -> Result<ResolvedModule, Refusal> {
    if let Some(builtin_name) = name.strip_prefix("builtin:") {
        let bytes = builtin::builtin(builtin_name).ok_or_else(|| {
            refusal(
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
            limits: admission.ceilings.defaults(),
            // The built-ins log; metric providers are granted to modules, not to them.
            grants: Grants {
                log: true,
                ..Grants::none()
            },
            published_digest: None,
        });
    }
    let object = if let Some(cluster_name) = name.strip_prefix("cluster/") {
        let api: Api<ClusterStrategyModule> = Api::all(client.clone());
        let m = api
            .get_opt(cluster_name)
            .await
            .map_err(|e| {
                refusal(
                    "ModuleNotFound",
                    format!("reading ClusterStrategyModule {cluster_name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                refusal(
                    "ModuleNotFound",
                    format!("ClusterStrategyModule {cluster_name} does not exist"),
                )
            })?;
        ModuleObject {
            source: m.spec.source,
            limits: m.spec.limits,
            capabilities: m.spec.capabilities,
            namespace: None,
            allowed: Some(m.spec.allowed_namespaces),
            published_digest: m.status.map(|s| s.digest).unwrap_or_default(),
        }
    } else {
        if name.contains('/') {
            return Err(refusal(
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
                refusal(
                    "ModuleNotFound",
                    format!("reading StrategyModule {ns}/{name}: {e}"),
                )
            })?
            .ok_or_else(|| {
                refusal(
                    "ModuleNotFound",
                    format!("StrategyModule {ns}/{name} does not exist in the Rollout's namespace"),
                )
            })?;
        ModuleObject {
            source: m.spec.source,
            limits: m.spec.limits,
            capabilities: m.spec.capabilities,
            namespace: Some(ns.to_owned()),
            allowed: None,
            published_digest: m.status.map(|s| s.digest).unwrap_or_default(),
        }
    };
    let needs_labels = object.capabilities.needs_labels(&admission.providers, ns)
        || object.allowed.as_ref().is_some_and(|a| a.needs_labels(ns));
    let labels = if needs_labels {
        namespace_labels(client, ns).await?
    } else {
        None
    };
    let tenant = Tenant {
        name: ns,
        labels: labels.as_ref(),
    };
    if let Some(allowed) = &object.allowed {
        check_cluster_source(&object.source)?;
        check_allowed(name.trim_start_matches("cluster/"), allowed, tenant)?;
    }
    let (limits, grants) = admit(
        admission,
        object.limits.as_ref(),
        &object.capabilities,
        Some(tenant),
    )?;
    let bytes = read_source(
        client,
        fetcher,
        &object.source,
        object.namespace.as_deref(),
        admission.ceilings.module_bytes,
    )
    .await
    .map_err(|m| refusal("ModuleNotAvailable", m))?;
    Ok(ResolvedModule {
        name: name.to_owned(),
        bytes,
        pin: object.source.sha256.clone(),
        limits,
        grants,
        published_digest: Some(object.published_digest),
    })
}

/// The labels of namespace `ns` when a namespaced module's grants need them.
pub async fn labels_for_grants(
    client: &kube::Client,
    admission: &Admission,
    capabilities: &ModuleCapabilities,
    ns: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, Refusal> {
    if capabilities.needs_labels(&admission.providers, ns) {
        namespace_labels(client, ns).await
    } else {
        Ok(None)
    }
}

/// Reads a source's bytes.
pub async fn read_source(
    client: &kube::Client,
    fetcher: &Fetcher,
    source: &ModuleSource,
    default_ns: Option<&str>,
    max_bytes: u64,
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
    if let Some(pin) = &source.sha256 {
        crate::fetch::parse_pin(pin)?;
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
            if bytes.0.len() as u64 > max_bytes {
                return Err(format!(
                    "spec.source.configMap: the module is {} bytes, above the controller's ceiling of {max_bytes} bytes (sandbox.ceilings.moduleBytes)",
                    bytes.0.len()
                ));
            }
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
    crate::fetch::parse_pin(pin)?;
    if let Some(url) = &source.url {
        return fetcher.fetch(url, pin, max_bytes).await;
    }
    match &source.oci {
        Some(reference) => fetcher.fetch_oci(reference, pin, max_bytes).await,
        None => Err("spec.source: give exactly one of configMap, url, oci or builtin".into()),
    }
}
