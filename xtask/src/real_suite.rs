//! The real-cluster suite: the end-to-end tests listed in
//! `tests/real-cluster.list`, run again with `SLUICE_TEST_BACKEND=real` against a
//! local control plane (`cargo xtask cluster up`) or the cluster
//! `SLUICE_TEST_KUBECONFIG` names.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The list's path, from the workspace's root.
pub const LIST: &str = "tests/real-cluster.list";

/// The tests of the list, by test binary (each binary's in the list's order).
pub fn read(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let path = root.join(LIST);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(binary), Some(test), None) = (words.next(), words.next(), words.next()) else {
            bail!(
                "{}:{}: write `<test file> <test name>`, not {line:?}",
                path.display(),
                n + 1
            );
        };
        let file = root.join("tests").join(format!("{binary}.rs"));
        let source = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "{}:{}: no test file {}",
                path.display(),
                n + 1,
                file.display()
            )
        })?;
        if !source.contains(&format!("async fn {test}(")) {
            bail!(
                "{}:{}: {} has no test {test} (renamed? the list must follow)",
                path.display(),
                n + 1,
                file.display()
            );
        }
        out.entry(binary.to_owned())
            .or_default()
            .push(test.to_owned());
    }
    Ok(out)
}

/// Runs the list against the cluster of `kubeconfig`; the binaries whose tests
/// failed.
pub fn run(root: &Path, kubeconfig: &Path) -> anyhow::Result<Vec<String>> {
    let suite = read(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut failed = Vec::new();
    let total: usize = suite.values().map(Vec::len).sum();
    eprintln!(
        "xtask: the real-cluster suite: {total} tests of {} files ({LIST}), one at a time, against {}",
        suite.len(),
        kubeconfig.display()
    );
    // The workspace's features, as the simulator's suite built them: nothing is
    // compiled again.
    let cargo_test = |binary: &str, then: &str| {
        let mut command = Command::new(&cargo);
        command.current_dir(root).args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            binary,
            "--",
            then,
        ]);
        command
    };
    for (binary, tests) in &suite {
        // Every name must be a test of the binary: an `--exact` filter that
        // matches nothing would pass by running nothing.
        let listed = cargo_test(binary, "--list")
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("listing the tests")?;
        let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test").map(str::to_owned))
            .collect();
        let missing: Vec<&String> = tests.iter().filter(|t| !names.contains(t)).collect();
        if !missing.is_empty() {
            bail!("{LIST}: {binary} has no test {missing:?} (is it #[ignore]d, or in a module?)");
        }
        eprintln!(
            "xtask: SLUICE_TEST_BACKEND=real cargo test --workspace --test {binary} -- --exact ({} tests)",
            tests.len()
        );
        let status = cargo_test(binary, "--exact")
            .args(tests)
            .env("SLUICE_TEST_BACKEND", "real")
            .env("SLUICE_TEST_KUBECONFIG", kubeconfig)
            .status()
            .context("running cargo test")?;
        if !status.success() {
            failed.push(binary.clone());
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_listed_test_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root");
        let suite = super::read(root).expect("the list reads");
        assert!(suite.values().map(Vec::len).sum::<usize>() > 0);
    }

    use std::path::Path;
}
