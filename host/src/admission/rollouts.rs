//! The validating webhook for Rollouts: Kruise's rules ([`crate::kruise::validate`])
//! at create and update, with the other Rollouts of the namespace for the
//! one-Rollout-per-workload rule. A refusal is Kruise's: HTTP 422 and the message
//! Kubernetes renders for the field errors.

use serde_json::Value;

use crate::kruise::v1alpha1::Rollout;
use crate::kruise::validate::{self, Options};

/// Why a Rollout is refused: a message, and the HTTP code to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400 for what cannot be read as a Rollout, 422 for a broken rule.
    pub code: u16,
    /// The message, as Kruise words it.
    pub message: String,
}

/// Checks a Rollout being created (`old` is `None`) or updated; `rollouts` are the
/// Rollouts the webhook knows (any namespace: those of the new one's count).
pub fn review(
    rollouts: &[std::sync::Arc<Rollout>],
    new: &Value,
    old: Option<&Value>,
    options: Options,
) -> Result<(), Refusal> {
    let read = |v: &Value| {
        serde_json::from_value::<Rollout>(v.clone()).map_err(|e| Refusal {
            code: 400,
            message: format!("the object is not a rollouts.kruise.io/v1alpha1 Rollout: {e}"),
        })
    };
    let new_value = new;
    let new = read(new)?;
    let ns = new.metadata.namespace.as_deref().unwrap_or("default");
    let others: Vec<&Rollout> = rollouts
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .collect();
    let mut errors = match old.map(read) {
        None => validate::validate(&new, &others, options),
        Some(old) => validate::validate_update(&old?, &new, &others, options),
    };
    // Steps left out are a nil slice to Kruise, `steps: []` an empty one; the typed
    // Rollout cannot tell them apart, the object can.
    if new_value.pointer("/spec/strategy/canary/steps").is_none() {
        for e in &mut errors {
            if e.path == "Spec.Strategy.Canary.Steps"
                && let validate::ErrorKind::Invalid { value, .. } = &mut e.kind
            {
                *value = validate::NIL_STEPS.into();
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            code: 422,
            message: validate::aggregate(&errors),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rollout(canary: Value) -> Value {
        json!({
            "apiVersion": "rollouts.kruise.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {
                "objectRef": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "echo"}},
                "strategy": {"canary": canary},
            },
        })
    }

    fn refusal(canary: Value) -> String {
        review(&[], &rollout(canary), None, Options::default())
            .expect_err("refused")
            .message
    }

    #[test]
    fn values_are_printed_as_go_prints_what_was_written() {
        // Steps left out are a nil slice, `steps: []` an empty one.
        assert_eq!(
            refusal(json!({})),
            "Spec.Strategy.Canary.Steps: Invalid value: []v1alpha1.CanaryStep(nil): The number of Canary.Steps cannot be empty"
        );
        assert_eq!(
            refusal(json!({"steps": []})),
            "Spec.Strategy.Canary.Steps: Invalid value: []v1alpha1.CanaryStep{}: The number of Canary.Steps cannot be empty"
        );
        // An ingress without a class is printed without one.
        assert_eq!(
            refusal(json!({
                "steps": [{"weight": 20}],
                "trafficRoutings": [{"service": "echo", "ingress": {"name": ""}}],
            })),
            "Spec.Strategy.Canary.TrafficRouting.Ingress: Invalid value: v1alpha1.IngressTrafficRouting{ClassType:\"\", Name:\"\"}: TrafficRouting.Ingress.Ingress cannot be empty"
        );
    }
}
