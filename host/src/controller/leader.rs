//! Leader election on a `coordination.k8s.io` Lease, so two replicas can run and only
//! one reconciles.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::json;

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
    /// How often the holder renews.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// A lease named `name` in `namespace` for `identity`, with the usual timings.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Tries once to take or renew the lease; true when we hold it afterwards.
pub async fn try_acquire(client: &kube::Client, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let now = MicroTime(Timestamp::now());
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
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            let expired = renewed.as_second() + held_for < now.0.as_second();
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
        tokio::time::sleep(config.renew_every).await;
    }
}

/// Renews the lease until it is lost; returns when it is.
pub async fn keep(client: &kube::Client, config: &LeaseConfig) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_acquire(client, config).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %config.name, "lost the lease to another replica");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the lease failed");
                if last_renewal.elapsed() > config.duration {
                    tracing::error!(lease = %config.name, "could not renew the lease in time");
                    return;
                }
            }
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
    spec.renew_time = Some(MicroTime(Timestamp::now()));
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
