//! `sluice demo`: KubeVela's "Kruise Rollout" walk-through, replayed on the embedded
//! simulator with the real controller, narrated.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use sluice_sim::store::ResKey;
use sluice_sim::{PodBehaviour, Sim, SimConfig};

use crate::kruise::v1alpha1::Rollout;
use crate::local;

/// The walk-through's manifests, as the KubeVela traits render them.
const V1: &str = include_str!("../../examples/canary-demo/v1.yaml");
const V2: &str = include_str!("../../examples/canary-demo/v2.yaml");
const ROLLOUT: &str = include_str!("../../examples/canary-demo/rollout.yaml");
const HOST: &str = "canary-demo.com";

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Requests sent to measure the canary's share of traffic.
    pub requests: u32,
    /// Wait for the person to press Enter before approving and rolling back.
    pub interactive: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            requests: 1000,
            interactive: false,
        }
    }
}

struct Demo<'a, W: Write> {
    sim: Sim,
    client: kube::Client,
    out: &'a mut W,
    options: DemoOptions,
}

/// Runs the walk-through, writing the narration to `out`.
pub async fn run<W: Write>(options: DemoOptions, out: &mut W) -> anyhow::Result<()> {
    let sim = Sim::start(SimConfig {
        pods: PodBehaviour {
            ready_delay: Duration::from_millis(300),
            ..PodBehaviour::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let controller = local::start_controller(&sim, None).await?;
    let client = local::client(&sim)?;
    let mut demo = Demo {
        sim,
        client,
        out,
        options,
    };
    let result = demo.walk().await;
    controller.stop().await;
    result
}

impl<W: Write> Demo<'_, W> {
    fn say(&mut self, line: impl AsRef<str>) -> anyhow::Result<()> {
        writeln!(self.out, "{}", line.as_ref())?;
        self.out.flush()?;
        Ok(())
    }

    async fn walk(&mut self) -> anyhow::Result<()> {
        self.say(
            "Sluice demo: KubeVela's \"Kruise Rollout\" walk-through, on the embedded simulator",
        )?;
        self.say("(an in-memory Kubernetes API, simulated pods and an ingress-nginx-like gateway; the controller and its")?;
        self.say(" WebAssembly `steps` strategy are the real ones).")?;
        self.say("")?;

        self.say("[1] First deployment (publishVersion v1): Deployment canary-demo, 5 x barnett/canarydemo:v1,")?;
        self.say("    Service and Ingress canary-demo.com/version, Rollout with steps [{weight: 20, pause: {}}]")?;
        self.apply(V1).await?;
        self.apply(ROLLOUT).await?;
        self.wait_rollout("healthy", |s| {
            phase(s) == "Healthy" && step_state(s) == "Completed"
        })
        .await?;
        self.wait_pods(5, "barnett/canarydemo:v1", 5).await?;
        self.wait_governed().await?;
        self.status_line().await?;
        self.pods_line()?;
        self.traffic("v1", 50).await?;

        self.say("")?;
        self.say("[2] Canary release (publishVersion v2): the Deployment's image becomes barnett/canarydemo:v2")?;
        self.apply(V2).await?;
        self.wait_rollout("waiting in step 1", crate::cli::rollout::act::waiting)
            .await?;
        self.status_line().await?;
        self.pods_line()?;
        self.measure().await?;

        self.say("")?;
        self.say("[3] Reject: `vela workflow rollback canary-demo` restores the v1 template")?;
        self.pause_for_person("roll back")?;
        self.apply(V1).await?;
        self.wait_rollout("canceled", |s| {
            phase(s) == "Healthy" && message(s) == "Rollout progressing has been canceled"
        })
        .await?;
        self.status_line().await?;
        self.wait_pods(5, "barnett/canarydemo:v1", 5).await?;
        self.pods_line()?;
        self.traffic("v1 again", 100).await?;

        self.say("")?;
        self.say("[4] Release v2 again, and approve: `vela workflow resume canary-demo` (like `kubectl-kruise rollout")?;
        self.say("    approve`) patches status.canaryStatus.currentStepState to StepReady")?;
        self.apply(V2).await?;
        self.wait_rollout("waiting in step 1", crate::cli::rollout::act::waiting)
            .await?;
        self.status_line().await?;
        self.pause_for_person("approve")?;
        self.approve().await?;
        self.wait_rollout("completed", |s| {
            phase(s) == "Healthy" && message(s) == "Rollout progressing has been completed"
        })
        .await?;
        self.status_line().await?;
        self.wait_pods(5, "barnett/canarydemo:v2", 5).await?;
        self.pods_line()?;
        self.traffic("v2", 100).await?;
        let leftovers = ["canary-demo-canary"]
            .iter()
            .filter(|n| {
                self.sim
                    .store()
                    .get(&ResKey::new("", "services"), "default", n)
                    .is_some()
                    || self
                        .sim
                        .store()
                        .get(&ResKey::new("networking.k8s.io", "ingresses"), "default", n)
                        .is_some()
            })
            .count();
        self.say(format!(
            "    canary Service and Ingress removed: {}; stable Service selector unpinned: {}",
            if leftovers == 0 { "yes" } else { "no" },
            if self.stable_pinned() { "no" } else { "yes" }
        ))?;
        self.say("")?;
        self.say("Done. `sluice dev` runs the same cluster for kubectl and curl (see README).")?;
        Ok(())
    }

    fn pause_for_person(&mut self, what: &str) -> anyhow::Result<()> {
        if self.options.interactive {
            self.say(format!("    press Enter to {what}..."))?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
        Ok(())
    }

    async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        for doc in yaml.split("\n---") {
            let value: Value = serde_yaml_ng::from_str(doc).context("demo manifest")?;
            if value.is_null() {
                continue;
            }
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            let kind = value["kind"].as_str().unwrap_or_default();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), "default", &resource);
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            api.patch(
                &name,
                &PatchParams::apply("sluice-demo").force(),
                &Patch::Apply(&value),
            )
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
        }
        Ok(())
    }

    async fn rollout(&self) -> anyhow::Result<Rollout> {
        Ok(Api::<Rollout>::namespaced(self.client.clone(), "default")
            .get("canary-demo")
            .await?)
    }

    async fn wait_rollout(
        &self,
        what: &str,
        check: impl Fn(&Rollout) -> bool,
    ) -> anyhow::Result<()> {
        let mut events = self.sim.store().subscribe();
        let limit = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if check(&self.rollout().await?) {
                return Ok(());
            }
            tokio::select! {
                _ = events.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = tokio::time::sleep_until(limit) => bail!("the rollout did not get {what} within two minutes"),
            }
        }
    }

    async fn wait_pods(&self, n: usize, image: &str, total: usize) -> anyhow::Result<()> {
        let mut events = self.sim.store().subscribe();
        let limit = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let pods = self.pods();
            if pods
                .iter()
                .filter(|(i, ready)| i == image && *ready)
                .count()
                == n
                && pods.len() == total
            {
                return Ok(());
            }
            tokio::select! {
                _ = events.recv() => {}
                () = tokio::time::sleep_until(limit) => bail!("pods did not settle within two minutes"),
            }
        }
    }

    /// Waits until the controller has marked the Deployment as released by a Rollout,
    /// so that the admission webhook holds its next template for a release.
    async fn wait_governed(&self) -> anyhow::Result<()> {
        let mut events = self.sim.store().subscribe();
        let limit = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let held = self
                .sim
                .store()
                .get(
                    &ResKey::new("apps", "deployments"),
                    "default",
                    "canary-demo",
                )
                .is_some_and(|d| {
                    d.pointer("/metadata/labels/rollouts.kruise.io~1workload-type")
                        .is_some()
                });
            if held {
                return Ok(());
            }
            tokio::select! {
                _ = events.recv() => {}
                () = tokio::time::sleep_until(limit) => bail!("the controller did not take up the Deployment within two minutes"),
            }
        }
    }

    async fn status_line(&mut self) -> anyhow::Result<()> {
        let r = self.rollout().await?;
        let c = r
            .status
            .as_ref()
            .and_then(|s| s.canary_status.clone())
            .unwrap_or_default();
        let succeeded = r
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Succeeded"))
            .map(|c| format!(", Succeeded={}", c.status))
            .unwrap_or_default();
        self.say(format!(
            "    rollout: phase {}, step {} {}{} — \"{}\"",
            phase(&r),
            c.current_step_index,
            c.current_step_state,
            succeeded,
            message(&r)
        ))
    }

    fn pods(&self) -> Vec<(String, bool)> {
        self.sim
            .store()
            .list(&ResKey::new("", "pods"), Some("default"))
            .items
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .map(|p| {
                let image = p
                    .pointer("/spec/containers/0/image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let ready = p
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                (image, ready)
            })
            .collect()
    }

    fn pods_line(&mut self) -> anyhow::Result<()> {
        let pods = self.pods();
        let count = |tag: &str| pods.iter().filter(|(i, r)| i.ends_with(tag) && *r).count();
        let line = format!(
            "    pods ready: {} x v1, {} x v2",
            count(":v1"),
            count(":v2")
        );
        self.say(line)
    }

    fn stable_pinned(&self) -> bool {
        self.sim
            .store()
            .get(&ResKey::new("", "services"), "default", "canary-demo")
            .is_some_and(|s| s.pointer("/spec/selector/pod-template-hash").is_some())
    }

    async fn request(&self) -> anyhow::Result<String> {
        let client: HttpClient<_, Full<Bytes>> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let req = hyper::Request::get(format!("{}/version", self.sim.gateway_url()))
            .header("host", HOST)
            .body(Full::new(Bytes::new()))?;
        let resp = client.request(req).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    async fn traffic(&mut self, what: &str, n: u32) -> anyhow::Result<()> {
        let mut answers: std::collections::BTreeMap<String, u32> =
            std::collections::BTreeMap::new();
        for _ in 0..n {
            *answers.entry(self.request().await?).or_default() += 1;
        }
        let summary = answers
            .iter()
            .map(|(a, c)| format!("{c} x \"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        self.say(format!(
            "    curl -H 'Host: {HOST}' <gateway>/version, {n} times ({what}): {summary}"
        ))
    }

    async fn measure(&mut self) -> anyhow::Result<()> {
        let n = self.options.requests;
        let mut v2 = 0;
        for _ in 0..n {
            if self.request().await? == "Demo: V2" {
                v2 += 1;
            }
        }
        let p = 0.2;
        let half = 3.29 * (f64::from(n) * p * (1.0 - p)).sqrt() / f64::from(n) * 100.0;
        self.say(format!(
            "    {n} requests: {v2} answered \"Demo: V2\" = {:.1}% (expected 20%; 99.9% of runs fall within {:.1}%-{:.1}%)",
            f64::from(v2) / f64::from(n) * 100.0,
            20.0 - half,
            20.0 + half
        ))
    }

    async fn approve(&self) -> anyhow::Result<()> {
        Api::<Rollout>::namespaced(self.client.clone(), "default")
            .patch_status(
                "canary-demo",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"canaryStatus": {"currentStepState": "StepReady"}}}),
                ),
            )
            .await?;
        Ok(())
    }
}

fn phase(r: &Rollout) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn message(r: &Rollout) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn step_state(r: &Rollout) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.canary_status.as_ref())
        .map(|c| c.current_step_state.clone())
        .unwrap_or_default()
}
