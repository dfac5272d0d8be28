//! Garbage collection through ownerReferences, and namespace deletion.

use serde_json::Value;

use super::Ownership;
use crate::object::{self, Meta};
use crate::store::{ResKey, Store};

/// Deletes what `owner_uid` owned (in the background, as `propagationPolicy: Background`).
pub fn collect(store: &Store, ownership: &Ownership, owner_uid: &str) {
    if owner_uid.is_empty() {
        return;
    }
    for (res, ns, name) in ownership.dependents(owner_uid) {
        let _ = store.delete(&res, &ns, &name);
    }
}

/// Removes the owner reference to `owner_uid` from its dependents (`propagationPolicy: Orphan`).
pub fn orphan_dependents(store: &Store, owner_uid: &str) {
    for (res, object) in store.all_objects() {
        let refs = Meta::of(&object).owner_references();
        if !refs.iter().any(|r| r["uid"] == owner_uid) {
            continue;
        }
        let mut orphan = (*object).clone();
        let kept: Vec<Value> = refs
            .iter()
            .filter(|r| r["uid"] != owner_uid)
            .cloned()
            .collect();
        object::meta_mut(&mut orphan).insert("ownerReferences".into(), Value::Array(kept));
        let _ = store.update(&res, orphan);
    }
}

/// Deletes every object in a namespace (before the namespace itself goes).
pub fn empty_namespace(store: &Store, namespace: &str) {
    for (res, object) in store.all_objects() {
        if Meta::of(&object).namespace() == namespace && res != ResKey::new("", "namespaces") {
            let (ns, name) = object::key(&object);
            // Finalizers would keep objects; a namespace going away takes them anyway.
            let mut cleared = (*object).clone();
            object::meta_mut(&mut cleared).remove("finalizers");
            let _ = store.update(&res, cleared);
            let _ = store.delete(&res, &ns, &name);
        }
    }
}
