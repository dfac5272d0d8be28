//! `apps/v1` StatefulSet, released by partition: the rolling update's partition
//! keeps ordinals below it on the old revision.

use serde_json::{Value, json};

use super::partition::Partitioned;

/// The StatefulSet kind.
#[allow(non_upper_case_globals)]
pub static StatefulSet: Partitioned = Partitioned {
    api_version: "apps/v1",
    kind: "StatefulSet",
    revision_label: "controller-revision-hash",
    partition_path: "/spec/updateStrategy/rollingUpdate/partition",
    revision_has_name_prefix: false,
    hold_value: |w| json!(w.replicas),
    partition_share: false,
    partition_patch: |value: Value| json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": value}}}}),
    workload_type: "statefulset",
    // Kruise's hold: a partition above any ordinal (math.MaxInt16).
    webhook_hold: || json!(32767),
    // A StatefulSet updated on delete has no partition to hold.
    releasable: |object, _| {
        !matches!(
            object
                .pointer("/spec/updateStrategy/type")
                .and_then(Value::as_str),
            Some("OnDelete")
        )
    },
};
