//! Traffic routing: how a step's share of traffic (and its header and cookie
//! matches) reaches the canary. Each router is one [`Router`] in its own file —
//! NGINX Ingress, Gateway API HTTPRoute — registered in [`ROUTERS`]; the Services both
//! routes send traffic to are in [`services`]. The controller's stages call the trait
//! and never name a router.

pub mod gateway;
pub mod nginx;
pub mod services;

use std::fmt;

use futures::future::BoxFuture;
use kube::core::ApiResource;
use serde_json::Value;

use crate::controller::observed::{Observed, TrafficView};
use crate::controller::write::Write;
use crate::kruise::v1alpha1::{Rollout, TrafficRoutingRef};
use crate::strategy::model::{Percent, Traffic};

/// The routers, in the order they are asked which one a traffic routing names.
pub static ROUTERS: &[&dyn Router] = &[&gateway::Gateway, &nginx::Nginx];

/// A way of routing traffic to the canary.
pub trait Router: Send + Sync + 'static {
    /// Its name, for messages (`nginx`, `gateway`).
    fn name(&self) -> &'static str;
    /// The name of the object a traffic routing gives this router, if the routing
    /// is this router's.
    fn claims(&self, routing: &TrafficRoutingRef) -> Option<String>;
    /// Reads the router's objects for `routing`.
    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        routing: &'a Routing,
    ) -> BoxFuture<'a, Result<Vec<Value>, kube::Error>>;
    /// Objects of this kind the router creates for a Rollout (owned by it), watched
    /// so that a change to them reaches the Rollout.
    fn owned(&self) -> Option<ApiResource> {
        None
    }
    /// The canary's share of traffic applied now.
    fn applied_weight(&self, traffic: &TrafficView, routing: &Routing) -> Option<Percent>;
    /// Whether what is applied now is exactly `wanted`.
    fn is(&self, traffic: &TrafficView, routing: &Routing, wanted: &Traffic) -> bool;
    /// Whether any canary route is applied.
    fn present(&self, traffic: &TrafficView, routing: &Routing) -> bool;
    /// Writes that apply `wanted`.
    fn route(&self, o: &Observed, routing: &Routing, wanted: &Traffic) -> Vec<Write>;
    /// Writes that take the canary route away.
    fn remove(&self, o: &Observed, routing: &Routing) -> Vec<Write>;
}

/// A registered router: a cheap, comparable handle on its [`Router`].
#[derive(Clone, Copy)]
pub struct RouterRef(pub &'static dyn Router);

impl std::ops::Deref for RouterRef {
    type Target = dyn Router;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for RouterRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for RouterRef {}

impl fmt::Debug for RouterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

/// A Rollout's traffic routing, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The stable Service.
    pub service: String,
    /// The canary Service (`<service>-canary`, or the stable one when generation is off).
    pub canary_service: String,
    /// Seconds to wait after each traffic change.
    pub grace_seconds: u32,
    /// The router.
    pub router: RouterRef,
    /// The router's object (the Ingress, the HTTPRoute).
    pub object: String,
}

impl Routing {
    /// The routing of a Rollout, if it routes traffic.
    pub fn of_rollout(rollout: &Rollout) -> Option<Routing> {
        let canary = rollout.spec.strategy.canary.as_ref()?;
        Routing::of(
            &canary.traffic_routings,
            canary.disable_generate_canary_service,
        )
    }

    /// The routing of a Rollout's first traffic routing, if it has one.
    pub fn of(refs: &[TrafficRoutingRef], disable_canary_service: bool) -> Option<Routing> {
        let r = refs.first()?;
        let (router, object) = ROUTERS
            .iter()
            .find_map(|router| router.claims(r).map(|object| (RouterRef(*router), object)))?;
        Some(Routing {
            service: r.service.clone(),
            canary_service: if disable_canary_service {
                r.service.clone()
            } else {
                format!("{}-canary", r.service)
            },
            grace_seconds: r.grace_period_seconds.map_or(3, |g| g.max(0) as u32),
            router,
            object,
        })
    }

    /// The grace period, milliseconds.
    pub fn grace_ms(&self) -> u64 {
        u64::from(self.grace_seconds) * 1000
    }
}
