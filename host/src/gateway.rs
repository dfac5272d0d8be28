//! `sluice gateway`: the traffic gateway beside any API server. It keeps a
//! [`Mirror`] of the cluster's Ingresses, HTTPRoutes, Services, EndpointSlices and
//! Pods from watches, and routes by it as the simulator's gateway routes by its
//! store: ingress-nginx's canary annotations and HTTPRoute weights, to the ready
//! endpoints of a Service, whose pods answer per image.
//!
//! It stands in for an ingress controller and the application where there is no
//! node network (KWOK pods run nothing): it measures what a real ingress
//! controller would do with the objects Sluice writes, not what one does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use sluice_sim::gateway::{Mirror, Synced};
use sluice_sim::store::ResKey;

/// The kinds the gateway routes by: (group, version, kind, plural).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
    ("", "v1", "Service", "services"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    ("", "v1", "Pod", "pods"),
];

/// How long a client may wait for the view to catch up.
const SYNC_LIMIT: Duration = Duration::from_secs(30);

/// The cluster's objects as the gateway sees them, kept from watches.
pub struct ClusterView {
    mirror: Arc<Mirror>,
    apis: Vec<(ResKey, Api<DynamicObject>)>,
}

impl ClusterView {
    /// Starts watching the kinds the gateway routes by, in `namespace` or all.
    pub fn start(client: kube::Client, namespace: Option<&str>) -> Arc<ClusterView> {
        let mirror = Mirror::new();
        let mut apis = Vec::new();
        for (group, version, kind, plural) in KINDS {
            let mut resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            resource.plural = (*plural).to_owned();
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let res = ResKey::new(group, plural);
            tokio::spawn(keep(mirror.clone(), res.clone(), api.clone()));
            apis.push((res, api));
        }
        Arc::new(ClusterView { mirror, apis })
    }

    /// The mirror the gateway routes by.
    pub fn mirror(&self) -> Arc<Mirror> {
        self.mirror.clone()
    }

    /// Whether every kind in the mirror is as a fresh (quorum) list says now: the
    /// same objects at the same resourceVersions.
    async fn caught_up(&self) -> Result<bool, String> {
        for (res, api) in &self.apis {
            let listed: BTreeMap<(String, String), String> =
                match api.list_metadata(&ListParams::default()).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .map(|o| {
                            (
                                (
                                    o.metadata.namespace.unwrap_or_default(),
                                    o.metadata.name.unwrap_or_default(),
                                ),
                                o.metadata.resource_version.unwrap_or_default(),
                            )
                        })
                        .collect(),
                    // A kind the cluster does not serve (no Gateway API CRDs).
                    Err(kube::Error::Api(e)) if e.code == 404 => BTreeMap::new(),
                    Err(e) => return Err(format!("listing {}: {e}", res.plural)),
                };
            if listed != self.mirror.versions(res) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Synced for ClusterView {
    fn synced(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + SYNC_LIMIT;
            let mut changed = self.mirror.changed();
            let mut unsettled = Vec::new();
            loop {
                changed.mark_unchanged();
                if self.caught_up().await? {
                    // And the EndpointSlices say what the pods do: a pod that
                    // became ready (or went) is routed to (or not) as it is now.
                    unsettled = sluice_sim::gateway::unsettled_services(self.mirror.as_ref());
                    if unsettled.is_empty() {
                        return Ok(());
                    }
                }
                // Changed since the list, or about to: look again after the next
                // change, or shortly (a watch restarting replays nothing new).
                tokio::select! {
                    _ = changed.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = tokio::time::sleep_until(deadline) => {
                        return Err(if unsettled.is_empty() {
                            format!(
                                "the gateway's view did not catch up with the API server in {}s",
                                SYNC_LIMIT.as_secs()
                            )
                        } else {
                            format!(
                                "the EndpointSlices of {} did not list their ready pods in {}s",
                                unsettled.join(", "),
                                SYNC_LIMIT.as_secs()
                            )
                        });
                    }
                }
            }
        })
    }
}

/// Keeps one kind in the mirror for as long as the process runs.
async fn keep(mirror: Arc<Mirror>, res: ResKey, api: Api<DynamicObject>) {
    let mut relist: Vec<serde_json::Value> = Vec::new();
    let mut reported = false;
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let json = |o: DynamicObject| serde_json::to_value(o).unwrap_or_default();
        match event {
            Ok(watcher::Event::Apply(o)) => mirror.put(&res, json(o)),
            Ok(watcher::Event::Delete(o)) => mirror.remove(&res, &json(o)),
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(o)) => relist.push(json(o)),
            Ok(watcher::Event::InitDone) => {
                mirror.replace(&res, std::mem::take(&mut relist));
                reported = false;
            }
            Err(e) => {
                // A kind the cluster does not serve keeps failing: say it once.
                if !reported {
                    tracing::warn!(kind = %res.plural, error = %e, "cannot watch; routing without it until it can");
                    reported = true;
                }
            }
        }
    }
}
