//! Kruise's validating webhook for `rollouts.kruise.io/v1alpha1` Rollouts: the same
//! rules, in the same order, with the same field paths and messages, so that a
//! refusal reads as Kruise's does. The admission webhook serves these; the
//! controller checks them again at each reconcile, for clusters without the webhook.
//!
//! Where Sluice cannot release something Kruise accepts (a DaemonSet, an ALB
//! ingress), it refuses it with Kruise's wording for the same field; rules of its own
//! come after Kruise's. docs/kruise-compatibility.md lists both.

use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::v1alpha1::{
    CanaryStep, GatewayTrafficRouting, IngressTrafficRouting, Rollout, RolloutSpec,
    TrafficRoutingRef, WorkloadRef,
};

/// The annotation choosing a Deployment's rolling style.
pub const ROLLING_STYLE: &str = "rollouts.kruise.io/rolling-style";

/// Ingress classes Sluice routes for.
pub const SUPPORTED_INGRESS_CLASSES: &[&str] = &["nginx"];

/// Kruise's default `--partition-percent-limit`: the largest percentage of replicas a
/// partition-style step with traffic may update.
pub const DEFAULT_PARTITION_LIMIT: i64 = 50;

/// One problem with a field, rendered as Kubernetes renders a `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Kruise's path (`Spec.Strategy.Canary.Steps[0].Replicas`).
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// How a field is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The value is wrong: the value as Kubernetes prints it, and why.
    Invalid {
        /// The value, printed.
        value: String,
        /// Why.
        detail: String,
    },
    /// The change is not allowed.
    Forbidden {
        /// Why.
        detail: String,
    },
}

impl FieldError {
    fn invalid(
        path: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            kind: ErrorKind::Invalid {
                value: value.into(),
                detail: detail.into(),
            },
        }
    }

    /// A change that is not allowed.
    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            kind: ErrorKind::Forbidden {
                detail: detail.into(),
            },
        }
    }

    /// Why, without the path and value.
    pub fn detail(&self) -> &str {
        match &self.kind {
            ErrorKind::Invalid { detail, .. } | ErrorKind::Forbidden { detail } => detail,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Invalid { value, detail } => {
                write!(f, "{}: Invalid value: {value}: {detail}", self.path)
            }
            ErrorKind::Forbidden { detail } => write!(f, "{}: Forbidden: {detail}", self.path),
        }
    }
}

/// How Kubernetes prints the steps of a Rollout that leaves them out.
pub const NIL_STEPS: &str = "[]v1alpha1.CanaryStep(nil)";

/// The message of a refusal: one error as it is, several as `[a, b]`, repeats once.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !messages.contains(&m) {
            messages.push(m);
        }
    }
    match messages.len() {
        1 => messages.remove(0),
        _ => format!("[{}]", messages.join(", ")),
    }
}

/// What the validator is told besides the Rollout.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--partition-percent-limit`.
    pub partition_limit: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            partition_limit: DEFAULT_PARTITION_LIMIT,
        }
    }
}

/// How a Rollout releases its workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollingStyle {
    /// An extra canary Deployment.
    Canary,
    /// The workload's own pods, in place.
    Partition,
}

/// The rolling style of `rollout`: canary for a Deployment unless its annotation
/// says partition; partition for every other workload.
pub fn rolling_style(rollout: &Rollout) -> RollingStyle {
    let annotation = rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLLING_STYLE))
        .map(|s| s.to_lowercase())
        .unwrap_or_default();
    let deployment = rollout
        .spec
        .object_ref
        .workload_ref
        .as_ref()
        .is_some_and(|w| w.api_version == "apps/v1" && w.kind == "Deployment");
    if deployment && (annotation.is_empty() || annotation == "canary") {
        RollingStyle::Canary
    } else {
        RollingStyle::Partition
    }
}

/// The rules of a Rollout being created (and of the new object of an update).
/// `others` are the other Rollouts of its namespace.
pub fn validate(rollout: &Rollout, others: &[&Rollout], options: Options) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(object_ref(&rollout.spec));
    errors.extend(rolling_style_annotation(rollout));
    errors.extend(strategy(rollout, options));
    errors.extend(conflict(rollout, others));
    errors
}

/// The rules of an update: those of the new object, then, while the release runs
/// (the latest phase is Progressing or Terminating), what may not change.
pub fn validate_update(
    latest: &Rollout,
    new: &Rollout,
    others: &[&Rollout],
    options: Options,
) -> Vec<FieldError> {
    let errors = validate(new, others, options);
    if !errors.is_empty() {
        return errors;
    }
    let phase = latest.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, Some("Progressing" | "Terminating")) {
        return Vec::new();
    }
    if latest.spec.object_ref != new.spec.object_ref {
        return vec![FieldError::forbidden(
            "Spec.ObjectRef",
            "Rollout 'ObjectRef' field is immutable",
        )];
    }
    let routings = |r: &Rollout| {
        r.spec
            .strategy
            .canary
            .as_ref()
            .map(|c| c.traffic_routings.clone())
    };
    if routings(latest) != routings(new) {
        return vec![FieldError::forbidden(
            "Spec.Strategy.Canary.TrafficRoutings",
            "Rollout 'Strategy.Canary.TrafficRoutings' field is immutable",
        )];
    }
    let style = |r: &Rollout| {
        r.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROLLING_STYLE))
            .map(|s| s.to_lowercase())
            .unwrap_or_default()
    };
    if style(latest) != style(new) {
        return vec![FieldError::forbidden(
            "Metadata.Annotation",
            "Rollout 'Rolling-Style' annotation is immutable",
        )];
    }
    Vec::new()
}

fn object_ref(spec: &RolloutSpec) -> Option<FieldError> {
    let path = "Spec.ObjectRef.WorkloadRef";
    let Some(w) = &spec.object_ref.workload_ref else {
        return Some(FieldError::invalid(path, NULL, "WorkloadRef is required"));
    };
    // Kruise accepts more kinds than Sluice releases; what Sluice cannot release
    // is refused in Kruise's words.
    if crate::workload::for_ref(&w.api_version, &w.kind).is_none() {
        return Some(FieldError::invalid(
            path,
            workload_ref_value(w),
            "WorkloadRef kind is not supported",
        ));
    }
    None
}

fn rolling_style_annotation(rollout: &Rollout) -> Option<FieldError> {
    let value = rollout
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLLING_STYLE))?;
    match value.to_lowercase().as_str() {
        "" | "canary" | "partition" => None,
        _ => Some(FieldError::invalid(
            "RollingStyle",
            quote(value),
            "Rolling style must be 'Canary', 'Partition' or empty",
        )),
    }
}

fn strategy(rollout: &Rollout, options: Options) -> Vec<FieldError> {
    let path = "Spec.Strategy.Canary";
    let Some(canary) = &rollout.spec.strategy.canary else {
        return vec![FieldError::invalid(path, NULL, "Canary cannot be empty")];
    };
    let style = rolling_style(rollout);
    let mut errors = Vec::new();
    let with_traffic = !canary.traffic_routings.is_empty();
    errors.extend(steps(&canary.steps, with_traffic, style, options));
    if canary.traffic_routings.len() > 1 {
        errors.push(FieldError::invalid(
            path,
            routings_value(&canary.traffic_routings),
            "Rollout currently only support single TrafficRouting.",
        ));
    }
    for routing in &canary.traffic_routings {
        errors.extend(traffic_routing(routing));
    }
    errors.extend(sluice_rules(canary));
    errors
}

/// `replicas` scaled against 100, as Kruise scales it: a count as it is, a
/// percentage rounded up; `None` when it is neither.
fn scaled(replicas: &IntOrString) -> Option<i64> {
    match replicas {
        IntOrString::Int(n) => Some(i64::from(*n)),
        IntOrString::String(s) => s.strip_suffix('%')?.parse::<i64>().ok(),
    }
}

fn is_percent(replicas: Option<&IntOrString>) -> bool {
    !matches!(replicas, Some(IntOrString::Int(_)))
}

/// Kruise's step rules: the first broken one is reported.
fn steps(
    written: &[CanaryStep],
    with_traffic: bool,
    style: RollingStyle,
    options: Options,
) -> Option<FieldError> {
    let path = "Spec.Strategy.Canary.Steps";
    if written.is_empty() {
        return Some(FieldError::invalid(
            path,
            steps_value(written),
            "The number of Canary.Steps cannot be empty",
        ));
    }
    let limit = options.partition_limit;
    for (i, step) in written.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let whole = || steps_value(written);
        match (&step.replicas, step.weight) {
            (None, None) => {
                return Some(FieldError::invalid(
                    format!("{at}.steps"),
                    whole(),
                    "weight and replicas cannot be empty at the same time",
                ));
            }
            (Some(replicas), weight) => {
                let value = scaled(replicas);
                let percent = matches!(replicas, IntOrString::String(_));
                if value.is_none_or(|v| v <= 0 || (percent && v > 100)) {
                    return Some(FieldError::invalid(
                        format!("{at}.Replicas"),
                        int_or_string_value(replicas),
                        "replicas must be positive number, or a percentage with \"0%\" < canaryReplicas <= \"100%\"",
                    ));
                }
                if style == RollingStyle::Partition
                    && percent
                    && value.is_some_and(|v| v > limit)
                    && (!step.matches.is_empty() || weight.is_some())
                {
                    return Some(FieldError::invalid(
                        format!("{at}.steps"),
                        whole(),
                        "For patition style rollout: step[x].replicas must not greater than replicasLimitWithTraffic if traffic or matches specified",
                    ));
                }
                // Kruise leaves a weight beside replicas unchecked; a weight outside
                // 1–100 cannot be routed, so Sluice refuses it with Kruise's words.
                if let Some(w) = weight
                    && !(1..=100).contains(&w)
                {
                    return Some(weight_error(&at, w));
                }
            }
            (None, Some(w)) => {
                if style == RollingStyle::Partition && i64::from(w) > limit {
                    return Some(FieldError::invalid(
                        format!("{at}.steps"),
                        whole(),
                        "For patition style rollout: step[x].weight must not greater than replicasLimitWithTraffic if replicas is not specified",
                    ));
                }
                if !(1..=100).contains(&w) {
                    return Some(weight_error(&at, w));
                }
            }
        }
    }
    for pair in written.windows(2) {
        let (prev, curr) = (&pair[0], &pair[1]);
        if with_traffic
            && let (Some(p), Some(c)) = (prev.weight, curr.weight)
            && c < p
        {
            return Some(FieldError::invalid(
                format!("{path}.Weight"),
                steps_value(written),
                "Steps.Weight must be a non decreasing sequence",
            ));
        }
        // A step without replicas counts its weight as a percentage; a count and a
        // percentage are not compared.
        if is_percent(prev.replicas.as_ref()) != is_percent(curr.replicas.as_ref()) {
            continue;
        }
        let size = |s: &CanaryStep| match &s.replicas {
            Some(r) => scaled(r).unwrap_or(0),
            None => i64::from(s.weight.unwrap_or(0)),
        };
        if size(curr) < size(prev) {
            return Some(FieldError::invalid(
                format!("{path}.CanaryReplicas"),
                steps_value(written),
                "Steps.CanaryReplicas must be a non decreasing sequence",
            ));
        }
    }
    None
}

fn weight_error(at: &str, weight: i32) -> FieldError {
    FieldError::invalid(
        format!("{at}.Weight"),
        weight.to_string(),
        "weight must be positive number, and less than or equal to replicasLimitWithTraffic (defaults to 30)",
    )
}

/// Kruise's rules for one traffic routing: every broken one is reported.
fn traffic_routing(t: &TrafficRoutingRef) -> Vec<FieldError> {
    let path = "Spec.Strategy.Canary.TrafficRouting";
    let mut errors = Vec::new();
    if t.grace_period_seconds.is_some_and(|g| g < 0) {
        errors.push(FieldError::invalid(
            format!("{path}.GracePeriodSeconds"),
            quote(&t.service),
            "TrafficRouting.GracePeriodSeconds cannot be negative",
        ));
    }
    if t.service.is_empty() {
        errors.push(FieldError::invalid(
            format!("{path}.Service"),
            quote(""),
            "TrafficRouting.Service cannot be empty",
        ));
    }
    // KubeVela's first kruise-rollout trait wrote `type: nginx` for an ingress of
    // the Service's name: Sluice reads it so.
    let legacy_ingress = matches!(t.legacy_type.as_deref(), Some("nginx" | "ingress"));
    if t.ingress.is_none() && t.gateway.is_none() && !legacy_ingress {
        errors.push(FieldError::invalid(
            format!("{path}.TrafficRoutings"),
            NULL,
            "TrafficRoutings are not set",
        ));
    }
    if let Some(ingress) = &t.ingress
        && ingress.name.is_empty()
    {
        errors.push(FieldError::invalid(
            format!("{path}.Ingress"),
            ingress_value(ingress),
            "TrafficRouting.Ingress.Ingress cannot be empty",
        ));
    }
    if let Some(gateway) = &t.gateway
        && gateway.http_route_name.as_deref().unwrap_or("").is_empty()
    {
        errors.push(FieldError::invalid(
            format!("{path}.Gateway"),
            gateway_value(gateway),
            "TrafficRouting.Gateway must set the name of HTTPRoute or HTTPsRoute",
        ));
    }
    errors
}

/// What Sluice cannot do of what Kruise accepts, after Kruise's own rules.
fn sluice_rules(canary: &super::v1alpha1::CanaryStrategy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for t in &canary.traffic_routings {
        if let Some(ingress) = &t.ingress {
            let class = ingress.class_type.as_deref().unwrap_or("nginx");
            if !SUPPORTED_INGRESS_CLASSES.contains(&class) {
                errors.push(FieldError::invalid(
                    "Spec.Strategy.Canary.TrafficRouting.Ingress.ClassType",
                    quote(class),
                    "Sluice routes NGINX ingresses (classType nginx) and Gateway API HTTPRoutes",
                ));
            }
        }
    }
    for (i, step) in canary.steps.iter().enumerate() {
        if step.pause.duration.is_some_and(|d| d < 0) {
            errors.push(FieldError::invalid(
                format!("Spec.Strategy.Canary.Steps[{i}].Pause.Duration"),
                step.pause.duration.unwrap_or(0).to_string(),
                "a pause lasts zero or more seconds",
            ));
        }
        for (j, m) in step.matches.iter().enumerate() {
            for (k, h) in m.headers.iter().enumerate() {
                if let Some(kind) = h.kind.as_deref()
                    && !matches!(kind, "Exact" | "RegularExpression")
                {
                    errors.push(FieldError::invalid(
                        format!("Spec.Strategy.Canary.Steps[{i}].Matches[{j}].Headers[{k}].Type"),
                        quote(kind),
                        "a header match is Exact or RegularExpression",
                    ));
                }
            }
        }
    }
    errors
}

fn conflict(rollout: &Rollout, others: &[&Rollout]) -> Option<FieldError> {
    let own = rollout.spec.object_ref.workload_ref.as_ref()?;
    let name = rollout.metadata.name.as_deref().unwrap_or("");
    let ns = rollout.metadata.namespace.as_deref().unwrap_or("");
    let other = others.iter().find(|o| {
        o.metadata.name.as_deref() != Some(name)
            && o.metadata.namespace.as_deref().unwrap_or(ns) == ns
            && o.spec.object_ref.workload_ref.as_ref() == Some(own)
    })?;
    Some(FieldError::invalid(
        "Conflict Checker",
        quote(name),
        format!(
            "This rollout conflict with Rollout({ns}/{}), one workload only have less than one Rollout",
            other.metadata.name.as_deref().unwrap_or("")
        ),
    ))
}

/// What may not change while a release is in progress: the workload and the traffic
/// routing. Recorded when a release starts, so that the controller notices a change
/// made where no webhook refused it. The grace period counts as the CRD defaults it.
pub fn fingerprint(spec: &RolloutSpec) -> String {
    fingerprint_with(spec, |g| Some(g.unwrap_or(3)))
}

/// Whether `recorded` is `spec`'s fingerprint, also as versions whose CRD did not
/// write the grace period's default recorded it (so a release in flight across the
/// upgrade goes on).
pub fn same_fingerprint(recorded: &str, spec: &RolloutSpec) -> bool {
    recorded == fingerprint(spec) || recorded == fingerprint_with(spec, |g| g.filter(|s| *s != 3))
}

fn fingerprint_with(spec: &RolloutSpec, grace: impl Fn(Option<i32>) -> Option<i32>) -> String {
    let routings = spec.strategy.canary.as_ref().map(|c| {
        c.traffic_routings
            .iter()
            .map(|t| TrafficRoutingRef {
                grace_period_seconds: grace(t.grace_period_seconds),
                ..t.clone()
            })
            .collect::<Vec<_>>()
    });
    let parts = serde_json::json!({
        "workloadRef": spec.object_ref.workload_ref,
        "trafficRoutings": routings,
    });
    let digest = Sha256::digest(parts.to_string().as_bytes());
    hex::encode(&digest[..8])
}

// Values as Kubernetes prints them in a field error (Go's `%q`, `%#v`).

const NULL: &str = "\"null\"";

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn int_or_string_value(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        IntOrString::String(s) => {
            format!(
                "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
                quote(s)
            )
        }
    }
}

fn workload_ref_value(w: &WorkloadRef) -> String {
    format!(
        "v1alpha1.WorkloadRef{{APIVersion:{}, Kind:{}, Name:{}}}",
        quote(&w.api_version),
        quote(&w.kind),
        quote(&w.name)
    )
}

fn ingress_value(i: &IngressTrafficRouting) -> String {
    format!(
        "v1alpha1.IngressTrafficRouting{{ClassType:{}, Name:{}}}",
        // As written: Kruise prints the field, not the class it routes by default.
        quote(i.class_type.as_deref().unwrap_or("")),
        quote(&i.name)
    )
}

fn gateway_value(g: &GatewayTrafficRouting) -> String {
    match &g.http_route_name {
        None => "v1alpha1.GatewayTrafficRouting{HTTPRouteName:(*string)(nil)}".into(),
        Some(name) => format!(
            "v1alpha1.GatewayTrafficRouting{{HTTPRouteName:&{}}}",
            quote(name)
        ),
    }
}

// Kubernetes prints slices of structs with pointer addresses, different at every
// call: these print their content instead.

fn steps_value(steps: &[CanaryStep]) -> String {
    // Go prints an empty slice as such (a nil one, steps left out, is
    // `(nil)`: see `NIL_STEPS`).
    if steps.is_empty() {
        return "[]v1alpha1.CanaryStep{}".into();
    }
    format!(
        "[]v1alpha1.CanaryStep{}",
        serde_json::to_string(steps).unwrap_or_default()
    )
}

fn routings_value(routings: &[TrafficRoutingRef]) -> String {
    format!(
        "[]v1alpha1.TrafficRoutingRef{}",
        serde_json::to_string(routings).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests;
