//! The official Kubernetes client for Python (PyPI `kubernetes`, pinned in
//! `python/requirements.txt`) as a second independent client: `python/client.py`
//! lists, pages, watches with resume, creates, merge- and JSON-patches, patches a
//! status subresource, works with a custom resource and deletes, asserting what a
//! real API server answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sim;

/// A virtualenv with the pinned client, made once per target directory.
fn python_with_the_client() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-kubernetes");
    let python = venv.join("bin/python");
    let requirements = here.join("requirements.txt");
    let stamp = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed (cargo xtask test installs Python 3 with venv):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install kubernetes",
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    python
}

#[tokio::test]
async fn the_official_python_client_works_as_against_a_cluster() {
    let python = tokio::task::spawn_blocking(python_with_the_client)
        .await
        .expect("join");
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("python runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all calls answered as a cluster answers them"),
        "{stdout}"
    );
}
