//! Where modules are published in the tests: an HTTPS server with its own CA,
//! and an OCI registry (Debian's `docker-registry`) on loopback.

/// An HTTPS server with its own CA, serving one module at `/module.wasm`.
pub struct HttpsServer {
    pub url: String,
    pub ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn https_server(module: &'static [u8]) -> HttpsServer {
    https_server_with(std::sync::Arc::new(move |req: &Request| {
        if req.uri().path() == "/module.wasm" {
            (200, bytes::Bytes::from_static(module))
        } else {
            (404, bytes::Bytes::from_static(b"not found"))
        }
    }))
    .await
}

/// A request as an [`https_server_with`] handler sees it.
pub type Request = hyper::Request<hyper::body::Incoming>;

/// What answers an [`https_server_with`]: a status and a body for each request.
pub type Handler = std::sync::Arc<dyn Fn(&Request) -> (u16, bytes::Bytes) + Send + Sync>;

/// An HTTPS server with its own CA, answering with `handler`.
pub async fn https_server_with(handler: Handler) -> HttpsServer {
    use std::io::Write;
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let mut ca_file = tempfile::NamedTempFile::new().expect("ca file");
    ca_file.write_all(ca.pem().as_bytes()).expect("write ca");

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().expect("addr").port()
    );
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (code, body) = handler(&req);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(code)
                                    .body(http_body_util::Full::new(body))
                                    .expect("response"),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    HttpsServer { url, ca_file, task }
}

/// Debian's `docker-registry` on loopback, on a port it chose.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _daemon: sluice_testkit::Daemon,
    _dir: tempfile::TempDir,
}

pub async fn registry() -> Registry {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:0}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let mut command = tokio::process::Command::new("docker-registry");
    command.arg("serve").arg(&config);
    let daemon = sluice_testkit::Daemon::start(
        command,
        "docker-registry",
        r"listening on (127\.0\.0\.1:\d+)",
        "install Debian's docker-registry (.ci/run does: apt-get install docker-registry)",
    )
    .await;
    Registry {
        addr: daemon.addr.clone(),
        _daemon: daemon,
        _dir: dir,
    }
}

pub async fn push(registry: &Registry, repository: &str, bytes: &[u8]) -> String {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::manifest::{WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.addr.clone()]),
        ..Default::default()
    });
    let reference = format!("{}/{repository}", registry.addr);
    let layers = vec![ImageLayer::new(
        bytes.to_vec(),
        WASM_LAYER_MEDIA_TYPE.to_owned(),
        None,
    )];
    let config = Config::new(b"{}".to_vec(), WASM_CONFIG_MEDIA_TYPE.to_owned(), None);
    client
        .push(
            &reference.parse().expect("reference"),
            &layers,
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("push");
    reference
}
