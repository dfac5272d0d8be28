//! Leader election on a `coordination.k8s.io` Lease, so two replicas can run and only
//! one reconciles.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::clock::Clock;

/// Where the Lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How long the holder goes on trying to renew before it stops leading: shorter
    /// than `duration`, so it has stopped before another replica may take over.
    pub renew_deadline: Duration,
    /// How often the holder renews, and a standby tries to take the lease.
    pub retry_period: Duration,
    /// The clock lease times are read from and written with.
    pub clock: Arc<dyn Clock>,
}

impl LeaseConfig {
    /// A lease named `name` in `namespace` for `identity`, with Kubernetes' usual
    /// timings (those of kube-controller-manager: 15 s, 10 s, 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            clock: crate::clock::system(),
        }
    }

    /// Checks the timings hold together: retry < renew deadline < duration.
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period >= self.renew_deadline || self.renew_deadline >= self.duration {
            return Err(format!(
                "lease timings: the retry period ({:?}) must be shorter than the renew deadline ({:?}), and that shorter than the lease duration ({:?})",
                self.retry_period, self.renew_deadline, self.duration
            ));
        }
        Ok(())
    }
}

/// Tries once to take or renew the lease; true when we hold it afterwards.
pub async fn try_acquire(client: &kube::Client, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let now = MicroTime(config.clock.now());
    let seconds = i32::try_from(config.duration.as_secs()).unwrap_or(15);
    match leases.get_opt(&config.name).await? {
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": config.name, "namespace": config.namespace},
                "spec": {"holderIdentity": config.identity, "leaseDurationSeconds": seconds,
                         "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
            }))
            .map_err(kube::Error::SerdeError)?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            let expired = renewed.as_millisecond() + held_for * 1000 <= now.0.as_millisecond();
            if holder != config.identity && !expired && !holder.is_empty() {
                return Ok(false);
            }
            let mut new_spec = spec.clone();
            if holder != config.identity {
                new_spec.acquire_time = Some(now.clone());
                new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            new_spec.holder_identity = Some(config.identity.clone());
            new_spec.renew_time = Some(now);
            new_spec.lease_duration_seconds = Some(seconds);
            lease.spec = Some(new_spec);
            // The resourceVersion in `lease` makes this a compare-and-swap.
            match leases
                .replace(&config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: &kube::Client, config: &LeaseConfig) {
    loop {
        match try_acquire(client, config).await {
            Ok(true) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
                return;
            }
            Ok(false) => tracing::debug!(lease = %config.name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// Renews the lease until it is lost, or not renewed within the renew deadline;
/// returns then, and the caller must stop writing.
pub async fn keep(client: &kube::Client, config: &LeaseConfig) {
    let mut last_renewal = config.clock.now_ms();
    let deadline = u64::try_from(config.renew_deadline.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(config.retry_period).await;
        let attempt = tokio::time::timeout(config.renew_deadline, try_acquire(client, config));
        match attempt.await {
            Ok(Ok(true)) => last_renewal = config.clock.now_ms(),
            Ok(Ok(false)) => {
                tracing::error!(lease = %config.name, "lost the lease to another replica");
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed"),
            Err(_) => tracing::warn!("renewing the lease timed out"),
        }
        if config.clock.now_ms().saturating_sub(last_renewal) >= deadline {
            tracing::error!(lease = %config.name, "could not renew the lease within its renew deadline; stopping");
            return;
        }
    }
}

/// Gives the lease up if this replica holds it, so a standby takes over at once
/// instead of after the lease's duration.
pub async fn release(client: &kube::Client, config: &LeaseConfig) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let Some(mut lease) = leases.get_opt(&config.name).await? else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(config.clock.now()));
    lease.spec = Some(spec);
    match leases
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        // Someone else changed it meanwhile: it is not ours to release any more.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}
