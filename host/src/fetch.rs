//! Downloading modules over HTTPS, pinned by sha256, cached by it.
//!
//! A module is only ever used when its bytes hash to the pin its object names, so a
//! download is cached by that pin: a restart with a warm cache, or a thousand
//! decisions, fetch it once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::strategy::cache::sha256_hex;

/// The largest module downloaded.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Downloads modules.
pub struct Fetcher {
    client: HttpClient<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    oci: oci_client::Client,
    memory: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    dir: Option<PathBuf>,
    timeout: Duration,
}

/// Layer media types a module artifact may use.
pub const WASM_LAYER_TYPES: &[&str] = &[
    oci_client::manifest::WASM_LAYER_MEDIA_TYPE,
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/wasm",
];

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
        // The OCI client's TLS stack takes the process' default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut oci_roots = Vec::new();
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    anyhow::anyhow!("reading CA certificates from {}: {e}", path.display())
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    anyhow::anyhow!("reading CA certificates from {}: {e}", path.display())
                })?;
            if certs.is_empty() {
                anyhow::bail!("{} holds no PEM certificate", path.display());
            }
            oci_roots.push(oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: std::fs::read(path)?,
            });
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("no usable CA certificate in {}", path.display());
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        let oci = oci_client::Client::new(oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(insecure),
            extra_root_certificates: oci_roots,
            ..Default::default()
        });
        Ok(Fetcher {
            client: HttpClient::builder(TokioExecutor::new()).build(https),
            oci,
            memory: Mutex::new(HashMap::new()),
            dir,
            timeout: Duration::from_secs(30),
        })
    }

    /// The bytes at `url`, which must hash to `sha256`.
    pub async fn fetch(&self, url: &str, sha256: &str) -> Result<Arc<Vec<u8>>, String> {
        let pin = normalize_pin(sha256);
        if let Some(hit) = self.cached(&pin) {
            return Ok(hit);
        }
        if !url.starts_with("https://") {
            return Err(format!("spec.source.url: {url:?} is not an https:// URL"));
        }
        let request = hyper::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("spec.source.url: {e}"))?;
        let download = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("downloading {url}: {e:#}"))?;
            if !response.status().is_success() {
                return Err(format!(
                    "downloading {url}: the server answered {}",
                    response.status()
                ));
            }
            Limited::new(response.into_body(), MAX_MODULE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| {
                    format!("downloading {url}: {e} (modules are at most {MAX_MODULE_BYTES} bytes)")
                })
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
    /// hash to `sha256`.
    pub async fn fetch_oci(&self, reference: &str, sha256: &str) -> Result<Arc<Vec<u8>>, String> {
        let pin = normalize_pin(sha256);
        if let Some(hit) = self.cached(&pin) {
            return Ok(hit);
        }
        let image: oci_client::Reference = reference
            .parse()
            .map_err(|e| format!("spec.source.oci: {reference:?} is not an OCI reference: {e}"))?;
        let pull = self.oci.pull(
            &image,
            &oci_client::secrets::RegistryAuth::Anonymous,
            WASM_LAYER_TYPES.to_vec(),
        );
        let data = tokio::time::timeout(self.timeout, pull)
            .await
            .map_err(|_| format!("pulling {reference}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("pulling {reference}: {e}"))?;
        let [layer] = data.layers.as_slice() else {
            return Err(format!(
                "pulling {reference}: a module artifact has exactly one wasm layer, this one has {}",
                data.layers.len()
            ));
        };
        let bytes = layer.data.to_vec();
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(format!(
                "pulling {reference}: the module is larger than {MAX_MODULE_BYTES} bytes"
            ));
        }
        let actual = sha256_hex(&bytes);
        if actual != pin {
            return Err(format!(
                "module digest mismatch: expected sha256 {pin}, got {actual} from {reference}"
            ));
        }
        self.keep(&pin, &bytes);
        Ok(self.remember(pin, bytes))
    }

    fn cached(&self, pin: &str) -> Option<Arc<Vec<u8>>> {
        if let Some(hit) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pin)
        {
            return Some(hit.clone());
        }
        let file = self.dir.as_ref()?.join(format!("{pin}.wasm"));
        let bytes = std::fs::read(file).ok()?;
        (sha256_hex(&bytes) == pin).then(|| self.remember(pin.to_owned(), bytes))
    }

    fn keep(&self, pin: &str, bytes: &[u8]) {
        let Some(dir) = &self.dir else { return };
        let file = dir.join(format!("{pin}.wasm"));
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .is_err()
        {
            tracing::warn!(path = %file.display(), "cannot keep a downloaded module");
        }
    }

    fn remember(&self, pin: String, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        let bytes = Arc::new(bytes);
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pin, bytes.clone());
        bytes
    }
}

/// A sha256 pin as written (`sha256:ABC…` or `abc…`), as the lowercase hex it means.
pub fn normalize_pin(pin: &str) -> String {
    pin.trim()
        .trim_start_matches("sha256:")
        .to_ascii_lowercase()
}
