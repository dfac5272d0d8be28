//! The webhook configurations the controller keeps: one `MutatingWebhookConfiguration`
//! with a webhook per workload kind Sluice releases, one
//! `ValidatingWebhookConfiguration` for Rollouts, with Kruise's webhook names, paths,
//! rules and object selectors, the `caBundle` of the controller's authority, and
//! `failurePolicy: Fail` (docs/kruise-compatibility.md says why).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::workload::{self, Kind, WORKLOAD_TYPE_LABEL};

/// The mutating configuration's name.
pub const MUTATING: &str = "sluice-mutating-webhook-configuration";
/// The validating configuration's name.
pub const VALIDATING: &str = "sluice-validating-webhook-configuration";
/// The path of the Rollout validation.
pub const VALIDATE_ROLLOUT: &str = "/validate-rollouts-kruise-io-rollout";

/// How the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Through a Service in front of the controller's pods (in a cluster).
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its port.
        port: u16,
    },
    /// At `https://<host>:<the port bound>` (an API server outside the cluster's
    /// network, such as `sluice dev`'s).
    Host(String),
}

impl Endpoint {
    /// The names the serving certificate must carry.
    pub fn names(&self) -> Vec<String> {
        match self {
            Endpoint::Service {
                namespace, name, ..
            } => vec![
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.cluster.local"),
            ],
            Endpoint::Host(host) => vec![host.clone()],
        }
    }

    fn client_config(&self, path: &str, bound_port: u16, ca_bundle: &str) -> Value {
        match self {
            Endpoint::Service {
                namespace,
                name,
                port,
            } => json!({
                "service": {"namespace": namespace, "name": name, "port": port, "path": path},
                "caBundle": ca_bundle,
            }),
            Endpoint::Host(host) => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                json!({"url": format!("https://{host}:{bound_port}{path}"), "caBundle": ca_bundle})
            }
        }
    }
}

/// What the configurations say besides where the webhook is.
#[derive(Debug, Clone)]
pub struct Selection {
    /// More `matchExpressions` a workload must meet (KubeVela's addon asks for the
    /// label `kruise-rollout.oam.dev/webhook`).
    pub extra_object_selector: Vec<Value>,
    /// Only objects of this namespace (a controller serving one namespace).
    pub namespace: Option<String>,
    /// Namespaces the webhooks never see: a fail-closed webhook there would stand
    /// between the cluster and its own repair (the control plane's namespaces, and
    /// the controller's own, where a controller that cannot start must still be
    /// mended).
    pub excluded_namespaces: Vec<String>,
}

/// The control plane's namespaces.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

impl Default for Selection {
    fn default() -> Self {
        Selection {
            extra_object_selector: Vec::new(),
            namespace: None,
            excluded_namespaces: SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The path of a workload kind's mutating webhook: `/mutate-apps-v1-deployment`.
pub fn mutate_path(kind: Kind) -> String {
    format!(
        "/mutate-{}-{}",
        kind.api_version().replace(['.', '/'], "-"),
        kind.kind().to_lowercase()
    )
}

/// The workload kind whose mutating webhook `path` is.
pub fn kind_of_path(path: &str) -> Option<Kind> {
    workload::KINDS
        .iter()
        .map(|w| Kind(*w))
        .find(|k| mutate_path(*k) == path)
}

fn namespace_selector(selection: &Selection) -> Value {
    match &selection.namespace {
        Some(ns) => json!({"matchLabels": {"kubernetes.io/metadata.name": ns}}),
        None if selection.excluded_namespaces.is_empty() => json!({}),
        None => json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": selection.excluded_namespaces,
        }]}),
    }
}

/// The two configurations, for a webhook bound to `bound_port` and trusted through
/// `ca_pem`, owned by `owner` (an owner reference: the controller's Namespace, so
/// that deleting the installation deletes them too, instead of leaving fail-closed
/// webhooks nobody serves).
pub fn objects(
    endpoint: &Endpoint,
    selection: &Selection,
    bound_port: u16,
    ca_pem: &str,
    owner: Option<&Value>,
) -> [Value; 2] {
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut expressions = vec![json!({"key": WORKLOAD_TYPE_LABEL, "operator": "Exists"})];
    expressions.extend(selection.extra_object_selector.iter().cloned());
    let common = |name: String, path: &str, rules: Value| {
        json!({
            "name": name,
            "clientConfig": endpoint.client_config(path, bound_port, &ca_bundle),
            "rules": rules,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": namespace_selector(selection),
        })
    };
    let mutating: Vec<Value> = workload::KINDS
        .iter()
        .map(|w| {
            let kind = Kind(*w);
            let resource = kind.resource();
            let mut webhook = common(
                format!("m{}.kb.io", kind.kind().to_lowercase()),
                &mutate_path(kind),
                json!([{
                    "operations": ["UPDATE"],
                    "apiGroups": [resource.group],
                    "apiVersions": [resource.version],
                    "resources": [resource.plural],
                    "scope": "Namespaced",
                }]),
            );
            webhook["objectSelector"] = json!({"matchExpressions": expressions});
            webhook["reinvocationPolicy"] = json!("Never");
            webhook
        })
        .collect();
    let validating = common(
        "vrollout.kb.io".into(),
        VALIDATE_ROLLOUT,
        json!([{
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["rollouts.kruise.io"],
            "apiVersions": ["v1alpha1"],
            "resources": ["rollouts"],
            "scope": "Namespaced",
        }]),
    );
    let metadata = |name: &str| {
        let mut m = json!({"name": name, "labels": {"app.kubernetes.io/name": "sluice"}});
        if let Some(owner) = owner {
            m["ownerReferences"] = json!([owner]);
        }
        m
    };
    [
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": metadata(MUTATING),
            "webhooks": mutating,
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": metadata(VALIDATING),
            "webhooks": [validating],
        }),
    ]
}

/// The owner reference to Namespace `name`, if it can be read.
pub async fn namespace_owner(client: &kube::Client, name: &str) -> Option<Value> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api.get(name).await {
        Ok(ns) => Some(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": name,
            "uid": ns.metadata.uid?,
        })),
        Err(e) => {
            tracing::warn!(namespace = %name, error = %e, "cannot read the controller's Namespace: the webhook configurations are written without an owner, and outlive an uninstall");
            None
        }
    }
}

/// Writes the configurations as `objects` says (server-side apply: what another
/// tool added stays; what Sluice owns is set back).
pub async fn ensure(client: &kube::Client, objects: &[Value; 2]) -> Result<(), kube::Error> {
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let api: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &workload::resource_of("admissionregistration.k8s.io/v1", kind),
        );
        api.patch(
            name,
            &PatchParams::apply("sluice").force(),
            &Patch::Apply(object),
        )
        .await?;
    }
    Ok(())
}
