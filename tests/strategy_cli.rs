//! `sluice strategy …` as a strategy author runs it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::workspace;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run sluice")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example_scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("examples/scenarios"))
        .expect("examples/scenarios")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !for_an_example_module(p))
        .collect();
    files.sort();
    files
}

/// Scenarios written for one of the example modules rather than `builtin:steps`.
fn for_an_example_module(p: &Path) -> bool {
    p.file_stem()
        .is_some_and(|n| ["doubling", "linear", "approval"].contains(&n.to_string_lossy().as_ref()))
}

fn write_module(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write module");
    path.display().to_string()
}

#[test]
fn every_example_scenario_passes_against_builtin_steps() {
    let files = example_scenarios();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let out = sluice(&[
            "strategy",
            "test",
            "builtin:steps",
            "--scenario",
            &file.display().to_string(),
        ]);
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
        assert!(text(&out).contains(" 0 failed"), "{}", text(&out));
    }
}

#[test]
fn the_doubling_scenario_passes_against_the_example_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = write_module(dir.path(), "doubling.wasm", sluice_test_guests::DOUBLING);
    let out = sluice(&[
        "strategy",
        "test",
        &module,
        "--scenario",
        "examples/scenarios/doubling.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// An example module in another language: a pure component that describes itself,
/// passes its scenario, and answers a bad configuration in its own words.
fn example_passes(
    bytes: Result<&[u8], &str>,
    name: &str,
    scenario: &str,
    bad_config: &str,
    its_words: &str,
) {
    let bytes = bytes.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = write_module(dir.path(), &format!("{name}.wasm"), bytes);
    // Compiled once, by the first command: an interpreter inside takes seconds.
    let cache = dir.path().join("cache").display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["strategy", args[0], "--cache-dir", &cache, &module];
        all.extend_from_slice(&args[1..]);
        sluice(&all)
    };
    let out = run(&["inspect"]);
    assert!(out.status.success(), "{}", text(&out));
    for line in [
        "pure component (no WASI)",
        &format!("name:      {name} 0.1.0"),
    ] {
        assert!(text(&out).contains(line), "{}", text(&out));
    }
    let out = run(&["test", "--scenario", scenario]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(" 0 failed"), "{}", text(&out));
    let out = run(&["validate", "--config", bad_config]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(its_words), "{}", text(&out));
}

#[test]
fn the_javascript_example_passes_its_scenario() {
    example_passes(
        sluice_test_guests::LINEAR_JS,
        "linear",
        "examples/scenarios/linear.yaml",
        r#"{"colour": 1}"#,
        "colour: unknown field; the fields are interval, maxFailedPods",
    );
}

#[test]
fn the_python_example_passes_its_scenario() {
    example_passes(
        sluice_test_guests::APPROVAL_PY,
        "approval",
        "examples/scenarios/approval.yaml",
        r#"{"minSoakSeconds": -1}"#,
        "minSoakSeconds: -1 is not a whole number of at least 0",
    );
}

#[test]
fn a_failed_expectation_exits_non_zero_and_says_what_differed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wrong.yaml");
    std::fs::write(
        &scenario,
        "steps: [{weight: 20}]\nticks:\n  - at: 0s\n    expect: {replicas: 2, state: StepPaused}\n",
    )
    .expect("write");
    let out = sluice(&[
        "strategy",
        "test",
        "builtin:steps",
        "-s",
        &scenario.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("FAILED at 0s (tick 1): replicas: expected 2, got 1"),
        "{t}"
    );
    assert!(t.contains("0 passed, 1 failed"), "{t}");
}

#[test]
fn a_malformed_scenario_names_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("bad.yaml");
    for (text_of_file, problem) in [
        (
            "steps: [{weight: 150}]\nticks: [{at: soon}]\n",
            "`at: soon` is not a duration",
        ),
        (
            "steps: [{weight: 150}]\nticks: [{at: 0}]\n",
            "spec.strategy.canary.steps[0].weight: 150 is outside 0-100",
        ),
        (
            "steps: [{weight: 20}]\nticks: [{at: 0}]\nreplay: [{observation: {}, expect: {}}]\n",
            "either replays recorded decisions (`replay`) or plays a timeline",
        ),
    ] {
        std::fs::write(&scenario, text_of_file).expect("write");
        let out = sluice(&[
            "strategy",
            "test",
            "builtin:steps",
            "-s",
            &scenario.display().to_string(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(problem), "{}", text(&out));
    }
}

#[test]
fn inspect_reports_contract_exports_imports_size_and_digest() {
    let out = sluice(&["strategy", "inspect", "builtin:steps"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let digest =
        sluice::strategy::cache::sha256_hex(sluice::strategy::builtin::builtin("steps").unwrap());
    for want in [
        "contract:  sluice:strategy@0.1.0",
        "exports:   sluice:strategy/strategy@0.1.0",
        "imports:   sluice:strategy/types@0.1.0",
        "name:      steps 0.1.0",
        &format!("sha256:    {digest}"),
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }

    let out = sluice(&["strategy", "inspect", "builtin:steps", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["contract"], "sluice:strategy@0.1.0");
    assert_eq!(json["sha256"], digest);
    assert_eq!(json["wasi"], false);
}

#[test]
fn inspect_shows_what_a_module_imports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = write_module(dir.path(), "hostile.wasm", sluice_test_guests::HOSTILE);
    let out = sluice(&["strategy", "inspect", &module, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let imports: Vec<&str> = json["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        imports.contains(&"sluice:strategy/log@0.1.0"),
        "{imports:?}"
    );
    assert!(
        imports.contains(&"sluice:strategy/metrics@0.1.0"),
        "{imports:?}"
    );
}

#[test]
fn inspect_refuses_what_is_not_a_strategy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = write_module(dir.path(), "junk.wasm", b"not wasm at all");
    let out = sluice(&["strategy", "inspect", &module]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is not a WebAssembly component"),
        "{}",
        text(&out)
    );

    let out = sluice(&["strategy", "inspect", "builtin:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no built-in strategy `nope`; built-ins: builtin:steps"),
        "{}",
        text(&out)
    );
}

#[test]
fn validate_uses_the_module_own_rules() {
    let out = sluice(&["strategy", "validate", "builtin:steps", "--config", "{}"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice(&[
        "strategy",
        "validate",
        "builtin:steps",
        "--config",
        r#"{"a": 1}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("takes no configuration"),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let module = write_module(dir.path(), "doubling.wasm", sluice_test_guests::DOUBLING);
    let out = sluice(&[
        "strategy",
        "validate",
        &module,
        "--config",
        r#"{"start": 200}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("start: 200 is outside 1-100"),
        "{}",
        text(&out)
    );
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"start": 10, "interval": 30}"#).expect("write");
    let out = sluice(&[
        "strategy",
        "validate",
        &module,
        "--config",
        &format!("@{}", config.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn componentize_turns_an_sdk_core_module_into_a_loadable_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("doubling.component.wasm");
    let out = sluice(&[
        "strategy",
        "componentize",
        sluice_test_guests::DOUBLING_CORE_PATH,
        "-o",
        &output.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("contract sluice:strategy@0.1.0"),
        "{}",
        text(&out)
    );
    let out = sluice(&["strategy", "inspect", &output.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("name:      doubling"), "{}", text(&out));
}

#[test]
fn deploy_crds_match_what_the_binary_prints() {
    let out = sluice(&["crds"]);
    assert!(out.status.success(), "{}", text(&out));
    let file = std::fs::read_to_string(workspace().join("deploy/crds/crds.yaml"))
        .expect("deploy/crds/crds.yaml");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        file,
        "deploy/crds/crds.yaml is stale: run `cargo run -- crds > deploy/crds/crds.yaml`"
    );
    assert!(file.contains("name: rollouts.rollouts.kruise.io"));
    assert!(file.contains("jsonPath: .status.canaryStatus.currentStepState"));
}

#[test]
fn dev_takes_the_controllers_configuration_source_and_metric_options() {
    for command in ["dev", "controller"] {
        let out = sluice(&[command, "--help"]);
        assert!(out.status.success(), "{}", text(&out));
        for option in [
            "--insecure-registry",
            "--module-ca-file",
            "--metric-provider",
            "--metric-timeout",
            "--config",
        ] {
            assert!(text(&out).contains(option), "{command} lacks {option}");
        }
    }
}
