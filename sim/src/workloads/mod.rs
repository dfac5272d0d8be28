//! What the cluster's controllers and kubelets would do: Deployments make ReplicaSets,
//! ReplicaSets make Pods, StatefulSets and CloneSets update by partition, pods become
//! ready after a delay (or never), and owners' deletion collects their dependents.
//!
//! One task consumes the store's events and reconciles what they touch, writing
//! through the store like any client; a timer heap drives pod readiness and restarts.

mod cloneset;
mod deployment;
pub mod gc;
pub mod hash;
mod kubelet;
pub mod pods;
mod replicaset;
mod statefulset;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::object::Meta;
use crate::store::{Event, EventType, ResKey, Store};

pub use kubelet::Kubelet;

/// How simulated pods behave.
#[derive(Debug, Clone)]
pub struct PodBehaviour {
    /// Time from a pod's creation to its readiness.
    pub ready_delay: Duration,
    /// How often a failing pod's container restarts.
    pub restart_every: Duration,
}

impl Default for PodBehaviour {
    fn default() -> Self {
        PodBehaviour {
            ready_delay: Duration::from_millis(500),
            restart_every: Duration::from_secs(5),
        }
    }
}

/// An object's place in the store.
pub type ObjKey = (ResKey, String, String);

/// Which objects each owner owns, kept from events so reconciles and garbage
/// collection need not scan the store.
#[derive(Default)]
pub struct Ownership {
    dependents: HashMap<String, BTreeSet<ObjKey>>,
    owners_of: HashMap<ObjKey, Vec<String>>,
    uid_of: HashMap<String, ObjKey>,
}

impl Ownership {
    fn observe(&mut self, event: &Event) {
        let meta = Meta::of(&event.object);
        let key: ObjKey = (
            event.res.clone(),
            meta.namespace().to_owned(),
            meta.name().to_owned(),
        );
        for previous in self.owners_of.remove(&key).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(&previous) {
                set.remove(&key);
                if set.is_empty() {
                    self.dependents.remove(&previous);
                }
            }
        }
        match event.kind {
            EventType::Deleted => {
                self.uid_of.remove(meta.uid());
            }
            EventType::Added | EventType::Modified => {
                self.uid_of.insert(meta.uid().to_owned(), key.clone());
                let owners: Vec<String> = meta
                    .owner_references()
                    .iter()
                    .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                    .collect();
                for owner in &owners {
                    self.dependents
                        .entry(owner.clone())
                        .or_default()
                        .insert(key.clone());
                }
                if !owners.is_empty() {
                    self.owners_of.insert(key, owners);
                }
            }
        }
    }

    /// The objects of kind `res` that name `owner_uid` among their owners.
    pub fn owned(&self, owner_uid: &str, res: &ResKey) -> Vec<ObjKey> {
        self.dependents
            .get(owner_uid)
            .map(|set| set.iter().filter(|(r, _, _)| r == res).cloned().collect())
            .unwrap_or_default()
    }

    /// Every object that names `owner_uid` among its owners.
    pub fn dependents(&self, owner_uid: &str) -> Vec<ObjKey> {
        self.dependents
            .get(owner_uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The object with this uid.
    pub fn by_uid(&self, uid: &str) -> Option<&ObjKey> {
        self.uid_of.get(uid)
    }
}

/// The kinds the simulated controllers reconcile.
pub fn deployments() -> ResKey {
    ResKey::new("apps", "deployments")
}
/// ReplicaSets.
pub fn replicasets() -> ResKey {
    ResKey::new("apps", "replicasets")
}
/// StatefulSets.
pub fn statefulsets() -> ResKey {
    ResKey::new("apps", "statefulsets")
}
/// OpenKruise CloneSets (served once their CRD exists).
pub fn clonesets() -> ResKey {
    ResKey::new("apps.kruise.io", "clonesets")
}
/// Pods.
pub fn pods() -> ResKey {
    ResKey::new("", "pods")
}

/// Runs the simulated controllers until the store is dropped.
pub async fn run(store: Arc<Store>, behaviour: PodBehaviour) {
    let mut events = store.subscribe();
    let mut ownership = Ownership::default();
    let mut kubelet = Kubelet::new(behaviour);
    let mut queue: VecDeque<ObjKey> = VecDeque::new();
    let mut queued: HashSet<ObjKey> = HashSet::new();
    // Objects that existed before this task subscribed.
    for (res, object) in store.all_objects() {
        let event = Event {
            rv: 0,
            res,
            kind: EventType::Added,
            object,
            previous: None,
        };
        ownership.observe(&event);
        route(&event, &ownership, &mut kubelet, &mut queue, &mut queued);
    }
    loop {
        while let Some(key) = queue.pop_front() {
            queued.remove(&key);
            reconcile(&store, &ownership, &key);
            // Reconciles write events; take them in before the next reconcile so the
            // ownership index is current.
            while let Ok(event) = events.try_recv() {
                handle(
                    &store,
                    &event,
                    &mut ownership,
                    &mut kubelet,
                    &mut queue,
                    &mut queued,
                );
            }
        }
        let next_timer = kubelet.next_due();
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => handle(&store, &event, &mut ownership, &mut kubelet, &mut queue, &mut queued),
                Err(RecvError::Lagged(_)) => {
                    // Missed events: rebuild the index and look at everything again.
                    ownership = Ownership::default();
                    for (res, object) in store.all_objects() {
                        let event = Event { rv: 0, res, kind: EventType::Added, object, previous: None };
                        ownership.observe(&event);
                        route(&event, &ownership, &mut kubelet, &mut queue, &mut queued);
                    }
                }
                Err(RecvError::Closed) => return,
            },
            () = sleep_until(next_timer) => kubelet.fire(&store),
        }
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn handle(
    store: &Store,
    event: &Event,
    ownership: &mut Ownership,
    kubelet: &mut Kubelet,
    queue: &mut VecDeque<ObjKey>,
    queued: &mut HashSet<ObjKey>,
) {
    ownership.observe(event);
    if event.kind == EventType::Deleted {
        gc::collect(store, ownership, Meta::of(&event.object).uid());
    }
    route(event, ownership, kubelet, queue, queued);
}

/// Queues the reconciles an event calls for.
fn route(
    event: &Event,
    ownership: &Ownership,
    kubelet: &mut Kubelet,
    queue: &mut VecDeque<ObjKey>,
    queued: &mut HashSet<ObjKey>,
) {
    let meta = Meta::of(&event.object);
    let mut push = |key: ObjKey| {
        if queued.insert(key.clone()) {
            queue.push_back(key);
        }
    };
    let own: ObjKey = (
        event.res.clone(),
        meta.namespace().to_owned(),
        meta.name().to_owned(),
    );
    let workload = [deployments(), replicasets(), statefulsets(), clonesets()];
    if workload.contains(&event.res) && event.kind != EventType::Deleted {
        push(own.clone());
    }
    if event.res == pods() {
        kubelet.observe(event);
    }
    // A dependent's change may change its owner's status.
    if let Some(owner) = meta.controller_uid().and_then(|uid| ownership.by_uid(uid))
        && workload.contains(&owner.0)
    {
        push(owner.clone());
    }
}

fn reconcile(store: &Store, ownership: &Ownership, key: &ObjKey) {
    let (res, ns, name) = key;
    let Some(object) = store.get(res, ns, name) else {
        return;
    };
    if Meta::of(&object).get("deletionTimestamp").is_some() {
        return;
    }
    let result = if *res == deployments() {
        deployment::reconcile(store, ownership, &object)
    } else if *res == replicasets() {
        replicaset::reconcile(store, ownership, &object)
    } else if *res == statefulsets() {
        statefulset::reconcile(store, ownership, &object)
    } else if *res == clonesets() {
        cloneset::reconcile(store, ownership, &object)
    } else {
        Ok(())
    };
    if let Err(e) = result {
        tracing::debug!(kind = %res.plural, namespace = %ns, name = %name, error = %e, "simulated controller retries later");
    }
}

/// An integer or percentage (`"25%"`) of `total`, rounding up or down.
pub fn scaled(value: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<i64>().ok())
        {
            Some(pct) => {
                let x = total * pct;
                if round_up { (x + 99) / 100 } else { x / 100 }
            }
            None => s.trim().parse().unwrap_or(default),
        },
        _ => default,
    }
}
