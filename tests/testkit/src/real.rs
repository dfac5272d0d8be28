//! A real cluster for the end-to-end tests: any API server an admin kubeconfig
//! reaches (`cargo xtask cluster up`'s, kind's, a cloud cluster's), named by
//! `SLUICE_TEST_KUBECONFIG` and chosen with `SLUICE_TEST_BACKEND=real`.
//!
//! Each test gets a namespace of its own and a traffic gateway of its own
//! (`sluice gateway --namespace`). Tests on a real cluster run one at a time:
//! the controller they start is cluster-wide with the ServiceAccount and RBAC of
//! `deploy/controller.yaml`, and keeps the cluster's one pair of webhook
//! configurations, as in production. A file lock holds them apart across
//! test binaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Daemon;

/// The variable naming the admin kubeconfig of the real cluster.
pub const KUBECONFIG_ENV: &str = "SLUICE_TEST_KUBECONFIG";
/// The variable choosing the backend: `sim` (the default) or `real`.
pub const BACKEND_ENV: &str = "SLUICE_TEST_BACKEND";

/// How to get a real cluster, said wherever one is missing.
pub const HOW: &str = "start one with `cargo xtask cluster up` and set SLUICE_TEST_KUBECONFIG=target/cluster/kubeconfig (or point it at any cluster's admin kubeconfig); `cargo xtask test` does both";

/// Which backend this test run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The simulator, in the test's process.
    Sim,
    /// The cluster `SLUICE_TEST_KUBECONFIG` names.
    Real,
}

/// The backend of this run: `SLUICE_TEST_BACKEND`, `sim` unless it says `real`.
pub fn backend() -> BackendKind {
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("real") => BackendKind::Real,
        Ok("sim") | Ok("") | Err(_) => BackendKind::Sim,
        Ok(other) => panic!("{BACKEND_ENV}={other}: write sim or real"),
    }
}

/// The admin kubeconfig of the real cluster. A relative path is taken from the
/// current folder, else from the workspace's root (test binaries run in their
/// package's folder).
pub fn kubeconfig() -> PathBuf {
    match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            let found = [path.clone(), super::workspace_root().join(&path)]
                .into_iter()
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!("{KUBECONFIG_ENV}={} is not a file: {HOW}", path.display())
                });
            // One spelling of the path, so that one lock holds every test of it.
            std::fs::canonicalize(&found).unwrap_or(found)
        }
        _ => panic!("{BACKEND_ENV}=real needs {KUBECONFIG_ENV}: {HOW}"),
    }
}

/// A kube client for `kubeconfig`, with `namespace` as its default.
pub async fn client_for(kubeconfig: &Path, namespace: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig.display()));
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    config.default_namespace = namespace.to_owned();
    kube::Client::try_from(config).expect("a client")
}

/// The API version a kind of (group, plural) is read at.
pub fn version_of(group: &str, plural: &str) -> &'static str {
    match (group, plural) {
        ("", _) => "v1",
        ("apps", _) => "v1",
        ("networking.k8s.io", _) => "v1",
        ("gateway.networking.k8s.io", _) => "v1",
        ("discovery.k8s.io", _) => "v1",
        ("events.k8s.io", _) => "v1",
        ("coordination.k8s.io", _) => "v1",
        ("admissionregistration.k8s.io", _) => "v1",
        ("apiextensions.k8s.io", _) => "v1",
        ("rollouts.kruise.io", _) => "v1alpha1",
        ("sluice.dev", _) => "v1alpha1",
        ("apps.kruise.io", _) => "v1alpha1",
        (g, p) => panic!("the tests do not read {p}.{g}: add its version here"),
    }
}

/// The API of a kind of (group, plural), in `namespace` or cluster-wide.
pub fn dynamic(
    client: &kube::Client,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let version = version_of(group, plural);
    let resource = ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        // Reads need only the path; the kind is what the server says.
        kind: String::new(),
        plural: plural.to_owned(),
    };
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// A lock held by one real-cluster test at a time, across every test process.
struct ExclusiveLock(#[allow(dead_code)] std::fs::File);

async fn exclusive(kubeconfig: &Path) -> ExclusiveLock {
    let name = format!(
        "sluice-e2e-{:x}.lock",
        kubeconfig
            .to_string_lossy()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b))
                .wrapping_mul(0x100000001b3))
    );
    let path = std::env::temp_dir().join(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
        ExclusiveLock(file)
    })
    .await
    .expect("join")
}

/// The namespaced kinds a test's waits wake up on.
const WATCHED: &[(&str, &str, &str)] = &[
    ("rollouts.kruise.io", "v1alpha1", "rollouts"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "replicasets"),
    ("apps", "v1", "statefulsets"),
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    ("sluice.dev", "v1alpha1", "strategymodules"),
    ("events.k8s.io", "v1", "events"),
];

/// One test's share of the real cluster: its namespace, its gateway, and watches
/// of the namespace that wake its waits. Deleting the namespace when dropped.
pub struct Real {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The test's namespace.
    pub namespace: String,
    /// An admin client whose default namespace is the test's.
    pub client: kube::Client,
    dir: tempfile::TempDir,
    gateway: Option<Daemon>,
    changes: watch::Receiver<u64>,
    watches: Vec<tokio::task::JoinHandle<()>>,
    _lock: ExclusiveLock,
}

impl Real {
    /// Takes the cluster for one test: waits for the tests before it, installs
    /// what the tests need (idempotently), makes a namespace `e2e-<name>-<n>`, and
    /// starts a gateway over it (`sluice` is the binary to run it with).
    pub async fn start(sluice: &Path, name: &str) -> Real {
        let kubeconfig = kubeconfig();
        let lock = exclusive(&kubeconfig).await;
        let admin = client_for(&kubeconfig, "default").await;
        prepare(&admin).await;
        let short: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let namespace = format!("e2e-{}-{:04x}", short.trim_matches('-'), rand_suffix());
        Api::<Namespace>::all(admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": namespace, "labels": {"sluice.dev/e2e": "true"}}
                }))
                .expect("a namespace"),
            )
            .await
            .unwrap_or_else(|e| panic!("creating namespace {namespace}: {e}"));
        // Pods are refused until the namespace's ServiceAccount exists.
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
        tokio::time::timeout(
            super::PATIENCE,
            await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
                sa.is_some()
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("no default ServiceAccount in {namespace}: is kube-controller-manager running?")
        })
        .expect("watching ServiceAccounts");
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client_for(&kubeconfig, &namespace).await;
        let (tx, changes) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let mut watches = Vec::new();
        for (group, version, plural) in WATCHED {
            let resource = ApiResource {
                group: (*group).to_owned(),
                version: (*version).to_owned(),
                api_version: if group.is_empty() {
                    (*version).to_owned()
                } else {
                    format!("{group}/{version}")
                },
                kind: String::new(),
                plural: (*plural).to_owned(),
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            let tx = tx.clone();
            watches.push(tokio::spawn(async move {
                let mut events = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Some(event) = events.next().await {
                    if event.is_ok() {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }));
        }
        let mut real = Real {
            kubeconfig,
            namespace,
            client,
            dir,
            gateway: None,
            changes,
            watches,
            _lock: lock,
        };
        real.gateway = Some(real.start_gateway(sluice).await);
        real
    }

    /// A kubeconfig like the admin's whose context is the test's namespace, for
    /// kubectl and the processes a test starts.
    pub fn namespaced_kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        if !path.exists() {
            std::fs::copy(&self.kubeconfig, &path).expect("copying the kubeconfig");
            let out = std::process::Command::new("kubectl")
                .args(["config", "set-context", "--current", "--namespace"])
                .arg(&self.namespace)
                .arg("--kubeconfig")
                .arg(&path)
                .output()
                .expect("kubectl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        path
    }

    async fn start_gateway(&self, sluice: &Path) -> Daemon {
        let mut command = tokio::process::Command::new(sluice);
        command
            .args(["gateway", "--port", "0", "--seed"])
            .arg(super::SEED.to_string())
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG");
        Daemon::start(
            command,
            "sluice gateway",
            r"sluice gateway listening on (\S+),",
            "the sluice binary is built by cargo test",
        )
        .await
    }

    /// Where the test's gateway listens.
    pub fn gateway_addr(&self) -> std::net::SocketAddr {
        self.gateway
            .as_ref()
            .expect("a gateway")
            .addr
            .parse()
            .expect("the gateway's address")
    }

    /// `http://HOST:PORT` of the test's gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway.as_ref().expect("a gateway").addr)
    }

    /// Waits until the gateway routes by what the API server holds now.
    pub async fn gateway_synced(&self) {
        let url = format!(
            "{}{}",
            self.gateway_url(),
            "/.well-known/sluice-gateway/synced"
        );
        let (code, body) = super::http_get(&url).await;
        assert_eq!(code, 200, "the gateway did not catch up: {body}");
    }

    /// Changes in the test's namespace, as a counter.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// A kubeconfig with the credentials of the controller's ServiceAccount
    /// (`sluice-system/sluice-controller`, as `deploy/controller.yaml` makes it), by
    /// a token from the TokenRequest API: every call it makes is judged by the
    /// cluster's RBAC.
    pub async fn controller_kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("controller.kubeconfig");
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "sluice-system");
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token: TokenRequest = accounts
            .create_subresource(
                "token",
                "sluice-controller",
                &PostParams::default(),
                &request,
            )
            .await
            .unwrap_or_else(|e| panic!("a token for sluice-system/sluice-controller: {e}"));
        let token = token
            .status
            .and_then(|s| s.token)
            .expect("the TokenRequest API answers with a token");
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("the admin kubeconfig");
        let ca: String = config
            .root_cert
            .iter()
            .flatten()
            .map(|der| pem("CERTIFICATE", der))
            .collect();
        let ca_line = if ca.is_empty() {
            String::new()
        } else {
            use base64::Engine;
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(ca)
            )
        };
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: {}\n{ca_line}users:\n- name: sluice-controller\n  user:\n    token: {token}\ncontexts:\n- name: controller\n  context: {{cluster: cluster, user: sluice-controller, namespace: {}}}\ncurrent-context: controller\n",
                config.cluster_url, self.namespace
            ),
        )
        .expect("writing the controller's kubeconfig");
        path
    }

    /// Removes the admission webhook configurations a controller left: before one
    /// that serves none starts, as an operator installing it so would (they fail
    /// closed, and nobody would answer them).
    pub async fn remove_webhook_configurations(&self) {
        for (plural, name) in [
            (
                "mutatingwebhookconfigurations",
                "sluice-mutating-webhook-configuration",
            ),
            (
                "validatingwebhookconfigurations",
                "sluice-validating-webhook-configuration",
            ),
        ] {
            let api = dynamic(&self.client, "admissionregistration.k8s.io", plural, None);
            match api.delete(name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => panic!("deleting {plural} {name}: {e}"),
            }
        }
    }

    /// Forgets what an earlier controller left in `sluice-system` — the webhook
    /// configurations, the Lease, the webhook certificates — so that the next one
    /// starts as on a first install.
    pub async fn forget_controller_state(&self) {
        self.remove_webhook_configurations().await;
        for (group, plural, name) in [
            ("coordination.k8s.io", "leases", "sluice-controller"),
            ("", "secrets", "sluice-webhook-certs"),
        ] {
            let api = dynamic(&self.client, group, plural, Some("sluice-system"));
            match api.delete(name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => panic!("deleting {plural} sluice-system/{name}: {e}"),
            }
        }
    }

    /// The API server's audit log: `SLUICE_TEST_AUDIT_LOG`, or the one `cargo
    /// xtask cluster up` writes beside its kubeconfig.
    pub fn audit_log(&self) -> PathBuf {
        if let Some(path) = std::env::var_os("SLUICE_TEST_AUDIT_LOG").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let beside = self
            .kubeconfig
            .parent()
            .map(|d| d.join("logs").join("audit.log"))
            .filter(|p| p.is_file());
        beside.unwrap_or_else(|| {
            panic!(
                "no audit log of the API server: set SLUICE_TEST_AUDIT_LOG to it (kube-apiserver --audit-log-path, level Metadata at least), or use `cargo xtask cluster up`, which writes one"
            )
        })
    }

    /// The resource requests `user` made since `since`, as the API server's audit
    /// log recorded them (an apply that created its object counted as the create
    /// it was also authorized as), and those its authorizer refused, described.
    pub async fn audited(
        &self,
        user: &str,
        since: k8s_openapi::jiff::Timestamp,
    ) -> (Vec<sluice_sim::api::audit::AuditEntry>, Vec<String>) {
        let log = self.audit_log();
        // The log is written in batches: a request of the test's own, made now,
        // shows when everything before it is in.
        let mark = format!("audit-mark-{:016x}", rand_suffix());
        let _ = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            self.client.clone(),
            &self.namespace,
        )
        .get_opt(&mark)
        .await;
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(&mark) {
                break text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the audit log {} never recorded this test's request",
                log.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let mut calls = Vec::new();
        let mut refused = Vec::new();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            // A watch is recorded when it starts; the rest when answered.
            let stage = event["stage"].as_str().unwrap_or("");
            let watch = event["verb"] == "watch";
            if event["user"]["username"] != user
                || !(stage == "ResponseComplete" || (watch && stage == "ResponseStarted"))
            {
                continue;
            }
            let at = event["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
            if at.is_none_or(|t| t < since) {
                continue;
            }
            let Some(object) = event.get("objectRef") else {
                // Discovery and the like: not resources.
                continue;
            };
            let text = |v: &Value| v.as_str().map(str::to_owned);
            // This test's: its namespace, the controller's, and cluster-wide
            // requests (not what the controller did for earlier tests' namespaces).
            let namespace = text(&object["namespace"]);
            if namespace
                .as_deref()
                .is_some_and(|ns| ns != self.namespace && ns != "sluice-system")
            {
                continue;
            }
            let entry = sluice_sim::api::audit::AuditEntry {
                user: user.to_owned(),
                verb: text(&event["verb"]).unwrap_or_default(),
                group: text(&object["apiGroup"]).unwrap_or_default(),
                resource: text(&object["resource"]).unwrap_or_default(),
                subresource: text(&object["subresource"]),
                namespace,
                name: text(&object["name"]),
            };
            let code = event["responseStatus"]["code"].as_i64().unwrap_or(0);
            // The authorizer's verdict, not any 403 (a namespace being deleted
            // refuses new objects with one too).
            if event["annotations"]["authorization.k8s.io/decision"] == "forbid" {
                refused.push(format!(
                    "{} {}/{} {:?}/{:?}: {}",
                    entry.verb,
                    entry.group,
                    entry.resource,
                    entry.namespace,
                    entry.name,
                    event["responseStatus"]["message"]
                ));
            }
            if entry.verb == "patch" && code == 201 {
                calls.push(sluice_sim::api::audit::AuditEntry {
                    verb: "create".into(),
                    ..entry.clone()
                });
            }
            calls.push(entry);
        }
        (calls, refused)
    }

    /// Where a controller process keeps its compiled modules.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
}

impl Real {
    /// Deletes the test's namespace. With `controller_running`, its Rollouts go
    /// first (a minute at most), while their workloads and Services still stand:
    /// the controller ends each release as on any deletion and lets its finalizer
    /// go, so the next test's controller starts on a quiet cluster. The rest is
    /// collected with the namespace, without waiting.
    pub fn delete_namespace(&self, controller_running: bool) {
        let kubectl = |args: &[&str]| {
            let _ = std::process::Command::new("kubectl")
                .args(args)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        if controller_running {
            kubectl(&[
                "delete",
                "rollouts.rollouts.kruise.io",
                "--all",
                "-n",
                &self.namespace,
                "--wait=true",
                "--timeout=60s",
            ]);
        }
        kubectl(&[
            "delete",
            "namespace",
            "--wait=false",
            "--ignore-not-found",
            &self.namespace,
        ]);
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
        self.delete_namespace(false);
    }
}

/// DER as PEM.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// What every real-cluster test needs, installed once per process (each apply is
/// idempotent): Sluice's CRDs and the controller's ServiceAccount and RBAC, from
/// `deploy/`. Refuses a cluster where another Sluice controller leads: the tests
/// run their own.
async fn prepare(admin: &kube::Client) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let root = super::workspace_root();
        let crds = std::fs::read_to_string(root.join("deploy/crds/crds.yaml")).expect("CRDs");
        super::apply(admin, &crds).await;
        let crd_api: Api<CustomResourceDefinition> = Api::all(admin.clone());
        for name in [
            "rollouts.rollouts.kruise.io",
            "strategymodules.sluice.dev",
            "clusterstrategymodules.sluice.dev",
        ] {
            tokio::time::timeout(
                super::PATIENCE,
                await_condition(crd_api.clone(), name, conditions::is_crd_established()),
            )
            .await
            .unwrap_or_else(|_| panic!("the CRD {name} is not established"))
            .expect("watching CRDs");
        }
        let manifest =
            std::fs::read_to_string(root.join("deploy/controller.yaml")).expect("deploy/controller.yaml");
        let rbac: Vec<String> = manifest
            .split("\n---")
            .filter(|doc| {
                let v: Value = serde_yaml_ng::from_str(doc).unwrap_or(Value::Null);
                matches!(
                    v["kind"].as_str(),
                    Some(
                        "Namespace"
                            | "ServiceAccount"
                            | "ClusterRole"
                            | "ClusterRoleBinding"
                            | "Role"
                            | "RoleBinding"
                    )
                )
            })
            .map(str::to_owned)
            .collect();
        super::apply(admin, &rbac.join("\n---\n")).await;
        // A controller that leads here and keeps its lease is not the tests' own.
        let leases: Api<Lease> = Api::namespaced(admin.clone(), "sluice-system");
        // (holder, renewed, seconds left before it lapses) of a held lease.
        let held = || async {
            let lease = leases
                .get_opt("sluice-controller")
                .await
                .unwrap_or_else(|e| panic!("reading the Lease sluice-system/sluice-controller: {e}"))?;
            let spec = lease.spec.unwrap_or_default();
            let renewed = spec.renew_time.map(|t| t.0)?;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
            let left = i64::from(spec.lease_duration_seconds.unwrap_or(15)) - age.as_secs();
            let holder = spec.holder_identity?;
            (left >= 0).then_some((holder, renewed, left))
        };
        if let Some((holder, renewed, left)) = held().await {
            // A controller that died without letting go lapses at the end of its
            // lease: look again then; one that renewed meanwhile is alive.
            tokio::time::sleep(std::time::Duration::from_secs(left.unsigned_abs() + 1)).await;
            if let Some((now, renewed_again, _)) = held().await
                && renewed_again != renewed
            {
                panic!(
                    "a Sluice controller leads on this cluster ({holder}, then {now}): the real-cluster tests run their own; stop it (`cargo xtask cluster down && cargo xtask cluster up` starts a cluster without one)"
                );
            }
        }
    })
    .await;
}

/// Starts `sluice controller` with `args` after the common ones (the controller's
/// credentials, webhooks by URL on loopback, probes on a free port, the lease in
/// `sluice-system`); ready when it serves its probes, which it does once its
/// webhooks are configured.
pub async fn start_controller(real: &Real, sluice: &Path, what: &str, args: &[String]) -> Daemon {
    let kubeconfig = real.controller_kubeconfig().await;
    let mut command = tokio::process::Command::new(sluice);
    command
        .args(["--log-format", "json"])
        .arg("--cache-dir")
        .arg(real.cache_dir())
        .args(["controller", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--lease-namespace",
            "sluice-system",
        ])
        .args([
            "--webhook-host",
            "127.0.0.1",
            "--webhook-addr",
            "127.0.0.1:0",
        ])
        .arg("--identity")
        .arg(what)
        .args(args)
        .env("SLUICE_LOG", "sluice=info")
        .env_remove("KUBECONFIG");
    Daemon::start(
        command,
        what,
        r#"serving /metrics.*"addr":"(127\.0\.0\.1:\d+)"|"addr":"(127\.0\.0\.1:\d+)".*serving /metrics"#,
        "the sluice binary is built by cargo test",
    )
    .await
}
