//! What the cluster holds, kept current by `kubectl get --watch` of every kind a
//! scenario can touch, and when each namespace last changed: a scenario has
//! settled when nothing in its namespace has changed for a while.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;

/// The kinds watched: what is compared, and what moves while an engine works.
pub const RESOURCES: &[&str] = &[
    "rollouts.v1alpha1.rollouts.kruise.io",
    "deployments.apps",
    "statefulsets.apps",
    "replicasets.apps",
    "pods",
    "services",
    "ingresses.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "events",
];

/// An object's place: resource, namespace, name.
pub type Key = (String, String, String);

/// Names the moments an event shows (a template changed, a weight applied):
/// `(resource, object) -> markers`. The first time each marker is seen is kept.
pub type Markers = fn(&str, &Value) -> Vec<String>;

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    changed: HashMap<String, Instant>,
    failures: Vec<String>,
    markers: Option<Markers>,
    first_seen: HashMap<String, Instant>,
}

/// The objects seen, shared with the watching threads.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Inner>>);

impl Store {
    /// A store that also keeps when each marker of `markers` was first seen.
    pub fn with_markers(markers: Markers) -> Store {
        let store = Store::default();
        store.0.lock().expect("store lock").markers = Some(markers);
        store
    }

    /// When `marker` was first seen.
    pub fn first_seen(&self, marker: &str) -> Option<Instant> {
        self.0
            .lock()
            .expect("store lock")
            .first_seen
            .get(marker)
            .copied()
    }

    /// Whether every object of `resource` in `namespace` satisfies `test`.
    pub fn all_in(&self, namespace: &str, resource: &str, test: impl Fn(&Value) -> bool) -> bool {
        self.0
            .lock()
            .expect("store lock")
            .objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && ns == namespace)
            .all(|(_, v)| test(v))
    }

    /// How many objects of `resource` satisfy `test`.
    pub fn count(&self, resource: &str, test: impl Fn(&Value) -> bool) -> usize {
        self.0
            .lock()
            .expect("store lock")
            .objects
            .iter()
            .filter(|((r, _, _), v)| r == resource && test(v))
            .count()
    }

    /// Whether the object `namespace/name` of `resource` satisfies `test`.
    pub fn is(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        test: impl Fn(&Value) -> bool,
    ) -> bool {
        self.0
            .lock()
            .expect("store lock")
            .objects
            .get(&(
                resource.to_string(),
                namespace.to_string(),
                name.to_string(),
            ))
            .is_some_and(test)
    }

    fn event(&self, resource: &str, event: &Value) {
        let object = &event["object"];
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some(name) = object["metadata"]["name"].as_str() else {
            return;
        };
        let key = (resource.to_string(), ns.clone(), name.to_string());
        let mut inner = self.0.lock().expect("store lock");
        if let Some(markers) = inner.markers {
            let now = Instant::now();
            for m in markers(resource, object) {
                inner.first_seen.entry(m).or_insert(now);
            }
        }
        match event["type"].as_str() {
            Some("DELETED") => {
                inner.objects.remove(&key);
            }
            Some("ADDED" | "MODIFIED") => {
                inner.objects.insert(key, object.clone());
            }
            _ => return,
        }
        inner.changed.insert(ns, Instant::now());
    }

    /// When anything in `namespace` last changed.
    pub fn changed(&self, namespace: &str) -> Option<Instant> {
        self.0
            .lock()
            .expect("store lock")
            .changed
            .get(namespace)
            .copied()
    }

    /// The objects of one namespace, by resource and name.
    pub fn namespace(&self, namespace: &str) -> BTreeMap<(String, String), Value> {
        self.0
            .lock()
            .expect("store lock")
            .objects
            .iter()
            .filter(|((_, ns, _), _)| ns == namespace)
            .map(|((r, _, n), v)| ((r.clone(), n.clone()), v.clone()))
            .collect()
    }

    /// Watches that ended with an error.
    pub fn failures(&self) -> Vec<String> {
        self.0.lock().expect("store lock").failures.clone()
    }
}

/// The watching processes; killed when dropped.
pub struct Watches {
    children: Arc<Mutex<Vec<Child>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for child in self.children.lock().expect("children lock").iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a watch of every resource of `resources` in all namespaces. A watch
/// the server ends (they time out) is started again; its list adds what is there.
pub fn start(
    kubeconfig: PathBuf,
    store: &Store,
    resources: &'static [&'static str],
) -> anyhow::Result<Watches> {
    let children = Arc::new(Mutex::new(Vec::new()));
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for resource in resources {
        let spawn = {
            let kubeconfig = kubeconfig.clone();
            move || -> anyhow::Result<Child> {
                Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "get",
                        resource,
                        "--all-namespaces",
                        "--watch",
                        "--output-watch-events",
                        "-o",
                        "json",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("running kubectl (kubectl 1.32 must be on PATH)")
            }
        };
        let mut child = spawn()?;
        let mut stdout = child.stdout.take().context("kubectl's stdout")?;
        children.lock().expect("children lock").push(child);
        let (store, children, stopping) = (store.clone(), children.clone(), stopping.clone());
        std::thread::spawn(move || {
            loop {
                let events = serde_json::Deserializer::from_reader(BufReader::new(stdout))
                    .into_iter::<Value>();
                for event in events {
                    match event {
                        Ok(event) => store.event(resource, &event),
                        Err(_) => break,
                    }
                }
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match spawn() {
                    Ok(mut child) => {
                        let Some(out) = child.stdout.take() else {
                            return;
                        };
                        stdout = out;
                        children.lock().expect("children lock").push(child);
                    }
                    Err(e) => {
                        store
                            .0
                            .lock()
                            .expect("store lock")
                            .failures
                            .push(format!("watch of {resource}: {e:#}"));
                        return;
                    }
                }
            }
        });
    }
    Ok(Watches { children, stopping })
}
