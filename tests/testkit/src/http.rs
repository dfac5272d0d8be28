//! Plain HTTP calls a test makes: to the gateway, to /metrics, to a probe.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A GET: (status, body). Fails the test when no answer comes.
pub async fn http_get(url: &str) -> (u16, String) {
    http_get_with(url, &[]).await
}

/// A GET with headers: (status, body). Fails the test when no answer comes.
pub async fn http_get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).expect("a request"))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A GET with a Host header; the status, 0 when the request failed (traffic
/// generators keep going through a failure).
pub async fn http_get_host(url: &str, host: &str) -> u16 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(request) = hyper::Request::get(url)
        .header("host", host)
        .body(Full::new(Bytes::new()))
    else {
        return 0;
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}
