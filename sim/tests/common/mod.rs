//! Helpers for the simulator's tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use sluice_sim::{PodBehaviour, Sim, SimConfig};

/// A simulator whose pods are ready 20 ms after creation.
pub async fn sim() -> Sim {
    Sim::start(SimConfig {
        pods: PodBehaviour {
            ready_delay: Duration::from_millis(20),
            restart_every: Duration::from_millis(50),
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A kube client for the simulator.
pub fn client(sim: &Sim) -> kube::Client {
    let config = kube::Config::new(sim.api_url().parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

/// Waits until `check` holds, re-checking after every change in the store; fails the
/// test after `limit` (a safety net, not a synchronisation).
pub async fn until<F, Fut>(sim: &Sim, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut events = sim.store().subscribe();
    let limit = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if check().await {
            return;
        }
        tokio::select! {
            _ = events.recv() => {}
            () = tokio::time::sleep_until(limit) => panic!("timed out waiting until {what}"),
        }
    }
}

/// An HTTP GET with headers; returns (status, body).
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
