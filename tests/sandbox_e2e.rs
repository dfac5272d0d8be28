//! End-to-end: what the operator allows, enforced on module objects — ceilings on
//! limits, metric providers granted per namespace, ClusterStrategyModules pinned and
//! kept to their namespaces — and a hostile namespace running its worst beside a
//! neighbour whose release goes on.

mod support;

use kube::api::Api;
use sluice::controller::ControllerConfig;
use sluice::kruise::v1alpha1::Rollout;
use sluice::policy::NamespaceScope;
use sluice::providers::ProviderConfig;
use support::cluster::{Cluster, deployment_yaml};
use support::modules::{
    app_and_rollout, configmap, module, module_status, release_v2, sha, strategy_condition,
};

const ONE_STEP: &str = "[{weight: 20, pause: {}}]";

/// A StrategyModule `ns/name` reading ConfigMap `m` with an extra `spec` line.
fn module_with(ns: &str, name: &str, extra: &str) -> String {
    format!("{}  {extra}\n", module(ns, name, "m", None))
}

#[tokio::test]
async fn limits_above_a_ceiling_are_refused_naming_the_field_the_value_and_the_ceiling() {
    let c = Cluster::start().await;
    c.apply(&configmap(c.ns(), "m", sluice_test_guests::DOUBLING))
        .await;
    c.apply(&module_with(
        "default",
        "greedy",
        "limits: {deadlineMs: 60000, memoryBytes: 1073741824}",
    ))
    .await;
    c.until("the module is refused", || async {
        module_status(&c, c.ns(), "greedy").await["reason"] == "LimitAboveCeiling"
    })
    .await;
    let message = module_status(&c, c.ns(), "greedy").await["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for part in [
        "spec.limits.memoryBytes: 1073741824 asked, above the controller's ceiling of 268435456 (sandbox.ceilings.memoryBytes)",
        "spec.limits.deadlineMs: 60000 asked, above the controller's ceiling of 2000 (sandbox.ceilings.deadlineMs)",
    ] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(module_status(&c, c.ns(), "greedy").await["ready"], false);

    // A Rollout naming it waits with the same reason; nothing is clamped and run.
    c.apply(&app_and_rollout("greedy", None, ONE_STEP)).await;
    release_v2(&c).await;
    c.until_rollout("echo", "refused by the ceiling", |r| {
        strategy_condition(r).is_some_and(|(s, reason, m)| {
            s == "False" && reason == "LimitAboveCeiling" && m.contains("deadlineMs: 60000")
        })
    })
    .await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 0);

    // Asking for the ceiling itself, the same bytes are ready.
    c.apply(&module_with(
        "default",
        "modest",
        "limits: {deadlineMs: 2000}",
    ))
    .await;
    c.until("ready within the ceiling", || async {
        module_status(&c, c.ns(), "modest").await["ready"] == true
    })
    .await;
}

#[tokio::test]
async fn a_metric_provider_is_used_only_by_the_namespaces_granted_it() {
    let c = Cluster::start_with(|_| ControllerConfig {
        providers: vec![ProviderConfig {
            namespaces: NamespaceScope {
                names: vec!["team-a".into()],
                selector: None,
            },
            .."prometheus=http://127.0.0.1:9".parse().expect("provider")
        }],
        ..ControllerConfig::default()
    })
    .await;
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
        .await;
    let grants = "capabilities: {metrics: {providers: [prometheus]}}";
    for ns in ["default", "team-a"] {
        c.apply(&configmap(ns, "m", sluice_test_guests::METRICS_GATE))
            .await;
        c.apply(&format!(
            "{}\n",
            module(ns, "gate", "m", None)
                .replace("  capabilities: {log: true}\n", &format!("  {grants}\n"))
        ))
        .await;
    }
    c.until("default is refused, team-a is ready", || async {
        module_status(&c, c.ns(), "gate").await["reason"] == "CapabilityNotGranted"
            && module_status(&c, "team-a", "gate").await["ready"] == true
    })
    .await;
    let message = module_status(&c, c.ns(), "gate").await["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("metric provider `prometheus` is not granted to namespace default")
            && message.contains("grants it to namespaces team-a"),
        "{message}"
    );

    // A provider nobody declared is refused as such.
    c.apply(&format!(
        "{}\n",
        module(c.ns(), "unknown", "m", None).replace(
            "  capabilities: {log: true}\n",
            "  capabilities: {metrics: {providers: [datadog]}}\n"
        )
    ))
    .await;
    c.until("an undeclared provider is refused", || async {
        module_status(&c, c.ns(), "unknown").await["message"]
            .as_str()
            .is_some_and(|m| m.contains("no metric provider `datadog` is declared"))
    })
    .await;
}

fn cluster_module(name: &str, pin: Option<&str>, allowed: &str) -> String {
    let pin = pin
        .map(|p| format!(", sha256: \"{p}\""))
        .unwrap_or_default();
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ClusterStrategyModule\nmetadata: {{name: {name}}}\nspec:\n  source: {{configMap: {{name: m, namespace: platform, key: module.wasm}}{pin}}}\n  allowedNamespaces: {allowed}\n"
    )
}

#[tokio::test]
async fn cluster_modules_are_pinned_and_used_only_where_allowed() {
    let c = Cluster::start().await;
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: platform}\n")
        .await;
    let bytes = sluice_test_guests::DOUBLING;
    c.apply(&configmap("platform", "m", bytes)).await;
    let cluster_status = |name: &str| {
        c.sim()
            .store()
            .get(
                &sluice_sim::store::ResKey::new("sluice.dev", "clusterstrategymodules"),
                "",
                name,
            )
            .and_then(|m| m.get("status").cloned())
            .unwrap_or_default()
    };
    c.apply(&cluster_module("unpinned", None, "{names: [default]}"))
        .await;
    c.until("an unpinned cluster module is refused", || async {
        cluster_status("unpinned")["reason"] == "PinRequired"
    })
    .await;
    assert!(
        cluster_status("unpinned")["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.source.sha256: a ClusterStrategyModule pins")),
        "{}",
        cluster_status("unpinned")
    );

    c.apply(&cluster_module(
        "platform-only",
        Some(&sha(bytes)),
        "{names: [platform]}",
    ))
    .await;
    c.until("the pinned module is ready", || async {
        cluster_status("platform-only")["ready"] == true
    })
    .await;
    c.apply(&app_and_rollout("cluster/platform-only", None, ONE_STEP))
        .await;
    release_v2(&c).await;
    c.until_rollout("echo", "refused in this namespace", |r| {
        strategy_condition(r).is_some_and(|(s, reason, m)| {
            s == "False"
                && reason == "NamespaceNotAllowed"
                && m.contains("ClusterStrategyModule platform-only may be used by namespaces platform, not by namespace default")
        })
    })
    .await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 0);

    // Allowing the namespace by label lets the release go on.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {team: web}}\n")
        .await;
    c.apply(&cluster_module(
        "platform-only",
        Some(&sha(bytes)),
        "{selector: {matchLabels: {team: web}}}",
    ))
    .await;
    c.until("the canary runs", || async {
        c.ready_pods_with("barnett/canarydemo:v2").await > 0
    })
    .await;
}

/// The hostile namespace: `count` Deployments, each with a Rollout on a module of
/// its own that sleeps in every export.
fn hostile_namespace(count: usize) -> String {
    let sleeper = sluice_test_guests::WASI_HOSTILE.unwrap_or_else(|e| panic!("{e}"));
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: evil}\n");
    for i in 0..count {
        // Each module its own digest: a distinct trailing custom section.
        let mut bytes = sleeper.to_vec();
        let name = format!("pad{i}");
        bytes.extend([0u8, (name.len() + 1) as u8, name.len() as u8]);
        bytes.extend(name.as_bytes());
        yaml.push_str("---\n");
        yaml.push_str(&configmap("evil", &format!("m{i}"), &bytes));
        yaml.push_str("---\n");
        yaml.push_str(&format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: StrategyModule\nmetadata: {{name: sleeper{i}, namespace: evil}}\nspec:\n  source: {{configMap: {{name: m{i}, key: module.wasm}}}}\n  limits: {{deadlineMs: 1000}}\n"
        ));
        yaml.push_str("---\n");
        yaml.push_str(
            &deployment_yaml(&format!("app{i}"), "evil:v1", 1)
                .replace("metadata: {name: ", "metadata: {namespace: evil, name: "),
        );
        yaml.push_str(&format!(
            "---\napiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: app{i}\n  namespace: evil\n  annotations: {{strategy.sluice.dev/module: sleeper{i}, strategy.sluice.dev/config: sleep}}\nspec:\n  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: app{i}}}}}\n  strategy:\n    canary:\n      steps: [{{replicas: 1, pause: {{}}}}]\n"
        ));
    }
    yaml
}

#[tokio::test]
async fn a_hostile_namespace_running_its_worst_does_not_stop_a_neighbours_release() {
    let c = Cluster::start().await;
    // The neighbour's application, settled first so that its release is what runs
    // beside the attack.
    c.apply(&app_and_rollout(
        "builtin:steps",
        None,
        "[{weight: 20, pause: {}}, {weight: 60, pause: {}}]",
    ))
    .await;
    c.until_healthy("echo").await;
    let evil = hostile_namespace(30);
    c.apply(&evil).await;
    // Every hostile release starts: thirty modules to compile, each sleeping.
    let evil_rollouts: Api<Rollout> = Api::namespaced(c.client.clone(), "evil");
    for i in 0..30 {
        c.apply(
            &deployment_yaml(&format!("app{i}"), "evil:v2", 1)
                .replace("metadata: {name: ", "metadata: {namespace: evil, name: "),
        )
        .await;
    }
    // The neighbour's whole walk-through, while they run.
    release_v2(&c).await;
    c.until_paused_at("echo", 1).await;
    c.approve("echo").await;
    c.until_paused_at("echo", 2).await;
    c.approve("echo").await;
    c.until_healthy("echo").await;
    assert_eq!(c.ready_pods_with("barnett/canarydemo:v2").await, 5);

    // The hostile rollouts are each held on their own module's deadline.
    c.until(
        "every hostile rollout is held at its module's deadline",
        || async {
            let mut held = 0;
            for i in 0..30 {
                if let Ok(r) = evil_rollouts.get(&format!("app{i}")).await
                    && strategy_condition(&r)
                        .is_some_and(|(s, reason, _)| s == "False" && reason == "DeadlineExceeded")
                {
                    held += 1;
                }
            }
            held == 30
        },
    )
    .await;
    assert_eq!(
        c.ready_pods_with("evil:v2").await,
        0,
        "no hostile canary ran"
    );
}
