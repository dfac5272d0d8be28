//! Where modules are published in the tests: an HTTPS server with its own CA,
//! and an OCI registry (Debian's `docker-registry`) on loopback.

pub use sluice_testkit::HttpsServer;
pub use sluice_testkit::https::answer;

/// An HTTPS server with its own CA, serving one module at `/module.wasm`.
pub async fn https_server(module: &'static [u8]) -> HttpsServer {
    sluice_testkit::https_server(answer(move |req| {
        if req.uri().path() == "/module.wasm" {
            (200, bytes::Bytes::from_static(module))
        } else {
            (404, bytes::Bytes::from_static(b"not found"))
        }
    }))
    .await
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
