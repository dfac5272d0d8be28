//! OpenKruise Rollout `rollouts.kruise.io/v1alpha1`, the API Sluice serves.
//!
//! Field names, defaults, printer columns and the status layout follow the upstream
//! API, so existing manifests, KubeVela's `kruise-rollout` trait and kubectl-kruise work
//! unchanged. Sluice adds one status field, `status.strategy`, recording the module that
//! made the last decision.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A progressive release of one workload.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "rollouts.kruise.io",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    printcolumn = r#"{"name":"STATUS","type":"string","jsonPath":".status.phase","description":"The rollout status phase"}"#,
    printcolumn = r#"{"name":"CANARY_STEP","type":"integer","jsonPath":".status.canaryStatus.currentStepIndex","description":"The rollout canary status step"}"#,
    printcolumn = r#"{"name":"CANARY_STATE","type":"string","jsonPath":".status.canaryStatus.currentStepState","description":"The rollout canary status step state"}"#,
    printcolumn = r#"{"name":"MESSAGE","type":"string","jsonPath":".status.message","description":"The rollout canary status message"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// The workload released by this rollout.
    pub object_ref: ObjectRef,
    /// How it is released.
    pub strategy: RolloutStrategy,
    /// Deprecated rollout id.
    #[serde(rename = "rolloutID", default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    /// Stops governing the workload.
    #[serde(default)]
    pub disabled: bool,
}

/// `spec.objectRef`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// The workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
}

/// A reference to a workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// `Deployment`, `CloneSet` or `StatefulSet`.
    pub kind: String,
    /// Name in the Rollout's namespace.
    pub name: String,
}

/// `spec.strategy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Holds the rollout where it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Canary release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

/// `spec.strategy.canary`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The steps.
    // Kruise's CRD gives no default: steps left out reach the webhook left out.
    #[serde(default)]
    #[schemars(transform = without_default)]
    pub steps: Vec<CanaryStep>,
    /// Traffic routing (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic_routings: Vec<TrafficRoutingRef>,
    /// Failed canary pods tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<IntOrString>,
    /// Labels and annotations added to canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_pod_template_metadata: Option<PatchPodTemplateMetadata>,
    /// Route to the stable Service name instead of a `-canary` Service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_generate_canary_service: bool,
}

/// One step of a canary release.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Headers set on requests to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "header_filter_schema")]
    pub request_header_modifier: Option<serde_json::Value>,
    /// Requests routed to the canary by header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// Canary pods: a count, or a percentage such as `"20%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<IntOrString>,
    /// `{}` waits for approval; `{duration: N}` waits N seconds.
    #[serde(default)]
    pub pause: RolloutPause,
}

/// `pause` of a step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RolloutPause {
    /// Seconds; absent waits for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i32>,
}

/// `matches[]` of a step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpRouteMatch {
    /// Header conditions, all of which must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// Gateway API's HTTPHeaderMatch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact"))]
    pub kind: Option<String>,
    /// Header name; `canary-by-cookie` names a cookie match for NGINX.
    pub name: String,
    /// Value to match.
    pub value: String,
}

/// `trafficRoutings[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRoutingRef {
    /// The stable Service.
    pub service: String,
    /// Seconds to wait after each traffic change (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 3))]
    pub grace_period_seconds: Option<i32>,
    /// An Ingress routes the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressTrafficRouting>,
    /// A Gateway API HTTPRoute routes the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayTrafficRouting>,
    /// The first KubeVela `kruise-rollout` traits wrote `type: nginx` (with the
    /// Ingress named like the Service); accepted as an alias of `ingress`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub legacy_type: Option<String>,
}

/// `trafficRoutings[].ingress`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTrafficRouting {
    /// Ingress controller; `nginx` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_type: Option<String>,
    /// The stable Ingress.
    pub name: String,
}

/// `trafficRoutings[].gateway`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTrafficRouting {
    /// The HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route_name: Option<String>,
}

/// `patchPodTemplateMetadata`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PatchPodTemplateMetadata {
    /// Annotations for canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    /// Labels for canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Initial`, `Healthy`, `Progressing`, `Terminating`, `Disabling`, `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// A human message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions: `Progressing`, `Succeeded`, `Terminating`, and Sluice's `StrategyReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
    /// The canary release's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_status: Option<CanaryStatus>,
    /// The strategy module that made the last decision (Sluice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyStatus>,
}

/// A condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    /// Type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When it was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Why, in one word.
    #[serde(default)]
    pub reason: String,
    /// Why, in words.
    #[serde(default)]
    pub message: String,
}

/// `status.canaryStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The workload generation this status describes (left out when 0, as Kruise's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_workload_generation: i64,
    /// The rollout id seen.
    #[serde(
        default,
        rename = "observedRolloutID",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_rollout_id: Option<String>,
    /// Hash of the rollout's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_hash: Option<String>,
    /// `pod-template-hash` of the stable pods (left out when unknown, as Kruise's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable_revision: String,
    /// Hash of the released template.
    #[serde(default)]
    pub canary_revision: String,
    /// `pod-template-hash` of the canary pods.
    #[serde(default)]
    pub pod_template_hash: String,
    /// Canary pods asked for.
    #[serde(default)]
    pub canary_replicas: i32,
    /// Canary pods ready.
    #[serde(default)]
    pub canary_ready_replicas: i32,
    /// The step after the current one; patch it to jump.
    #[serde(default)]
    pub next_step_index: i32,
    /// 1-based current step.
    #[serde(default)]
    pub current_step_index: i32,
    /// State within the step.
    #[serde(default)]
    pub current_step_state: String,
    /// Detail of the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the step state last moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Where finalisation is: written `""` when it is nowhere, as Kruise's
    /// status always has the field.
    #[serde(
        default,
        serialize_with = "empty_when_none",
        deserialize_with = "none_when_empty"
    )]
    pub finalising_step: Option<String>,
}

/// `status.strategy`: the module behind the decisions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyStatus {
    /// The module as the Rollout names it (`builtin:steps` by default).
    pub module: String,
    /// sha256 of the module that made the last decision.
    pub digest: String,
    /// The module's memo, handed back at its next decision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
    /// The last decision's action.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_action: String,
    /// The workload and traffic routing the current release started with, hashed:
    /// neither may change until it ends.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_fingerprint: String,
    /// The pods the current step asked for (a count, or a share of the workload),
    /// under the steps `canaryStatus.rolloutHash` names: where an edit of the steps
    /// finds the release, as Kruise finds it from its BatchRelease's current batch
    /// (not from the canary's pods, which a jump back or a smaller workload leaves
    /// larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_replicas: Option<IntOrString>,
    /// The last operator request (the `rollout.sluice.dev/request` annotation's
    /// value) the controller acted on, or found nothing to do for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handled_request: String,
    /// What came of it: `done`, or `ignored: ` and why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_outcome: String,
    /// The current release's decisions, oldest first: the last
    /// [`DECISION_LOG`] that differ from the one before (a decision the same as
    /// the previous one but for its time is recorded once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// The last [`RELEASE_LOG`] releases, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRecord>,
}

/// How many decisions `status.strategy.decisions` keeps.
pub const DECISION_LOG: usize = 10;
/// How many releases `status.strategy.releases` keeps.
pub const RELEASE_LOG: usize = 10;

/// One decision of the strategy module, as `kubectl sluice explain` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// When (RFC 3339).
    pub at: String,
    /// The step it was made in (1-based; 0 before the first).
    pub step: u32,
    /// The step's state it saw.
    pub state: String,
    /// sha256 of the module that made it.
    pub digest: String,
    /// `hold`, `pause`, `advance`, `complete`, `abort`.
    pub action: String,
    /// The step's target it set: canary pods and traffic.
    pub target: String,
    /// Its message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// sha256 of the observation it was given (canonical JSON), to tell a replay
    /// given the same observation.
    pub observation: String,
    /// The observation it was given as compact JSON, but for the steps and the
    /// configuration (the Rollout's spec holds them); empty when over 8 KiB.
    /// `kubectl sluice explain --scenario` rebuilds the observation from it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub input: String,
    /// The metric answers the module was given, by query: the number, `no data`,
    /// or `error: ` and the error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
}

/// One release, as `kubectl sluice history` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// The released template's revision (`canaryRevision`).
    pub revision: String,
    /// Its containers' images, `name=image`.
    #[serde(default)]
    pub images: Vec<String>,
    /// The strategy module.
    pub module: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it ended; empty while it runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ended: String,
    /// `Succeeded`, `Canceled`, `Aborted`, `Replaced`; empty while it runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// sha256 of the module that made its last decision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// Drops the default a field's `#[serde(default)]` gives its schema, where Kruise's
/// CRD has none.
/// Kruise's `requestHeaderModifier`, Gateway API's HTTPHeaderFilter: the headers
/// set, added and removed. Kept as JSON (the plan hash writes it as given); its
/// schema is spelt out, as a real API server takes only structural schemas.
fn header_filter_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let header = serde_json::json!({
        "type": "object",
        "description": "A header: its name (compared without case) and value.",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 256,
                     "pattern": "^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$"},
            "value": {"type": "string", "minLength": 1, "maxLength": 4096},
        },
        "required": ["name", "value"],
    });
    let headers = |what: &str| {
        serde_json::json!({
            "type": "array",
            "description": what,
            "items": header,
            "maxItems": 16,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        })
    };
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "description": "Headers set on requests to the canary.",
        "properties": {
            "set": headers("Headers replacing any of the same name."),
            "add": headers("Headers appended to any of the same name."),
            "remove": {"type": "array", "description": "Names of headers removed.",
                       "items": {"type": "string"}, "maxItems": 16},
        },
    })
}

fn without_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

fn empty_when_none<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_deref().unwrap_or(""))
}

fn none_when_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}
