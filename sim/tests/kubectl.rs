//! kubectl 1.32 as an independent client of the simulator.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use common::{sim, until};

struct Kubectl {
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(sim: &sluice_sim::Sim) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Kubectl {
            kubeconfig,
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self._dir.path())
            .stdin(Stdio::piped());
        cmd
    }

    /// Runs kubectl (off the async runtime) with `stdin`, and returns stdout, failing on error.
    async fn run(&self, args: &[&str], stdin: &str) -> String {
        let mut cmd = self.command(args);
        let stdin = stdin.to_owned();
        let shown = args.join(" ");
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl is installed (kubectl 1.32 is part of this project's machines)");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(stdin.as_bytes())
                .expect("write stdin");
            let out = child.wait_with_output().expect("kubectl runs");
            assert!(
                out.status.success(),
                "kubectl {shown} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .await
        .expect("join")
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&all, "").await).expect("json output")
    }
}

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
        .stdout(Stdio::piped())
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

#[tokio::test]
async fn generators_are_refused_with_the_workaround() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let out = tokio::task::spawn_blocking(move || {
        k.command(&["create", "namespace", "team-a"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("kubectl")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubectl apply -f"), "{err}");
}
