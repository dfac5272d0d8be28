//! Discovery: what kubectl and kube-rs ask before anything else.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ApiState, json_response};
use crate::error::ApiError;

/// The version this simulator claims to be.
pub const GIT_VERSION: &str = "v1.32.0-sluice-sim";

/// `GET /version`.
pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "32",
            "gitVersion": GIT_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

/// `GET /api`: the core group's versions (plain JSON: clients fall back to it when
/// they asked for aggregated discovery).
pub async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

/// `GET /apis`.
pub async fn groups(State(state): State<ApiState>) -> Response {
    let registry = state.store.registry();
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_value(&g, &versions))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn group_value(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis/<group>`.
pub fn group(state: &ApiState, group: &str) -> Result<Response, ApiError> {
    let registry = state.store.registry();
    let (_, versions) = registry
        .groups()
        .into_iter()
        .find(|(g, _)| g == group)
        .ok_or_else(|| ApiError::no_route(&format!("/apis/{group}")))?;
    let mut value = group_value(group, &versions);
    value["kind"] = json!("APIGroup");
    value["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &value))
}

/// `GET /api/v1` or `/apis/<group>/<version>`.
pub fn resources(state: &ApiState, group: &str, version: &str) -> Result<Response, ApiError> {
    let registry = state.store.registry();
    let types = registry.at(group, version);
    if types.is_empty() {
        return Err(ApiError::no_route(&format!("{group}/{version}")));
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(t.api_resource());
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    ))
}

/// `GET /openapi/v3`: one document per group-version. The documents carry only what
/// kubectl reads from them — that PATCH takes `fieldValidation`, so kubectl leaves
/// validation to the server instead of downloading schemas.
pub async fn openapi_root(State(state): State<ApiState>) -> Response {
    let registry = state.store.registry();
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let gv = gv_path(&group, &version);
            paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", state.store.resource_version())}));
        }
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3/<api/v1 | apis/group/version>`.
pub async fn openapi_group_version(
    State(state): State<ApiState>,
    axum::extract::Path(rest): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return Err(ApiError::no_route(&format!("/openapi/v3/{rest}"))),
    };
    let registry = state.store.registry();
    let types = registry.at(group, version);
    if types.is_empty() {
        return Err(ApiError::no_route(&format!("/openapi/v3/{rest}")));
    }
    let mut paths = serde_json::Map::new();
    for t in types {
        let scope = if t.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let path = format!("/{}/{scope}{}/{{name}}", gv_path(group, version), t.plural);
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let param = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": param, "responses": {"200": {"description": "OK"}}});
        paths.insert(path, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": paths, "components": {"schemas": {}}}),
    ))
}
