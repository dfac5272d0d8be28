//! The validating webhook for Rollouts: Kruise's rules ([`crate::kruise::validate`])
//! at create and update, with the other Rollouts of the namespace for the
//! one-Rollout-per-workload rule. A refusal is Kruise's: HTTP 422 and the message
//! Kubernetes renders for the field errors.

use kube::api::{Api, ListParams};
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

/// Checks a Rollout being created (`old` is `None`) or updated.
pub async fn review(
    client: &kube::Client,
    new: &Value,
    old: Option<&Value>,
    options: Options,
) -> Result<Result<(), Refusal>, kube::Error> {
    let read = |v: &Value| {
        serde_json::from_value::<Rollout>(v.clone()).map_err(|e| Refusal {
            code: 400,
            message: format!("the object is not a rollouts.kruise.io/v1alpha1 Rollout: {e}"),
        })
    };
    let new = match read(new) {
        Ok(r) => r,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let ns = new.metadata.namespace.as_deref().unwrap_or("default");
    let others: Vec<Rollout> = Api::<Rollout>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let others: Vec<&Rollout> = others.iter().collect();
    let errors = match old.map(read) {
        None => validate::validate(&new, &others, options),
        Some(Ok(old)) => validate::validate_update(&old, &new, &others, options),
        Some(Err(refusal)) => return Ok(Err(refusal)),
    };
    if errors.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(Refusal {
            code: 422,
            message: validate::aggregate(&errors),
        }))
    }
}
