//! End-to-end: two `sluice controller` processes against one cluster, as the
//! two-replica Deployment in deploy/ runs them. One leads; the standby is Ready
//! (so the controller's own rolling update goes on); SIGTERM stops the leader
//! gracefully, it releases the lease, and the standby takes over at its next retry
//! instead of waiting for the lease to lapse.

mod support;

use serde_json::Value;
use sluice_testkit::{Daemon, deployment_yaml, http_get};
use support::cluster::Cluster;

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

async fn lease(c: &Cluster) -> Value {
    c.object_in(
        c.lease_namespace(),
        "coordination.k8s.io",
        "leases",
        "sluice-controller",
    )
    .await
    .unwrap_or(Value::Null)
}

async fn holder(c: &Cluster) -> Option<String> {
    lease(c)
        .await
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

async fn rollout_field(c: &Cluster, pointer: &str) -> Option<Value> {
    c.object("rollouts.kruise.io", "rollouts", "echo")
        .await
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
    let pending = Cluster::prepare().await;
    // On a real cluster, no Lease of an earlier test's controller: this one counts
    // its transitions from none.
    pending.forget_controller_state().await;
    let c = pending.without_controller();
    sluice::local::install_crds(&c.client).await.expect("CRDs");

    let a = c.controller_process("replica-a").await;
    c.until("replica-a leads", || async {
        holder(&c).await.as_deref() == Some("replica-a")
    })
    .await;
    let b = c.controller_process("replica-b").await;
    assert_eq!(readyz(&a).await, 200, "the leader is Ready:\n{}", a.log());
    assert_eq!(readyz(&b).await, 200, "the standby is Ready:\n{}", b.log());

    // The leader does the work; the standby stands by.
    c.apply(&deployment_yaml("echo", "barnett/canarydemo:v1", 3))
        .await;
    c.apply(
        "apiVersion: rollouts.kruise.io/v1alpha1\nkind: Rollout\nmetadata: {name: echo}\nspec:\n  objectRef: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echo}}\n  strategy: {canary: {steps: [{replicas: 1, pause: {}}]}}\n",
    )
    .await;
    c.until("the leader makes the Rollout healthy", || async {
        rollout_field(&c, "/status/phase").await == Some(Value::from("Healthy"))
    })
    .await;
    assert_eq!(holder(&c).await.as_deref(), Some("replica-a"));

    // SIGTERM: a graceful stop that gives the lease up.
    let held = lease(&c).await;
    let (status, log) = terminate(a).await;
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("released the lease"), "{log}");
    // The Lease is not in the test's namespace: its change wakes nothing here,
    // and the wait's one-second look sees it.
    c.until("replica-b takes over", || async {
        holder(&c).await.as_deref() == Some("replica-b")
    })
    .await;
    // It took over because the lease was released, not because it lapsed: it
    // acquired the lease before the leader's last renewal ran out.
    let taken = lease(&c).await;
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
    c.apply(&deployment_yaml("echo", "barnett/canarydemo:v2", 3))
        .await;
    c.until("the new leader pauses the release at step 1", || async {
        rollout_field(&c, "/status/canaryStatus/currentStepState").await
            == Some(Value::from("StepPaused"))
    })
    .await;
    let (status, log) = terminate(b).await;
    assert!(status.success(), "{status}:\n{log}");
}

/// Told to stop as soon as it starts — before its watches have filled its caches
/// — a controller without leader election stops all the same (within its grace),
/// instead of waiting for caches that no longer fill.
#[tokio::test]
async fn a_controller_stopped_as_soon_as_it_starts_stops() {
    let mut c = Cluster::start().await;
    c.stop_controller().await;
}
