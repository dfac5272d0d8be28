//! Builds the example strategies written in JavaScript and Python, with each
//! language's own toolchain: `jco componentize` (npm) and `componentize-py` (PyPI).
//!
//! The toolchains are installed at the versions the examples pin (their
//! `package-lock.json` and `requirements.txt`) into the guest target directory,
//! never into the source tree, and are reinstalled only when a pin changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, guest_target_dir};

/// The contract the examples are built against, and its world.
const WIT: &str = "wit/v0.1.0";
const WORLD: &str = "strategy-module";

/// Builds the JavaScript strategy in `example` (a folder with `package.json`,
/// `package-lock.json` and `strategy.js`) into the component `out`.
pub fn build_javascript(workspace: &Path, example: &Path, out: &Path) -> Result<(), BuildError> {
    require_tool(
        "npm",
        "the JavaScript example strategies are built with it. Install Node.js 18 or later (Debian: apt-get install nodejs npm)",
    )?;
    let tools = tools_dir(workspace, "npm", example)?;
    let lock = read(&example.join("package-lock.json"))?;
    let installed = tools.join("package-lock.json");
    let bin = tools.join("node_modules/.bin/jco");
    if fs::read(&installed).ok().as_deref() != Some(lock.as_slice()) || !bin.exists() {
        copy(&example.join("package.json"), &tools.join("package.json"))?;
        fs::write(&installed, &lock).map_err(|e| io(&installed, e))?;
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&tools))?;
    }
    // The same command as the example's `npm run build`, with paths from here.
    run(Command::new(&bin)
        .arg("componentize")
        .arg(example.join("strategy.js"))
        .arg("--wit")
        .arg(workspace.join(WIT))
        .args(["--world-name", WORLD])
        // No WASI at all: a strategy has no clock, randomness, output or network.
        .args(["--disable", "all"])
        .arg("-o")
        .arg(out)
        .current_dir(example))
}

/// Builds the Python strategy in `example` (a folder with `requirements.txt` and
/// the module `app.py`) into the component `out`.
pub fn build_python(workspace: &Path, example: &Path, out: &Path) -> Result<(), BuildError> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| tool_runs(p))
        .ok_or_else(|| {
            BuildError::Tool(
                "python3 is not installed; the Python example strategies are built with it. Install Python 3.10 or later with its venv module (Debian: apt-get install python3 python3-venv)".into(),
            )
        })?;
    let tools = tools_dir(workspace, "python", example)?;
    let requirements = read(&example.join("requirements.txt"))?;
    let installed = tools.join("requirements.txt");
    let bin = tools.join("venv/bin/componentize-py");
    if fs::read(&installed).ok().as_deref() != Some(requirements.as_slice()) || !bin.exists() {
        run(Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(tools.join("venv")))?;
        run(Command::new(tools.join("venv/bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(example.join("requirements.txt")))?;
        fs::write(&installed, &requirements).map_err(|e| io(&installed, e))?;
    }
    // componentize-py writes byte code beside the sources it reads: it reads copies.
    let sources = tools.join("src");
    let _ = fs::remove_dir_all(&sources);
    fs::create_dir_all(&sources).map_err(|e| io(&sources, e))?;
    for entry in fs::read_dir(example).map_err(|e| io(example, e))? {
        let path = entry.map_err(|e| io(example, e))?.path();
        if path.extension().is_some_and(|e| e == "py") {
            copy(&path, &sources.join(path.file_name().unwrap_or_default()))?;
        }
    }
    run(Command::new(&bin)
        .arg("-d")
        .arg(workspace.join(WIT))
        .args(["-w", WORLD, "componentize", "--stub-wasi", "app", "-p"])
        .arg(&sources)
        .arg("-o")
        .arg(out)
        .current_dir(&sources))
}

/// `<guest target>/tools/<kind>/<example>`, created.
fn tools_dir(workspace: &Path, kind: &str, example: &Path) -> Result<PathBuf, BuildError> {
    let name = example.file_name().unwrap_or(example.as_os_str());
    let dir = guest_target_dir(workspace)
        .join("tools")
        .join(kind)
        .join(name);
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    Ok(dir)
}

fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_tool(tool: &str, why: &str) -> Result<(), BuildError> {
    if tool_runs(tool) {
        Ok(())
    } else {
        Err(BuildError::Tool(format!("{tool} is not installed; {why}")))
    }
}

/// Runs a toolchain command, keeping its output for the error.
fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .map_err(|e| BuildError::Tool(format!("cannot run {shown}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(BuildError::Tool(format!(
        "{shown} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|e| io(path, e))
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    fs::copy(from, to).map(|_| ()).map_err(|e| io(from, e))
}

fn io(path: &Path, e: std::io::Error) -> BuildError {
    BuildError::Tool(format!("{}: {e}", path.display()))
}
