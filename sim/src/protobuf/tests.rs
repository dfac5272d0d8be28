use super::*;

#[test]
fn durations_read_as_go_writes_them() {
    for (nanos, text) in [
        (0, "0s"),
        (1_500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
}

/// What `kubectl create namespace team-a` sends (kubectl 1.32).
const NAMESPACE: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1e\x0a\x16\x0a\x06team-a\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";

#[test]
fn a_namespace_from_kubectl() {
    let json = decode(NAMESPACE).expect("decoded");
    assert_eq!(
        json,
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {}, "status": {}})
    );
}

/// `raw` in kube-apiserver's envelope as `apiVersion`/`kind`.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        ..Unknown::default()
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn namespace_raw() -> Vec<u8> {
    let unknown = Unknown::decode(&NAMESPACE[4..]).expect("kubectl's envelope");
    unknown.raw.expect("raw")
}

#[test]
fn a_field_newer_than_the_types_is_refused_not_dropped() {
    let mut raw = namespace_raw();
    // Field 15, a string: unknown to Namespace.
    raw.extend([0x7a, 0x02, b'h', b'i']);
    let err = decode(&envelope("v1", "Namespace", raw)).expect_err("refused");
    assert_eq!(err.code, 415);
    assert!(err.message.contains("fields newer than"), "{}", err.message);
}

#[test]
fn a_map_entry_with_an_empty_value_as_go_writes_it_is_kept() {
    // ConfigMap{data: {"empty": "", "k": "v"}} as Go writes it: the empty value's
    // field is there (`12 00`), where prost leaves it out.
    let mut raw = vec![0x12, 0x09, 0x0a, 0x05];
    raw.extend(b"empty");
    raw.extend([0x12, 0x00]);
    raw.extend([0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']);
    let json = decode(&envelope("v1", "ConfigMap", raw.clone())).expect("decoded");
    assert_eq!(json["data"], serde_json::json!({"empty": "", "k": "v"}));
    // An unknown field beside it is still refused.
    raw.extend([0x7a, 0x02, b'h', b'i']);
    let err = decode(&envelope("v1", "ConfigMap", raw)).expect_err("refused");
    assert_eq!(err.code, 415);
}

#[test]
fn what_is_not_a_built_in_kind_or_not_protobuf_is_named() {
    let err = decode(&envelope(
        "rollouts.kruise.io/v1alpha1",
        "Rollout",
        namespace_raw(),
    ))
    .expect_err("refused");
    assert_eq!(err.code, 415);
    assert!(
        err.message
            .contains("not Rollout of rollouts.kruise.io/v1alpha1"),
        "{}",
        err.message
    );

    let err = decode(b"{\"kind\": \"Namespace\"}").expect_err("refused");
    assert_eq!(err.code, 400);
    assert!(err.message.contains("envelope"), "{}", err.message);

    let err = decode(&envelope("v1", "Namespace", vec![0x0a, 0x05, 0x01])).expect_err("refused");
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("not a valid Namespace of v1"),
        "{}",
        err.message
    );
}

#[test]
fn kubernetes_own_json_for_times_ports_quantities_and_volumes() {
    use k8s_pb::api::core::v1 as core;
    let pod = core::Pod {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("p".into()),
            generation: Some(0),
            creation_timestamp: Some(Time {
                seconds: Some(1_796_300_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            termination_grace_period_seconds: Some(0),
            restart_policy: Some(String::new()),
            volumes: vec![core::Volume {
                name: Some("scratch".into()),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource::default()),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: Some("app".into()),
                resources: Some(core::ResourceRequirements {
                    limits: [(
                        "memory".to_owned(),
                        Quantity {
                            string: Some("64Mi".into()),
                        },
                    )]
                    .into(),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: Some(0),
                                str_val: Some("http".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                env: vec![core::EnvVar {
                    name: Some("MODE".into()),
                    value_from: Some(core::EnvVarSource {
                        config_map_key_ref: Some(core::ConfigMapKeySelector {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: Some("settings".into()),
                            }),
                            key: Some("mode".into()),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let json = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decoded");
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": "2026-12-03T12:13:20Z"},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{
                    "name": "app",
                    "resources": {"limits": {"memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"port": "http"}},
                    "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode", "optional": false}}}],
                }],
            },
        })
    );
}

#[test]
fn every_meaningful_zero_names_a_field_the_generated_code_writes() {
    // A pair naming no written field would be silently ignored: its zero dropped.
    let generated: String = include_str!("generated.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    for (message, field) in MEANINGFUL_ZERO {
        assert!(
            generated.contains(&format!("\"{message}\",\"{field}\",")),
            "{message}.{field} is not a field the generated code writes"
        );
    }
}
