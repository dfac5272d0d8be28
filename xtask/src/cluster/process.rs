//! The control plane's processes: started detached (they outlive `cargo xtask
//! cluster up`), each with its log and pid file under `target/cluster/`, stopped
//! by `down` from those files.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The files of one process.
pub struct Files {
    pub log: PathBuf,
    pub pid: PathBuf,
}

pub fn files(state: &Path, name: &str) -> Files {
    Files {
        log: state.join("logs").join(format!("{name}.log")),
        pid: state.join("run").join(format!("{name}.pid")),
    }
}

/// Starts `command` as `name`, in a process group of its own (a Ctrl-C in the
/// terminal that ran `up` does not reach it), its output in its log.
pub fn spawn(state: &Path, name: &str, command: &mut Command) -> anyhow::Result<u32> {
    let files = files(state, name);
    for dir in [files.log.parent(), files.pid.parent()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir)?;
    }
    let log = std::fs::File::create(&files.log)
        .with_context(|| format!("creating {}", files.log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
    let pid = child.id();
    // The program's name beside its pid: a pid file outliving its process (a
    // reboot) must not have `down` signal whatever process has that pid now.
    let program = Path::new(command.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(&files.pid, format!("{pid}\n{program}\n"))?;
    // Not waited for: it runs on after this process exits; `down` stops it.
    drop(child);
    Ok(pid)
}

/// The pid in `name`'s pid file, if that process still runs the program it
/// started with.
pub fn running(state: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(files(state, name).pid).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let program = lines.next().unwrap_or("").trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    use std::os::unix::ffi::OsStrExt;
    let runs = Path::new(std::ffi::OsStr::from_bytes(first))
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == program);
    (alive(pid) && runs).then_some(pid)
}

/// Whether the process `name`'s pid file names still runs, whatever it runs:
/// for the moments after [`spawn`].
pub fn started(state: &Path, name: &str) -> bool {
    std::fs::read_to_string(files(state, name).pid)
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
        .is_some_and(alive)
}

/// Whether `pid` runs (a zombie, exited but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Stops `name`: SIGTERM, then SIGKILL if it is still there after `grace`.
pub fn stop(state: &Path, name: &str, grace: Duration) -> anyhow::Result<bool> {
    let files = files(state, name);
    let Some(pid) = running(state, name) else {
        let _ = std::fs::remove_file(&files.pid);
        return Ok(false);
    };
    signal(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        signal(pid, rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if alive(pid) {
        anyhow::bail!("{name} (pid {pid}) is still running after SIGKILL");
    }
    std::fs::remove_file(&files.pid)?;
    Ok(true)
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        // Gone already is as good as stopped.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The last `lines` lines of `name`'s log, to show why it stopped.
pub fn log_tail(state: &Path, name: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(files(state, name).log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
