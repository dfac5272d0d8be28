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
    memory: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    dir: Option<PathBuf>,
    timeout: Duration,
}

impl Fetcher {
    /// A fetcher trusting the system's roots and, if given, the CA certificates (PEM)
    /// in `extra_ca`; downloads are kept in `dir` when given.
    pub fn new(extra_ca: Option<&Path>, dir: Option<PathBuf>) -> anyhow::Result<Fetcher> {
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
        Ok(Fetcher {
            client: HttpClient::builder(TokioExecutor::new()).build(https),
            memory: Mutex::new(HashMap::new()),
            dir,
            timeout: Duration::from_secs(30),
        })
    }

    /// The bytes at `url`, which must hash to `sha256`.
    pub async fn fetch(&self, url: &str, sha256: &str) -> Result<Arc<Vec<u8>>, String> {
        let pin = sha256
            .trim()
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        if let Some(hit) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pin)
        {
            return Ok(hit.clone());
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{pin}.wasm")));
        if let Some(bytes) = file.as_ref().and_then(|f| std::fs::read(f).ok())
            && sha256_hex(&bytes) == pin
        {
            return Ok(self.remember(pin, bytes));
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
        if let Some(file) = &file {
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, file))
                .is_err()
            {
                tracing::warn!(path = %file.display(), "cannot keep a downloaded module");
            }
        }
        Ok(self.remember(pin, bytes))
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
