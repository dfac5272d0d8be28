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
    let new = read(new)?;
    let ns = new.metadata.namespace.as_deref().unwrap_or("default");
    let others: Vec<&Rollout> = rollouts
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| r.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .collect();
    let errors = match old.map(read) {
        None => validate::validate(&new, &others, options),
        Some(old) => validate::validate_update(&old?, &new, &others, options),
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            code: 422,
            message: validate::aggregate(&errors),
        })
    }
}
