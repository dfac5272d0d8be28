//! Least privilege, checked both ways: a controller runs every kind of release and
//! module Sluice supports, and each request it makes as its ServiceAccount is
//! recorded (by the simulator; on a real control plane by the API server's audit
//! log, while its RBAC authorizer judges each call); every request must be allowed
//! by the RBAC in `deploy/controller.yaml`, none refused, and every permission
//! there must have been used.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use sluice::controller::ControllerConfig;
use sluice::controller::leader::LeaseConfig;
use sluice_sim::api::audit::AuditEntry;
use support::cluster::{Cluster, deployment_yaml};
use support::modules::{app_and_rollout, configmap, module, sha};

/// One RBAC rule bound to the controller's ServiceAccount.
#[derive(Debug, Clone)]
struct Rule {
    /// `None` for a ClusterRole's rule, the Role's namespace otherwise.
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

impl Rule {
    fn allows(&self, e: &AuditEntry) -> bool {
        let resource = match &e.subresource {
            Some(sub) => format!("{}/{sub}", e.resource),
            None => e.resource.clone(),
        };
        self.groups.contains(&e.group)
            && self.resources.contains(&resource)
            && self.verbs.contains(&e.verb)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| e.namespace.as_ref() == Some(ns))
            && (self.names.is_empty() || e.name.as_ref().is_some_and(|n| self.names.contains(n)))
    }

    /// Every (resource, verb) the rule grants.
    fn grants(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &self.resources {
                for v in &self.verbs {
                    out.push((g.clone(), r.clone(), v.clone()));
                }
            }
        }
        out
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules of `deploy/controller.yaml` bound to the controller's ServiceAccount.
fn deployed_rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(support::workspace().join("deploy/controller.yaml"))
        .expect("deploy/controller.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect();
    let bound_to_controller = |binding: &Value| {
        binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == "sluice-controller"
                    && s["namespace"] == "sluice-system"
            })
    };
    let mut rules = Vec::new();
    for binding in docs.iter().filter(|d| {
        matches!(
            d["kind"].as_str(),
            Some("ClusterRoleBinding" | "RoleBinding")
        )
    }) {
        assert!(
            bound_to_controller(binding),
            "{binding}: bound to someone else"
        );
        let namespace = binding["metadata"]["namespace"].as_str().map(str::to_owned);
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == binding["roleRef"]["kind"]
                    && d["metadata"]["name"] == binding["roleRef"]["name"]
            })
            .unwrap_or_else(|| panic!("the role of {binding}"));
        for rule in role["rules"].as_array().expect("rules") {
            rules.push(Rule {
                namespace: namespace.clone(),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                names: strings(&rule["resourceNames"]),
            });
        }
    }
    rules
}

const STEPS: &str = "[{weight: 20, pause: {}}, {weight: 60, pause: {}}]";

fn cloneset(image: &str) -> String {
    format!(
        "apiVersion: apps.kruise.io/v1alpha1\nkind: CloneSet\nmetadata: {{name: cs}}\nspec:\n  replicas: 4\n  selector: {{matchLabels: {{app: cs}}}}\n  template:\n    metadata: {{labels: {{app: cs}}}}\n    spec:\n      containers: [{{name: cs, image: \"{image}\"}}]\n"
    )
}

fn statefulset(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  replicas: 2\n  serviceName: db\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec:\n      containers: [{{name: db, image: \"{image}\"}}]\n"
    )
}

const CLONESET_ROLLOUT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cs}
spec:
  selector: {app: cs}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: cs}
spec:
  rules:
  - host: cs.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: cs, port: {number: 80}}}}
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: cs
  annotations: {strategy.sluice.dev/module: team-steps}
spec:
  objectRef: {workloadRef: {apiVersion: apps.kruise.io/v1alpha1, kind: CloneSet, name: cs}}
  strategy:
    canary:
      # A partition-style step with traffic updates at most half the pods by
      # percentage (Kruise's partition limit); counts are not limited.
      steps: [{weight: 20, replicas: 1, pause: {}}, {weight: 60, replicas: 3, pause: {}}]
      trafficRoutings: [{service: cs, gracePeriodSeconds: 0, ingress: {name: cs}}]
"#;

/// A Deployment routed by a Gateway API HTTPRoute, on the namespaced module.
const ROUTED_ROLLOUT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: route}
spec:
  selector: {app: route}
  ports: [{port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route}
spec:
  hostnames: [route.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: route, port: 80}]
---
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: route
  annotations: {strategy.sluice.dev/module: team-steps}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: route}}
  strategy:
    canary:
      steps: [{weight: 20, pause: {}}, {weight: 60, pause: {}}]
      trafficRoutings: [{service: route, gracePeriodSeconds: 0, gateway: {httpRouteName: route}}]
"#;

const STATEFULSET_ROLLOUT: &str = r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata: {name: db}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}}
  strategy:
    canary:
      steps: [{replicas: 1, pause: {}}]
"#;

/// A Deployment released in place (Kruise's advanced Deployment), whose new
/// ReplicaSet the controller makes and sizes.
const IN_PLACE_ROLLOUT: &str = r#"
apiVersion: rollouts.kruise.io/v1alpha1
kind: Rollout
metadata:
  name: web
  annotations: {rollouts.kruise.io/rolling-style: partition}
spec:
  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}
  strategy:
    canary:
      steps: [{replicas: 1, pause: {}}]
"#;

/// Approves every step of `name` until it is healthy again.
async fn approve_to_the_end(c: &Cluster, name: &str, steps: i32) {
    for step in 1..=steps {
        c.until_paused_at(name, step).await;
        c.approve(name).await;
    }
    c.until_healthy(name).await;
}

#[tokio::test]
async fn the_controller_uses_exactly_the_permissions_deploy_grants_it() {
    let rules = deployed_rules();
    let started = k8s_openapi::jiff::Timestamp::now();
    let pending = Cluster::prepare().await;
    // As on a first install: no webhook configurations, Lease or certificates yet,
    // so their `create`s are made (on a real cluster, an earlier test's are there).
    pending.forget_controller_state().await;
    let real = pending.is_real();
    let admin = pending.client();
    // The controller's namespace first, as deploy/ makes it: its lease and its
    // webhook certificates are kept there.
    sluice_testkit::apply(
        &admin,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: sluice-system}\n",
    )
    .await;
    let mut webhook = sluice::admission::WebhookConfig::local(0);
    webhook.secret_namespace = "sluice-system".into();
    let mut c = pending
        .start(ControllerConfig {
            lease: Some(LeaseConfig::new(
                "sluice-system",
                "sluice-controller",
                "rbac-e2e",
            )),
            webhook: Some(webhook),
            ..ControllerConfig::default()
        })
        .await;
    let steps_module = sluice::strategy::builtin::builtin("steps").expect("built in");
    // A cluster module from a ConfigMap, pinned, for namespaces labelled tier=gold;
    // the test's is one.
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}, labels: {{tier: gold}}}}\n",
        c.ns()
    ))
    .await;
    c.apply(&configmap("sluice-system", "shared-modules", steps_module))
        .await;
    c.apply(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ClusterStrategyModule\nmetadata: {{name: shared-steps}}\nspec:\n  source: {{configMap: {{name: shared-modules, namespace: sluice-system, key: module.wasm}}, sha256: \"{}\"}}\n  allowedNamespaces: {{selector: {{matchLabels: {{tier: gold}}}}}}\n",
        sha(steps_module)
    ))
    .await;
    // A namespaced module from a ConfigMap.
    c.apply(&configmap(c.ns(), "team-modules", steps_module))
        .await;
    c.apply(&module(c.ns(), "team-steps", "team-modules", None))
        .await;

    // A Deployment with an NGINX Ingress, on the cluster module.
    c.apply(&app_and_rollout("cluster/shared-steps", None, STEPS))
        .await;
    // A Deployment with a Gateway API HTTPRoute, on the namespaced module.
    c.apply(&deployment_yaml("route", "route:v1", 4)).await;
    c.apply(ROUTED_ROLLOUT).await;
    // A CloneSet, where OpenKruise's controller runs it (the simulator does; a
    // real cluster here has no OpenKruise: docs/real-cluster.md).
    let workloads: &[&str] = if real {
        &["echo", "route", "db", "web"]
    } else {
        c.apply(&cloneset("cs:v1")).await;
        c.apply(CLONESET_ROLLOUT).await;
        &["echo", "route", "db", "web", "cs"]
    };
    // A StatefulSet without traffic routing, on the built-in.
    c.apply(&statefulset("db:v1")).await;
    c.apply(STATEFULSET_ROLLOUT).await;
    c.apply(&deployment_yaml("web", "web:v1", 3)).await;
    c.apply(IN_PLACE_ROLLOUT).await;
    for name in workloads {
        c.until_healthy(name).await;
    }
    c.until_governed("apps", "deployments", "echo").await;
    c.until_governed("apps", "deployments", "web").await;
    c.until_governed("apps", "deployments", "route").await;

    c.apply(&deployment_yaml("echo", "barnett/canarydemo:v2", 5))
        .await;
    c.apply(&deployment_yaml("route", "route:v2", 4)).await;
    if !real {
        c.apply(&cloneset("cs:v2")).await;
    }
    c.apply(&statefulset("db:v2")).await;
    c.apply(&deployment_yaml("web", "web:v2", 3)).await;
    approve_to_the_end(&c, "echo", 2).await;
    approve_to_the_end(&c, "route", 2).await;
    if !real {
        approve_to_the_end(&c, "cs", 2).await;
    }
    approve_to_the_end(&c, "db", 1).await;
    approve_to_the_end(&c, "web", 1).await;
    // Rolled back mid-release, the canary Service and Ingress go again.
    c.apply(&deployment_yaml("echo", "barnett/canarydemo:v3", 5))
        .await;
    c.until_paused_at("echo", 1).await;
    c.apply(&deployment_yaml("echo", "barnett/canarydemo:v2", 5))
        .await;
    c.until_healthy("echo").await;
    // A graceful stop releases the Lease, so a standby takes over at once.
    c.stop_controller().await;
    let lease = c
        .object_in(
            "sluice-system",
            "coordination.k8s.io",
            "leases",
            "sluice-controller",
        )
        .await
        .map(|l| l["spec"]["holderIdentity"].clone());
    assert_eq!(lease, Some(Value::Null), "the Lease is released on stop");

    let calls: Vec<AuditEntry> = if real {
        // What the real API server recorded, and what its RBAC authorizer refused:
        // nothing.
        let (calls, refused) = c.audited(sluice::local::CONTROLLER_USER, started).await;
        assert_eq!(
            refused,
            Vec::<String>::new(),
            "the API server refused the controller"
        );
        calls
    } else {
        c.sim()
            .audit()
            .into_iter()
            .filter(|e| e.user == sluice::local::CONTROLLER_USER)
            .collect()
    };
    assert!(!calls.is_empty(), "the controller's requests are recorded");
    let denied: BTreeSet<String> = calls
        .iter()
        .filter(|e| !rules.iter().any(|r| r.allows(e)))
        .map(|e| {
            format!(
                "{} {}/{}{} in {:?}",
                e.verb,
                e.group,
                e.resource,
                e.subresource
                    .as_ref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default(),
                e.namespace
            )
        })
        .collect();
    assert!(
        denied.is_empty(),
        "requests deploy/controller.yaml does not allow: {denied:#?}"
    );
    let unused: Vec<(String, String, String)> = rules
        .iter()
        .flat_map(|r| {
            r.grants()
                .into_iter()
                // Renewing the webhook certificates updates their Secret: a year in,
                // which tests/admission_e2e.rs shows with a clock moved on.
                .filter(|(g, res, v)| !(g.is_empty() && res == "secrets" && v == "update"))
                // No OpenKruise runs on the real control plane: no CloneSet here.
                .filter(|(g, _, _)| !(real && g == "apps.kruise.io"))
                .filter(|(g, res, v)| {
                    !calls.iter().any(|e| {
                        let resource = match &e.subresource {
                            Some(sub) => format!("{}/{sub}", e.resource),
                            None => e.resource.clone(),
                        };
                        &e.group == g && &resource == res && &e.verb == v && r.allows(e)
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        unused.is_empty(),
        "deploy/controller.yaml grants what the controller never used: {unused:#?}"
    );
}
