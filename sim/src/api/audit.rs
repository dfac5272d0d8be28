//! Who asked the API server for what: one entry per resource request, as
//! kube-apiserver's audit log and RBAC see it (user, verb, group, resource,
//! subresource, namespace, name). Tests read it to check a client's permissions.

use std::sync::Mutex;

use axum::http::Method;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditEntry {
    /// The user: the `Impersonate-User` a client sends, or `anonymous`.
    pub user: String,
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// The API group; empty for the core group.
    pub group: String,
    /// The resource's plural name.
    pub resource: String,
    /// The subresource (`status`), if any.
    pub subresource: Option<String>,
    /// The namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// The object's name, for requests about one object.
    pub name: Option<String>,
}

/// The RBAC verb of a request.
pub fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if named => "get",
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// The entries so far.
#[derive(Debug, Default)]
pub struct AuditLog(Mutex<Vec<AuditEntry>>);

impl AuditLog {
    /// Records one request.
    pub fn record(&self, entry: AuditEntry) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }

    /// Every request so far, in order.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
