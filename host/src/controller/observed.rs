//! What one reconcile sees of the cluster. `observe` reads the objects into a
//! [`Snapshot`] (plain Kubernetes objects, so a test can write one in YAML);
//! [`Observed::from_snapshot`] turns it, purely, into the views the plan reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kruise::v1alpha1::Rollout;
use crate::modules::{Refusal, ResolvedModule};
use crate::traffic::Routing;
use crate::workload::{self, CanaryView, WorkloadView};

/// The objects one reconcile read, as the API server answered them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The Rollout.
    pub rollout: Rollout,
    /// Other Rollouts of its namespace naming the same workload (the
    /// one-Rollout-per-workload rule).
    #[serde(default)]
    pub conflicting: Vec<Rollout>,
    /// The workload, if it exists.
    #[serde(default)]
    pub workload: Option<Value>,
    /// ReplicaSets of a Deployment and of its canary (a Deployment's releases).
    #[serde(default)]
    pub replica_sets: Vec<Value>,
    /// The Rollout's canary workloads.
    #[serde(default)]
    pub canaries: Vec<Value>,
    /// Pods of the canary's revision.
    #[serde(default)]
    pub pods: Vec<Value>,
    /// The stable Service and, when it exists, the canary Service.
    #[serde(default)]
    pub services: Vec<Value>,
    /// The router's objects (Ingresses, an HTTPRoute).
    #[serde(default)]
    pub routes: Vec<Value>,
    /// Now, Unix milliseconds.
    #[serde(default)]
    pub now: u64,
}

/// The traffic objects of a Rollout's traffic routing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficView {
    /// The stable Service.
    pub stable_service: Option<Value>,
    /// The canary Service.
    pub canary_service: Option<Value>,
    /// The router's objects.
    pub routes: Vec<Value>,
}

impl TrafficView {
    /// The stable Service's selector (`None`: the Service does not exist).
    pub fn stable_selector(&self) -> Option<BTreeMap<String, String>> {
        self.stable_service.as_ref().map(selector)
    }

    /// The canary Service's selector (`None`: it does not exist).
    pub fn canary_selector(&self) -> Option<BTreeMap<String, String>> {
        self.canary_service.as_ref().map(selector)
    }

    /// The router's object of `kind` called `name`.
    pub fn route(&self, kind: &str, name: &str) -> Option<&Value> {
        self.routes.iter().find(|r| {
            r.get("kind").and_then(Value::as_str) == Some(kind)
                && r.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
    }
}

fn selector(service: &Value) -> BTreeMap<String, String> {
    workload::string_map(service, "/spec/selector")
}

/// The strategy module a Rollout names, as observe resolved it.
#[derive(Debug, Clone)]
pub struct ModuleChoice {
    /// The name as the Rollout wrote it (`builtin:steps` when it names none).
    pub name: String,
    /// Its configuration, from the Rollout's annotation.
    pub config: String,
    /// Resolved (bytes, limits, grants), or why it cannot be used; `None` when this
    /// reconcile needs no module.
    pub resolved: Option<Result<ResolvedModule, Refusal>>,
}

/// Everything one reconcile sees.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The Rollout.
    pub rollout: Rollout,
    /// Other Rollouts naming the same workload.
    pub others: Vec<Rollout>,
    /// Its traffic routing, if it routes traffic.
    pub routing: Option<Routing>,
    /// The released workload, if it exists.
    pub workload: Option<WorkloadView>,
    /// The canary workload, if any.
    pub canary: Option<CanaryView>,
    /// The traffic objects.
    pub traffic: TrafficView,
    /// The strategy module.
    pub module: ModuleChoice,
    /// Now, Unix milliseconds.
    pub now: u64,
    /// What the validating rules are told (the partition limit).
    pub validation: crate::kruise::validate::Options,
}

impl Snapshot {
    /// A snapshot of `rollout` alone, at `now`.
    pub fn of(rollout: Rollout, now: u64) -> Snapshot {
        Snapshot {
            rollout,
            conflicting: Vec::new(),
            workload: None,
            replica_sets: Vec::new(),
            canaries: Vec::new(),
            pods: Vec::new(),
            services: Vec::new(),
            routes: Vec::new(),
            now,
        }
    }
}

impl Observed {
    /// The views of what `snapshot` holds. Pure.
    pub fn from_snapshot(snapshot: &Snapshot) -> Observed {
        let rollout = &snapshot.rollout;
        let routing = Routing::of_rollout(rollout);
        let (workload, canary) = workload::of_rollout(rollout)
            .and_then(|kind| kind.view(snapshot))
            .map_or((None, None), |(w, c)| (Some(w), c));
        let traffic = match &routing {
            Some(r) => TrafficView {
                stable_service: service(snapshot, &r.service),
                canary_service: (r.canary_service != r.service)
                    .then(|| service(snapshot, &r.canary_service))
                    .flatten(),
                routes: snapshot.routes.clone(),
            },
            None => TrafficView::default(),
        };
        let annotations = rollout.metadata.annotations.clone().unwrap_or_default();
        Observed {
            rollout: rollout.clone(),
            others: snapshot.conflicting.clone(),
            routing,
            workload,
            canary,
            traffic,
            module: ModuleChoice {
                name: annotations
                    .get(super::MODULE_ANNOTATION)
                    .cloned()
                    .unwrap_or_else(|| super::DEFAULT_MODULE.to_owned()),
                config: annotations
                    .get(super::CONFIG_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                resolved: None,
            },
            now: snapshot.now,
            validation: crate::kruise::validate::Options::default(),
        }
    }

    /// The Rollout's namespace.
    pub fn namespace(&self) -> &str {
        workload::namespace(&self.rollout)
    }

    /// The Rollout's name.
    pub fn name(&self) -> &str {
        self.rollout.metadata.name.as_deref().unwrap_or("")
    }
}

fn service(snapshot: &Snapshot, name: &str) -> Option<Value> {
    snapshot
        .services
        .iter()
        .find(|s| s.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        .cloned()
}
