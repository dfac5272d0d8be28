//! A helper program a test runs beside it — Debian's `docker-registry` and
//! `prometheus`, a `sluice controller` — started on port 0 so that it binds a free
//! port itself, and known ready when its log says which port that is. No port is
//! picked by the test and released for another to take.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use regex::Regex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

/// A running helper program; killed when dropped.
pub struct Daemon {
    what: String,
    child: Child,
    /// The address it listens on, as its log said.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Starts `command` and waits until a line of its standard error matches
    /// `listening` (whose first group that matched is the address). Fails the test with the
    /// program's output if it exits first or says nothing within [`PATIENCE`];
    /// `install` tells how to get the program when it is missing.
    pub async fn start(mut command: Command, what: &str, listening: &str, install: &str) -> Daemon {
        let listening = Regex::new(listening).expect("a pattern");
        // SAFETY: between fork and exec the closure makes one system call
        // (prctl), which is async-signal-safe, and touches no memory of the parent.
        // Should the test's process die without running its destructors (SIGKILL,
        // an abort), the helper gets SIGTERM instead of living on: a controller
        // left behind would hold the cluster's Lease for the next test.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({e}): {install}"));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let found = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let addr = listening
                    .captures(&line)
                    .and_then(|c| c.iter().skip(1).flatten().next())
                    .map(|m| m.as_str().to_owned());
                log.lock().expect("log").push(line);
                if addr.is_some() {
                    return addr;
                }
            }
            None
        })
        .await;
        let Ok(Some(addr)) = found else {
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            panic!(
                "{what} never said it listens ({}); its output:\n{}",
                status.map_or("still running".to_owned(), |s| s.to_string()),
                log.lock().expect("log").join("\n")
            );
        };
        // Keep reading, or the program blocks on a full pipe.
        let rest = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                rest.lock().expect("log").push(line);
            }
        });
        Daemon {
            what: what.to_owned(),
            child,
            addr,
            log,
            reader,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits for it to exit: its status and its whole output.
    pub async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self
            .child
            .wait()
            .await
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.what));
        // The last lines are read once the pipe closes.
        let _ = tokio::time::timeout(PATIENCE, &mut self.reader).await;
        (status, self.log())
    }
}
