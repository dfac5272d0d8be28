//! The local control plane's certificates: one authority signing the API server's
//! serving certificate and the client certificates of the admin, the controller
//! manager and the scheduler (Kubernetes takes a client certificate's CN as the
//! user and its O as the groups), and the key pair that signs ServiceAccount
//! tokens. Made fresh at every `up`: nothing here outlives the cluster.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Where each file is.
pub struct Pki {
    pub dir: PathBuf,
}

/// A client identity: its certificate and key files.
pub struct Client {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    pub fn client(&self, name: &str) -> Client {
        Client {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }
}

/// The users the control plane's parts are: (file name, CN, O).
pub const CLIENTS: &[(&str, &str, Option<&str>)] = &[
    ("admin", "kubernetes-admin", Some("system:masters")),
    (
        "kube-controller-manager",
        "system:kube-controller-manager",
        None,
    ),
    ("kube-scheduler", "system:kube-scheduler", None),
];

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Keys and certificates alike readable by this user only.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes every certificate and key under `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pki = Pki {
        dir: dir.to_owned(),
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sluice-local-cluster-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    write(&pki.ca_cert(), &ca_cert.pem())?;
    write(&pki.ca_key(), &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca, ca_key);

    // The names the API server is reached by: loopback, and the in-cluster names
    // and the first address of the Service range (the `kubernetes` Service).
    let mut serving = CertificateParams::new(vec![
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "kubernetes.default.svc.cluster.local".to_owned(),
    ])?;
    for ip in ["127.0.0.1", "10.0.0.1"] {
        serving
            .subject_alt_names
            .push(SanType::IpAddress(ip.parse()?));
    }
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = serving.signed_by(&key, &issuer)?;
    write(&pki.serving_cert(), &cert.pem())?;
    write(&pki.serving_key(), &key.serialize_pem())?;

    for (file, cn, org) in CLIENTS {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, *cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let client = pki.client(file);
        write(&client.cert, &cert.pem())?;
        write(&client.key, &key.serialize_pem())?;
    }

    // ServiceAccount tokens are signed with this key (ES256) and checked with its
    // public half.
    let sa = KeyPair::generate()?;
    write(&pki.sa_key(), &sa.serialize_pem())?;
    write(&pki.sa_pub(), &sa.public_key_pem())?;
    Ok(pki)
}

/// A kubeconfig for `client` against `server`, trusting the cluster's authority.
pub fn kubeconfig(pki: &Pki, server: &str, user: &str, client: &Client) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sluice-local
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: sluice-local
  context: {{cluster: sluice-local, user: {user}, namespace: default}}
current-context: sluice-local
",
        ca = pki.ca_cert().display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}
