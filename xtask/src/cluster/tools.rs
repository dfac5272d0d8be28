//! The control plane's programs, built from upstream Go modules and cached by
//! version outside `target/` (a `cargo clean` does not cost a rebuild).
//!
//! Each wrapper module in the repository (`xtask/k8s`, `xtask/kwok`) requires one
//! upstream module at one release, with the `replace` lines it needs and a
//! committed `go.sum`: the build is reproducible and never resolves anything new
//! (`-mod=readonly`). The release is read from the wrapper's `go.mod`, so it is
//! written in one place.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// A program built from a wrapper module.
pub struct Program {
    /// The binary's name.
    pub name: &'static str,
    /// Its main package.
    pub package: &'static str,
    /// Whether Kubernetes' version variables are set in it (`/version`).
    pub kube_version: bool,
    /// A variable of its own set to the release (`-X VAR=<version>`), if any.
    pub version_var: Option<&'static str>,
}

/// A wrapper module and what is built from it.
pub struct Module {
    /// Its folder in the repository.
    pub dir: &'static str,
    /// The upstream module it pins; its version names the cache.
    pub pins: &'static str,
    /// The cache's folder for it (`~/.cache/sluice/<cache>/<version>`).
    pub cache: &'static str,
    pub programs: &'static [Program],
}

/// Kubernetes' control plane and the etcd its release pins.
pub const KUBERNETES: Module = Module {
    dir: "xtask/k8s",
    pins: "k8s.io/kubernetes",
    cache: "k8s",
    programs: &[
        Program {
            name: "etcd",
            package: "go.etcd.io/etcd/server/v3",
            kube_version: false,
            version_var: None,
        },
        Program {
            name: "kube-apiserver",
            package: "k8s.io/kubernetes/cmd/kube-apiserver",
            kube_version: true,
            version_var: None,
        },
        Program {
            name: "kube-controller-manager",
            package: "k8s.io/kubernetes/cmd/kube-controller-manager",
            kube_version: true,
            version_var: None,
        },
        Program {
            name: "kube-scheduler",
            package: "k8s.io/kubernetes/cmd/kube-scheduler",
            kube_version: true,
            version_var: None,
        },
    ],
};

/// KWOK: nodes and pods without kubelets.
pub const KWOK: Module = Module {
    dir: "xtask/kwok",
    pins: "sigs.k8s.io/kwok",
    cache: "kwok",
    programs: &[Program {
        name: "kwok",
        package: "sigs.k8s.io/kwok/cmd/kwok",
        kube_version: false,
        version_var: None,
    }],
};

/// OpenKruise Rollouts: the engine of KubeVela's page, the oracle of fidelity.
pub const KRUISE_ROLLOUTS: Module = Module {
    dir: "xtask/peers/kruise-rollouts",
    pins: "github.com/openkruise/rollouts",
    cache: "kruise-rollouts",
    programs: &[Program {
        name: "kruise-rollout",
        package: "github.com/openkruise/rollouts",
        kube_version: false,
        version_var: None,
    }],
};

/// Argo Rollouts' controller.
pub const ARGO_ROLLOUTS: Module = Module {
    dir: "xtask/peers/argo-rollouts",
    pins: "github.com/argoproj/argo-rollouts",
    cache: "argo-rollouts",
    programs: &[Program {
        name: "rollouts-controller",
        package: "github.com/argoproj/argo-rollouts/cmd/rollouts-controller",
        kube_version: false,
        version_var: Some("github.com/argoproj/argo-rollouts/utils/version.version"),
    }],
};

/// The Gateway API: only its CRDs are used (nothing is built).
pub const GATEWAY_API: Module = Module {
    dir: "xtask/gateway-api",
    pins: "sigs.k8s.io/gateway-api",
    cache: "gateway-api",
    programs: &[],
};

/// Whether a Go toolchain new enough for the wrappers answers.
fn have_go() -> bool {
    check_go().is_ok()
}

/// The folder of `module`'s pinned upstream module: in Go's module cache,
/// downloaded first when it is not there (checked against the wrapper's go.sum);
/// where no Go toolchain is, fetched from the module proxy by this task and
/// checked against the same go.sum line.
pub fn module_dir(root: &Path, module: &Module) -> anyhow::Result<PathBuf> {
    if !have_go() {
        return fetched_module(root, module);
    }
    let version = version(root, module)?;
    let wrapper = root.join(module.dir);
    let go = |args: &[&str]| {
        Command::new("go")
            .current_dir(&wrapper)
            .args(args)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=readonly")
            .output()
    };
    let download = go(&["mod", "download", module.pins]);
    let listed = go(&["list", "-m", "-f", "{{.Dir}}", module.pins]);
    match (download, listed) {
        (_, Ok(o)) if o.status.success() && !o.stdout.trim_ascii().is_empty() => {
            Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        }
        (Err(e), _) => bail!(
            "{} {version} is read from Go's module cache, and Go is not on PATH ({e}); install Go 1.26 or newer",
            module.pins
        ),
        (Ok(o), _) => bail!(
            "cannot download {} {version} (`go mod download` in {}): {}",
            module.pins,
            module.dir,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
    }
}

/// `module`'s files, from the Go module proxy (`GOPROXY`'s first entry, else
/// proxy.golang.org), verified by the `h1:` hash of the wrapper's go.sum (Go's
/// own: a SHA-256 over the sorted list of each file's SHA-256 and name) and
/// unpacked into the cache.
fn fetched_module(root: &Path, module: &Module) -> anyhow::Result<PathBuf> {
    use std::io::Read;
    let version = version(root, module)?;
    let dir = cache_home()?.join(module.cache).join(&version).join("src");
    if dir.join(".verified").is_file() {
        return Ok(dir);
    }
    let sum_path = root.join(module.dir).join("go.sum");
    let sums = std::fs::read_to_string(&sum_path)
        .with_context(|| format!("reading {}", sum_path.display()))?;
    let want = sums
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(module.pins) && w.next() == Some(version.as_str()))
                .then(|| w.next().map(str::to_owned))
                .flatten()
        })
        .with_context(|| {
            format!(
                "{} has no hash of {} {version}",
                sum_path.display(),
                module.pins
            )
        })?;
    let proxy = match std::env::var("GOPROXY") {
        Ok(p) if !p.is_empty() => p
            .split([',', '|'])
            .find(|e| e.starts_with("http"))
            .map(str::to_owned)
            .with_context(|| format!("GOPROXY={p} names no proxy to fetch {} from", module.pins))?,
        _ => "https://proxy.golang.org".to_owned(),
    };
    let url = format!(
        "{}/{}/@v/{version}.zip",
        proxy.trim_end_matches('/'),
        module.pins
    );
    eprintln!("xtask: no Go toolchain: fetching {url} …");
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "--max-time", "300", &url])
        .output()
        .context("running curl to fetch the module (install curl, or Go 1.26)")?;
    if !out.status.success() {
        bail!(
            "fetching {url} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(out.stdout))
        .with_context(|| format!("{url} is not a zip"))?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        files.push((entry.name().to_owned(), bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = String::new();
    for (name, bytes) in &files {
        summary.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))));
    }
    use base64::Engine as _;
    let got = format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes()))
    );
    if got != want {
        bail!(
            "{url} does not match {}: {got}, not {want}",
            sum_path.display()
        );
    }
    let prefix = format!("{}@{version}/", module.pins);
    let _ = std::fs::remove_dir_all(&dir);
    for (name, bytes) in &files {
        let Some(rel) = name.strip_prefix(&prefix).filter(|rel| {
            Path::new(rel)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        }) else {
            bail!("{url}: {name} is outside {prefix}");
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    std::fs::write(dir.join(".verified"), format!("{want}\n"))?;
    Ok(dir)
}

/// Where the binaries come from: a folder given by `SLUICE_K8S_BIN`, or built.
pub const BIN_ENV: &str = "SLUICE_K8S_BIN";

/// The version of `module` its wrapper pins.
pub fn version(root: &Path, module: &Module) -> anyhow::Result<String> {
    let path = root.join(module.dir).join("go.mod");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .map(|l| l.trim_start_matches("require").trim())
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(module.pins))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
        .with_context(|| format!("{} does not require {}", path.display(), module.pins))
}

/// The user's cache folder for Sluice.
pub fn cache_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("sluice"));
    }
    let home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: no cache folder for the binaries")?;
    Ok(PathBuf::from(home).join(".cache").join("sluice"))
}

/// The folder holding `module`'s binaries: `SLUICE_K8S_BIN` when set (each
/// program must be there), else the cache, built first when it is not complete
/// for exactly this wrapper.
pub fn ensure(root: &Path, module: &Module) -> anyhow::Result<PathBuf> {
    // SLUICE_K8S_BIN stands for the control plane's programs, not the peers'.
    let control_plane = [KUBERNETES.cache, KWOK.cache].contains(&module.cache);
    if let Some(dir) = std::env::var_os(BIN_ENV)
        .filter(|d| !d.is_empty())
        .filter(|_| control_plane)
    {
        let dir = PathBuf::from(dir);
        let missing: Vec<&str> = module
            .programs
            .iter()
            .map(|p| p.name)
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{BIN_ENV}={} lacks {}: put prebuilt binaries of those names there, or unset {BIN_ENV} to build them from {}",
                dir.display(),
                missing.join(", "),
                module.dir
            );
        }
        return Ok(dir);
    }
    let version = version(root, module)?;
    let dir = cache_home()?.join(module.cache).join(&version).join("bin");
    let stamp = stamp(root, module, &version)?;
    let stamp_file = dir.join(".built-from");
    let complete = module.programs.iter().all(|p| dir.join(p.name).is_file())
        && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s.trim() == stamp);
    if complete {
        return Ok(dir);
    }
    check_go()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A build from another wrapper is stale as a whole.
    let _ = std::fs::remove_file(&stamp_file);
    let started = Instant::now();
    for program in module.programs {
        build(root, module, program, &version, &dir)?;
    }
    std::fs::write(&stamp_file, format!("{stamp}\n"))?;
    eprintln!(
        "xtask: {} {version} built in {} and cached in {}",
        module.pins,
        minutes(started.elapsed()),
        dir.display()
    );
    Ok(dir)
}

/// What the cached binaries were built from: the wrapper's go.mod and go.sum.
fn stamp(root: &Path, module: &Module, version: &str) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    hash.update(version.as_bytes());
    for file in ["go.mod", "go.sum"] {
        let path = root.join(module.dir).join(file);
        hash.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(hex::encode(hash.finalize()))
}

/// Go's version, which must be at least the wrappers' `go` line.
fn check_go() -> anyhow::Result<()> {
    const NEED: (u32, u32) = (1, 26);
    let instruction = format!(
        "install Go {}.{} or newer (https://go.dev/doc/install), or set {BIN_ENV}=DIR to a folder of prebuilt binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok, e.g. kwokctl's or envtest's)",
        NEED.0, NEED.1
    );
    let output = Command::new("go")
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output();
    let text = match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => bail!(
            "`go env GOVERSION` failed ({}): {instruction}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("Go is not on PATH ({e}): {instruction}"),
    };
    let numbers: Vec<u32> = text
        .trim_start_matches("go")
        .split(['.', 'r', 'b'])
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [major, minor] if (*major, *minor) >= NEED => Ok(()),
        _ => bail!("this machine has {text}: {instruction}"),
    }
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `-ldflags` of a program: no symbol tables, and Kubernetes' version variables so
/// that `/version` and `--version` say the release instead of `v0.0.0-master`.
fn ldflags(program: &Program, version: &str) -> String {
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    if let Some(var) = program.version_var {
        flags.push(format!("-X {var}={version}"));
    }
    if program.kube_version {
        let mut parts = version.trim_start_matches('v').split('.');
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or_default();
        for package in [
            "k8s.io/client-go/pkg/version",
            "k8s.io/component-base/version",
        ] {
            for (name, value) in [
                ("gitVersion", version),
                ("gitMajor", major),
                ("gitMinor", minor),
                ("gitTreeState", "clean"),
            ] {
                flags.push(format!("-X {package}.{name}={value}"));
            }
        }
    }
    flags.join(" ")
}

/// Builds one program into `dir`, printing progress: the first build of the
/// control plane compiles a few thousand packages.
fn build(
    root: &Path,
    module: &Module,
    program: &Program,
    version: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    eprintln!(
        "xtask: building {} from {} {version} (the first build takes minutes; cached afterwards) …",
        program.name, module.pins
    );
    let started = Instant::now();
    let partial = dir.join(format!(".{}.partial", program.name));
    let mut child = Command::new("go")
        .current_dir(root.join(module.dir))
        .args(["build", "-v", "-trimpath", "-mod=readonly", "-ldflags"])
        .arg(ldflags(program, version))
        .arg("-o")
        .arg(&partial)
        .arg(program.package)
        .env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting `go build`")?;
    let stderr = child.stderr.take().context("go build's stderr")?;
    let mut compiled = 0usize;
    let mut errors = Vec::new();
    let mut last_report = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        // `-v` names each package as it is compiled; anything else is a message.
        if line.starts_with('#') || line.contains(": ") || line.starts_with('\t') {
            errors.push(line);
            continue;
        }
        compiled += 1;
        if last_report.elapsed() >= Duration::from_secs(15) {
            eprintln!(
                "xtask:   {}: {compiled} packages compiled, {} (now {line})",
                program.name,
                minutes(started.elapsed())
            );
            last_report = Instant::now();
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "building {} failed ({status}):\n{}\nThe command: cd {} && go build {}",
            program.name,
            errors.join("\n"),
            root.join(module.dir).display(),
            program.package
        );
    }
    std::fs::rename(&partial, dir.join(program.name))?;
    eprintln!(
        "xtask:   {} built ({compiled} packages, {})",
        program.name,
        minutes(started.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_wrappers_go_mod() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root");
        let kubernetes = version(root, &KUBERNETES).expect("pinned");
        assert!(kubernetes.starts_with("v1."), "{kubernetes}");
        assert!(version(root, &KWOK).expect("pinned").starts_with("v0."));
    }

    #[test]
    fn kubernetes_programs_get_the_release_as_their_version() {
        let flags = ldflags(&KUBERNETES.programs[1], "v1.36.3");
        assert!(flags.contains("-X k8s.io/component-base/version.gitVersion=v1.36.3"));
        assert!(flags.contains("-X k8s.io/client-go/pkg/version.gitMinor=36"));
        assert!(flags.contains("gitMajor=1 "));
        assert_eq!(ldflags(&KUBERNETES.programs[0], "v1.36.3"), "-s -w");
    }
}
