//! Downloading modules over HTTPS and from OCI registries, pinned by sha256, cached
//! by it.
//!
//! A module is only ever used when its bytes hash to the pin its object names, so a
//! download is cached by that pin: a restart with a warm cache, or a thousand
//! decisions, fetch it once. Fetching cannot be turned against the cluster:
//!
//! - HTTPS sources are fetched over HTTPS only and redirects are not followed.
//! - OCI pulls speak the distribution API directly: the manifest is read (at most
//!   4 MiB), the wasm layer's size is checked from its descriptor against the
//!   module ceiling before anything is downloaded, and the blob is streamed with a
//!   cap and hashed on the way. A redirect is followed only to the registry's own
//!   host and port, over HTTPS (plain HTTP only for registries named insecure); a
//!   registry that serves blobs from another host (a CDN) cannot be used directly.
//! - Error messages name the URL and the status, never what the server answered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::strategy::cache::{self, sha256_hex};

/// Layer media types a module artifact may use.
pub const WASM_LAYER_TYPES: &[&str] = &[
    oci_client::manifest::WASM_LAYER_MEDIA_TYPE,
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/wasm",
];

/// Largest manifest read from a registry.
const MAX_MANIFEST: usize = 4 << 20;
/// Largest token answer read from a registry's token service.
const MAX_TOKEN: usize = 64 << 10;
/// Redirects followed within a registry.
const MAX_REDIRECTS: usize = 5;
/// Downloads kept in memory, by size.
const MEMORY_BUDGET: u64 = 256 << 20;

/// Downloads running at once.
const CONCURRENT_DOWNLOADS: usize = 4;

type Client = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Downloads modules.
pub struct Fetcher {
    https: Client,
    any: Client,
    insecure: Vec<String>,
    memory: Mutex<Memory>,
    dir: Option<PathBuf>,
    timeout: Duration,
    /// One download per pin at a time: the others wait for it and find it cached.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    downloads: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Memory {
    entries: HashMap<String, (Arc<Vec<u8>>, u64)>,
    clock: u64,
}

impl Fetcher {
    /// A fetcher trusting the system's roots and, if given, the CA certificates (PEM)
    /// in `extra_ca`; downloads are kept in `dir` when given.
    pub fn new(extra_ca: Option<&Path>, dir: Option<PathBuf>) -> anyhow::Result<Fetcher> {
        Fetcher::with_insecure_registries(extra_ca, dir, Vec::new())
    }

    /// Like [`Fetcher::new`], reaching the registries in `insecure` (`host:port`) over
    /// plain HTTP.
    pub fn with_insecure_registries(
        extra_ca: Option<&Path>,
        dir: Option<PathBuf>,
        insecure: Vec<String>,
    ) -> anyhow::Result<Fetcher> {
        let tls = crate::http::tls_config(extra_ca).map_err(anyhow::Error::msg)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only()
            .enable_http1()
            .build();
        let any = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        if let Some(dir) = &dir {
            cache::private_dir(dir)?;
        }
        Ok(Fetcher {
            https: HttpClient::builder(TokioExecutor::new()).build(https),
            any: HttpClient::builder(TokioExecutor::new()).build(any),
            insecure,
            memory: Mutex::new(Memory::default()),
            dir,
            timeout: Duration::from_secs(30),
            inflight: Mutex::new(HashMap::new()),
            downloads: tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS),
        })
    }

    /// Waits for this pin's turn to download (and the download slot), having
    /// checked the cache first: what another request fetched meanwhile is found.
    async fn turn(
        &self,
        pin: &str,
        max_bytes: u64,
    ) -> Result<Result<Arc<Vec<u8>>, Turn<'_>>, String> {
        if let Some(hit) = self.cached(pin, max_bytes) {
            return Ok(Ok(hit));
        }
        let lock = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pin.to_owned())
            .or_default()
            .clone();
        let held = lock.lock_owned().await;
        if let Some(hit) = self.cached(pin, max_bytes) {
            return Ok(Ok(hit));
        }
        let slot = self
            .downloads
            .acquire()
            .await
            .map_err(|_| "the downloader is shut down".to_owned())?;
        Ok(Err(Turn {
            fetcher: self,
            pin: pin.to_owned(),
            _held: held,
            _slot: slot,
        }))
    }

    /// The bytes at `url`, which must hash to `sha256` and be at most `max_bytes`.
    pub async fn fetch(
        &self,
        url: &str,
        sha256: &str,
        max_bytes: u64,
    ) -> Result<Arc<Vec<u8>>, String> {
        let pin = parse_pin(sha256)?;
        let _turn = match self.turn(&pin, max_bytes).await? {
            Ok(hit) => return Ok(hit),
            Err(turn) => turn,
        };
        if !url.starts_with("https://") {
            return Err(format!("spec.source.url: {url:?} is not an https:// URL"));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("spec.source.url: {url:?}: {e}"))?;
        let download = async {
            let response = self
                .https
                .request(get(&uri, None, None)?)
                .await
                .map_err(|e| format!("downloading {url}: {}", crate::http::error_text(&e)))?;
            if !response.status().is_success() {
                return Err(format!(
                    "downloading {url}: the server answered {}{}",
                    response.status(),
                    if response.status().is_redirection() {
                        " (redirects are not followed: give the module's final URL)"
                    } else {
                        ""
                    }
                ));
            }
            read_capped(response, max_bytes, &format!("downloading {url}")).await
        };
        let bytes = tokio::time::timeout(self.timeout, download)
            .await
            .map_err(|_| format!("downloading {url}: no answer within {:?}", self.timeout))??;
        let actual = sha256_hex(&bytes);
        if actual != pin {
            return Err(format!(
                "module digest mismatch: expected sha256 {pin}, got {actual} from {url}"
            ));
        }
        self.keep(&pin, &bytes);
        Ok(self.remember(pin, bytes))
    }

    /// The module in the OCI artifact `reference` (its single wasm layer), which must
    /// hash to `sha256` and be at most `max_bytes`.
    pub async fn fetch_oci(
        &self,
        reference: &str,
        sha256: &str,
        max_bytes: u64,
    ) -> Result<Arc<Vec<u8>>, String> {
        let pin = parse_pin(sha256)?;
        let _turn = match self.turn(&pin, max_bytes).await? {
            Ok(hit) => return Ok(hit),
            Err(turn) => turn,
        };
        let image: oci_client::Reference = reference
            .parse()
            .map_err(|e| format!("spec.source.oci: {reference:?} is not an OCI reference: {e}"))?;
        let pull = self.pull(&image, &pin, max_bytes);
        let bytes = tokio::time::timeout(self.timeout, pull)
            .await
            .map_err(|_| format!("pulling {reference}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("pulling {reference}: {e}"))?;
        self.keep(&pin, &bytes);
        Ok(self.remember(pin, bytes))
    }

    async fn pull(
        &self,
        image: &oci_client::Reference,
        pin: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, String> {
        let host = image.resolve_registry().to_owned();
        let insecure = self.insecure.contains(&host);
        let mut session = Session {
            fetcher: self,
            scheme: if insecure { "http" } else { "https" },
            host,
            token: None,
        };
        let repository = image.repository();
        let tag = image.digest().or(image.tag()).unwrap_or("latest");
        let accept = [
            oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
            oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
        ]
        .join(", ");
        let response = session
            .get(&format!("/v2/{repository}/manifests/{tag}"), Some(&accept))
            .await?;
        let manifest = read_capped(response, MAX_MANIFEST as u64, "the manifest").await?;
        let manifest: oci_client::manifest::OciImageManifest = serde_json::from_slice(&manifest)
            .map_err(|_| "the manifest is not an OCI image manifest".to_owned())?;
        let layers: Vec<_> = manifest
            .layers
            .iter()
            .filter(|l| WASM_LAYER_TYPES.contains(&l.media_type.as_str()))
            .collect();
        let [layer] = layers.as_slice() else {
            return Err(format!(
                "a module artifact has exactly one wasm layer ({}), this one has {}",
                WASM_LAYER_TYPES.join(", "),
                layers.len()
            ));
        };
        let size =
            u64::try_from(layer.size).map_err(|_| "the layer's size is negative".to_owned())?;
        if size > max_bytes {
            return Err(format!(
                "the module layer is {size} bytes, above the controller's ceiling of {max_bytes} bytes (sandbox.ceilings.moduleBytes); nothing was downloaded"
            ));
        }
        let expected = format!("sha256:{pin}");
        if layer.digest != expected {
            return Err(format!(
                "module digest mismatch: expected sha256 {pin}, the artifact's layer is {}",
                crate::strategy::host_state::truncate(&layer.digest, 80)
            ));
        }
        let response = session
            .get(&format!("/v2/{repository}/blobs/{expected}"), None)
            .await?;
        let bytes = read_capped(response, size, "the module layer").await?;
        let actual = sha256_hex(&bytes);
        if actual != pin {
            return Err(format!(
                "module digest mismatch: expected sha256 {pin}, the registry sent {actual}"
            ));
        }
        Ok(bytes)
    }

    fn cached(&self, pin: &str, max_bytes: u64) -> Option<Arc<Vec<u8>>> {
        {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.clock += 1;
            let now = memory.clock;
            if let Some((bytes, used)) = memory.entries.get_mut(pin) {
                *used = now;
                return Some(bytes.clone());
            }
        }
        let file = self.dir.as_ref()?.join(format!("{pin}.wasm"));
        let bytes = match cache::read_private(&file, max_bytes) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!(path = %file.display(), %why, "ignoring a kept download");
                let _ = std::fs::remove_file(&file);
                return None;
            }
        };
        (sha256_hex(&bytes) == pin).then(|| self.remember(pin.to_owned(), bytes))
    }

    fn keep(&self, pin: &str, bytes: &[u8]) {
        let Some(dir) = &self.dir else { return };
        let file = dir.join(format!("{pin}.wasm"));
        let written = cache::temp_file(dir).and_then(|(tmp, mut f)| {
            use std::io::Write;
            let result = f
                .write_all(bytes)
                .and_then(|()| f.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &file));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        });
        if let Err(e) = written {
            tracing::warn!(path = %file.display(), error = %e, "cannot keep a downloaded module");
        }
    }

    fn remember(&self, pin: String, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        let bytes = Arc::new(bytes);
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        memory.clock += 1;
        let now = memory.clock;
        memory.entries.insert(pin, (bytes.clone(), now));
        // Past the budget, the least recently used downloads go (they stay on disk).
        loop {
            let total: u64 = memory.entries.values().map(|(b, _)| b.len() as u64).sum();
            if total <= MEMORY_BUDGET || memory.entries.len() <= 1 {
                break;
            }
            let Some(oldest) = memory
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(pin, _)| pin.clone())
            else {
                break;
            };
            memory.entries.remove(&oldest);
        }
        bytes
    }
}

/// A pin's turn to download; the pin's entry goes when the last waiter is done.
struct Turn<'a> {
    fetcher: &'a Fetcher,
    pin: String,
    _held: tokio::sync::OwnedMutexGuard<()>,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut inflight = self
            .fetcher
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Held here and in the map only: no one else waits for this pin.
        if inflight
            .get(&self.pin)
            .is_some_and(|lock| Arc::strong_count(lock) <= 2)
        {
            inflight.remove(&self.pin);
        }
    }
}

/// Requests to one registry: its scheme and host, and the token it gave.
struct Session<'a> {
    fetcher: &'a Fetcher,
    scheme: &'static str,
    host: String,
    token: Option<String>,
}

impl Session<'_> {
    /// GETs `path` from the registry, answering a bearer challenge once and
    /// following redirects within the registry only.
    async fn get(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, String> {
        let mut uri: Uri = format!("{}://{}{path}", self.scheme, self.host)
            .parse()
            .map_err(|e| format!("{path}: {e}"))?;
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let response = self
                .fetcher
                .any
                .request(get(&uri, accept, self.token.as_deref())?)
                .await
                .map_err(|e| format!("{uri}: {}", crate::http::error_text(&e)))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(hyper::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                self.token = Some(self.authenticate(&challenge).await?);
                continue;
            }
            if status.is_redirection() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(format!("{uri}: more than {MAX_REDIRECTS} redirects"));
                }
                let location = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{uri}: a redirect without a location"))?;
                uri = redirect_target(&uri, location, self.scheme)?;
                continue;
            }
            if !status.is_success() {
                return Err(format!("{uri}: the registry answered {status}"));
            }
            return Ok(response);
        }
    }

    /// A token from the service a `Bearer` challenge names (anonymous pull).
    async fn authenticate(&self, challenge: &str) -> Result<String, String> {
        let params = bearer_challenge(challenge).ok_or_else(|| {
            format!(
                "{}: the registry asks for credentials other than an anonymous bearer token",
                self.host
            )
        })?;
        let realm = params
            .get("realm")
            .ok_or_else(|| format!("{}: the bearer challenge names no realm", self.host))?;
        let realm_uri: Uri = realm
            .parse()
            .map_err(|_| format!("{}: the token service's URL is malformed", self.host))?;
        let same_host = realm_uri.authority().map(|a| a.as_str()) == Some(self.host.as_str());
        // Tokens are fetched over HTTPS; an insecure registry may serve them itself.
        if realm_uri.scheme_str() != Some("https") && !(self.scheme == "http" && same_host) {
            return Err(format!(
                "{}: the token service {realm_uri} is not reached over https://",
                self.host
            ));
        }
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(v) = params.get(key) {
                query.push(format!("{key}={}", crate::http::percent_encode(v)));
            }
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        let token_uri: Uri = format!("{realm}{separator}{}", query.join("&"))
            .parse()
            .map_err(|_| format!("{}: the token service's URL is malformed", self.host))?;
        let response = self
            .fetcher
            .any
            .request(get(&token_uri, None, None)?)
            .await
            .map_err(|e| format!("{token_uri}: {}", crate::http::error_text(&e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "{token_uri}: the token service answered {}",
                response.status()
            ));
        }
        let body = read_capped(response, MAX_TOKEN as u64, "the token").await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{token_uri}: the answer is not a token"))?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{token_uri}: the answer holds no token"))
    }
}

/// Where a redirect from `current` to `location` goes, if it stays within the
/// registry: the same host and port, over `scheme` (`https`, or `http` for a
/// registry named insecure).
pub fn redirect_target(current: &Uri, location: &str, scheme: &str) -> Result<Uri, String> {
    let target: Uri = location
        .parse()
        .map_err(|_| format!("{current}: a redirect to a malformed location"))?;
    let target = if target.authority().is_none() {
        // A path on the same host.
        let mut parts = target.into_parts();
        parts.scheme = current.scheme().cloned();
        parts.authority = current.authority().cloned();
        Uri::from_parts(parts)
            .map_err(|_| format!("{current}: a redirect to a malformed location"))?
    } else {
        target
    };
    let same_host =
        target.authority().map(|a| a.as_str()) == current.authority().map(|a| a.as_str());
    if !same_host {
        return Err(format!(
            "{current}: the registry redirects to another host ({}); only redirects within the registry are followed",
            target.authority().map_or("?", |a| a.as_str())
        ));
    }
    if target.scheme_str() != Some(scheme) {
        return Err(format!(
            "{current}: the registry redirects to {}://, not {scheme}://",
            target.scheme_str().unwrap_or("?")
        ));
    }
    Ok(target)
}

/// The parameters of a `Bearer realm="…",service="…",scope="…"` challenge.
fn bearer_challenge(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

fn get(
    uri: &Uri,
    accept: Option<&str>,
    token: Option<&str>,
) -> Result<Request<Empty<Bytes>>, String> {
    let mut request = Request::get(uri.clone());
    if let Some(accept) = accept {
        request = request.header(hyper::header::ACCEPT, accept);
    }
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request
        .body(Empty::new())
        .map_err(|e| format!("{uri}: {e}"))
}

/// The body of `response`, at most `max` bytes.
async fn read_capped(
    response: Response<Incoming>,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    if let Some(len) = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        return Err(format!(
            "{what} is {len} bytes, more than the {max} allowed"
        ));
    }
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    let mut body = Limited::new(response.into_body(), cap);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            format!("{what} could not be read, or is more than the {max} bytes allowed")
        })?;
        if let Some(data) = frame.data_ref() {
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}

/// A sha256 pin as written (`sha256:ABC…` or `abc…`), as the lowercase hex it means.
pub fn normalize_pin(pin: &str) -> String {
    pin.trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase()
}

/// A pin, checked to be a sha256: 64 hex digits, with or without `sha256:`.
pub fn parse_pin(pin: &str) -> Result<String, String> {
    let hex = normalize_pin(pin);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(format!(
            "spec.source.sha256: {:?} is not a sha256 digest; write the 64 hex digits `sha256sum` or `sluice strategy inspect` prints",
            crate::strategy::host_state::truncate(pin, 80)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_within_the_registry() {
        let current: Uri = "https://registry.example:5000/v2/m/blobs/sha256:ab"
            .parse()
            .unwrap();
        let cases = [
            (
                "/v2/m/blobs/other",
                Ok("https://registry.example:5000/v2/m/blobs/other"),
            ),
            (
                "https://registry.example:5000/x",
                Ok("https://registry.example:5000/x"),
            ),
            ("https://cdn.example/x", Err("another host (cdn.example)")),
            ("https://registry.example:6000/x", Err("another host")),
            (
                "http://registry.example:5000/x",
                Err("redirects to http://"),
            ),
        ];
        for (location, want) in cases {
            let got = redirect_target(&current, location, "https").map(|u| u.to_string());
            match want {
                Ok(target) => assert_eq!(got, Ok(target.to_owned()), "{location}"),
                Err(part) => {
                    let err = got.expect_err(location);
                    assert!(err.contains(part), "{location}: {err}");
                }
            }
        }
        let plain: Uri = "http://127.0.0.1:5000/v2/x".parse().unwrap();
        assert!(redirect_target(&plain, "/v2/y", "http").is_ok());
    }

    #[test]
    fn pins_are_sha256_digests_only() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_pin(&format!("sha256:{}", hex.to_uppercase())),
            Ok(hex)
        );
        for bad in ["../../etc/passwd", "abc", &"g".repeat(64), ""] {
            let err = parse_pin(bad).expect_err(bad);
            assert!(err.contains("is not a sha256 digest"), "{err}");
        }
    }

    #[test]
    fn bearer_challenges_parse() {
        let p = bearer_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:m:pull""#,
        )
        .expect("challenge");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:m:pull");
        assert!(bearer_challenge("Basic realm=x").is_none());
    }
}
