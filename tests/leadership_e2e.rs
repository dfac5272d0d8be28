//! End-to-end: two `sluice controller` processes against one cluster, as the
//! two-replica Deployment in deploy/ runs them. One leads; the standby is Ready
//! (so the controller's own rolling update goes on); SIGTERM stops the leader
//! gracefully, it releases the lease, and the standby takes over at its next retry
//! instead of waiting for the lease to lapse.

use std::path::Path;

use serde_json::Value;
use sluice_sim::Sim;
use sluice_sim::store::ResKey;
use sluice_testkit::{Daemon, apply, deployment_yaml, http_get, until};

/// Starts a `sluice controller` process with this identity; ready once it serves
/// its probes (on a port it chose, which its log names).
async fn replica(kubeconfig: &Path, identity: &str) -> Daemon {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["--log-format", "json", "controller", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--metrics-addr", "127.0.0.1:0", "--identity", identity])
        .args(["--lease-namespace", "default"])
        // The simulated API server is on this machine: it calls the webhooks here.
        .args([
            "--webhook-host",
            "127.0.0.1",
            "--webhook-addr",
            "127.0.0.1:0",
        ])
        .env("SLUICE_LOG", "sluice=info")
        .env_remove("KUBECONFIG");
    Daemon::start(
        command,
        identity,
        // The line saying where the probes are served (its fields in either order).
        r#"serving /metrics.*"addr":"(127\.0\.0\.1:\d+)"|"addr":"(127\.0\.0\.1:\d+)".*serving /metrics"#,
        "the sluice binary is built by cargo test",
    )
    .await
}

/// The HTTP status of a replica's `/readyz`.
async fn readyz(replica: &Daemon) -> u16 {
    http_get(&format!("http://{}/readyz", replica.addr)).await.0
}

/// Sends SIGTERM, as the kubelet does to stop a container; the exit and the log.
async fn terminate(replica: Daemon) -> (std::process::ExitStatus, String) {
    let pid = replica.pid().expect("running");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    replica.wait().await
}

fn lease(sim: &Sim) -> Value {
    sim.store()
        .get(
            &ResKey::new("coordination.k8s.io", "leases"),
            "default",
            "sluice-controller",
        )
        .map(|l| (*l).clone())
        .unwrap_or(Value::Null)
}

fn holder(sim: &Sim) -> Option<String> {
    lease(sim)
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn rollout_field(sim: &Sim, pointer: &str) -> Option<Value> {
    sim.store()
        .get(
            &ResKey::new("rollouts.kruise.io", "rollouts"),
            "default",
            "echo",
        )
        .and_then(|r| r.pointer(pointer).cloned())
}

/// Unix milliseconds of a lease's time field.
fn millis(lease: &Value, field: &str) -> i64 {
    let text = lease
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("lease without {field}: {lease}"));
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{field} {text}: {e}"))
        .as_millisecond()
}

#[tokio::test]
async fn a_standby_is_ready_and_takes_over_when_the_leader_gets_sigterm() {
    let sim = sluice_testkit::sim().await;
    let client = sluice_testkit::client(&sim);
    sluice::local::install_crds(&client).await.expect("CRDs");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");

    let a = replica(&kubeconfig, "replica-a").await;
    until(&sim, "replica-a leads", || async {
        holder(&sim).as_deref() == Some("replica-a")
    })
    .await;
    let b = replica(&kubeconfig, "replica-b").await;
    assert_eq!(readyz(&a).await, 200, "the leader is Ready:\n{}", a.log());
    assert_eq!(readyz(&b).await, 200, "the standby is Ready:\n{}", b.log());

    // The leader does the work; the standby stands by.
    apply(
        &client,
        &deployment_yaml("echo", "barnett/canarydemo:v1", 3),
    )
    .await;
    apply(
        &client,
        "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: echo}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}\n  strategy: {canary: {steps: [{replicas: 1, pause: {}}]}}\n",
    )
    .await;
    until(&sim, "the leader makes the Rollout healthy", || async {
        rollout_field(&sim, "/status/phase") == Some(Value::from("Healthy"))
    })
    .await;
    assert_eq!(holder(&sim).as_deref(), Some("replica-a"));

    // SIGTERM: a graceful stop that gives the lease up.
    let held = lease(&sim);
    let (status, log) = terminate(a).await;
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("released the lease"), "{log}");
    until(&sim, "replica-b takes over", || async {
        holder(&sim).as_deref() == Some("replica-b")
    })
    .await;
    // It took over because the lease was released, not because it lapsed: it
    // acquired the lease before the leader's last renewal ran out.
    let taken = lease(&sim);
    let lapse = millis(&held, "renewTime")
        + 1000
            * held["spec"]["leaseDurationSeconds"]
                .as_i64()
                .expect("duration");
    assert!(
        millis(&taken, "acquireTime") < lapse,
        "taken at {} ms, the old lease ran to {lapse} ms",
        millis(&taken, "acquireTime")
    );
    assert_eq!(taken["spec"]["leaseTransitions"], 1);

    // The new leader does the work: a release reaches its first pause.
    apply(
        &client,
        &deployment_yaml("echo", "barnett/canarydemo:v2", 3),
    )
    .await;
    until(
        &sim,
        "the new leader pauses the release at step 1",
        || async {
            rollout_field(&sim, "/status/canaryStatus/currentStepState")
                == Some(Value::from("StepPaused"))
        },
    )
    .await;
    let (status, log) = terminate(b).await;
    assert!(status.success(), "{status}:\n{log}");
}
