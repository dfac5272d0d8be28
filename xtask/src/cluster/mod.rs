//! `cargo xtask cluster up | down | status | env | build`: a local Kubernetes
//! control plane of upstream binaries — etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, and KWOK for nodes and pods without
//! kubelets — on loopback, with generated certificates, RBAC and ServiceAccount
//! tokens. Its state (certificates, kubeconfigs, logs, pid files, etcd's data)
//! lives in `target/cluster/`; the binaries are built once and cached by version
//! (see [`tools`]).

mod peers;
mod pki;
mod process;
mod sluice;
mod tools;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// `cargo xtask cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start the control plane (building its binaries first if they are not
    /// cached); returns when the nodes are Ready and the `default` ServiceAccount
    /// exists. Writes an admin kubeconfig to target/cluster/kubeconfig.
    Up(UpArgs),
    /// Stop every process of the control plane and remove its state.
    Down,
    /// Say what runs and whether the API server answers.
    Status,
    /// Print the lines a shell sources to use the cluster:
    /// `eval "$(cargo xtask cluster env)"`.
    Env,
    /// Only build (or find in the cache) the control plane's binaries.
    Build {
        /// The peers' too: OpenKruise Rollouts and Argo Rollouts.
        #[arg(long)]
        peers: bool,
    },
}

/// Options of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many KWOK nodes to create.
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Also install Sluice (CRDs, ServiceAccount and RBAC from deploy/) and run
    /// its controller with that ServiceAccount's credentials, and the traffic
    /// gateway.
    #[arg(long)]
    pub with_sluice: bool,
    /// Also install OpenKruise Rollouts v0.6.2 from its module's manifests and run
    /// it (it serves rollouts.kruise.io too: not beside Sluice).
    #[arg(long, conflicts_with = "with_sluice")]
    pub with_kruise: bool,
    /// Also install Argo Rollouts v1.9.2 from its module's manifests and run it.
    #[arg(long)]
    pub with_argo: bool,
    /// Run Sluice built with `--release` (as shipped) instead of the debug build
    /// the tests use.
    #[arg(long, requires = "with_sluice")]
    pub release: bool,
}

/// The processes of the control plane, in the order they start (`down` stops
/// them in reverse).
const PROCESSES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// The paths of the repository and of the cluster's state.
pub struct Layout {
    /// The workspace's root.
    pub root: PathBuf,
    /// Cargo's target folder.
    pub target: PathBuf,
    /// `target/cluster`.
    pub state: PathBuf,
}

impl Layout {
    pub fn new() -> anyhow::Result<Layout> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the workspace's root")?
            .to_owned();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Ok(Layout {
            root,
            state: target.join("cluster"),
            target,
        })
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }

    fn info(&self) -> PathBuf {
        self.state.join("cluster.json")
    }

    /// What `up` recorded: the API server's URL, the binaries' folders.
    pub fn read_info(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.info()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let layout = Layout::new()?;
    match command {
        ClusterCommand::Up(args) => up(&layout, &args),
        ClusterCommand::Down => down(&layout),
        ClusterCommand::Status => status(&layout),
        ClusterCommand::Env => env(&layout),
        ClusterCommand::Build { peers } => build(peers),
    }
}

/// Builds (or finds cached) every binary the control plane needs, and the peers'
/// with `peers`.
pub fn build(peers: bool) -> anyhow::Result<()> {
    let layout = Layout::new()?;
    for module in [&tools::KUBERNETES, &tools::KWOK] {
        let dir = tools::ensure(&layout.root, module)?;
        eprintln!("xtask: {} programs in {}", module.pins, dir.display());
    }
    if peers {
        for module in [&tools::KRUISE_ROLLOUTS, &tools::ARGO_ROLLOUTS] {
            let dir = tools::ensure(&layout.root, module)?;
            eprintln!("xtask: {} programs in {}", module.pins, dir.display());
        }
    }
    for module in [&tools::KWOK, &tools::GATEWAY_API] {
        let dir = tools::module_dir(&layout.root, module)?;
        eprintln!("xtask: {} files in {}", module.pins, dir.display());
    }
    Ok(())
}

/// The documents of a YAML stream (`---`-separated) whose `kind` passes `keep`.
fn documents(yaml: &str, keep: impl Fn(&str) -> bool) -> String {
    yaml.split("\n---")
        .filter(|doc| {
            doc.lines()
                .find_map(|l| l.strip_prefix("kind:"))
                .is_some_and(|k| keep(k.trim()))
        })
        .collect::<Vec<_>>()
        .join("\n---")
}

/// A fresh control plane for the tests, without Sluice (they run their own);
/// stopped again if it cannot be had whole.
pub fn fresh_up() -> anyhow::Result<()> {
    let layout = Layout::new()?;
    if PROCESSES
        .iter()
        .chain(sluice::PROCESSES)
        .chain(peers::PROCESSES)
        .any(|p| process::running(&layout.state, p).is_some())
    {
        eprintln!(
            "xtask: the local cluster that runs is stopped: the real-cluster suite starts a fresh one"
        );
    }
    down(&layout)?;
    let result = up(
        &layout,
        &UpArgs {
            nodes: 3,
            with_sluice: false,
            with_kruise: false,
            with_argo: false,
            release: false,
        },
    );
    if result.is_err() {
        let _ = down(&layout);
    }
    result
}

/// A fresh control plane with one engine on it (`kruise` or `sluice`), for the
/// oracle; the admin kubeconfig's path.
pub fn engine_up(engine: &str, nodes: u32, release: bool) -> anyhow::Result<PathBuf> {
    let layout = Layout::new()?;
    down(&layout)?;
    let result = up(
        &layout,
        &UpArgs {
            nodes,
            with_sluice: engine == "sluice",
            with_kruise: engine == "kruise",
            with_argo: engine == "argo",
            release,
        },
    );
    if result.is_err() {
        let _ = down(&layout);
    }
    result.map(|()| layout.kubeconfig())
}

/// How a client reaches the running API server with the admin's certificate:
/// its URL, the CA, the admin's certificate and key.
pub struct AdminAccess {
    pub server: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The admin's access to the running control plane.
pub fn admin_access() -> anyhow::Result<AdminAccess> {
    let layout = Layout::new()?;
    let server = layout
        .read_info()
        .and_then(|i| i["server"].as_str().map(str::to_owned))
        .context("the cluster is not up")?;
    let pki = layout.state.join("pki");
    Ok(AdminAccess {
        server,
        ca: pki.join("ca.crt"),
        cert: pki.join("admin.crt"),
        key: pki.join("admin.key"),
    })
}

/// The pid of one of the cluster's processes (`sluice-controller`,
/// `kruise-rollout`, `argo-rollouts`, `kube-apiserver`, …), if it runs.
pub fn pid_of(name: &str) -> Option<u32> {
    process::running(&Layout::new().ok()?.state, name)
}

/// Stops one of the cluster's processes (the measures of `scale` leave out
/// Sluice's traffic gateway, which the peers have no counterpart of).
pub fn stop_process(name: &str) -> anyhow::Result<bool> {
    process::stop(&Layout::new()?.state, name, Duration::from_secs(10))
}

/// The API server's audit log.
pub fn audit_log() -> anyhow::Result<PathBuf> {
    Ok(Layout::new()?.state.join("logs/audit.log"))
}

/// Stops the control plane.
pub fn stop() -> anyhow::Result<()> {
    down(&Layout::new()?)
}

/// A port free on loopback now (the program it is given to binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the cluster `up` started still runs whole.
fn all_running(layout: &Layout) -> bool {
    PROCESSES
        .iter()
        .all(|p| process::running(&layout.state, p).is_some())
}

fn up(layout: &Layout, args: &UpArgs) -> anyhow::Result<()> {
    let runs = |names: &[&str]| {
        names
            .iter()
            .all(|p| process::running(&layout.state, p).is_some())
    };
    let extras_running = (runs(sluice::PROCESSES) || !args.with_sluice)
        && (runs(&["kruise-rollout"]) || !args.with_kruise)
        && (runs(&["argo-rollouts"]) || !args.with_argo);
    if all_running(layout) && api_ready(layout) && extras_running {
        eprintln!(
            "xtask: the cluster already runs (`cargo xtask cluster down` stops it); KUBECONFIG={}",
            layout.kubeconfig().display()
        );
        return Ok(());
    }
    // Whatever is left of an earlier cluster goes: a cluster starts whole and empty.
    down(layout)?;
    let k8s = tools::ensure(&layout.root, &tools::KUBERNETES)?;
    let kwok = tools::ensure(&layout.root, &tools::KWOK)?;
    let version = tools::version(&layout.root, &tools::KUBERNETES)?;
    let started = Instant::now();
    std::fs::create_dir_all(&layout.state)?;
    // The audit log is appended to: an earlier cluster's would mix in.
    let _ = std::fs::remove_file(layout.state.join("logs").join("audit.log"));
    let pki = pki::generate(&layout.state.join("pki"))?;

    let etcd_port = free_port()?;
    let etcd_peer = free_port()?;
    let api_port = free_port()?;
    let server = format!("https://127.0.0.1:{api_port}");
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let data = layout.state.join("etcd");
    std::fs::create_dir_all(&data)?;
    process::spawn(
        &layout.state,
        "etcd",
        Command::new(k8s.join("etcd"))
            .arg("--name=sluice")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=sluice=http://127.0.0.1:{etcd_peer}"
            ))
            // A throwaway cluster: its data need not survive a power cut, and
            // fsync would make every write wait for the disk.
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn"),
    )?;
    wait_for(
        layout,
        "etcd",
        "etcd to answer",
        Duration::from_secs(30),
        || http_ok(etcd_port, "/health"),
    )?;

    let admin = pki.client("admin");
    std::fs::write(
        layout.kubeconfig(),
        pki::kubeconfig(&pki, &server, "admin", &admin),
    )?;
    let mut configs = Vec::new();
    for (name, user) in [
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-scheduler", "system:kube-scheduler"),
    ] {
        let path = layout.state.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            pki::kubeconfig(&pki, &server, user, &pki.client(name)),
        )?;
        configs.push(path);
    }
    let audit_policy = layout.state.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)?;
    process::spawn(
        &layout.state,
        "kube-apiserver",
        Command::new(k8s.join("kube-apiserver"))
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            // Without a default route the server cannot work out an address to
            // advertise; loopback is the truth here.
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--tls-cert-file={}", pki.serving_cert().display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key().display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert().display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_pub().display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_key().display()
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            // No kubelet holds the `kubernetes` Service's endpoints up to date.
            .arg("--endpoint-reconciler-type=none")
            // Every request, by whom and with which verb, for the RBAC checks.
            .arg(format!("--audit-policy-file={}", audit_policy.display()))
            .arg(format!(
                "--audit-log-path={}",
                layout.state.join("logs").join("audit.log").display()
            ))
            .arg("--audit-log-mode=batch")
            .arg("--audit-log-batch-max-wait=1s")
            .arg("--profiling=false"),
    )?;
    wait_for(
        layout,
        "kube-apiserver",
        "kube-apiserver to be ready",
        Duration::from_secs(90),
        || api_ready(layout),
    )?;

    process::spawn(
        &layout.state,
        "kube-controller-manager",
        Command::new(k8s.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={}", configs[0].display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                configs[0].display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                configs[0].display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()?))
            .arg("--leader-elect=false")
            // Each controller calls the API server as its own ServiceAccount, as
            // in a cluster set up by kubeadm: RBAC judges them separately.
            .arg("--use-service-account-credentials=true")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.sa_key().display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca_cert().display()))
            .arg(format!(
                "--cluster-signing-cert-file={}",
                pki.ca_cert().display()
            ))
            .arg(format!(
                "--cluster-signing-key-file={}",
                pki.ca_key().display()
            ))
            .arg("--profiling=false"),
    )?;
    process::spawn(
        &layout.state,
        "kube-scheduler",
        Command::new(k8s.join("kube-scheduler"))
            .arg(format!("--kubeconfig={}", configs[1].display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                configs[1].display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                configs[1].display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()?))
            .arg("--leader-elect=false")
            .arg("--profiling=false"),
    )?;
    let kwok_config = layout.state.join("kwok.yaml");
    std::fs::write(&kwok_config, kwok_stages(&layout.root)?)?;
    process::spawn(
        &layout.state,
        "kwok",
        Command::new(kwok.join("kwok"))
            // KWOK reads ~/.kwok/kwok.yaml when there is one: not here.
            .env("KWOK_WORKDIR", layout.state.join("kwok"))
            .arg(format!("--kubeconfig={}", layout.kubeconfig().display()))
            .arg(format!("--config={}", kwok_config.display()))
            .arg("--manage-all-nodes=false")
            .arg(format!(
                "--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake"
            ))
            .arg("--cidr=10.244.0.0/16")
            .arg("--node-ip=127.0.0.1")
            .arg("--node-lease-duration-seconds=40")
            .arg(format!("--server-address=127.0.0.1:{}", free_port()?)),
    )?;

    let info = json!({
        "version": version,
        "server": server,
        "kubeconfig": layout.kubeconfig(),
        "bin": [k8s, kwok],
    });
    std::fs::write(layout.info(), serde_json::to_string_pretty(&info)?)?;

    let kubectl = Kubectl::new(layout);
    kubectl.apply(&nodes_yaml(args.nodes))?;
    eprintln!("xtask: waiting for {} KWOK nodes to be Ready …", args.nodes);
    for name in ["kube-controller-manager", "kube-scheduler", "kwok"] {
        if process::running(&layout.state, name).is_none() {
            bail!(
                "{name} stopped at start; the end of its log ({}):\n{}",
                process::files(&layout.state, name).log.display(),
                process::log_tail(&layout.state, name, 30)
            );
        }
    }
    kubectl.run(&[
        "wait",
        "--for=condition=Ready",
        "node",
        "--all",
        "--timeout=120s",
    ])?;
    // Pods are refused in a namespace until its ServiceAccount exists (the
    // ServiceAccount admission plugin), which the controller manager creates.
    kubectl.run(&[
        "wait",
        "--for=create",
        "serviceaccount/default",
        "-n",
        "default",
        "--timeout=120s",
    ])?;
    sluice::gateway_api_crds(&layout.root, &kubectl)?;
    eprintln!(
        "xtask: Kubernetes {version} is up in {:.1}s: kube-apiserver at {server}, {} KWOK nodes, the Gateway API's CRDs",
        started.elapsed().as_secs_f64(),
        args.nodes,
    );
    let mut info = info;
    if args.with_sluice {
        let sluice = sluice::up(layout, &kubectl, &server, args.release)?;
        eprintln!(
            "xtask: Sluice is installed (deploy/crds, deploy/controller.yaml's ServiceAccount and RBAC):\n\
             xtask:   sluice controller  as sluice-system/sluice-controller, probes and metrics at http://{}, webhooks by URL on 127.0.0.1 (log: {})\n\
             xtask:   sluice gateway     http://{} (Ingress and HTTPRoute traffic; log: {})",
            sluice.metrics,
            process::files(&layout.state, "sluice-controller")
                .log
                .display(),
            sluice.gateway,
            process::files(&layout.state, "sluice-gateway")
                .log
                .display(),
        );
        info["gateway"] = json!(sluice.gateway);
        info["controller"] = json!(sluice.metrics);
        info["bin"]
            .as_array_mut()
            .expect("a list")
            .push(json!(layout.target.join("debug")));
        std::fs::write(layout.info(), serde_json::to_string_pretty(&info)?)?;
    }
    if args.with_kruise {
        let metrics = peers::kruise(layout, &kubectl)?;
        eprintln!(
            "xtask: OpenKruise Rollouts {} runs: metrics at http://{metrics}, webhooks by URL on 127.0.0.1 (log: {})",
            tools::version(&layout.root, &tools::KRUISE_ROLLOUTS)?,
            process::files(&layout.state, "kruise-rollout")
                .log
                .display()
        );
    }
    if args.with_argo {
        let metrics = peers::argo(layout, &kubectl)?;
        eprintln!(
            "xtask: Argo Rollouts {} runs: metrics at http://{metrics} (log: {})",
            tools::version(&layout.root, &tools::ARGO_ROLLOUTS)?,
            process::files(&layout.state, "argo-rollouts").log.display()
        );
    }
    eprintln!(
        "xtask: KUBECONFIG={}   (`eval \"$(cargo xtask cluster env)\"`; `cargo xtask cluster down` stops it)",
        layout.kubeconfig().display()
    );
    Ok(())
}

/// The API server's audit log keeps who made each request with which verb on
/// what (the RBAC tests read it), leaving out the control plane's own chatter.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-scheduler, system:kube-controller-manager, system:apiserver]
- level: None
  userGroups: [system:serviceaccounts:kube-system, system:nodes]
- level: Metadata
";

/// KWOK's annotation on the nodes it plays the kubelet of.
const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// KWOK's stages, from the module's own files: nodes become Ready and keep a
/// Lease; pods start, become Ready at once, complete and go when deleted. Pods
/// the simulator would never make ready (an image tagged `fail…` or `…-fail`,
/// or `SIM_NEVER_READY=true`) run without ever becoming ready here too, so a
/// test means the same on both.
fn kwok_stages(root: &Path) -> anyhow::Result<String> {
    let dir = tools::module_dir(root, &tools::KWOK)?;
    let mut out = String::new();
    for file in [
        "kustomize/stage/node/fast/node-initialize.yaml",
        "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "kustomize/stage/pod/fast/pod-ready.yaml",
        "kustomize/stage/pod/fast/pod-complete.yaml",
        "kustomize/stage/pod/fast/pod-delete.yaml",
    ] {
        let path = dir.join(file);
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading KWOK's stage {}", path.display()))?;
        if file.ends_with("pod-ready.yaml") {
            const ANCHOR: &str = "  selector:\n    matchExpressions:\n";
            if !text.contains(ANCHOR) {
                bail!(
                    "{} has no `selector.matchExpressions` to add the never-ready pods to: a new KWOK release changed it",
                    path.display()
                );
            }
            text = text.replacen(
                ANCHOR,
                &format!("{ANCHOR}    - key: '{NEVER_READY}'\n      operator: 'NotIn'\n      values: ['true']\n"),
                1,
            );
        }
        out.push_str("---\n");
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&NEVER_READY_STAGE.replace("NEVER_READY", &NEVER_READY.replace('\'', "''")));
    Ok(out)
}

/// A jq expression true of the pods the simulator never makes ready.
const NEVER_READY: &str = r#"((.spec.containers // []) | any(.image | (split(":") | if length > 1 then last else "" end) | (startswith("fail") or endswith("-fail")))) or ((.spec.containers[0].env // []) | any(.name == "SIM_NEVER_READY" and .value == "true"))"#;

/// The stage of those pods: running, their containers waiting in a crash loop,
/// never ready (as the simulator shows them).
const NEVER_READY_STAGE: &str = r#"---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-never-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: 'NEVER_READY'
      operator: 'In'
      values: ['true']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 1
        state:
          waiting:
            reason: CrashLoopBackOff
            message: back-off restarting failed container
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
"#;

/// KWOK nodes: untainted (every pod here is a KWOK pod), roomy enough for the
/// scale runs.
fn nodes_yaml(count: u32) -> String {
    (0..count)
        .map(|i| {
            format!(
                "---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-{i}
  annotations:
    {KWOK_ANNOTATION}: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    kubernetes.io/hostname: kwok-node-{i}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {{cpu: \"64\", memory: 256Gi, pods: \"4000\"}}
  capacity: {{cpu: \"64\", memory: 256Gi, pods: \"4000\"}}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
"
            )
        })
        .collect()
}

fn down(layout: &Layout) -> anyhow::Result<()> {
    let mut stopped = Vec::new();
    for name in sluice::PROCESSES
        .iter()
        .chain(peers::PROCESSES)
        .chain(PROCESSES.iter().rev())
    {
        if process::stop(&layout.state, name, Duration::from_secs(10))? {
            stopped.push(*name);
        }
    }
    if !stopped.is_empty() {
        eprintln!("xtask: stopped {}", stopped.join(", "));
    }
    for dir in ["etcd", "pki", "run"] {
        let path = layout.state.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let _ = std::fs::remove_file(layout.info());
    Ok(())
}

fn status(layout: &Layout) -> anyhow::Result<()> {
    let mut down = 0;
    for name in PROCESSES {
        match process::running(&layout.state, name) {
            Some(pid) => println!("{name:<24} running (pid {pid})"),
            None => {
                down += 1;
                println!("{name:<24} not running");
            }
        }
    }
    if down == PROCESSES.len() {
        println!("the cluster is down (`cargo xtask cluster up` starts it)");
        return Ok(());
    }
    for name in sluice::PROCESSES.iter().chain(peers::PROCESSES) {
        if let Some(pid) = process::running(&layout.state, name) {
            println!("{name:<24} running (pid {pid})");
        }
    }
    let kubectl = Kubectl::new(layout);
    match kubectl.run(&["version", "-o", "json"]) {
        Ok(text) => {
            let v: Value = serde_json::from_str(&text)?;
            println!(
                "kube-apiserver {} at {}",
                v.pointer("/serverVersion/gitVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                layout
                    .read_info()
                    .and_then(|i| i["server"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            );
            print!("{}", kubectl.run(&["get", "nodes"])?);
            println!("KUBECONFIG={}", layout.kubeconfig().display());
        }
        Err(e) => println!("the API server does not answer: {e:#}"),
    }
    if down > 0 {
        bail!(
            "{down} of the cluster's processes are not running: `cargo xtask cluster up` starts it again"
        )
    }
    Ok(())
}

fn env(layout: &Layout) -> anyhow::Result<()> {
    let Some(info) = layout.read_info().filter(|_| all_running(layout)) else {
        bail!("the cluster is not running: `cargo xtask cluster up` starts it");
    };
    let mut path: Vec<String> = info["bin"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    path.push("${PATH}".into());
    println!("export KUBECONFIG={}", layout.kubeconfig().display());
    println!("export PATH={}", path.join(":"));
    if let Some(gateway) = info["gateway"]
        .as_str()
        .filter(|_| process::running(&layout.state, "sluice-gateway").is_some())
    {
        println!("export SLUICE_GATEWAY={gateway}");
    }
    Ok(())
}

/// Waits until `ready` holds, failing with the end of `name`'s log if the process
/// stops first or `limit` passes. Starting programs are polled: they offer
/// nothing to wait on.
fn wait_for(
    layout: &Layout,
    name: &str,
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        let log = process::files(&layout.state, name).log;
        // By the pid alone: just started, its command line may not show the
        // program yet (exec reports success before it sets the new arguments).
        if !process::started(&layout.state, name) {
            bail!(
                "{name} stopped while waiting for {what}; the end of its log ({}):\n{}",
                log.display(),
                process::log_tail(&layout.state, name, 30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "gave up waiting for {what} after {}s; the end of its log ({}):\n{}",
                limit.as_secs(),
                log.display(),
                process::log_tail(&layout.state, name, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a plain HTTP GET of `path` on loopback `port` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn api_ready(layout: &Layout) -> bool {
    Kubectl::new(layout)
        .quiet(&["get", "--raw", "/readyz"])
        .is_ok_and(|out| out.trim() == "ok")
}

/// kubectl with the admin kubeconfig.
pub struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl with the kubeconfig at `kubeconfig`.
    pub fn at(kubeconfig: PathBuf) -> Kubectl {
        Kubectl { kubeconfig }
    }

    pub fn new(layout: &Layout) -> Kubectl {
        Kubectl {
            kubeconfig: layout.kubeconfig(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }

    /// Runs kubectl; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl (kubectl 1.32 must be on PATH)")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn quiet(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(args)
    }

    /// Waits until every CRD of `crds` (names like `rollouts.argoproj.io`) is
    /// Established. Not `kubectl wait --for=condition=Established`: right after
    /// an apply a CRD may have no conditions yet, and kubectl 1.32 then fails
    /// instead of waiting.
    pub fn wait_established(&self, crds: &[&str]) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for crd in crds {
            loop {
                let status = self
                    .run(&[
                        "get",
                        "crd",
                        crd,
                        "-o",
                        r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
                    ])
                    .unwrap_or_default();
                if status.trim() == "True" {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("the CRD {crd} was not Established within 60 s");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        Ok(())
    }

    /// `kubectl apply --server-side -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        self.run_input(&["apply", "--server-side", "-f", "-"], yaml)
    }

    /// Runs kubectl with `input` on its stdin; its stdout, or an error with its
    /// stderr.
    pub fn run_input(&self, args: &[&str], input: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl (kubectl 1.32 must be on PATH)")?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_are_kept_by_kind() {
        let yaml = "kind: Namespace\nmetadata: {name: a}\n---\nkind: Deployment\nmetadata: {name: b}\n---\nkind: Role\nmetadata: {name: c}\n";
        let kept = super::documents(yaml, |k| k != "Deployment");
        assert!(
            kept.contains("name: a") && kept.contains("name: c"),
            "{kept}"
        );
        assert!(!kept.contains("Deployment"), "{kept}");
    }
}
