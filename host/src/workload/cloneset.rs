//! `apps.kruise.io/v1alpha1` CloneSet (OpenKruise), released by partition. Its
//! partition may be a percentage; its revisions are `<name>-<pod-template-hash>`.

use serde_json::{Value, json};

use super::partition::Partitioned;

/// The CloneSet kind.
#[allow(non_upper_case_globals)]
pub static CloneSet: Partitioned = Partitioned {
    api_version: "apps.kruise.io/v1alpha1",
    kind: "CloneSet",
    revision_label: "pod-template-hash",
    partition_path: "/spec/updateStrategy/partition",
    revision_has_name_prefix: true,
    hold_value: |_| json!("100%"),
    partition_share: true,
    partition_patch: |value: Value| json!({"spec": {"updateStrategy": {"partition": value}}}),
    workload_type: "cloneset",
    webhook_hold: || json!("100%"),
    // With traffic routing, a CloneSet still rolling its last version out waits.
    releasable: |object, rollout| {
        let routed = rollout
            .spec
            .strategy
            .canary
            .as_ref()
            .is_some_and(|c| !c.traffic_routings.is_empty());
        let status = |field: &str| {
            object
                .pointer(&format!("/status/{field}"))
                .and_then(Value::as_i64)
        };
        !routed || status("replicas") == status("updatedReplicas")
    },
};
