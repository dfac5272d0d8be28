//! A copy of some of a cluster's objects, kept by whoever watches the cluster: what
//! the gateway routes by when it runs beside a real API server (`sluice gateway`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::watch;

use super::Objects;
use crate::object::Meta;
use crate::store::ResKey;

type Kind = BTreeMap<(String, String), Arc<Value>>;

/// Objects by kind, namespace and name; every change bumps a counter that
/// [`Mirror::changed`] waits on.
pub struct Mirror {
    kinds: RwLock<HashMap<ResKey, Kind>>,
    changes: watch::Sender<u64>,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror {
            kinds: RwLock::new(HashMap::new()),
            changes: watch::channel(0).0,
        }
    }
}

fn key(object: &Value) -> (String, String) {
    let meta = Meta::of(object);
    (meta.namespace().to_owned(), meta.name().to_owned())
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Arc<Mirror> {
        Arc::new(Mirror::default())
    }

    fn write(&self, f: impl FnOnce(&mut HashMap<ResKey, Kind>)) {
        // A panic while the lock is held leaves whole entries: the data stays usable.
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        f(&mut kinds);
        drop(kinds);
        self.changes.send_modify(|n| *n += 1);
    }

    /// An object was added or changed.
    pub fn put(&self, res: &ResKey, object: Value) {
        self.write(|kinds| {
            kinds
                .entry(res.clone())
                .or_default()
                .insert(key(&object), Arc::new(object));
        });
    }

    /// An object was deleted.
    pub fn remove(&self, res: &ResKey, object: &Value) {
        self.write(|kinds| {
            if let Some(kind) = kinds.get_mut(res) {
                kind.remove(&key(object));
            }
        });
    }

    /// Every object of a kind, as a fresh list (or relist) says.
    pub fn replace(&self, res: &ResKey, objects: Vec<Value>) {
        self.write(|kinds| {
            kinds.insert(
                res.clone(),
                objects
                    .into_iter()
                    .map(|o| (key(&o), Arc::new(o)))
                    .collect(),
            );
        });
    }

    /// The resourceVersion of each object of a kind, by (namespace, name).
    pub fn versions(&self, res: &ResKey) -> BTreeMap<(String, String), String> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        kinds
            .get(res)
            .map(|kind| {
                kind.iter()
                    .map(|(k, o)| (k.clone(), crate::object::resource_version(o).to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver that sees every change from now on.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Objects for Mirror {
    fn get(&self, res: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        kinds
            .get(res)?
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    fn list(&self, res: &ResKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        let kinds = self.kinds.read().unwrap_or_else(|p| p.into_inner());
        kinds
            .get(res)
            .map(|kind| {
                kind.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| n == ns))
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}
