//! The admission webhooks the controller serves, as Kruise serves them: a
//! validating webhook for Rollouts ([`rollouts`]) and a mutating webhook for the
//! workloads Rollouts release ([`workloads`]), over TLS with a certificate the
//! controller keeps ([`certs`]) and webhook configurations it keeps up to date
//! ([`configuration`]). Every replica serves them, leading or not: the API server
//! may call any.

pub mod certs;
pub mod configuration;
pub mod rollouts;
pub mod server;
pub mod workloads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::clock::Clock;
use crate::kruise::v1alpha1::Rollout;
use crate::kruise::validate::Options;
pub use configuration::{Endpoint, Selection};

/// How the webhooks are served.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where the HTTPS server listens (port 0: any free port).
    pub listen: SocketAddr,
    /// How the API server reaches it.
    pub endpoint: Endpoint,
    /// The namespace of the Secret keeping the certificates.
    pub secret_namespace: String,
    /// The Secret's name.
    pub secret_name: String,
    /// What the configurations select.
    pub selection: Selection,
    /// How often the certificates are looked at (renewed when due).
    pub renewal_check: Duration,
}

impl WebhookConfig {
    /// Webhooks at `https://127.0.0.1:<port>`, their certificates in the `default`
    /// namespace: as `sluice dev` and the tests run them (the API server on this
    /// machine).
    pub fn local(port: u16) -> WebhookConfig {
        WebhookConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            endpoint: Endpoint::Host("127.0.0.1".into()),
            secret_namespace: "default".into(),
            secret_name: "sluice-webhook-certs".into(),
            selection: Selection::default(),
            renewal_check: Duration::from_secs(3600),
        }
    }
}

/// Why the webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the admission webhooks: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificates could not be made or kept.
    #[error(
        "{0}; the controller's ServiceAccount must be able to get, create and update it (deploy/controller.yaml grants it)"
    )]
    Certificates(#[from] certs::CertError),
    /// The serving certificate could not be loaded.
    #[error("webhook certificate: {0}")]
    Serving(String),
    /// The Rollouts could not be listed.
    #[error(
        "the Rollouts could not be listed within {0:?}; the controller's ServiceAccount must be able to list and watch rollouts.rollouts.kruise.io"
    )]
    Cache(Duration),
    /// The webhook configurations could not be written.
    #[error(
        "cannot write the webhook configurations ({0}); the controller's ServiceAccount must be able to patch mutating- and validatingwebhookconfigurations"
    )]
    Configurations(kube::Error),
}

/// A watch cache of the Rollouts the webhooks judge by, filled before they answer
/// (an empty cache would let a second Rollout on a workload through).
async fn rollout_cache(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Store<Rollout>, WebhookError> {
    let api: Api<Rollout> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store::<Rollout>();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching Rollouts for the webhooks");
            }
        });
    tokio::spawn(stream);
    tokio::time::timeout(CACHE_FILL, store.wait_until_ready())
        .await
        .map_err(|_| WebhookError::Cache(CACHE_FILL))?
        .map_err(|_| WebhookError::Cache(CACHE_FILL))?;
    Ok(store)
}

/// How long the webhooks wait for their first list of Rollouts.
const CACHE_FILL: Duration = Duration::from_secs(30);

/// Binds, makes sure the certificates and the configurations are in place, and
/// serves in the background (renewing the certificates when due). Returns the
/// address bound once the webhooks answer.
pub async fn start(
    client: kube::Client,
    config: WebhookConfig,
    validation: Options,
    clock: Arc<dyn Clock>,
) -> Result<SocketAddr, WebhookError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| WebhookError::Listen {
            addr: config.listen,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WebhookError::Listen {
            addr: config.listen,
            source,
        })?;
    let certs_config = certs::CertConfig {
        namespace: config.secret_namespace.clone(),
        secret: config.secret_name.clone(),
        names: config.endpoint.names(),
    };
    // Filled before the configurations point the API server here.
    let rollouts = rollout_cache(&client, config.selection.namespace.as_deref()).await?;
    let now = || clock.now_ms() / 1000;
    let (current, _) = certs::ensure(&client, &certs_config, now()).await?;
    let resolver = Arc::new(server::Resolver::new(&current).map_err(WebhookError::Serving)?);
    let handlers = Arc::new(server::Handlers {
        client: client.clone(),
        rollouts,
        validation,
    });
    // Serving before the configurations point the API server here: no call finds
    // nobody listening.
    tokio::spawn(server::serve(listener, resolver.clone(), handlers));
    let owner = configuration::namespace_owner(&client, &config.secret_namespace).await;
    let renewal_check = config.renewal_check;
    let objects = move |ca: &str| {
        configuration::objects(
            &config.endpoint,
            &config.selection,
            bound.port(),
            ca,
            owner.as_ref(),
        )
    };
    configuration::ensure(&client, &objects(&current.ca_pem))
        .await
        .map_err(WebhookError::Configurations)?;
    tokio::spawn(async move {
        let mut current = current;
        loop {
            tokio::time::sleep(renewal_check).await;
            match certs::ensure(&client, &certs_config, clock.now_ms() / 1000).await {
                Ok((renewed, _)) if renewed != current => {
                    if let Err(e) = resolver.replace(&renewed) {
                        tracing::error!(error = %e, "cannot serve the renewed webhook certificate");
                        continue;
                    }
                    if let Err(e) = configuration::ensure(&client, &objects(&renewed.ca_pem)).await
                    {
                        tracing::error!(error = %e, "cannot write the renewed caBundle");
                        continue;
                    }
                    tracing::info!("webhook certificates renewed");
                    current = renewed;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot look at the webhook certificates"),
            }
        }
    });
    tracing::info!(addr = %bound, "serving the admission webhooks");
    Ok(bound)
}
