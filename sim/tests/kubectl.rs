//! kubectl 1.32 as an independent client of the simulator.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Kubectl, sim, until};

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "demo:v1"}]
"#;

#[tokio::test]
async fn discovery_and_api_resources() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k.run(&["api-resources"], "").await;
    for want in [
        "deployments",
        "ingresses",
        "customresourcedefinitions",
        "clonesets",
        "httproutes",
    ] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
    let version = k.run(&["version"], "").await;
    assert!(version.contains("v1.32.0-sluice-sim"), "{version}");
}

#[tokio::test]
async fn create_get_patch_scale_set_image_delete() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k.run(&["create", "-f", "-"], MANIFEST).await;
    assert!(
        out.contains("configmap/settings created") && out.contains("deployment.apps/web created"),
        "{out}"
    );

    let cm = k.json(&["get", "configmap", "settings"]).await;
    assert_eq!(cm["data"]["mode"], "fast");

    k.run(
        &[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"slow"}}"#,
        ],
        "",
    )
    .await;
    assert_eq!(
        k.json(&["get", "cm", "settings"]).await["data"]["mode"],
        "slow"
    );

    k.run(&["scale", "deployment/web", "--replicas=4"], "")
        .await;
    assert_eq!(
        k.json(&["get", "deploy", "web"]).await["spec"]["replicas"],
        4
    );

    k.run(&["set", "image", "deployment/web", "app=demo:v2"], "")
        .await;
    let d = k.json(&["get", "deploy", "web"]).await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "demo:v2"
    );

    k.run(
        &["rollout", "status", "deployment/web", "--timeout=30s"],
        "",
    )
    .await;
    let pods = k.json(&["get", "pods", "-l", "app=web"]).await;
    let images: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, vec!["demo:v2"; 4]);

    k.run(&["delete", "deployment", "web"], "").await;
    let store = sim.store().clone();
    until(&sim, "the pods are collected", || {
        let store = store.clone();
        async move {
            store
                .list(&sluice_sim::store::ResKey::new("", "pods"), Some("default"))
                .items
                .is_empty()
        }
    })
    .await;
}

#[tokio::test]
async fn apply_client_side_and_server_side() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = k.run(&["apply", "-f", "-"], MANIFEST).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = MANIFEST
        .replace("mode: fast", "mode: safe")
        .replace("demo:v1", "demo:v3");
    let out = k.run(&["apply", "-f", "-"], &changed).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert_eq!(
        k.json(&["get", "cm", "settings"]).await["data"]["mode"],
        "safe"
    );

    let server_side = changed.replace("mode: safe", "mode: server");
    let out = k
        .run(&["apply", "--server-side", "-f", "-"], &server_side)
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        k.json(&["get", "cm", "settings"]).await["data"]["mode"],
        "server"
    );
}

#[tokio::test]
async fn patch_the_status_subresource() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.run(&["create", "-f", "-"], r#"{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}, "spec": {"rules": []}}"#).await;
    k.run(
        &[
            "patch",
            "httproute",
            "r",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"parents":[]}}"#,
        ],
        "",
    )
    .await;
    let route = k.json(&["get", "httproute", "r"]).await;
    assert_eq!(route["status"]["parents"], serde_json::json!([]));
    // Through the main resource, status is not written.
    k.run(
        &[
            "patch",
            "httproute",
            "r",
            "--type=merge",
            "-p",
            r#"{"status":{"parents":null,"x":1}}"#,
        ],
        "",
    )
    .await;
    assert_eq!(
        k.json(&["get", "httproute", "r"]).await["status"]["parents"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn get_watch_streams_changes() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let mut child = k
        .command(&["get", "configmaps", "-w", "-o", "name"])
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    let stdout = child.stdout.take().expect("stdout");
    let reader = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.next().map(|l| l.expect("line"))
    });
    k.run(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\n",
    )
    .await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
        .await
        .expect("a watch line")
        .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first.as_deref(), Some("configmap/watched"));
}

/// kubectl's generators send protobuf: each object is stored as the JSON kubectl
/// would have sent for it, every field the generator set kept.
#[tokio::test]
async fn generators_send_protobuf_and_what_they_set_is_kept() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.run(&["create", "namespace", "team-a"], "").await;
    let ns = k.json(&["get", "namespace", "team-a"]).await;
    assert_eq!(ns["metadata"]["name"], "team-a");
    assert!(
        ns["metadata"]
            .get("creationTimestamp")
            .is_some_and(|t| t.is_string()),
        "{ns}"
    );

    // A ConfigMap with a binary file and a literal: binaryData byte for byte.
    let dir = tempfile::tempdir().expect("tempdir");
    let module: Vec<u8> = (0..=255u8).chain([0, 0x61, 0x73, 0x6d]).collect();
    let file = dir.path().join("m.wasm");
    std::fs::write(&file, &module).expect("write");
    let from_file = format!("--from-file=m.wasm={}", file.display());
    k.run(
        &[
            "create",
            "configmap",
            "strategies",
            "-n",
            "team-a",
            &from_file,
            "--from-literal=mode=fast",
            // Go writes a map entry's empty value; the types' own encoder would not.
            "--from-literal=unset=",
        ],
        "",
    )
    .await;
    let cm = k
        .json(&["get", "configmap", "strategies", "-n", "team-a"])
        .await;
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(cm["binaryData"]["m.wasm"].as_str().expect("binaryData"))
        .expect("base64");
    assert_eq!(stored, module);
    assert_eq!(cm["data"]["mode"], "fast");
    assert_eq!(cm["data"]["unset"], "");

    k.run(
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cr3t",
            "--from-literal=empty=",
        ],
        "",
    )
    .await;
    let secret = k.json(&["get", "secret", "creds"]).await;
    assert_eq!(secret["data"]["password"], "czNjcjN0");
    assert_eq!(secret["data"]["empty"], "");
    assert_eq!(secret["type"], "Opaque");

    // A Deployment: its pods run; `--replicas=0` stays 0 (a pointer's zero kept).
    k.run(
        &[
            "create",
            "deployment",
            "web",
            "--image=demo:v1",
            "--replicas=3",
            "--port=8080",
        ],
        "",
    )
    .await;
    let d = k.json(&["get", "deployment", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "demo:v1");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let store = sim.store().clone();
    until(&sim, "web's 3 pods ready", || {
        let web = store.get(
            &sluice_sim::store::ResKey::new("apps", "deployments"),
            "default",
            "web",
        );
        async move { web.is_some_and(|d| d["status"]["readyReplicas"] == 3) }
    })
    .await;
    k.run(
        &[
            "create",
            "deployment",
            "idle",
            "--image=demo:v1",
            "--replicas=0",
        ],
        "",
    )
    .await;
    assert_eq!(
        k.json(&["get", "deployment", "idle"]).await["spec"]["replicas"],
        0
    );

    // A Service: targetPort an IntOrString holding a number.
    k.run(
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        "",
    )
    .await;
    let svc = k.json(&["get", "service", "web"]).await;
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["selector"]["app"], "web");

    k.run(&["create", "serviceaccount", "robot"], "").await;
    assert_eq!(
        k.json(&["get", "serviceaccount", "robot"]).await["metadata"]["name"],
        "robot"
    );
    k.run(
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
        "",
    )
    .await;
    let role = k.json(&["get", "role", "reader"]).await;
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    k.run(
        &[
            "create",
            "rolebinding",
            "reader",
            "--role=reader",
            "--serviceaccount=default:robot",
        ],
        "",
    )
    .await;
    let binding = k.json(&["get", "rolebinding", "reader"]).await;
    assert_eq!(binding["roleRef"]["name"], "reader");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["name"], "robot");

    k.run(
        &[
            "create",
            "job",
            "once",
            "--image=busybox",
            "--",
            "echo",
            "hi",
        ],
        "",
    )
    .await;
    let job = k.json(&["get", "job", "once"]).await;
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(spec["restartPolicy"], "Never");

    // The generators' objects are listed as kubectl expects.
    let listed = k
        .run(
            &["get", "deployments,services,jobs,roles", "-o", "name"],
            "",
        )
        .await;
    for name in [
        "deployment.apps/web",
        "service/web",
        "job.batch/once",
        "role.rbac.authorization.k8s.io/reader",
    ] {
        assert!(listed.contains(name), "{name} missing from\n{listed}");
    }
}

/// An events.k8s.io Event about `kind/name` (as the controller's recorder writes them).
fn event(name: &str, kind: &str, object: &str, uid: &str, reason: &str, note: &str) -> String {
    format!(
        r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: {name}, namespace: default}}
eventTime: "2026-01-01T00:00:00.000000Z"
reportingController: sluice
reportingInstance: sluice-0
action: Reconcile
type: Normal
reason: {reason}
note: "{note}"
regarding: {{apiVersion: apps/v1, kind: {kind}, name: {object}, namespace: default, uid: "{uid}"}}
"#
    )
}

#[tokio::test]
async fn events_are_listed_described_and_selected_as_kubectl_expects() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.run(&["create", "-f", "-"], MANIFEST).await;
    let uid = k.json(&["get", "deployment", "web"]).await["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    let events = [
        event(
            "web.1",
            "Deployment",
            "web",
            &uid,
            "StepPaused",
            "waiting for approval",
        ),
        event(
            "other.1",
            "Deployment",
            "other",
            "u-other",
            "Elsewhere",
            "not about web",
        ),
    ]
    .join("---");
    k.run(&["create", "-f", "-"], &events).await;

    // The server prints the columns kubectl shows for events, the object as kind/name.
    let table = k.run(&["get", "events"], "").await;
    let header = table.lines().next().unwrap_or_default();
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains("StepPaused"))
        .expect("the event's row");
    assert!(
        row.contains("deployment/web") && row.contains("waiting for approval"),
        "{row}"
    );

    // describe finds the object's events by field selector (name, namespace, kind, uid).
    let described = k.run(&["describe", "deployment", "web"], "").await;
    let events = described
        .split("Events:")
        .nth(1)
        .expect("an Events section");
    assert!(
        events.contains("StepPaused") && events.contains("waiting for approval"),
        "{described}"
    );
    assert!(!events.contains("Elsewhere"), "{described}");

    let listed = k.run(&["events", "--for", "deployment/web"], "").await;
    assert!(listed.contains("StepPaused"), "{listed}");
    assert!(!listed.contains("Elsewhere"), "{listed}");

    let selected = k
        .run(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=Elsewhere",
                "-o",
                "name",
            ],
            "",
        )
        .await;
    assert_eq!(selected.trim(), "event/other.1", "{selected}");
    let selected = k
        .run(
            &[
                "get",
                "events.v1.events.k8s.io",
                "--field-selector",
                "regarding.name=web",
                "-o",
                "name",
            ],
            "",
        )
        .await;
    assert_eq!(selected.trim(), "event.events.k8s.io/web.1", "{selected}");

    // A field the kind does not index is refused as the API server refuses it.
    let err = k
        .fails(
            &["get", "deployments", "--field-selector", "spec.nodeName=n1"],
            "",
        )
        .await;
    assert!(
        err.contains("field label not supported: spec.nodeName"),
        "{err}"
    );
}
