//! The webhook's TLS: a certificate authority of the controller's own and a serving
//! certificate it signs, kept in a Secret that every replica reads, so that all of
//! them serve the same certificate and the API server trusts it through the
//! `caBundle` of the webhook configurations.
//!
//! The serving certificate lasts a year and is replaced when it would not be valid
//! thirty days on; the authority lasts ten years and is replaced when it has less
//! than one left (the `caBundle` changes then, and only then). Times come from the
//! controller's clock, so rotation is tested without waiting for a year.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// How long a serving certificate lasts.
const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate is replaced when it would not be valid this far ahead.
const SERVING_RENEWAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the authority lasts.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The authority is replaced when it has less than this left.
const CA_RENEWAL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The Secret annotation recording when the authority expires (Unix seconds).
const CA_NOT_AFTER: &str = "sluice.dev/ca-not-after";

/// The authority's name.
const CA_NAME: &str = "sluice-webhook-ca";

/// What the webhook serves with.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The authority's certificate: the webhook configurations' `caBundle`.
    pub ca_pem: String,
    ca_key_pem: String,
    /// When the authority expires, Unix seconds.
    ca_not_after: u64,
    /// The serving certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Certificates")
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

/// Where the certificates are kept and whom they name.
#[derive(Debug, Clone)]
pub struct CertConfig {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The names the serving certificate is valid for: the Service's DNS names, or
    /// the host of the webhook's URL (a name or an IP address).
    pub names: Vec<String>,
}

/// Why the certificates could not be made or kept.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating or reading a certificate failed.
    #[error("webhook certificate: {0}")]
    Certificate(String),
    /// The Secret could not be read or written.
    #[error("Secret {namespace}/{name}: {source}")]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The cause.
        source: kube::Error,
    },
}

/// The calendar date (UTC) of Unix seconds `s`, for rcgen.
fn day_of(s: u64) -> Result<(i32, u8, u8), CertError> {
    let ts = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(s).unwrap_or(i64::MAX))
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let d = ts.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).date();
    Ok((
        i32::from(d.year()),
        u8::try_from(d.month()).unwrap_or(1),
        u8::try_from(d.day()).unwrap_or(1),
    ))
}

fn ca_params(not_before: u64, not_after: u64) -> Result<rcgen::CertificateParams, CertError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let (y, m, d) = day_of(not_before)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day_of(not_after)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(params)
}

/// New certificates for `names` at `now` (Unix seconds), signed by `ca` (its
/// certificate, key and expiry) when it is given.
pub fn generate(
    names: &[String],
    ca: Option<(&str, &str, u64)>,
    now: u64,
) -> Result<Certificates, CertError> {
    let failed = |e: rcgen::Error| CertError::Certificate(e.to_string());
    // A day's margin back for clocks a little behind.
    let start = now.saturating_sub(24 * 3600);
    let (ca_pem, ca_key_pem, ca_not_after, issuer) = match ca {
        Some((pem, key_pem, not_after)) => {
            let key = rcgen::KeyPair::from_pem(key_pem).map_err(failed)?;
            // The authority's certificate was made from these parameters and key:
            // the issuer they make signs as it does.
            let params = ca_params(start, not_after)?;
            (
                pem.to_owned(),
                key_pem.to_owned(),
                not_after,
                rcgen::Issuer::new(params, key),
            )
        }
        None => {
            let key = rcgen::KeyPair::generate().map_err(failed)?;
            let not_after = now + CA_LIFETIME.as_secs();
            let params = ca_params(start, not_after)?;
            let cert = params.self_signed(&key).map_err(failed)?;
            let key_pem = key.serialize_pem();
            (
                cert.pem(),
                key_pem,
                not_after,
                rcgen::Issuer::new(params, key),
            )
        }
    };
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().map_or("sluice-webhook", String::as_str),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // Valid from when the authority is (as Kruise's are): a clock behind the
    // controller's does not see it as not yet valid.
    let (y, m, d) = day_of(
        ca_not_after
            .saturating_sub(CA_LIFETIME.as_secs())
            .saturating_sub(24 * 3600)
            .min(start),
    )?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day_of(now + SERVING_LIFETIME.as_secs())?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;
    Ok(Certificates {
        ca_pem,
        ca_key_pem,
        ca_not_after,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether `c` will still do at `now` (Unix seconds): the serving certificate
/// chains to the authority and names every one of `names` thirty days on, and the
/// authority has a year left.
pub fn fresh(c: &Certificates, names: &[String], now: u64) -> bool {
    if c.ca_not_after < now + CA_RENEWAL.as_secs() {
        return false;
    }
    let Ok(ca) = CertificateDer::from_pem_slice(c.ca_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()) else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(ca).is_err() {
        return false;
    }
    let Ok(verifier) = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build() else {
        return false;
    };
    let then = UnixTime::since_unix_epoch(Duration::from_secs(now) + SERVING_RENEWAL);
    names.iter().all(|name| {
        ServerName::try_from(name.as_str()).is_ok_and(|server| {
            use rustls::client::danger::ServerCertVerifier as _;
            verifier
                .verify_server_cert(&cert, &[], &server, &[], then)
                .is_ok()
        })
    })
}

fn from_secret(secret: &Secret) -> Option<Certificates> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(Certificates {
        ca_pem: text("ca.crt")?,
        ca_key_pem: text("ca.key")?,
        ca_not_after: secret
            .metadata
            .annotations
            .as_ref()?
            .get(CA_NOT_AFTER)?
            .parse()
            .ok()?,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
    })
}

fn to_secret(config: &CertConfig, c: &Certificates, previous: Option<&Secret>) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &c.ca_pem),
        ("ca.key", &c.ca_key_pem),
        ("tls.crt", &c.cert_pem),
        ("tls.key", &c.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(config.secret.clone()),
            namespace: Some(config.namespace.clone()),
            // The version read: a replica that rotated at the same moment wins, and
            // this one reads what it wrote.
            resource_version: previous.and_then(|p| p.metadata.resource_version.clone()),
            annotations: Some(
                [(CA_NOT_AFTER.to_owned(), c.ca_not_after.to_string())]
                    .into_iter()
                    .collect(),
            ),
            labels: Some(
                [("app.kubernetes.io/name".to_owned(), "sluice".to_owned())]
                    .into_iter()
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The certificates to serve with at `now` (Unix seconds): those of the Secret while
/// they will do, new ones (written to it) otherwise. Whether they were replaced.
pub async fn ensure(
    client: &kube::Client,
    config: &CertConfig,
    now: u64,
) -> Result<(Certificates, bool), CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let secret_error = |source| CertError::Secret {
        namespace: config.namespace.clone(),
        name: config.secret.clone(),
        source,
    };
    for _ in 0..3 {
        let existing = api.get_opt(&config.secret).await.map_err(secret_error)?;
        let current = existing.as_ref().and_then(from_secret);
        if let Some(c) = &current
            && fresh(c, &config.names, now)
        {
            return Ok((c.clone(), false));
        }
        // The authority is kept while it has a year left; the serving certificate
        // is made again.
        let ca = current
            .as_ref()
            .filter(|c| c.ca_not_after >= now + CA_RENEWAL.as_secs())
            .map(|c| (c.ca_pem.as_str(), c.ca_key_pem.as_str(), c.ca_not_after));
        let made = generate(&config.names, ca, now)?;
        let secret = to_secret(config, &made, existing.as_ref());
        let written = match &existing {
            None => api.create(&PostParams::default(), &secret).await,
            Some(_) => {
                api.replace(&config.secret, &PostParams::default(), &secret)
                    .await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %config.secret, "webhook certificates written");
                return Ok((made, true));
            }
            // Another replica wrote first: use what it wrote.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(secret_error(e)),
        }
    }
    Err(CertError::Certificate(format!(
        "Secret {}/{} kept changing under this replica",
        config.namespace, config.secret
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: u64 = 365 * 24 * 3600;
    const NOW: u64 = 1_800_000_000;

    fn names() -> Vec<String> {
        vec![
            "sluice-webhook.sluice-system.svc".into(),
            "127.0.0.1".into(),
        ]
    }

    #[test]
    fn new_certificates_are_fresh_for_their_names_only() {
        let c = generate(&names(), None, NOW).expect("certificates");
        assert!(fresh(&c, &names(), NOW));
        assert!(!fresh(&c, &["other.example".into()], NOW), "another name");
        let other = generate(&names(), None, NOW).expect("certificates");
        let mixed = Certificates {
            ca_pem: other.ca_pem.clone(),
            ..c.clone()
        };
        assert!(!fresh(&mixed, &names(), NOW), "signed by another authority");
    }

    #[test]
    fn the_serving_certificate_is_renewed_a_month_before_it_expires() {
        let c = generate(&names(), None, NOW).expect("certificates");
        assert!(fresh(&c, &names(), NOW + YEAR - 40 * 24 * 3600));
        assert!(!fresh(&c, &names(), NOW + YEAR - 20 * 24 * 3600));
        // Renewed by the same authority: the caBundle stays.
        let later = NOW + YEAR - 20 * 24 * 3600;
        let renewed = generate(
            &names(),
            Some((&c.ca_pem, &c.ca_key_pem, c.ca_not_after)),
            later,
        )
        .expect("renewed");
        assert_eq!(renewed.ca_pem, c.ca_pem);
        assert_ne!(renewed.cert_pem, c.cert_pem);
        assert!(fresh(&renewed, &names(), later));
    }

    #[test]
    fn the_authority_is_renewed_with_a_year_left() {
        let c = generate(&names(), None, NOW).expect("certificates");
        assert!(!fresh(&c, &names(), NOW + 9 * YEAR + 1));
    }
}
