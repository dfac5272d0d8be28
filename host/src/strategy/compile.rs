//! Compiling a module to machine code, bounded.
//!
//! Cranelift runs on whatever a tenant hands it, and a thread cannot be stopped, so
//! the controller compiles in a helper process — this binary, run as
//! `sluice __compile-module` — with limits the kernel enforces: its private memory
//! (`RLIMIT_DATA`), its CPU time (`RLIMIT_CPU`), and a wall-clock timeout after which
//! the parent kills it. The helper reads the component on stdin and writes the
//! artifact on stdout; it touches no file. A module that exceeds a limit is refused
//! with the limit named; the controller itself never runs the compiler's code.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use wasmtime::{Config, Engine};

use super::error::LoadError;

/// The hidden subcommand the helper process runs.
pub const SUBCOMMAND: &str = "__compile-module";

/// Exit code of a helper whose input is not a usable component.
const EXIT_INVALID: i32 = 3;

/// Longest compiler message kept for a status.
const MAX_MESSAGE: usize = 1024;

/// Largest compiled module read back from the helper.
pub const MAX_ARTIFACT: u64 = 512 << 20;

/// What decides how modules are compiled.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// In this process, with no bound: for tools and tests that compile modules they
    /// trust. The controller never uses it.
    InProcess,
    /// In a helper process with bounded memory and time.
    Isolated(IsolatedCompiler),
}

/// The helper process and its limits.
#[derive(Debug, Clone)]
pub struct IsolatedCompiler {
    /// The `sluice` binary.
    pub program: PathBuf,
    /// Wall-clock time one compilation may take.
    pub timeout: Duration,
    /// Private memory the helper may use, in bytes.
    pub memory_bytes: u64,
}

impl IsolatedCompiler {
    /// The running binary as the helper, with default limits.
    pub fn current_exe() -> std::io::Result<IsolatedCompiler> {
        Ok(IsolatedCompiler {
            program: std::env::current_exe()?,
            ..IsolatedCompiler::with_program(PathBuf::new())
        })
    }

    /// `program` as the helper, with default limits: a minute and 2 GiB.
    pub fn with_program(program: PathBuf) -> IsolatedCompiler {
        IsolatedCompiler {
            program,
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
        }
    }
}

/// The engine settings a compiled artifact depends on: the parent and the helper
/// build their engines from these, so the helper's artifacts load in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// Fuel metering.
    pub fuel: bool,
}

impl EngineSettings {
    /// The engine configuration, without an allocation strategy (which does not
    /// change the machine code).
    pub fn config(self) -> Config {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(self.fuel)
            .memory_init_cow(true);
        config
    }
}

impl Compiler {
    /// Compiles `bytes` (whose sha256 is `digest`) into an artifact `engine` loads.
    pub async fn compile(
        &self,
        engine: &Engine,
        settings: EngineSettings,
        digest: &str,
        bytes: Arc<Vec<u8>>,
    ) -> Result<Vec<u8>, LoadError> {
        match self {
            Compiler::InProcess => {
                let engine = engine.clone();
                let owned = digest.to_owned();
                tokio::task::spawn_blocking(move || {
                    engine
                        .precompile_component(&bytes)
                        .map_err(|e| invalid(&owned, &bytes, &format!("{e:#}")))
                })
                .await
                .map_err(|e| LoadError::CompileFailed {
                    digest: digest.to_owned(),
                    message: e.to_string(),
                })?
            }
            Compiler::Isolated(helper) => helper.compile(settings, digest, bytes).await,
        }
    }
}

impl IsolatedCompiler {
    async fn compile(
        &self,
        settings: EngineSettings,
        digest: &str,
        bytes: Arc<Vec<u8>>,
    ) -> Result<Vec<u8>, LoadError> {
        let failed = |message: String| LoadError::CompileFailed {
            digest: digest.to_owned(),
            message,
        };
        // The CPU limit backs the timeout up should this process die first; the
        // compiler runs on two threads, so it may use twice the wall-clock time.
        let cpu_seconds = self.timeout.as_secs().saturating_mul(2).max(1) + 1;
        let mut child = tokio::process::Command::new(&self.program)
            .arg(SUBCOMMAND)
            .args(settings.fuel.then_some("--fuel"))
            .arg(format!("--memory-bytes={}", self.memory_bytes))
            .arg(format!("--cpu-seconds={cpu_seconds}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            // Two compiler threads, as the CPU limit assumes.
            .env("RAYON_NUM_THREADS", "2")
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "cannot start the compiler process {}: {e}",
                    self.program.display()
                ))
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("no stdin".into()))?;
        let feed = async move {
            // A helper that dies early closes its stdin: the exit status says why.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| failed("no stderr".into()))?;
        let read = async move {
            use tokio::io::AsyncReadExt;
            let mut artifact = Vec::new();
            let mut message = Vec::new();
            let mut stdout = (&mut stdout).take(MAX_ARTIFACT + 1);
            let mut stderr = (&mut stderr).take(MAX_MESSAGE as u64 * 4);
            let (out, err) = tokio::join!(
                stdout.read_to_end(&mut artifact),
                stderr.read_to_end(&mut message),
            );
            out.and(err).map(|_| (artifact, message))
        };
        let run = async {
            let ((), read, status) = tokio::join!(feed, read, child.wait());
            let (stdout, stderr) = read?;
            Ok::<_, std::io::Error>(std::process::Output {
                status: status?,
                stdout,
                stderr,
            })
        };
        let output = match tokio::time::timeout(self.timeout, run).await {
            Ok(output) => output.map_err(|e| failed(format!("waiting for the compiler: {e}")))?,
            // Dropping the future kills the helper (`kill_on_drop`).
            Err(_) => {
                return Err(LoadError::CompileTimeout {
                    digest: digest.to_owned(),
                    limit: self.timeout,
                });
            }
        };
        if output.status.success() {
            if output.stdout.len() as u64 > MAX_ARTIFACT {
                return Err(failed(format!(
                    "the compiled module is larger than {MAX_ARTIFACT} bytes"
                )));
            }
            return Ok(output.stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = super::host_state::truncate(stderr.trim(), MAX_MESSAGE).to_owned();
        if output.status.code() == Some(EXIT_INVALID) {
            return Err(LoadError::NotAComponent {
                digest: digest.to_owned(),
                hint: "",
                message,
            });
        }
        if out_of_memory(&output.status, &message) {
            return Err(LoadError::CompileMemory {
                digest: digest.to_owned(),
                limit_bytes: self.memory_bytes,
            });
        }
        if killed_by(&output.status, SIGXCPU) {
            return Err(LoadError::CompileTimeout {
                digest: digest.to_owned(),
                limit: self.timeout,
            });
        }
        if killed_by(&output.status, SIGKILL) {
            return Err(failed(
                "the compiler process was killed: its CPU limit, or the container ran out of memory (compile.memoryBytes must fit the container's limit)".into(),
            ));
        }
        Err(failed(format!(
            "the compiler process {}: {message}",
            output.status
        )))
    }
}

/// What to say about bytes the compiler refused.
pub fn invalid(digest: &str, bytes: &[u8], message: &str) -> LoadError {
    LoadError::NotAComponent {
        digest: digest.to_owned(),
        hint: if is_core_module(bytes) {
            " (it is a core module: turn it into a component with `sluice strategy componentize`)"
        } else {
            ""
        },
        message: super::host_state::truncate(message, MAX_MESSAGE).to_owned(),
    }
}

/// Whether `bytes` start like a core wasm module (version 1) rather than a component.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

fn out_of_memory(status: &std::process::ExitStatus, stderr: &str) -> bool {
    // Rust aborts on a failed allocation ("memory allocation of N bytes failed");
    // other allocators and the thread spawner say "Cannot allocate memory".
    stderr.contains("memory allocation of")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("out of memory")
        || (killed_by(status, 6) && stderr.is_empty())
}

#[cfg(unix)]
fn killed_by(status: &std::process::ExitStatus, signal: i32) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(signal)
}

#[cfg(not(unix))]
fn killed_by(_status: &std::process::ExitStatus, _signal: i32) -> bool {
    false
}

/// Sent at the CPU limit (Linux numbering).
const SIGXCPU: i32 = 24;
/// Sent past the hard CPU limit.
const SIGKILL: i32 = 9;

/// Options of the helper process.
#[derive(Debug, clap::Args)]
pub struct HelperArgs {
    /// Meter fuel, as the parent's engine does.
    #[arg(long)]
    fuel: bool,
    /// Private memory this process may use.
    #[arg(long)]
    memory_bytes: u64,
    /// CPU seconds this process may use.
    #[arg(long)]
    cpu_seconds: u64,
}

/// The helper process: limits itself, compiles stdin to stdout. Returns the exit code.
pub fn helper_main(args: &HelperArgs) -> i32 {
    if let Err(e) = limit_self(args) {
        eprintln!("cannot set the compiler's limits: {e}");
        return 1;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("reading the module: {e}");
        return 1;
    }
    let engine = match Engine::new(&EngineSettings { fuel: args.fuel }.config()) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("building the engine: {e:#}");
            return 1;
        }
    };
    match engine.precompile_component(&bytes) {
        Ok(artifact) => match std::io::stdout().write_all(&artifact) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the artifact: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            EXIT_INVALID
        }
    }
}

#[cfg(target_os = "linux")]
fn limit_self(args: &HelperArgs) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, set_parent_process_death_signal, setrlimit};
    // Should the controller die, so does its compiler.
    set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // Should the container run out of memory, the compiler is the one to go.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "1000") {
        eprintln!("warning: cannot raise the compiler's OOM score: {e}");
    }
    setrlimit(
        Resource::Data,
        Rlimit {
            current: Some(args.memory_bytes),
            maximum: Some(args.memory_bytes),
        },
    )?;
    // SIGXCPU at the soft limit, SIGKILL a second later.
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(args.cpu_seconds),
            maximum: Some(args.cpu_seconds + 1),
        },
    )?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn limit_self(_args: &HelperArgs) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "bounded compilation needs Linux resource limits",
    ))
}
