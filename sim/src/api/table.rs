//! `Table` responses, so `kubectl get` prints the columns a real cluster prints.

use serde_json::{Value, json};

use crate::object::{Meta, at};
use crate::resources::ResourceType;

/// A Table of `objects` for `ty`.
pub fn table(ty: &ResourceType, objects: &[&Value], rv: u64) -> Value {
    if ty.kind == "Event" && matches!(ty.group.as_str(), "" | "events.k8s.io") {
        return event_table(objects, rv);
    }
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    for (name, kind) in builtin_columns(ty) {
        columns.push(
            json!({"name": name, "type": kind, "format": "", "description": name, "priority": 0}),
        );
    }
    for c in &ty.columns {
        if !builtin_columns(ty).is_empty() {
            break;
        }
        columns.push(json!({"name": c.name, "type": c.type_, "format": "", "description": c.name, "priority": 0}));
    }
    // A custom resource's printer columns are its whole table (the API server adds
    // Age only to a CRD that names none), as its rows are.
    if ty.schema.is_none() || ty.columns.is_empty() {
        columns.push(
            json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}),
        );
    }
    let rows: Vec<Value> = objects.iter().map(|o| row(ty, o)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn builtin_columns(ty: &ResourceType) -> Vec<(&'static str, &'static str)> {
    match (ty.group.as_str(), ty.kind.as_str()) {
        ("", "Pod") => vec![
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
        ],
        ("apps", "Deployment") | ("apps", "StatefulSet") => {
            vec![
                ("Ready", "string"),
                ("Up-to-date", "integer"),
                ("Available", "integer"),
            ]
        }
        ("apps", "ReplicaSet") => vec![
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
        ],
        ("", "Service") => vec![
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("Ports", "string"),
        ],
        ("networking.k8s.io", "Ingress") => vec![("Hosts", "string")],
        _ => Vec::new(),
    }
}

fn row(ty: &ResourceType, object: &Value) -> Value {
    let meta = Meta::of(object);
    let int = |path: &str| at(object, path).and_then(Value::as_i64).unwrap_or(0);
    let mut cells = vec![json!(meta.name())];
    match (ty.group.as_str(), ty.kind.as_str()) {
        ("", "Pod") => {
            let statuses = at(object, "status.containerStatuses").and_then(Value::as_array);
            let total = at(object, "spec.containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter().filter(|c| c["ready"] == json!(true)).count()
            });
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
            });
            let waiting = statuses.and_then(|s| {
                s.iter()
                    .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
            });
            let status = if meta.get("deletionTimestamp").is_some() {
                "Terminating"
            } else {
                waiting.unwrap_or_else(|| {
                    at(object, "status.phase")
                        .and_then(Value::as_str)
                        .unwrap_or("Pending")
                })
            };
            cells.extend([
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
            ]);
        }
        ("apps", "Deployment") | ("apps", "StatefulSet") => cells.extend([
            json!(format!(
                "{}/{}",
                int("status.readyReplicas"),
                int("spec.replicas")
            )),
            json!(int("status.updatedReplicas")),
            json!(int("status.availableReplicas")),
        ]),
        ("apps", "ReplicaSet") => cells.extend([
            json!(int("spec.replicas")),
            json!(int("status.replicas")),
            json!(int("status.readyReplicas")),
        ]),
        ("", "Service") => {
            let ports = at(object, "spec.ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            cells.extend([
                json!(
                    at(object, "spec.type")
                        .and_then(Value::as_str)
                        .unwrap_or("ClusterIP")
                ),
                json!(
                    at(object, "spec.clusterIP")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                ),
                json!(ports),
            ]);
        }
        ("networking.k8s.io", "Ingress") => {
            let hosts = at(object, "spec.rules")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["host"].as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            cells.push(json!(if hosts.is_empty() {
                "*".to_owned()
            } else {
                hosts
            }));
        }
        _ => {
            for c in &ty.columns {
                let value = at(object, &c.path).cloned().unwrap_or(Value::Null);
                cells.push(match (c.type_.as_str(), &value) {
                    ("date", Value::String(t)) => json!(age(t)),
                    (_, Value::Null) => json!(""),
                    (_, v) => v.clone(),
                });
            }
        }
    }
    if ty.schema.is_none() || ty.columns.is_empty() {
        cells.push(json!(age(meta.str("creationTimestamp"))));
    }
    json!({
        "cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object.get("metadata").cloned().unwrap_or(json!({}))},
    })
}

/// Events as kube-apiserver prints them: no NAME or AGE column at the default
/// width, but when it was last seen, its type and reason, the object it is about
/// (`kind/name`, the kind in lower case) and the message; the rest with `-o wide`.
fn event_table(objects: &[&Value], rv: u64) -> Value {
    let columns: Vec<Value> = [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ]
    .iter()
    .map(|(name, priority)| {
        json!({"name": name, "type": "string", "format": "", "description": name, "priority": priority})
    })
    .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|e| {
            // A core Event, or an events.k8s.io one: the same facts under other names.
            let text = |paths: &[&str]| {
                paths
                    .iter()
                    .find_map(|p| at(e, p).and_then(Value::as_str).filter(|s| !s.is_empty()))
                    .unwrap_or("")
                    .to_owned()
            };
            let first = text(&["firstTimestamp", "deprecatedFirstTimestamp", "eventTime"]);
            let last = text(&["lastTimestamp", "deprecatedLastTimestamp", "series.lastObservedTime"]);
            let last = if last.is_empty() { first.clone() } else { last };
            let kind = text(&["involvedObject.kind", "regarding.kind"]).to_lowercase();
            let name = text(&["involvedObject.name", "regarding.name"]);
            let count = at(e, "count")
                .or_else(|| at(e, "series.count"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let cells = json!([
                age(&last),
                text(&["type"]),
                text(&["reason"]),
                format!("{kind}/{name}"),
                text(&["involvedObject.fieldPath", "regarding.fieldPath"]),
                text(&["source.component", "reportingController", "deprecatedSource.component"]),
                text(&["message", "note"]),
                age(&first),
                count.to_string(),
                Meta::of(e).name(),
            ]);
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e.get("metadata").cloned().unwrap_or(json!({}))},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time, as kubectl prints ages.
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now().duration_since(then).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Column;

    fn custom(columns: Vec<Column>) -> ResourceType {
        ResourceType {
            group: "rollouts.kruise.io".into(),
            version: "v1alpha1".into(),
            kind: "Rollout".into(),
            plural: "rollouts".into(),
            singular: "rollout".into(),
            namespaced: true,
            short_names: Vec::new(),
            categories: Vec::new(),
            status: true,
            scale: None,
            columns,
            schema: Some(std::sync::Arc::new(json!({"type": "object"}))),
            storage: true,
            generation: true,
            custom: true,
        }
    }

    fn headers_and_cells(ty: &ResourceType) -> (Vec<String>, usize) {
        let object = json!({
            "metadata": {"name": "echo", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Healthy"},
        });
        let t = table(ty, &[&object], 1);
        let headers = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        let cells = t["rows"][0]["cells"].as_array().map_or(0, Vec::len);
        (headers, cells)
    }

    #[test]
    fn a_custom_resource_table_has_its_printer_columns_and_no_second_age() {
        let columns = vec![
            Column {
                name: "STATUS".into(),
                type_: "string".into(),
                path: "status.phase".into(),
            },
            Column {
                name: "AGE".into(),
                type_: "date".into(),
                path: "metadata.creationTimestamp".into(),
            },
        ];
        let (headers, cells) = headers_and_cells(&custom(columns));
        assert_eq!(headers, ["Name", "STATUS", "AGE"]);
        assert_eq!(cells, headers.len());
        // A CRD naming no column gets Age, as the API server's defaulting gives it.
        let (headers, cells) = headers_and_cells(&custom(Vec::new()));
        assert_eq!(headers, ["Name", "Age"]);
        assert_eq!(cells, headers.len());
    }
}
