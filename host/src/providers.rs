//! Metric providers: the Prometheus-compatible HTTP APIs a module's `metrics` queries
//! go to. The host makes the call, bounds its time and size, and caches each answer
//! for the rest of the reconcile.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::strategy::{MetricsError, MetricsSource};

/// Largest answer read from a provider.
const MAX_BODY: usize = 1 << 20;

/// A configured provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The name modules query it by.
    pub name: String,
    /// Base URL of its HTTP API, e.g. `http://prometheus:9090`.
    pub url: String,
    /// How long one query may take.
    pub timeout: Duration,
    /// A bearer token for it.
    pub token: Option<String>,
}

impl FromStr for ProviderConfig {
    type Err = String;

    /// `NAME=URL`, as the command line writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: write NAME=URL, e.g. prometheus=http://prometheus:9090")
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "{s:?}: the URL must start with http:// or https://"
            ));
        }
        Ok(ProviderConfig {
            name: name.trim().to_owned(),
            url: url.trim().trim_end_matches('/').to_owned(),
            timeout: Duration::from_secs(2),
            token: None,
        })
    }
}

/// Answers one reconcile's metric queries, each at most once.
pub struct ProviderMetrics {
    providers: Arc<Vec<ProviderConfig>>,
    runtime: tokio::runtime::Handle,
    cache: Mutex<HashMap<(String, String), Result<f64, MetricsError>>>,
}

impl ProviderMetrics {
    /// Queries for one reconcile, run on `runtime` (the caller blocks: modules run on
    /// blocking threads).
    pub fn new(providers: Arc<Vec<ProviderConfig>>, runtime: tokio::runtime::Handle) -> Self {
        ProviderMetrics {
            providers,
            runtime,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl MetricsSource for ProviderMetrics {
    fn query(&self, provider: &str, query: &str) -> Result<f64, MetricsError> {
        let key = (provider.to_owned(), query.to_owned());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return hit.clone();
        }
        let answer = match self.providers.iter().find(|p| p.name == provider) {
            None => Err(MetricsError::Failed(format!(
                "no metric provider `{provider}` is configured for the controller"
            ))),
            Some(p) => self.runtime.block_on(instant_query(p, query)),
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, answer.clone());
        answer
    }
}

/// One instant query against Prometheus' HTTP API: the single (or first) value.
pub async fn instant_query(provider: &ProviderConfig, query: &str) -> Result<f64, MetricsError> {
    let encoded: String = url_encode(query);
    let url = format!("{}/api/v1/query?query={encoded}", provider.url);
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::get(&url);
    if let Some(token) = &provider.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| MetricsError::Failed(e.to_string()))?;
    let call = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| MetricsError::Failed(format!("{}: {e}", provider.name)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                MetricsError::Failed(format!("{}: reading the answer: {e}", provider.name))
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(MetricsError::Failed(format!(
                "{} answered {status}: {}",
                provider.name,
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        parse_answer(&body)
    };
    tokio::time::timeout(provider.timeout, call)
        .await
        .map_err(|_| {
            MetricsError::Failed(format!(
                "{} did not answer within {:?}",
                provider.name, provider.timeout
            ))
        })?
}

/// The value of a Prometheus query answer: a scalar, or the first sample of a vector.
pub fn parse_answer(body: &[u8]) -> Result<f64, MetricsError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| MetricsError::Failed(format!("not a Prometheus answer: {e}")))?;
    if v["status"] != "success" {
        return Err(MetricsError::Failed(format!(
            "query failed: {}",
            v["error"].as_str().unwrap_or("unknown error")
        )));
    }
    let value = match v.pointer("/data/resultType").and_then(Value::as_str) {
        Some("scalar") => v.pointer("/data/result/1").cloned(),
        Some("vector") => v.pointer("/data/result/0/value/1").cloned(),
        other => {
            return Err(MetricsError::Failed(format!(
                "unsupported result type {other:?}; query for a scalar or a vector"
            )));
        }
    };
    let Some(value) = value else {
        return Err(MetricsError::NoData);
    };
    let number: f64 = value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| MetricsError::Failed(format!("not a number: {value}")))?;
    if number.is_nan() {
        return Err(MetricsError::NoData);
    }
    Ok(number)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.97"]}]}}"#;
        assert_eq!(parse_answer(vector), Ok(0.97));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(empty), Err(MetricsError::NoData));
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(parse_answer(nan), Err(MetricsError::NoData));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert_eq!(parse_answer(scalar), Ok(2.0));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            matches!(parse_answer(error), Err(MetricsError::Failed(m)) if m.contains("parse error"))
        );
    }

    #[test]
    fn provider_flags() {
        let p: ProviderConfig = "prometheus=http://127.0.0.1:9090/".parse().unwrap();
        assert_eq!(
            (p.name.as_str(), p.url.as_str()),
            ("prometheus", "http://127.0.0.1:9090")
        );
        assert!("prometheus".parse::<ProviderConfig>().is_err());
        assert!("p=ftp://x".parse::<ProviderConfig>().is_err());
        assert_eq!(url_encode("rate(x[1m])"), "rate%28x%5B1m%5D%29");
    }
}
