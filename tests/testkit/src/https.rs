//! An HTTPS server with a CA of its own, for what a test serves over TLS: module
//! downloads, a metrics provider, an admission webhook. Its certificate names
//! `localhost` and `127.0.0.1`; clients trust its CA (`ca_pem`, or `ca_file`).

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A request as a handler sees it: head and whole body.
pub type Request = hyper::Request<Bytes>;

/// What answers a request: a status and a body, maybe later.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = (u16, Bytes)> + Send>> + Send + Sync>;

/// A handler answering at once.
pub fn answer(f: impl Fn(&Request) -> (u16, Bytes) + Send + Sync + 'static) -> Handler {
    Arc::new(move |request| {
        let answer = f(&request);
        Box::pin(std::future::ready(answer))
    })
}

/// A running HTTPS server; stopped when dropped.
pub struct HttpsServer {
    /// `https://localhost:<port>`.
    pub url: String,
    /// `https://127.0.0.1:<port>`.
    pub ip_url: String,
    /// Its CA certificate, PEM.
    pub ca_pem: String,
    /// The same, in a file.
    pub ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an HTTPS server answering with `handler`, on a port it binds itself.
pub async fn https_server(handler: Handler) -> HttpsServer {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).expect("a CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("a certificate");
    let mut ca_file = tempfile::NamedTempFile::new().expect("a CA file");
    ca_file
        .write_all(ca.pem().as_bytes())
        .expect("write the CA");

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("a server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("the address").port();
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
                        let handler = handler.clone();
                        async move {
                            let (head, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (code, answer) =
                                handler(hyper::Request::from_parts(head, body)).await;
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(code)
                                    .header("content-type", "application/json")
                                    .body(Full::new(answer))
                                    .expect("a response"),
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
    HttpsServer {
        url: format!("https://localhost:{port}"),
        ip_url: format!("https://127.0.0.1:{port}"),
        ca_pem: ca.pem(),
        ca_file,
        task,
    }
}
