//! The simulator's object store: every object as JSON, a global resourceVersion,
//! and a history of changes that watches resume from.
//!
//! All reads and writes take one short lock and never await under it. The HTTP API
//! and the simulated controllers both go through [`Store`], so a controller's write is
//! an event like any client's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::object::{self, Meta};
use crate::resources::{Registry, ResourceType};

/// The identity of a kind of resource, whatever version it is served at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResKey {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

impl ResKey {
    /// A resource of `group` named `plural`.
    pub fn new(group: &str, plural: &str) -> Self {
        ResKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The name a watch stream uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches and the simulated controllers see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// The kind of resource.
    pub res: ResKey,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before it, for a deletion).
    pub object: Arc<Value>,
    /// The object before the change, for modifications.
    pub previous: Option<Arc<Value>>,
}

/// A live feed of changes.
pub type Subscription = broadcast::Receiver<Arc<Event>>;

/// How many past events a watch can resume from.
pub const HISTORY: usize = 50_000;

/// The store.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

struct Inner {
    rv: u64,
    /// Copied on write: every request reads it, CRDs rarely change it.
    registry: Arc<Registry>,
    objects: HashMap<ResKey, Objects>,
    history: VecDeque<Arc<Event>>,
}

/// A consistent read of one kind of resource.
pub struct Snapshot {
    /// The store's resourceVersion at the read.
    pub rv: u64,
    /// The objects, by (namespace, name).
    pub items: Vec<Arc<Value>>,
}

impl Store {
    /// An empty store knowing the built-in kinds.
    pub fn new() -> Arc<Store> {
        let (events, _) = broadcast::channel(65_536);
        Arc::new(Store {
            inner: Mutex::new(Inner {
                rv: 1,
                registry: Arc::new(Registry::builtin()),
                objects: HashMap::new(),
                history: VecDeque::with_capacity(HISTORY),
            }),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation completes before the lock is released: a poisoned lock
        // still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The resource types served now.
    pub fn registry(&self) -> Arc<Registry> {
        self.lock().registry.clone()
    }

    /// The type served at `group`/`version`/`plural`.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.find(group, version, plural).cloned()
    }

    /// The type of `group`'s `kind`.
    pub fn resource_for_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.lock().registry.find_kind(group, kind).cloned()
    }

    /// Subscribes to every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, res: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.lock()
            .objects
            .get(res)
            .and_then(|m| m.get(&(ns.to_owned(), name.to_owned())))
            .cloned()
    }

    /// Every object of a kind, in one namespace or (with `None`) all.
    pub fn list(&self, res: &ResKey, ns: Option<&str>) -> Snapshot {
        let inner = self.lock();
        let items = match inner.objects.get(res) {
            None => Vec::new(),
            Some(m) => match ns {
                None => m.values().cloned().collect(),
                Some(ns) => m
                    .range((ns.to_owned(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        Snapshot {
            rv: inner.rv,
            items,
        }
    }

    /// Subscribes and reads the history after `rv` under one lock, so a watch misses
    /// nothing between its backlog and its live events. `Err` when `rv` is too old.
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<Arc<Event>>, Subscription), ApiError> {
        let inner = self.lock();
        let receiver = self.events.subscribe();
        if rv >= inner.rv {
            return Ok((Vec::new(), receiver));
        }
        let oldest = inner.history.front().map_or(inner.rv, |e| e.rv);
        if rv + 1 < oldest {
            return Err(ApiError::gone(rv));
        }
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rv > rv)
            .cloned()
            .collect();
        Ok((backlog, receiver))
    }

    /// Subscribes and reads every object of a kind under one lock: the initial
    /// state of a watch that gives no resourceVersion.
    pub fn watch_with_state(&self, res: &ResKey) -> (Snapshot, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        let receiver = self.events.subscribe();
        let items = inner
            .objects
            .get(res)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        (
            Snapshot {
                rv: inner.rv,
                items,
            },
            receiver,
        )
    }

    /// Creates `object`; fills in uid, creationTimestamp, generation and resourceVersion.
    pub fn create(&self, res: &ResKey, mut object: Value) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let ty = inner.type_of(res)?;
        let (ns, name) = object::key(&object);
        if ty.namespaced {
            if ns.is_empty() {
                return Err(ApiError::bad_request(
                    "the namespace of the object is missing",
                ));
            }
            let namespaces = ResKey::new("", "namespaces");
            let ns_exists = inner
                .objects
                .get(&namespaces)
                .is_some_and(|m| m.contains_key(&(String::new(), ns.clone())));
            if !ns_exists {
                return Err(ApiError::not_found("namespaces", "", &ns));
            }
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                &ty.kind,
                "",
                vec![("metadata.name", "name or generateName is required".into())],
            ));
        }
        check_data_size(res, &ty.kind, &name, &object)?;
        let key = (if ty.namespaced { ns } else { String::new() }, name.clone());
        if inner.objects.get(res).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiError::already_exists(&ty.plural, &ty.group, &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        {
            let meta = object::meta_mut(&mut object);
            meta.insert("uid".into(), json!(object::new_uid()));
            meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if ty.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
            meta.remove("deletionTimestamp");
            if !ty.namespaced {
                meta.remove("namespace");
            }
        }
        let object = Arc::new(object);
        inner
            .objects
            .entry(res.clone())
            .or_default()
            .insert(key, object.clone());
        self.emit(&mut inner, res, EventType::Added, object.clone(), None);
        Ok(object)
    }

    /// Replaces an object with `object`, checking its resourceVersion if it carries one.
    /// Bumps generation when anything but metadata and status changed; removes the
    /// object when it is being deleted and its last finalizer is gone.
    pub fn update(&self, res: &ResKey, object: Value) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let ty = inner.type_of(res)?;
        let (ns, name) = object::key(&object);
        check_data_size(res, &ty.kind, &name, &object)?;
        let key = (if ty.namespaced { ns } else { String::new() }, name.clone());
        let current = inner
            .objects
            .get(res)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, &name))?;
        let wanted_rv = object::resource_version(&object);
        if !wanted_rv.is_empty() && wanted_rv != object::resource_version(&current) {
            return Err(ApiError::conflict(&ty.plural, &ty.group, &name));
        }
        let mut object = object;
        {
            let old_meta = Meta::of(&current);
            let spec_changed = object::without_meta_and_status(&object)
                != object::without_meta_and_status(&current);
            let generation = old_meta.generation() + u64::from(spec_changed);
            let meta = object::meta_mut(&mut object);
            for immutable in ["uid", "creationTimestamp", "deletionTimestamp"] {
                match old_meta.get(immutable) {
                    Some(v) => meta.insert(immutable.into(), v.clone()),
                    None => meta.remove(immutable),
                };
            }
            if ty.generation {
                meta.insert("generation".into(), json!(generation));
            } else {
                meta.remove("generation");
            }
        }
        if object == *current {
            // Kubernetes does not write (nor bump the resourceVersion) for a no-op update.
            return Ok(current);
        }
        inner.rv += 1;
        let rv = inner.rv;
        object::meta_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        let object = Arc::new(object);
        let deleting = Meta::of(&object).get("deletionTimestamp").is_some();
        if deleting && Meta::of(&object).finalizers().is_empty() {
            if let Some(m) = inner.objects.get_mut(res) {
                m.remove(&key);
            }
            self.emit(
                &mut inner,
                res,
                EventType::Deleted,
                object.clone(),
                Some(current),
            );
        } else {
            inner
                .objects
                .entry(res.clone())
                .or_default()
                .insert(key, object.clone());
            self.emit(
                &mut inner,
                res,
                EventType::Modified,
                object.clone(),
                Some(current),
            );
        }
        Ok(object)
    }

    /// Deletes an object: marks it when it has finalizers, removes it otherwise.
    /// Returns the object as it is after the call, and whether it is gone.
    pub fn delete(
        &self,
        res: &ResKey,
        ns: &str,
        name: &str,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let mut inner = self.lock();
        let ty = inner.type_of(res)?;
        let key = (
            if ty.namespaced {
                ns.to_owned()
            } else {
                String::new()
            },
            name.to_owned(),
        );
        let current = inner
            .objects
            .get(res)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ty.plural, &ty.group, name))?;
        inner.rv += 1;
        let rv = inner.rv;
        let meta = Meta::of(&current);
        if !meta.finalizers().is_empty() {
            if meta.get("deletionTimestamp").is_some() {
                inner.rv -= 1;
                return Ok((current, false));
            }
            let mut marked = (*current).clone();
            let m = object::meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(object::now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
            let marked = Arc::new(marked);
            inner
                .objects
                .entry(res.clone())
                .or_default()
                .insert(key, marked.clone());
            self.emit(
                &mut inner,
                res,
                EventType::Modified,
                marked.clone(),
                Some(current),
            );
            return Ok((marked, false));
        }
        if let Some(m) = inner.objects.get_mut(res) {
            m.remove(&key);
        }
        let mut gone = (*current).clone();
        object::meta_mut(&mut gone).insert("resourceVersion".into(), json!(rv.to_string()));
        let gone = Arc::new(gone);
        self.emit(
            &mut inner,
            res,
            EventType::Deleted,
            gone.clone(),
            Some(current),
        );
        Ok((gone, true))
    }

    /// Serves a new resource type (from a CustomResourceDefinition).
    pub fn register(&self, ty: Vec<ResourceType>) {
        let mut inner = self.lock();
        for t in ty {
            Arc::make_mut(&mut inner.registry).add(t);
        }
    }

    /// Stops serving a CRD's types and drops their objects.
    pub fn unregister(&self, group: &str, plural: &str) {
        let mut inner = self.lock();
        Arc::make_mut(&mut inner.registry).remove(group, plural);
        inner.objects.remove(&ResKey::new(group, plural));
    }

    /// Every object, for garbage collection: (resource, object).
    pub fn all_objects(&self) -> Vec<(ResKey, Arc<Value>)> {
        let inner = self.lock();
        inner
            .objects
            .iter()
            .flat_map(|(res, m)| m.values().map(move |v| (res.clone(), v.clone())))
            .collect()
    }

    fn emit(
        &self,
        inner: &mut Inner,
        res: &ResKey,
        kind: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let event = Arc::new(Event {
            rv: inner.rv,
            res: res.clone(),
            kind,
            object,
            previous,
        });
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        // No receiver is not an error: nobody is watching yet.
        let _ = self.events.send(event);
    }
}

impl Inner {
    fn type_of(&self, res: &ResKey) -> Result<ResourceType, ApiError> {
        self.registry
            .find_plural(&res.group, &res.plural)
            .cloned()
            .ok_or_else(|| ApiError::not_found_resource(&res.group, &res.plural))
    }
}

/// An empty JSON object.
pub fn empty_map() -> Map<String, Value> {
    Map::new()
}

/// The most a ConfigMap's or Secret's data may hold, as the API server enforces it.
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// Refuses a ConfigMap or Secret whose data (decoded) is over 1 MiB, in the API
/// server's words: clients must meet the limit here that a cluster would impose.
fn check_data_size(res: &ResKey, kind: &str, name: &str, object: &Value) -> Result<(), ApiError> {
    if !res.group.is_empty() || !matches!(res.plural.as_str(), "configmaps" | "secrets") {
        return Ok(());
    }
    let field_bytes = |field: &str, base64: bool| -> usize {
        object[field].as_object().map_or(0, |m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.as_str().unwrap_or_default();
                    let value = if base64 {
                        let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
                        (text.len() / 4 * 3).saturating_sub(padding)
                    } else {
                        text.len()
                    };
                    k.len() + value
                })
                .sum()
        })
    };
    let size = if res.plural == "secrets" {
        field_bytes("data", true) + field_bytes("stringData", false)
    } else {
        field_bytes("data", false) + field_bytes("binaryData", true)
    };
    if size > MAX_DATA_BYTES {
        return Err(ApiError::invalid(
            kind,
            name,
            vec![(
                "[]",
                format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
            )],
        ));
    }
    Ok(())
}
