//! `cargo xtask scale`: Sluice, OpenKruise Rollouts v0.6.2 and Argo Rollouts v1.9.2
//! measured side by side, each on a fresh local control plane with the same N
//! Rollouts (a Deployment of one pod, a Service, an NGINX Ingress and a Rollout of
//! two steps — 20% of the traffic, then after an approval 100% — for Kruise and
//! Sluice; an Argo Rollout with the same pod template, stable and canary
//! Services, the same Ingress and the same steps for Argo).
//!
//! For each engine and size: the controller's peak RSS and its CPU seconds while
//! idle, then during a wave of releases (every template changed at once) and of
//! approvals; the API requests it made per second, by verb (from the API
//! server's audit log); the time from each template change to its canary's 20%
//! weight, and from each approval to the 100% weight (p50, p99). Results go to
//! `target/scale/results.jsonl`, one JSON object per engine and size.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cluster;
use crate::oracle::watch;

/// Options of `cargo xtask scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// The engines, in the order they run.
    #[arg(long, value_delimiter = ',', default_value = "sluice,kruise,argo")]
    pub engines: Vec<String>,
    /// The numbers of Rollouts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub rollouts: Vec<usize>,
    /// How long the engine is watched idle (CPU seconds per minute).
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
}

/// Rollouts per namespace.
const PER_NAMESPACE: usize = 500;

fn namespace(i: usize) -> String {
    format!("scale-{}", i / PER_NAMESPACE)
}

/// The objects of Rollout `i` under `engine`.
fn objects(engine: &str, i: usize) -> String {
    let ns = namespace(i);
    let name = format!("r{i}");
    let template = format!(
        "metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: main, image: \"demo:v1\"}}]}}"
    );
    let service = |svc: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec: {{selector: {{app: {name}}}, ports: [{{port: 80, targetPort: 8080}}]}}\n---\n"
        )
    };
    let ingress = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules: [{{host: {name}.scale, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}]}}}}]\n---\n"
    );
    if engine == "argo" {
        format!(
            "{}{}{ingress}apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    {template}\n  strategy:\n    canary:\n      stableService: {name}\n      canaryService: {name}-canary\n      trafficRouting: {{nginx: {{stableIngress: {name}}}}}\n      steps: [{{setWeight: 20}}, {{pause: {{}}}}, {{setWeight: 100}}]\n---\n",
            service(&name),
            service(&format!("{name}-canary")),
        )
    } else {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    {template}\n---\n{}{ingress}apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  objectRef: {{workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}}}\n  strategy:\n    canary:\n      steps: [{{weight: 20, pause: {{}}}}, {{weight: 100}}]\n      trafficRoutings: [{{service: {name}, ingress: {{name: {name}}}}}]\n---\n",
            service(&name),
        )
    }
}

/// The resource the engine's Rollouts are.
fn rollouts_resource(engine: &str) -> &'static str {
    if engine == "argo" {
        "rollouts.argoproj.io"
    } else {
        "rollouts.v1alpha1.rollouts.kruise.io"
    }
}

/// The process the engine runs as.
fn process_name(engine: &str) -> &'static str {
    match engine {
        "argo" => "argo-rollouts",
        "kruise" => "kruise-rollout",
        _ => "sluice-controller",
    }
}

const RESOURCES_KRUISE: &[&str] = &[
    "rollouts.v1alpha1.rollouts.kruise.io",
    "deployments.apps",
    "ingresses.networking.k8s.io",
];
const RESOURCES_ARGO: &[&str] = &["rollouts.argoproj.io", "ingresses.networking.k8s.io"];

fn key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The moments the measures need: a template changed to v2 (`changed:`), a
/// canary route at 20% (`w20:`) and at 100% (`w100:`), an approval seen
/// (`approved:`), keyed by the Rollout's namespace/name.
fn markers(resource: &str, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match resource {
        "deployments.apps" | "rollouts.argoproj.io"
            if object["spec"]["template"]["spec"]["containers"][0]["image"] == "demo:v2" =>
        {
            out.push(format!("changed:{}", key(object)));
        }
        _ => {}
    }
    if resource == "ingresses.networking.k8s.io" {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let weight =
            &object["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"];
        if let Some(base) = name
            .strip_suffix("-canary")
            .and_then(|n| n.split('-').next())
        {
            let rollout = format!(
                "{}/{base}",
                object["metadata"]["namespace"].as_str().unwrap_or("")
            );
            match weight.as_str() {
                Some("20") => out.push(format!("w20:{rollout}")),
                Some("100") => out.push(format!("w100:{rollout}")),
                _ => {}
            }
        }
    }
    if resource == "rollouts.v1alpha1.rollouts.kruise.io"
        && object["status"]["canaryStatus"]["currentStepIndex"] == 1
        && object["status"]["canaryStatus"]["currentStepState"] == "StepReady"
    {
        out.push(format!("approved:{}", key(object)));
    }
    // Argo's pause step is index 1: the controller paused it (`controllerPause`)
    // and the pause conditions were cleared, which is what `promote` does.
    if resource == "rollouts.argoproj.io"
        && object["status"]["currentStepIndex"] == 1
        && object["status"]["pauseConditions"].is_null()
        && object["status"]["controllerPause"] == true
    {
        out.push(format!("approved:{}", key(object)));
    }
    out
}

/// A release waits at its first pause for an approval.
fn paused_at_step_1(engine: &str, rollout: &Value) -> bool {
    let status = &rollout["status"];
    if engine == "argo" {
        status["currentStepIndex"] == 1
            && status["pauseConditions"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
    } else {
        status["phase"] == "Progressing"
            && status["canaryStatus"]["currentStepIndex"] == 1
            && status["canaryStatus"]["currentStepState"] == "StepPaused"
    }
}

/// A process's CPU seconds (user + system) and peak RSS in MiB, from /proc.
fn usage(pid: u32, ticks_per_s: f64) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command (which may hold spaces) start after its ')'.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'.
    let ticks: f64 = fields
        .get(11..13)
        .context("/proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok((ticks / ticks_per_s, hwm_kib / 1024.0))
}

/// The kernel's clock ticks per second (the unit of /proc/PID/stat's times).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `kubectl create -f` of a long YAML stream, in chunks, a few at once.
fn create_all(kubeconfig: &Path, docs: Vec<String>) -> anyhow::Result<()> {
    let kubectl = cluster::Kubectl::at(kubeconfig.to_path_buf());
    let chunks: Vec<String> = docs.chunks(400).map(|c| c.concat()).collect();
    for batch in chunks.chunks(4) {
        std::thread::scope(|s| {
            let runs: Vec<_> = batch
                .iter()
                .map(|chunk| s.spawn(|| kubectl.run_input(&["create", "-f", "-"], chunk)))
                .collect();
            runs.into_iter()
                .try_for_each(|r| r.join().expect("a kubectl thread").map(drop))
        })?;
    }
    Ok(())
}

/// The same PATCH sent to every URL at once (curl, many connections in
/// parallel): the wave of releases or of approvals.
fn patch_all(
    access: &cluster::AdminAccess,
    urls: &[String],
    kind: &str,
    body: &str,
) -> anyhow::Result<()> {
    for chunk in urls.chunks(2000) {
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--show-error", "--fail-with-body", "--parallel"])
            .args(["--parallel-max", "32"])
            .arg("--cacert")
            .arg(&access.ca)
            .arg("--cert")
            .arg(&access.cert)
            .arg("--key")
            .arg(&access.key)
            .args(["-X", "PATCH", "-H", &format!("Content-Type: {kind}")])
            // One body, sent to every URL that follows.
            .args(["--data", body])
            .args(chunk)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.spawn().context("running curl")?.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "curl PATCH failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until `done` is true, printing progress; false at the deadline.
fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> (usize, usize)) -> bool {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (have, want) = done();
        if have >= want {
            return true;
        }
        if start.elapsed() > limit {
            eprintln!(
                "xtask: scale: {what}: {have}/{want} after {:.0}s, going on",
                limit.as_secs_f64()
            );
            return false;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!("xtask: scale: {what}: {have}/{want}");
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The engine's API requests in the audit log between two times (RFC 3339), by
/// verb; the engine is told by its user (Sluice's ServiceAccount) or its
/// user agent (the peers run with the admin's certificate).
fn requests_by_verb(engine: &str, from: &str, to: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    use std::io::BufRead as _;
    let log = std::fs::File::open(cluster::audit_log()?).context("reading the audit log")?;
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(log).lines() {
        let Ok(e) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if e["stage"] != "ResponseComplete" && e["stage"] != "ResponseStarted" {
            continue;
        }
        // A watch is counted once, when it starts.
        if e["stage"] == "ResponseComplete" && e["verb"] == "watch" {
            continue;
        }
        let at = e["requestReceivedTimestamp"].as_str().unwrap_or("");
        if at < from || at > to {
            continue;
        }
        let user = e["user"]["username"].as_str().unwrap_or("");
        let agent = e["userAgent"].as_str().unwrap_or("").to_ascii_lowercase();
        let mine = match engine {
            "sluice" => user == "system:serviceaccount:sluice-system:sluice-controller",
            "kruise" => agent.starts_with("kruise-rollout"),
            _ => agent.starts_with("rollouts-controller") || agent.starts_with("argo-rollouts"),
        };
        if mine {
            *out.entry(e["verb"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    Ok(out)
}

fn now_rfc3339() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One engine at one size.
fn measure(engine: &str, n: usize, idle: Duration, ticks_per_s: f64) -> anyhow::Result<Value> {
    eprintln!("xtask: scale: {engine}, {n} Rollouts: a fresh control plane …");
    let nodes = u32::try_from(n.div_ceil(1500).max(3)).unwrap_or(3);
    // Sluice as shipped: a release build, as the peers' are optimised Go.
    let kubeconfig = cluster::engine_up(engine, nodes, true)?;
    if engine == "sluice" {
        // The traffic gateway stands in for ingress-nginx, which the peers' runs
        // have no counterpart of: not measured, not running.
        cluster::stop_process("sluice-gateway")?;
    }
    let access = cluster::admin_access()?;
    let store = watch::Store::with_markers(markers);
    let resources = if engine == "argo" {
        RESOURCES_ARGO
    } else {
        RESOURCES_KRUISE
    };
    let _watches = watch::start(kubeconfig.clone(), &store, resources)?;
    let namespaces = n.div_ceil(PER_NAMESPACE);
    let ns_docs: Vec<String> = (0..namespaces)
        .map(|k| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: scale-{k}}}\n---\n"))
        .collect();
    create_all(&kubeconfig, ns_docs)?;
    let created = Instant::now();
    create_all(&kubeconfig, (0..n).map(|i| objects(engine, i)).collect())?;
    eprintln!(
        "xtask: scale: {engine}: {n} Rollouts created in {:.0}s",
        created.elapsed().as_secs_f64()
    );
    let rollouts = rollouts_resource(engine);
    let healthy = |v: &Value| v["status"]["phase"] == "Healthy";
    let limit = Duration::from_secs(300 + (n as u64) / 5);
    let all_healthy = wait("Rollouts healthy", limit, || {
        (store.count(rollouts, healthy), n)
    });
    let first_ready_s = created.elapsed().as_secs_f64();
    let pid = cluster::pid_of(process_name(engine)).context("the engine's process is gone")?;

    // Idle.
    let (cpu0, _) = usage(pid, ticks_per_s)?;
    std::thread::sleep(idle);
    let (cpu1, _) = usage(pid, ticks_per_s)?;
    let cpu_idle_per_min = (cpu1 - cpu0) / idle.as_secs_f64() * 60.0;

    // The wave: every template changed at once, then every Rollout approved.
    let wave_from = now_rfc3339();
    let (cpu_w0, _) = usage(pid, ticks_per_s)?;
    let wave_started = Instant::now();
    let image =
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"demo:v2"}]}}}}"#;
    // What each engine releases: Argo's Rollout holds the template, the others'
    // Deployment does.
    let (path, kind) = if engine == "argo" {
        ("apis/argoproj.io/v1alpha1", "application/merge-patch+json")
    } else {
        ("apis/apps/v1", "application/strategic-merge-patch+json")
    };
    let workloads = if engine == "argo" {
        "rollouts"
    } else {
        "deployments"
    };
    let url = |api: &str, plural: &str, i: usize, tail: &str| {
        format!(
            "{}/{api}/namespaces/{}/{plural}/r{i}{tail}",
            access.server,
            namespace(i)
        )
    };
    let urls: Vec<String> = (0..n).map(|i| url(path, workloads, i, "")).collect();
    patch_all(&access, &urls, kind, image)?;
    let keys: Vec<String> = (0..n).map(|i| format!("{}/r{i}", namespace(i))).collect();
    let reached = |prefix: &str| {
        keys.iter()
            .filter(|k| store.first_seen(&format!("{prefix}:{k}")).is_some())
            .count()
    };
    let all_at_20 = wait("canaries at 20%", limit, || (reached("w20"), n));
    let all_paused = wait("releases waiting for approval", limit, || {
        (store.count(rollouts, |v| paused_at_step_1(engine, v)), n)
    });
    // Only those that wait are approved: an approval of a step not yet paused
    // is none (Kruise's and Sluice's drop it; Argo's would skip the pause).
    let waiting: Vec<usize> = (0..n)
        .filter(|&i| {
            store.is(rollouts, &namespace(i), &format!("r{i}"), |v| {
                paused_at_step_1(engine, v)
            })
        })
        .collect();
    let (api, approve_body) = if engine == "argo" {
        // What `kubectl argo rollouts promote` sends for a pause step.
        (
            "apis/argoproj.io/v1alpha1",
            r#"{"status":{"pauseConditions":null}}"#,
        )
    } else {
        (
            "apis/rollouts.kruise.io/v1alpha1",
            r#"{"status":{"canaryStatus":{"currentStepState":"StepReady"}}}"#,
        )
    };
    let approve_urls: Vec<String> = waiting
        .iter()
        .map(|&i| url(api, "rollouts", i, "/status"))
        .collect();
    patch_all(
        &access,
        &approve_urls,
        "application/merge-patch+json",
        approve_body,
    )?;
    let all_at_100 = wait("canaries at 100%", limit, || (reached("w100"), n));
    let all_done = wait("Rollouts healthy again", limit, || {
        (store.count(rollouts, healthy), n)
    });
    let wave_s = wave_started.elapsed().as_secs_f64();
    let (cpu_w1, rss_peak) = usage(pid, ticks_per_s)?;
    let wave_to = now_rfc3339();

    let mut react: Vec<f64> = Vec::new();
    let mut approve: Vec<f64> = Vec::new();
    for k in &keys {
        if let (Some(a), Some(b)) = (
            store.first_seen(&format!("changed:{k}")),
            store.first_seen(&format!("w20:{k}")),
        ) {
            react.push(b.saturating_duration_since(a).as_secs_f64() * 1000.0);
        }
        if let (Some(a), Some(b)) = (
            store.first_seen(&format!("approved:{k}")),
            store.first_seen(&format!("w100:{k}")),
        ) {
            approve.push(b.saturating_duration_since(a).as_secs_f64() * 1000.0);
        }
    }
    react.sort_by(f64::total_cmp);
    approve.sort_by(f64::total_cmp);
    let verbs = requests_by_verb(engine, &wave_from, &wave_to)?;
    let total: u64 = verbs.values().sum();
    let result = json!({
        "engine": engine,
        "version": match engine { "kruise" => "v0.6.2", "argo" => "v1.9.2", _ => env!("CARGO_PKG_VERSION") },
        "rollouts": n,
        "rss_mib": (rss_peak * 10.0).round() / 10.0,
        "cpu_s_idle_per_min": (cpu_idle_per_min * 100.0).round() / 100.0,
        "cpu_s_wave": ((cpu_w1 - cpu_w0) * 100.0).round() / 100.0,
        "wave_s": (wave_s * 10.0).round() / 10.0,
        "api_requests_per_s": ((total as f64 / wave_s) * 10.0).round() / 10.0,
        "api_requests_by_verb": verbs,
        "react_p50_ms": percentile(&react, 50.0).round(),
        "react_p99_ms": percentile(&react, 99.0).round(),
        "approve_p50_ms": percentile(&approve, 50.0).round(),
        "approve_p99_ms": percentile(&approve, 99.0).round(),
        "measured_react": react.len(),
        "measured_approve": approve.len(),
        "created_to_healthy_s": (first_ready_s * 10.0).round() / 10.0,
        "complete": all_healthy && all_at_20 && all_paused && all_at_100 && all_done,
        "nodes": nodes,
        "cores": std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0),
    });
    Ok(result)
}

/// Runs `cargo xtask scale`.
pub fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let root = cluster::Layout::new()?.root;
    for e in &args.engines {
        if !["sluice", "kruise", "argo"].contains(&e.as_str()) {
            bail!("unknown engine `{e}` (sluice, kruise, argo)");
        }
    }
    cluster::build(true)?;
    let ticks_per_s = clock_ticks();
    let out_dir = root.join("target/scale");
    std::fs::create_dir_all(&out_dir)?;
    let results: PathBuf = out_dir.join("results.jsonl");
    for &n in &args.rollouts {
        for engine in &args.engines {
            let result = measure(
                engine,
                n,
                Duration::from_secs(args.idle_seconds),
                ticks_per_s,
            );
            cluster::stop()?;
            let result = result?;
            println!("{result}");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&results)?;
            writeln!(file, "{result}")?;
        }
    }
    eprintln!("xtask: scale: results in {}", results.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn markers_name_the_moments_measured() {
        let ingress = json!({"metadata": {"name": "r7-canary", "namespace": "scale-0",
            "annotations": {"nginx.ingress.kubernetes.io/canary-weight": "20"}}});
        assert_eq!(
            markers("ingresses.networking.k8s.io", &ingress),
            ["w20:scale-0/r7"]
        );
        // Argo names its canary Ingress <rollout>-<ingress>-canary.
        let argo = json!({"metadata": {"name": "r7-r7-canary", "namespace": "scale-0",
            "annotations": {"nginx.ingress.kubernetes.io/canary-weight": "100"}}});
        assert_eq!(
            markers("ingresses.networking.k8s.io", &argo),
            ["w100:scale-0/r7"]
        );
        let released = json!({"metadata": {"name": "r7", "namespace": "scale-0"},
            "spec": {"template": {"spec": {"containers": [{"image": "demo:v2"}]}}}});
        assert_eq!(
            markers("deployments.apps", &released),
            ["changed:scale-0/r7"]
        );
    }

    #[test]
    fn every_engine_gets_valid_yaml() {
        for engine in ["sluice", "kruise", "argo"] {
            for doc in serde_yaml_ng::Deserializer::from_str(&objects(engine, 3)) {
                let v = <Value as serde::Deserialize>::deserialize(doc).expect("yaml");
                if v.is_null() {
                    continue;
                }
                assert_eq!(v["metadata"]["namespace"], "scale-0", "{engine}: {v}");
            }
        }
    }
}
