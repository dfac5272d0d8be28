//! Metric providers: the Prometheus-compatible HTTP APIs a module's `metrics` queries
//! go to. The operator declares each provider — its URL, its own credentials and CA,
//! and which namespaces may query it. The host makes the call, bounds its time and
//! size, and caches each answer for the rest of the reconcile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use crate::policy::{NamespaceScope, Tenant};
use crate::strategy::{MetricsError, MetricsSource};

/// Largest answer read from a provider.
const MAX_BODY: usize = 1 << 20;

/// Largest token file read.
const MAX_TOKEN: u64 = 16 << 10;

/// A provider as the operator declares it (in the configuration file, or
/// `--metric-provider NAME=URL`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfig {
    /// The name modules query it by.
    pub name: String,
    /// Base URL of its HTTP API, e.g. `https://prometheus.monitoring:9090`.
    pub url: String,
    /// How long one query may take (and never longer than the call's deadline).
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// A file holding the bearer token sent to it (a mounted Secret); read again
    /// whenever it changes. Sent over `https://` only.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign its TLS certificate, beside the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The namespaces whose modules may query it.
    #[serde(default)]
    pub namespaces: NamespaceScope,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration (write 2s, 500ms): {e}"))
    })
}

impl FromStr for ProviderConfig {
    type Err = String;

    /// `NAME=URL`, as the command line writes it: a provider every namespace may
    /// query. Declare providers in the configuration file to grant them to some.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: write NAME=URL, e.g. prometheus=http://prometheus:9090")
        })?;
        let config = ProviderConfig {
            name: name.trim().to_owned(),
            url: url.trim().trim_end_matches('/').to_owned(),
            timeout: default_timeout(),
            token_file: None,
            ca_file: None,
            namespaces: NamespaceScope::all(),
        };
        config.check().map_err(|e| format!("{s:?}: {e}"))?;
        Ok(config)
    }
}

impl ProviderConfig {
    /// Checks the declaration on its own.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("a provider needs a name".into());
        }
        let https = self.url.starts_with("https://");
        if !(https || self.url.starts_with("http://")) {
            return Err(format!(
                "provider {}: the URL must start with http:// or https://",
                self.name
            ));
        }
        if self.token_file.is_some() && !https {
            return Err(format!(
                "provider {}: a token is sent over https:// only; give an https:// URL or no tokenFile",
                self.name
            ));
        }
        if self.ca_file.is_some() && !https {
            return Err(format!(
                "provider {}: caFile is for https:// URLs",
                self.name
            ));
        }
        Ok(())
    }

    /// Whether modules of `tenant` may query this provider.
    pub fn grants(&self, tenant: Tenant<'_>) -> Result<bool, String> {
        self.namespaces.admits(tenant)
    }
}

/// A token file, read again when it changes (Secrets are updated in place).
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, String)>>,
}

impl TokenFile {
    fn read(&self) -> Result<String, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("the token file {}: {e}", self.path.display()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((modified, len, token)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Ok(token.clone());
        }
        if meta.len() > MAX_TOKEN {
            return Err(format!(
                "the token file {} is larger than {MAX_TOKEN} bytes",
                self.path.display()
            ));
        }
        let token = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("the token file {}: {e}", self.path.display()))?
            .trim()
            .to_owned();
        *cached = Some((stamp.0, stamp.1, token.clone()));
        Ok(token)
    }
}

type Client = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One provider, ready to query.
pub struct Provider {
    config: ProviderConfig,
    client: Client,
    token: Option<TokenFile>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.config.name)
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// The controller's providers.
#[derive(Debug, Default)]
pub struct Providers {
    list: Vec<Provider>,
}

impl Providers {
    /// Checks the declarations and builds a client for each, with its own trust.
    pub fn new(configs: Vec<ProviderConfig>) -> Result<Providers, String> {
        let mut list: Vec<Provider> = Vec::new();
        for config in configs {
            config.check()?;
            if list.iter().any(|p| p.config.name == config.name) {
                return Err(format!("provider {} is declared twice", config.name));
            }
            let client = client(config.ca_file.as_deref())
                .map_err(|e| format!("provider {}: {e}", config.name))?;
            let token = config.token_file.clone().map(|path| TokenFile {
                path,
                cached: Mutex::new(None),
            });
            list.push(Provider {
                config,
                client,
                token,
            });
        }
        Ok(Providers { list })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.config.name == name)
    }

    /// The declarations.
    pub fn configs(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.list.iter().map(|p| &p.config)
    }
}

fn client(ca_file: Option<&Path>) -> Result<Client, String> {
    let tls = crate::http::tls_config(ca_file)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HttpClient::builder(TokioExecutor::new()).build(connector))
}

impl Provider {
    /// One instant query against Prometheus' HTTP API: the single (or first) value.
    /// Errors name the provider and what went wrong, never what it answered.
    pub async fn instant_query(&self, query: &str) -> Result<f64, MetricsError> {
        let name = &self.config.name;
        let url = format!(
            "{}/api/v1/query?query={}",
            self.config.url,
            crate::http::percent_encode(query)
        );
        let mut request = hyper::Request::get(&url);
        if let Some(token) = &self.token {
            let token = token.read().map_err(MetricsError::Failed)?;
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| MetricsError::Failed(format!("{name}: {e}")))?;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| {
                MetricsError::Failed(format!("{name}: {}", crate::http::error_text(&e)))
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(MetricsError::Failed(format!("{name} answered {status}")));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| {
                    MetricsError::Failed(format!(
                        "{name}: the answer could not be read or is over {MAX_BODY} bytes"
                    ))
                })?
                .to_bytes();
            parse_answer(&body).map_err(|e| match e {
                MetricsError::Failed(m) => MetricsError::Failed(format!("{name}: {m}")),
                other => other,
            })
        };
        tokio::time::timeout(self.config.timeout, call)
            .await
            .map_err(|_| {
                MetricsError::Failed(format!(
                    "{name} did not answer within {:?}",
                    self.config.timeout
                ))
            })?
    }
}

/// Answers one reconcile's metric queries, each at most once.
pub struct ProviderMetrics {
    providers: Arc<Providers>,
    cache: Mutex<HashMap<(String, String), Result<f64, MetricsError>>>,
}

impl ProviderMetrics {
    /// Queries for one reconcile.
    pub fn new(providers: Arc<Providers>) -> Self {
        ProviderMetrics {
            providers,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ProviderMetrics {
    /// The answers given so far, by query, as the decision log keeps them.
    pub fn answers(&self) -> std::collections::BTreeMap<String, String> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((_, query), answer)| {
                (
                    query.clone(),
                    crate::scenario::replay::record_answer(answer),
                )
            })
            .collect()
    }
}

impl MetricsSource for ProviderMetrics {
    fn query<'a>(
        &'a self,
        provider: &'a str,
        query: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(async move {
            let key = (provider.to_owned(), query.to_owned());
            if let Some(hit) = self
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
            {
                return hit.clone();
            }
            let answer = match self.providers.get(provider) {
                None => Err(MetricsError::Failed(format!(
                    "no metric provider `{provider}` is configured for the controller"
                ))),
                Some(p) => p.instant_query(query).await,
            };
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, answer.clone());
            answer
        })
    }
}

/// The value of a Prometheus query answer: a scalar, or the first sample of a vector.
pub fn parse_answer(body: &[u8]) -> Result<f64, MetricsError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| MetricsError::Failed("the answer is not a Prometheus answer".into()))?;
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("unknown");
        return Err(MetricsError::Failed(format!(
            "the query failed ({})",
            crate::strategy::host_state::truncate(kind, 64)
        )));
    }
    let value = match v.pointer("/data/resultType").and_then(Value::as_str) {
        Some("scalar") => v.pointer("/data/result/1").cloned(),
        Some("vector") => v.pointer("/data/result/0/value/1").cloned(),
        other => {
            return Err(MetricsError::Failed(format!(
                "unsupported result type {:?}; query for a scalar or a vector",
                other.map(|o| crate::strategy::host_state::truncate(o, 32))
            )));
        }
    };
    let Some(value) = value else {
        return Err(MetricsError::NoData);
    };
    let number: f64 = value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| MetricsError::Failed("the sample is not a number".into()))?;
    if number.is_nan() {
        return Err(MetricsError::NoData);
    }
    Ok(number)
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
        let error =
            br#"{"status":"error","errorType":"bad_data","error":"parse error near SECRET"}"#;
        assert_eq!(
            parse_answer(error),
            Err(MetricsError::Failed("the query failed (bad_data)".into())),
            "the provider's own text stays out"
        );
    }

    #[test]
    fn provider_flags() {
        let p: ProviderConfig = "prometheus=http://127.0.0.1:9090/".parse().unwrap();
        assert_eq!(
            (p.name.as_str(), p.url.as_str()),
            ("prometheus", "http://127.0.0.1:9090")
        );
        assert_eq!(p.namespaces, NamespaceScope::all());
        assert!("prometheus".parse::<ProviderConfig>().is_err());
        assert!("p=ftp://x".parse::<ProviderConfig>().is_err());
    }

    #[test]
    fn tokens_travel_over_https_only() {
        let config = ProviderConfig {
            token_file: Some("/tmp/token".into()),
            ..("p=http://prometheus:9090"
                .parse::<ProviderConfig>()
                .unwrap())
        };
        let err = config.check().expect_err("a token over http");
        assert!(err.contains("over https:// only"), "{err}");
        let err = Providers::new(vec![
            "p=http://a".parse().unwrap(),
            "p=http://b".parse().unwrap(),
        ])
        .expect_err("twice");
        assert!(err.contains("declared twice"), "{err}");
    }

    #[test]
    fn providers_declare_their_namespaces() {
        let yaml = r#"
name: prometheus
url: https://prometheus.monitoring:9090
timeout: 500ms
tokenFile: /var/run/secrets/prometheus/token
namespaces:
  names: [team-a]
  selector: {matchLabels: {metrics: granted}}
"#;
        let p: ProviderConfig = serde_yaml_ng::from_str(yaml).expect("config");
        assert_eq!(p.timeout, Duration::from_millis(500));
        let granted =
            std::collections::BTreeMap::from([("metrics".to_owned(), "granted".to_owned())]);
        let tenant = |name, labels| Tenant { name, labels };
        assert_eq!(p.grants(tenant("team-a", None)), Ok(true));
        assert_eq!(p.grants(tenant("team-b", Some(&granted))), Ok(true));
        assert_eq!(p.grants(tenant("team-c", None)), Ok(false));
        let err =
            serde_yaml_ng::from_str::<ProviderConfig>("name: p\nurl: http://x\ntimeout: soon\n")
                .expect_err("bad duration");
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
