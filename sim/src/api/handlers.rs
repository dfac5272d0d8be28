//! The verbs on resources: get, list, watch, create, update, patch, delete, and the
//! `status` and `scale` subresources.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use super::admission::{self, Attributes, Operation};
use super::patch::{PatchKind, apply_patch};
use super::path::{self, Route, Target};
use super::selector::LabelSelector;
use super::watch::{self, Filter};
use super::{ApiState, Request, discovery, json_response, parse_body, table};
use crate::error::ApiError;
use crate::object::{self, Meta, at, set_at};
use crate::resources::{self, ResourceType};
use crate::store::{ResKey, Store};

/// Handles a request under `/api` or `/apis`.
pub async fn handle(state: &ApiState, request: Request) -> Result<Response, ApiError> {
    let registry = state.store.registry();
    match path::parse(&request.path, &registry)? {
        Route::Discovery { group, version } => discovery::resources(state, &group, &version),
        Route::Group(group) => discovery::group(state, &group),
        Route::Resource(target) => {
            let user = match request.header("impersonate-user") {
                "" => "anonymous",
                user => user,
            };
            state.audit.record(super::audit::AuditEntry {
                user: user.to_owned(),
                verb: super::audit::verb(
                    &request.method,
                    target.name.is_some(),
                    request.flag("watch"),
                )
                .to_owned(),
                group: target.group.clone(),
                resource: target.plural.clone(),
                subresource: target.subresource.clone(),
                namespace: target.namespace.clone(),
                name: target.name.clone(),
            });
            let ty = registry
                .find(&target.group, &target.version, &target.plural)
                .cloned()
                .ok_or_else(|| ApiError::not_found_resource(&target.group, &target.plural))?;
            let call = Call {
                store: &state.store,
                audit: &state.audit,
                ty: &ty,
                version: &target.version,
                user,
                dry_run: request.query.get("dryRun").is_some_and(|d| d == "All"),
            };
            resource(&call, &target, &request).await
        }
    }
}

/// A write request's context: where it goes, who asks, at which version, whether
/// it is a dry run. Writes go through admission webhooks.
struct Call<'a> {
    store: &'a Arc<Store>,
    audit: &'a super::audit::AuditLog,
    ty: &'a ResourceType,
    version: &'a str,
    user: &'a str,
    dry_run: bool,
}

impl Call<'_> {
    /// Runs admission for one write; the object it leaves.
    async fn admit(
        &self,
        operation: Operation,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        object: Option<Value>,
        old: Option<Arc<Value>>,
    ) -> Result<Option<Value>, ApiError> {
        let mut attrs = Attributes {
            operation,
            ty: self.ty,
            version: self.version,
            namespace,
            name,
            subresource,
            object,
            old,
            user: self.user,
            dry_run: self.dry_run,
        };
        admission::admit(self.store, &mut attrs).await?;
        Ok(attrs.object)
    }
}

/// How often a patch is tried again when the object changed between its read and
/// its write (as kube-apiserver retries a patch).
const PATCH_ATTEMPTS: usize = 10;

async fn resource(
    call: &Call<'_>,
    target: &Target,
    request: &Request,
) -> Result<Response, ApiError> {
    let (store, ty) = (call.store, call.ty);
    let res = ResKey::new(&ty.group, &ty.plural);
    if ty.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::no_route(&request.path));
    }
    let ns = target.namespace.clone().unwrap_or_default();
    match (
        &request.method,
        target.name.as_deref(),
        target.subresource.as_deref(),
    ) {
        (&Method::GET, None, _) if request.flag("watch") => {
            let (labels, fields) = request.selectors(ty)?;
            let filter = Filter {
                res,
                ty: ty.clone(),
                namespace: target.namespace.clone(),
                labels,
                fields,
                table: request.wants_table(),
            };
            watch::watch(store.clone(), filter, request)
        }
        (&Method::GET, None, _) => list(store, ty, &res, target.namespace.as_deref(), request),
        (&Method::POST, None, _) => {
            let object = create_admitted(call, &ns, parse_body(request)?).await?;
            Ok(json_response(StatusCode::CREATED, &served(&object, ty)))
        }
        (&Method::DELETE, None, _) => {
            delete_collection(call, &res, target.namespace.as_deref(), request).await
        }
        (&Method::GET, Some(name), None) => {
            let object = store
                .get(&res, &ns, name)
                .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
            if request.wants_table() {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(ty, &[&object], store.resource_version()),
                ));
            }
            Ok(json_response(StatusCode::OK, &served(&object, ty)))
        }
        (&Method::PUT, Some(name), None) => {
            let object = update_admitted(call, &ns, name, parse_body(request)?).await?;
            Ok(json_response(StatusCode::OK, &served(&object, ty)))
        }
        (&Method::PATCH, Some(name), None) => patch(call, &ns, name, request).await,
        (&Method::DELETE, Some(name), None) => delete(call, &ns, name, request).await,
        (&Method::GET, Some(name), Some("status")) => {
            let object = store
                .get(&res, &ns, name)
                .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
            Ok(json_response(StatusCode::OK, &served(&object, ty)))
        }
        (&Method::PUT | &Method::PATCH, Some(name), Some("status")) if ty.status => {
            status(call, &ns, name, request).await
        }
        (_, Some(name), Some("scale")) if ty.scale.is_some() => {
            scale(call, &ns, name, request).await
        }
        (_, Some(_), Some("finalize")) if ty.plural == "namespaces" => {
            let body = parse_body(request)?;
            let name = target.name.as_deref().unwrap_or("");
            let object = update(store, ty, "", name, body)?;
            Ok(json_response(StatusCode::OK, &served(&object, ty)))
        }
        (method, _, sub) => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}{}",
            ty.plural,
            sub.map(|s| format!("/{s}")).unwrap_or_default()
        ))),
    }
}

/// The object as served at `ty`'s version.
pub fn served(object: &Value, ty: &ResourceType) -> Value {
    let mut object = object.clone();
    served_in_place(&mut object, ty);
    object
}

fn list(
    store: &Store,
    ty: &ResourceType,
    res: &ResKey,
    ns: Option<&str>,
    request: &Request,
) -> Result<Response, ApiError> {
    let (labels, fields) = request.selectors(ty)?;
    let snapshot = store.list(res, ns);
    let after = match request.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let mut selected: Vec<&Value> = snapshot
        .items
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| labels.matches(Meta::of(o).labels()) && fields.matches(o))
        .filter(|o| after.as_ref().is_none_or(|a| object::key(o) > *a))
        .collect();
    let limit = request
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut metadata = json!({"resourceVersion": snapshot.rv.to_string()});
    if let Some(limit) = limit
        && selected.len() > limit
    {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        let (ns, name) = object::key(selected[limit - 1]);
        metadata["continue"] =
            json!(base64::engine::general_purpose::STANDARD.encode(format!("{ns}/{name}")));
        metadata["remainingItemCount"] = json!(remaining);
    }
    if request.wants_table() {
        let mut t = table::table(ty, &selected, snapshot.rv);
        t["metadata"] = metadata;
        return Ok(json_response(StatusCode::OK, &t));
    }
    let items: Vec<Value> = selected
        .iter()
        .map(|o| {
            let mut item = served(o, ty);
            // kube-apiserver writes the kind once, on the list, for its own
            // kinds; a custom resource's items carry theirs.
            if !ty.custom
                && let Some(map) = item.as_object_mut()
            {
                map.remove("apiVersion");
                map.remove("kind");
            }
            item
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", ty.kind), "apiVersion": ty.api_version(), "metadata": metadata, "items": items}),
    ))
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("invalid continue token");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_owned(), name.to_owned()))
}

/// Creates an object of `ty` in `ns` (empty for cluster-scoped kinds), as the
/// server itself does (no admission).
pub fn create(
    store: &Store,
    ty: &ResourceType,
    ns: &str,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    let object = prepare_create(ty, ns, object)?;
    validate(ty, &object)?;
    let object = store.create(&ResKey::new(&ty.group, &ty.plural), object)?;
    after_write(store, ty, &object)
}

/// Creates an object a client sent: through admission.
async fn create_admitted(call: &Call<'_>, ns: &str, object: Value) -> Result<Arc<Value>, ApiError> {
    let object = prepare_create(call.ty, ns, object)?;
    let meta = Meta::of(&object);
    let (namespace, name) = (meta.namespace().to_owned(), meta.name().to_owned());
    let object = call
        .admit(
            Operation::Create,
            &namespace,
            &name,
            None,
            Some(object),
            None,
        )
        .await?
        .unwrap_or(Value::Null);
    validate(call.ty, &object)?;
    if call.dry_run {
        return Ok(Arc::new(object));
    }
    let object = call
        .store
        .create(&ResKey::new(&call.ty.group, &call.ty.plural), object)?;
    after_write(call.store, call.ty, &object)
}

fn prepare_create(ty: &ResourceType, ns: &str, mut object: Value) -> Result<Value, ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    {
        let meta = object::meta_mut(&mut object);
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if ty.namespaced {
            if !ns.is_empty() && !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let ns = if ns.is_empty() {
                body_ns
            } else {
                ns.to_owned()
            };
            meta.insert("namespace".into(), json!(ns));
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name && let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
            let name = format!("{prefix}{}", object::random_suffix(5));
            meta.insert("name".into(), json!(name));
        }
    }
    prepare(ty, &mut object, None);
    Ok(object)
}

/// Fills what the API server fills on every write.
fn prepare(ty: &ResourceType, object: &mut Value, current: Option<&Value>) {
    served_in_place(object, ty);
    if ty.status {
        // The main resource never writes status: that is the subresource's job.
        match current.and_then(|c| c.get("status")) {
            Some(status) => object["status"] = status.clone(),
            None => {
                if let Some(map) = object.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if let Some(schema) = &ty.schema {
        resources::apply_defaults(schema, object);
    }
    if (ty.group.as_str(), ty.kind.as_str()) == ("", "Namespace") {
        // kube-apiserver labels every namespace with its name (and keeps it so),
        // which namespace selectors rely on.
        let name = Meta::of(object).name().to_owned();
        let meta = object::meta_mut(object);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
    match (ty.group.as_str(), ty.kind.as_str()) {
        ("", "Service") if current.is_none() => allocate_service(object),
        ("", "Namespace") if current.is_none() => object["status"] = json!({"phase": "Active"}),
        ("", "Secret") if object.get("type").is_none_or(|t| t == "") => {
            object["type"] = "Opaque".into();
        }
        _ => {}
    }
}

fn served_in_place(object: &mut Value, ty: &ResourceType) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(ty.api_version()));
        map.insert("kind".into(), json!(ty.kind));
    }
}

/// A cluster IP and node ports, as the service allocator would give.
fn allocate_service(object: &mut Value) {
    let spec = object.get_mut("spec");
    let Some(spec) = spec.and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str).is_none() {
        let ip = format!(
            "10.96.{}.{}",
            rand::random_range(0..255u8),
            rand::random_range(1..255u8)
        );
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    let node_port = matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port.get("protocol").is_none() {
                port["protocol"] = json!("TCP");
            }
            if port.get("targetPort").is_none()
                && let Some(p) = port.get("port").cloned()
            {
                port["targetPort"] = p;
            }
            if node_port && port.get("nodePort").is_none() {
                port["nodePort"] = json!(rand::random_range(30000..32768u32));
            }
        }
    }
}

/// What the server refuses before it stores an object: a CRD it could not serve
/// (its versions unreadable, or a schema that is not structural).
fn validate(ty: &ResourceType, object: &Value) -> Result<(), ApiError> {
    if ty.kind != "CustomResourceDefinition" {
        return Ok(());
    }
    let name = Meta::of(object).name();
    resources::from_crd(object)
        .map_err(|e| ApiError::invalid("CustomResourceDefinition", name, vec![("spec", e)]))?;
    let errors = resources::structural_errors(object);
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        "CustomResourceDefinition",
        name,
        errors
            .iter()
            .map(|(f, m)| (f.as_str(), m.clone()))
            .collect(),
    ))
}

/// Side effects of writing some kinds: CRDs start (or stop) being served; an
/// `events.k8s.io` Event is also readable as a core Event, as on a real server.
fn after_write(
    store: &Store,
    ty: &ResourceType,
    object: &Arc<Value>,
) -> Result<Arc<Value>, ApiError> {
    if ty.group == "events.k8s.io" {
        mirror_event(store, object);
        return Ok(object.clone());
    }
    if ty.kind != "CustomResourceDefinition" {
        return Ok(object.clone());
    }
    let types = resources::from_crd(object).map_err(|e| {
        ApiError::invalid(
            "CustomResourceDefinition",
            Meta::of(object).name(),
            vec![("spec", e)],
        )
    })?;
    store.register(types);
    let names = object.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut established = (**object).clone();
    established["status"] = json!({
        "acceptedNames": names,
        "storedVersions": object.pointer("/spec/versions").and_then(Value::as_array)
            .map(|vs| vs.iter().filter(|v| v["storage"] == json!(true)).filter_map(|v| v["name"].as_str()).map(|s| json!(s)).collect::<Vec<_>>())
            .unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": object::now_rfc3339()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": object::now_rfc3339()},
        ],
    });
    if let Some(meta) = established
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("resourceVersion");
    }
    store.update(&ResKey::new(&ty.group, &ty.plural), established)
}

fn mirror_event(store: &Store, e: &Value) {
    let meta = Meta::of(e);
    let field = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
    let core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": meta.name(), "namespace": meta.namespace()},
        "involvedObject": field("regarding"),
        "reason": field("reason"),
        "message": field("note"),
        "type": field("type"),
        "source": {"component": field("reportingController")},
        "firstTimestamp": field("eventTime"),
        "lastTimestamp": e.pointer("/series/lastObservedTime").cloned().unwrap_or_else(|| field("eventTime")),
        "count": e.pointer("/series/count").cloned().unwrap_or(json!(1)),
        "reportingComponent": field("reportingController"),
    });
    let res = ResKey::new("", "events");
    let _ = store.delete(&res, meta.namespace(), meta.name());
    let _ = store.create(&res, core);
}

fn update(
    store: &Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    let (object, _) = prepare_update(store, ty, ns, name, object)?;
    validate(ty, &object)?;
    let object = store.update(&ResKey::new(&ty.group, &ty.plural), object)?;
    after_write(store, ty, &object)
}

/// Updates an object a client sent: through admission.
async fn update_admitted(
    call: &Call<'_>,
    ns: &str,
    name: &str,
    object: Value,
) -> Result<Arc<Value>, ApiError> {
    let (object, current) = prepare_update(call.store, call.ty, ns, name, object)?;
    let object = call
        .admit(
            Operation::Update,
            ns,
            name,
            None,
            Some(object),
            Some(current),
        )
        .await?
        .unwrap_or(Value::Null);
    validate(call.ty, &object)?;
    if call.dry_run {
        return Ok(Arc::new(object));
    }
    let object = call
        .store
        .update(&ResKey::new(&call.ty.group, &call.ty.plural), object)?;
    after_write(call.store, call.ty, &object)
}

/// The object an update writes, and the object it replaces.
fn prepare_update(
    store: &Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    mut object: Value,
) -> Result<(Value, Arc<Value>), ApiError> {
    let res = ResKey::new(&ty.group, &ty.plural);
    {
        let meta = object::meta_mut(&mut object);
        let body_name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        meta.insert("name".into(), json!(name));
        if ty.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
    }
    let current = store
        .get(&res, ns, name)
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    prepare(ty, &mut object, Some(&current));
    Ok((object, current))
}

async fn patch(
    call: &Call<'_>,
    ns: &str,
    name: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let ty = call.ty;
    let kind = PatchKind::from_content_type(request.header("content-type"))?;
    let res = ResKey::new(&ty.group, &ty.plural);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(current) = call.store.get(&res, ns, name) else {
            if kind == PatchKind::Apply {
                // kube-apiserver authorizes an apply that creates the object a
                // second time, as a create of that name: a patch grant alone is
                // refused.
                call.audit.record(super::audit::AuditEntry {
                    user: call.user.to_owned(),
                    verb: "create".into(),
                    group: ty.group.clone(),
                    resource: ty.plural.clone(),
                    subresource: None,
                    namespace: (!ns.is_empty()).then(|| ns.to_owned()),
                    name: Some(name.to_owned()),
                });
                let mut object = parse_body(request)?;
                object::meta_mut(&mut object).insert("name".into(), json!(name));
                let object = create_admitted(call, ns, object).await?;
                return Ok(json_response(StatusCode::CREATED, &served(&object, ty)));
            }
            return Err(ApiError::not_found(&ty.plural, &ty.group, name));
        };
        let patched = apply_patch(kind, &current, &request.body)?;
        // A resourceVersion the client wrote is its precondition; otherwise the patch
        // applies to whatever the object is when it is written.
        let precondition = object::resource_version(&patched) != object::resource_version(&current);
        match update_admitted(call, ns, name, patched).await {
            Err(e) if e.code == 409 && !precondition && attempt < PATCH_ATTEMPTS => continue,
            Err(e) => return Err(e),
            Ok(object) => return Ok(json_response(StatusCode::OK, &served(&object, ty))),
        }
    }
}

async fn status(
    call: &Call<'_>,
    ns: &str,
    name: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (store, ty) = (call.store, call.ty);
    let res = ResKey::new(&ty.group, &ty.plural);
    let current = store
        .get(&res, ns, name)
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    let incoming = if request.method == Method::PUT {
        parse_body(request)?
    } else {
        apply_patch(
            PatchKind::from_content_type(request.header("content-type"))?,
            &current,
            &request.body,
        )?
    };
    // Only status changes through this subresource; a resourceVersion in the body
    // is still a precondition.
    let mut object = (*current).clone();
    object["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
    let wanted_rv = object::resource_version(&incoming).to_owned();
    if !wanted_rv.is_empty() {
        object::meta_mut(&mut object).insert("resourceVersion".into(), json!(wanted_rv));
    }
    let object = call
        .admit(
            Operation::Update,
            ns,
            name,
            Some("status"),
            Some(object),
            Some(current),
        )
        .await?
        .unwrap_or(Value::Null);
    if call.dry_run {
        return Ok(json_response(StatusCode::OK, &served(&object, ty)));
    }
    let object = store.update(&res, object)?;
    Ok(json_response(StatusCode::OK, &served(&object, ty)))
}

async fn scale(
    call: &Call<'_>,
    ns: &str,
    name: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (store, ty) = (call.store, call.ty);
    let paths = ty
        .scale
        .clone()
        .ok_or_else(|| ApiError::no_route(&request.path))?;
    let res = ResKey::new(&ty.group, &ty.plural);
    let current = store
        .get(&res, ns, name)
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    let as_scale = |object: &Value| {
        let meta = Meta::of(object);
        let selector = paths
            .label_selector
            .as_deref()
            .and_then(|p| at(object, p))
            .map(|s| match s {
                Value::String(text) => text.clone(),
                other => LabelSelector::from_object(other).to_text(),
            });
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta.name(), "namespace": meta.namespace(), "uid": meta.uid(),
                         "resourceVersion": meta.str("resourceVersion"), "creationTimestamp": meta.str("creationTimestamp")},
            "spec": {"replicas": at(object, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
            "status": {"replicas": at(object, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
                       "selector": selector.unwrap_or_default()},
        })
    };
    if request.method == Method::GET {
        return Ok(json_response(StatusCode::OK, &as_scale(&current)));
    }
    let wanted = match request.method {
        Method::PUT => parse_body(request)?,
        Method::PATCH => apply_patch(
            PatchKind::from_content_type(request.header("content-type"))?,
            &as_scale(&current),
            &request.body,
        )?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "scale supports get, update and patch",
            ));
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                name,
                vec![("spec.replicas", "a number is required".into())],
            )
        })?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            name,
            vec![("spec.replicas", "must be greater than or equal to 0".into())],
        ));
    }
    let mut object = (*current).clone();
    set_at(&mut object, &paths.spec_replicas, json!(replicas));
    // Webhooks of the scale subresource see the whole object (a real server sends
    // them the Scale).
    let object = call
        .admit(
            Operation::Update,
            ns,
            name,
            Some("scale"),
            Some(object),
            Some(current),
        )
        .await?
        .unwrap_or(Value::Null);
    if call.dry_run {
        return Ok(json_response(StatusCode::OK, &as_scale(&object)));
    }
    let object = store.update(&res, object)?;
    Ok(json_response(StatusCode::OK, &as_scale(&object)))
}

async fn delete(
    call: &Call<'_>,
    ns: &str,
    name: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (store, ty) = (call.store, call.ty);
    let res = ResKey::new(&ty.group, &ty.plural);
    let options: Value = if request.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&request.body).unwrap_or(json!({}))
    };
    let current = store
        .get(&res, ns, name)
        .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && uid != Meta::of(&current).uid()
    {
        return Err(ApiError::conflict(&ty.plural, &ty.group, name));
    }
    call.admit(
        Operation::Delete,
        ns,
        name,
        None,
        None,
        Some(current.clone()),
    )
    .await?;
    if call.dry_run {
        return Ok(json_response(StatusCode::OK, &served(&current, ty)));
    }
    let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
        || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    if orphan {
        crate::workloads::gc::orphan_dependents(store, Meta::of(&current).uid());
    }
    if ty.plural == "namespaces" {
        crate::workloads::gc::empty_namespace(store, name);
    }
    let (object, gone) = store.delete(&res, ns, name)?;
    if gone
        && ty.kind == "CustomResourceDefinition"
        && let Some(plural) = object.pointer("/spec/names/plural").and_then(Value::as_str)
    {
        let group = object
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        store.unregister(group, plural);
    }
    Ok(json_response(StatusCode::OK, &served(&object, ty)))
}

async fn delete_collection(
    call: &Call<'_>,
    res: &ResKey,
    ns: Option<&str>,
    request: &Request,
) -> Result<Response, ApiError> {
    let (store, ty) = (call.store, call.ty);
    let (labels, fields) = request.selectors(ty)?;
    let snapshot = store.list(res, ns);
    let mut deleted = Vec::new();
    for object in snapshot
        .items
        .iter()
        .filter(|o| labels.matches(Meta::of(o).labels()) && fields.matches(o))
    {
        let (ns, name) = object::key(object);
        call.admit(
            Operation::Delete,
            &ns,
            &name,
            None,
            None,
            Some(object.clone()),
        )
        .await?;
        if call.dry_run {
            deleted.push(served(object, ty));
            continue;
        }
        if let Ok((gone, _)) = store.delete(res, &ns, &name) {
            deleted.push(served(&gone, ty));
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", ty.kind), "apiVersion": ty.api_version(), "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": deleted}),
    ))
}
