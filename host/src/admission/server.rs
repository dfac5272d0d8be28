//! The webhook's HTTPS server: `AdmissionReview`s in, answers out, with a serving
//! certificate that can be replaced while it runs.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::Value;

use super::certs::Certificates;
use super::configuration::{VALIDATE_ROLLOUT, kind_of_path};
use super::{rollouts, workloads};
use crate::kruise::validate::Options;

/// The serving certificate, replaced when it is renewed.
#[derive(Debug)]
pub struct Resolver(RwLock<Arc<CertifiedKey>>);

fn certified(c: &Certificates) -> Result<Arc<CertifiedKey>, String> {
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
        .map_err(|e| format!("the serving key: {e}"))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the serving key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

impl Resolver {
    /// Serves `c`.
    pub fn new(c: &Certificates) -> Result<Resolver, String> {
        Ok(Resolver(RwLock::new(certified(c)?)))
    }

    /// Serves `c` from the next connection on.
    pub fn replace(&self, c: &Certificates) -> Result<(), String> {
        let key = certified(c)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// What the handlers reach.
pub struct Handlers {
    /// The API, for the ReplicaSets a review reads.
    pub client: kube::Client,
    /// The Rollouts, from a watch cache: Kruise's webhooks read its informers, and a
    /// list per review would cost O(namespace) on every admission.
    pub rollouts: kube::runtime::reflector::Store<crate::kruise::v1alpha1::Rollout>,
    /// What the Rollout rules are told.
    pub validation: Options,
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    resolver: Arc<Resolver>,
    handlers: Arc<Handlers>,
) {
    let config = match rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_no_client_auth().with_cert_resolver(resolver),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the admission webhooks");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let handlers = handlers.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let handlers = handlers.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&handlers, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

fn reply(code: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(handlers: &Handlers, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request: {e}"),
            );
        }
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &AdmissionResponse::invalid(format!("not an AdmissionReview: {e}")).into_review(),
            );
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}"))
                    .into_review(),
            );
        }
    };
    let response = answer(handlers, &path, &request).await;
    reply(StatusCode::OK, &response.into_review())
}

fn json_of(object: Option<&DynamicObject>) -> Option<Value> {
    object.and_then(|o| serde_json::to_value(o).ok())
}

fn refuse(response: AdmissionResponse, code: u16, message: String) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = code;
    response
}

async fn answer(
    handlers: &Handlers,
    path: &str,
    request: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let new = json_of(request.object.as_ref());
    let old = json_of(request.old_object.as_ref());
    if path == VALIDATE_ROLLOUT {
        let Some(new) = new else {
            return allowed;
        };
        let old = (request.operation == Operation::Update)
            .then_some(old)
            .flatten();
        return match rollouts::review(
            &handlers.rollouts.state(),
            &new,
            old.as_ref(),
            handlers.validation,
        ) {
            Ok(()) => allowed,
            Err(refusal) => refuse(allowed, refusal.code, refusal.message),
        };
    }
    let Some(kind) = kind_of_path(path) else {
        return refuse(allowed, 404, format!("no webhook is served at {path}"));
    };
    // Only a change of the workload itself can be a release.
    if request.operation != Operation::Update || request.sub_resource.is_some() {
        return allowed;
    }
    let (Some(new), Some(old)) = (new, old) else {
        return allowed;
    };
    let rollouts = handlers.rollouts.state();
    match workloads::review(&handlers.client, &rollouts, kind, &old, &new).await {
        Ok(None) => allowed,
        Ok(Some(mutated)) => {
            let patch = json_patch::diff(&new, &mutated);
            match allowed.clone().with_patch(patch) {
                Ok(response) => response,
                Err(e) => refuse(allowed, 500, format!("cannot write the patch: {e}")),
            }
        }
        Err(e) => refuse(
            allowed,
            500,
            format!("cannot read what the release needs: {e}"),
        ),
    }
}
