//! Compiles strategy crates of this workspace for a wasm target from a build script,
//! and turns core modules into components.
//!
//! A build script cannot ask its own cargo to build another package for another
//! target, so it runs a second cargo with its own target directory (sharing the
//! first one's would deadlock on its lock) and the workspace's lock file.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod languages;

pub use languages::{build_javascript, build_python};

/// The target of pure components: no WASI, no ambient authority.
pub const PURE_TARGET: &str = "wasm32-unknown-unknown";
/// The target of WASI preview 2 components.
pub const WASIP2_TARGET: &str = "wasm32-wasip2";
/// The cargo profile strategy modules are built with (see the workspace manifest).
pub const PROFILE: &str = "guest";

/// Why a guest could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The Rust standard library for the wasm target is not installed.
    MissingTarget(String),
    /// The nested cargo could not be started or failed.
    Cargo(String),
    /// The core module could not be read or turned into a component.
    Componentize(String),
    /// Another language's toolchain is missing or failed.
    Tool(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MissingTarget(target) => write!(
                f,
                "the Rust target `{target}` is not installed; strategy modules are compiled for it. Run: rustup target add {target}"
            ),
            BuildError::Cargo(msg) => write!(f, "building strategy modules failed: {msg}"),
            BuildError::Componentize(msg) => {
                write!(
                    f,
                    "turning a strategy module into a component failed: {msg}"
                )
            }
            BuildError::Tool(msg) => write!(f, "building a strategy module failed: {msg}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// A set of guest crates to build for one target.
pub struct GuestBuild {
    workspace: PathBuf,
    target_dir: PathBuf,
    target: &'static str,
    packages: Vec<String>,
}

impl GuestBuild {
    /// Builds `packages` of the workspace at `workspace` for `target`.
    pub fn new(workspace: impl Into<PathBuf>, target: &'static str) -> Self {
        let workspace = workspace.into();
        let target_dir = guest_target_dir(&workspace);
        GuestBuild {
            workspace,
            target_dir,
            target,
            packages: Vec::new(),
        }
    }

    /// Adds a package (its cargo name) to the build.
    pub fn package(mut self, name: &str) -> Self {
        self.packages.push(name.to_owned());
        self
    }

    /// Runs the build and returns the path of each package's `.wasm`, in order.
    pub fn run(&self) -> Result<Vec<PathBuf>, BuildError> {
        require_target(self.target)?;
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.workspace)
            .args(["build", "--profile", PROFILE, "--target", self.target])
            .arg("--target-dir")
            .arg(&self.target_dir);
        for package in &self.packages {
            cmd.args(["-p", package]);
        }
        // What the outer build set for the host must not leak into a wasm build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CLIPPY_ARGS",
            "CARGO_LLVM_COV",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .map_err(|e| BuildError::Cargo(format!("cannot run cargo: {e}")))?;
        if !status.success() {
            return Err(BuildError::Cargo(format!(
                "`cargo build --profile {PROFILE} --target {}` for {} exited with {status}",
                self.target,
                self.packages.join(", ")
            )));
        }
        let out = self.target_dir.join(self.target).join(PROFILE);
        Ok(self
            .packages
            .iter()
            .map(|p| out.join(format!("{}.wasm", p.replace('-', "_"))))
            .collect())
    }

    /// Paths the calling build script should be re-run for: every package's sources.
    pub fn watch(&self, dirs: &[&str]) {
        for dir in dirs {
            println!(
                "cargo:rerun-if-changed={}",
                self.workspace.join(dir).display()
            );
        }
        println!(
            "cargo:rerun-if-changed={}",
            self.workspace.join("Cargo.lock").display()
        );
    }
}

/// Wraps a core module built with `wit-bindgen` into a component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, BuildError> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| BuildError::Componentize(format!("{e:#}")))
}

/// Reads a core module from `path` and writes its component to `out`.
pub fn componentize_file(path: &Path, out: &Path) -> Result<(), BuildError> {
    let core = std::fs::read(path)
        .map_err(|e| BuildError::Componentize(format!("{}: {e}", path.display())))?;
    let component = componentize(&core)?;
    std::fs::write(out, component)
        .map_err(|e| BuildError::Componentize(format!("{}: {e}", out.display())))
}

/// Whether the standard library for `target` is installed in the active toolchain.
pub fn target_installed(target: &str) -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// Fails with the command to run when `target` is not installed and could not be
/// added (see [`ensure_target`]).
pub fn require_target(target: &str) -> Result<(), BuildError> {
    if ensure_target(target) {
        Ok(())
    } else {
        Err(BuildError::MissingTarget(target.to_owned()))
    }
}

/// Whether `target` is installed, adding it with rustup first when it is missing.
///
/// `rust-toolchain.toml` names the wasm targets, but rustup adds a toolchain file's
/// targets only when it installs the toolchain: a machine that already had this
/// toolchain without them would fail every build. Under rustup (which sets
/// `RUSTUP_TOOLCHAIN` for the processes it runs) the missing target is added to the
/// active toolchain, one build script at a time.
pub fn ensure_target(target: &str) -> bool {
    if target_installed(target) {
        return true;
    }
    let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") else {
        return false;
    };
    // Two build scripts of one build may both find the target missing; rustup does
    // not serialise installs of one toolchain.
    // Beside the build's own files: a shared directory may hold another user's.
    let dir = guest_target_dir(Path::new("."));
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let Ok(lock) = std::fs::File::create(dir.join("rustup-target-add.lock")) else {
        return false;
    };
    if lock.lock().is_err() {
        return false;
    }
    if target_installed(target) {
        return true;
    }
    // Not a cargo warning: cargo replays those at every build while the script's
    // output is cached, long after the target was added.
    eprintln!("adding the Rust target {target} named in rust-toolchain.toml");
    let added = Command::new("rustup")
        .arg("target")
        .arg("add")
        .arg("--toolchain")
        .arg(&toolchain)
        .arg(target)
        .status()
        .is_ok_and(|status| status.success());
    added && target_installed(target)
}

/// Guests get their own target directory beside the outer build's: the outer cargo
/// holds the lock on its own.
fn guest_target_dir(workspace: &Path) -> PathBuf {
    let outer = env::var_os("OUT_DIR").and_then(|out| {
        PathBuf::from(out)
            .ancestors()
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
            .map(Path::to_path_buf)
    });
    outer
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest-build")
}
