//! Admission webhooks, called as kube-apiserver calls them: before an object is
//! created, updated or deleted, every matching webhook of the
//! `MutatingWebhookConfiguration`s (in name order, each seeing the previous one's
//! changes), then of the `ValidatingWebhookConfiguration`s, is sent an
//! `admission.k8s.io/v1` `AdmissionReview` over HTTPS, trusting only the webhook's
//! `caBundle`. A webhook matches by its `rules` (operations, API groups and
//! versions, resources and subresources, scope), its `namespaceSelector` (the labels
//! of the object's namespace) and its `objectSelector` (the labels of the new or the
//! old object). A mutating answer's JSON patch is applied; a refusal is answered with
//! the webhook's message, as `admission webhook "<name>" denied the request: …`. A
//! webhook that cannot be called, or takes longer than its `timeoutSeconds`, fails
//! the request under `failurePolicy: Fail` and is skipped under `Ignore`.
//!
//! The simulator reaches a webhook by its `clientConfig.url`; a webhook addressed as
//! a Service cannot be reached (no pod is real), and is treated as a failed call.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::selector::LabelSelector;
use crate::error::ApiError;
use crate::object::Meta;
use crate::resources::ResourceType;
use crate::store::{ResKey, Store};

/// The group whose objects configure admission (never sent to webhooks).
const GROUP: &str = "admissionregistration.k8s.io";

/// The longest a webhook may take, as kube-apiserver caps `timeoutSeconds`.
const MAX_TIMEOUT_SECONDS: u64 = 30;

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create.
    Create,
    /// An update (a PUT or a patch).
    Update,
    /// A delete.
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One request, as admission sees it.
pub struct Attributes<'a> {
    /// What is being done.
    pub operation: Operation,
    /// The resource.
    pub ty: &'a ResourceType,
    /// The version the request was made at.
    pub version: &'a str,
    /// The object's namespace (empty for cluster-scoped objects).
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// `status`, `scale`, … when the request is to a subresource.
    pub subresource: Option<&'a str>,
    /// The object after the request (none for a delete); mutating webhooks change it.
    pub object: Option<Value>,
    /// The object before the request (none for a create).
    pub old: Option<Arc<Value>>,
    /// Who asks.
    pub user: &'a str,
    /// A dry run.
    pub dry_run: bool,
}

/// Runs the mutating webhooks, then the validating ones, over `attrs`; the object
/// they leave is in `attrs.object`.
pub async fn admit(store: &Store, attrs: &mut Attributes<'_>) -> Result<(), ApiError> {
    if attrs.ty.group == GROUP {
        return Ok(());
    }
    for (kind, mutating) in [
        ("mutatingwebhookconfigurations", true),
        ("validatingwebhookconfigurations", false),
    ] {
        let mut configurations: Vec<Arc<Value>> = store.list(&ResKey::new(GROUP, kind), None).items;
        configurations.sort_by(|a, b| Meta::of(a).name().cmp(Meta::of(b).name()));
        for configuration in configurations {
            let webhooks = configuration
                .get("webhooks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for webhook in &webhooks {
                if !matches(store, webhook, attrs) {
                    continue;
                }
                call(webhook, attrs, mutating).await?;
            }
        }
    }
    Ok(())
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `webhook` is called for this request.
fn matches(store: &Store, webhook: &Value, attrs: &Attributes<'_>) -> bool {
    let rules = webhook
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !rules.iter().any(|rule| rule_matches(rule, attrs)) {
        return false;
    }
    let selected = |selector: Option<&Value>,
                    labels: &[Option<&serde_json::Map<String, Value>>]| {
        match selector {
            None => true,
            Some(s) => {
                let s = LabelSelector::from_object(s);
                s.is_empty() || labels.iter().any(|l| s.matches(*l))
            }
        }
    };
    // The object's labels, before or after the request.
    let object_labels = [
        attrs.object.as_ref().and_then(|o| Meta::of(o).labels()),
        attrs.old.as_deref().and_then(|o| Meta::of(o).labels()),
    ];
    if !selected(webhook.get("objectSelector"), &object_labels) {
        return false;
    }
    // The namespace's labels; a Namespace is matched by its own; other cluster-wide
    // objects are not held back by a namespace selector.
    let namespace = if attrs.ty.plural == "namespaces" && attrs.ty.group.is_empty() {
        attrs
            .object
            .clone()
            .or_else(|| attrs.old.as_deref().cloned())
    } else if attrs.ty.namespaced {
        store
            .get(&ResKey::new("", "namespaces"), "", attrs.namespace)
            .map(|n| (*n).clone())
            .or(Some(json!({"metadata": {"name": attrs.namespace}})))
    } else {
        None
    };
    match namespace {
        Some(ns) => selected(webhook.get("namespaceSelector"), &[Meta::of(&ns).labels()]),
        None => true,
    }
}

fn rule_matches(rule: &Value, attrs: &Attributes<'_>) -> bool {
    let any = |list: &[&str], value: &str| list.iter().any(|x| *x == "*" || *x == value);
    let operations = strings(rule.get("operations"));
    if !any(&operations, attrs.operation.as_str()) {
        return false;
    }
    if !any(&strings(rule.get("apiGroups")), &attrs.ty.group)
        || !any(&strings(rule.get("apiVersions")), attrs.version)
    {
        return false;
    }
    let resource_matches = strings(rule.get("resources")).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        let res_ok = res == "*" || res == attrs.ty.plural;
        let sub_ok = match attrs.subresource {
            None => sub.is_empty(),
            Some(s) => sub == "*" || sub == s,
        };
        res_ok && sub_ok
    });
    if !resource_matches {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !attrs.ty.namespaced,
        "Namespaced" => attrs.ty.namespaced,
        _ => true,
    }
}

/// Why a call failed, before its failure policy decides.
struct Failed(String);

async fn call(webhook: &Value, attrs: &mut Attributes<'_>, mutating: bool) -> Result<(), ApiError> {
    let name = webhook.get("name").and_then(Value::as_str).unwrap_or("");
    let side_effects = webhook
        .get("sideEffects")
        .and_then(Value::as_str)
        .unwrap_or("Unknown");
    if attrs.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
        return Err(ApiError::bad_request(format!(
            "admission webhook {name:?} has side effects and does not support dry run"
        )));
    }
    match review(webhook, attrs).await {
        Ok(response) => answer(name, &response, attrs, mutating),
        Err(Failed(why)) => {
            let ignore = webhook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
            if ignore {
                tracing::warn!(webhook = name, error = %why, "webhook failed; ignored by its failurePolicy");
                Ok(())
            } else {
                Err(ApiError::internal(format!(
                    "Internal error occurred: failed calling webhook {name:?}: {why}"
                )))
            }
        }
    }
}

/// Applies a webhook's answer: its patch, or its refusal.
fn answer(
    name: &str,
    response: &Value,
    attrs: &mut Attributes<'_>,
    mutating: bool,
) -> Result<(), ApiError> {
    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
        let status = response.get("status").cloned().unwrap_or(Value::Null);
        let message = status.get("message").and_then(Value::as_str).unwrap_or("");
        let code = status
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(403)
            .max(400);
        let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
        let message = if message.is_empty() {
            format!("admission webhook {name:?} denied the request without explanation")
        } else {
            format!("admission webhook {name:?} denied the request: {message}")
        };
        return Err(ApiError::refused(code, reason, message));
    }
    let Some(patch) = response.get("patch").filter(|p| !p.is_null()) else {
        return Ok(());
    };
    if !mutating {
        return Ok(());
    }
    let bad = |why: String| {
        ApiError::internal(format!(
            "Internal error occurred: failed calling webhook {name:?}: {why}"
        ))
    };
    let kind = response
        .get("patchType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind != "JSONPatch" {
        return Err(bad(format!("unsupported patchType {kind:?}")));
    }
    // Go reads a `[]byte` from a base64 string or from an array of bytes.
    let bytes = match patch {
        Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad(format!("the patch is not base64: {e}")))?,
        Value::Array(items) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| bad("the patch is neither base64 nor bytes".into()))?,
        other => {
            return Err(bad(format!(
                "the patch is neither base64 nor bytes: {other}"
            )));
        }
    };
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the patch is not a JSON patch: {e}")))?;
    if let Some(object) = attrs.object.as_mut() {
        json_patch::patch(object, &patch)
            .map_err(|e| bad(format!("the patch does not apply: {e}")))?;
    }
    Ok(())
}

/// Sends the AdmissionReview and returns its `response`.
async fn review(webhook: &Value, attrs: &Attributes<'_>) -> Result<Value, Failed> {
    let versions = strings(webhook.get("admissionReviewVersions"));
    if !versions.contains(&"v1") {
        return Err(Failed(format!(
            "the webhook accepts AdmissionReview versions {versions:?}; the simulator sends v1"
        )));
    }
    let config = webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let Some(url) = config.get("url").and_then(Value::as_str) else {
        let service = config.get("service").cloned().unwrap_or(Value::Null);
        return Err(Failed(format!(
            "the simulator cannot reach the Service {}/{} (no pod of it runs here): give the webhook a clientConfig.url",
            service
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            service.get("name").and_then(Value::as_str).unwrap_or("")
        )));
    };
    let ca = config
        .get("caBundle")
        .and_then(Value::as_str)
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        .transpose()
        .map_err(|e| Failed(format!("clientConfig.caBundle is not base64: {e}")))?
        .unwrap_or_default();
    let timeout = webhook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, MAX_TIMEOUT_SECONDS);
    let uid = crate::object::random_suffix(16);
    let gvk = json!({"group": attrs.ty.group, "version": attrs.version, "kind": attrs.ty.kind});
    let gvr =
        json!({"group": attrs.ty.group, "version": attrs.version, "resource": attrs.ty.plural});
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": attrs.name,
        "operation": attrs.operation.as_str(),
        "userInfo": {"username": attrs.user},
        "object": attrs.object,
        "oldObject": attrs.old.as_deref(),
        "dryRun": attrs.dry_run,
    });
    if attrs.ty.namespaced {
        request["namespace"] = json!(attrs.namespace);
    }
    if let Some(sub) = attrs.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    let body =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let sent = post(url, &ca, body);
    let answer = tokio::time::timeout(Duration::from_secs(timeout), sent)
        .await
        .map_err(|_| {
            Failed(format!(
                "Post {url:?}: context deadline exceeded ({timeout}s)"
            ))
        })??;
    let response = answer
        .get("response")
        .cloned()
        .ok_or_else(|| Failed("the answer has no response".into()))?;
    if response.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
        return Err(Failed(format!(
            "expected response.uid {uid:?}, got {:?}",
            response.get("uid")
        )));
    }
    Ok(response)
}

async fn post(url: &str, ca: &[u8], body: Value) -> Result<Value, Failed> {
    let failed = |e: &dyn std::fmt::Display| Failed(format!("Post {url:?}: {e}"));
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| failed(&format!("clientConfig.caBundle: {e}")))?;
        roots.add(cert).map_err(|e| failed(&e))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| failed(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| failed(&e))?;
    let response = client.request(request).await.map_err(|e| failed(&e))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(failed(&format!(
            "the webhook answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| failed(&format!("the answer is not JSON: {e}")))
}
