//! `cargo xtask oracle`: OpenKruise Rollouts v0.6.2 as the oracle of Sluice's
//! fidelity. Each scenario of `tests/fixtures/oracle/` (manifests, then operator
//! actions) runs once under Kruise and once under Sluice, each engine on a fresh
//! local control plane, every scenario in a namespace of its own; after each
//! action settles (nothing in the namespace changed for a while) the namespace's
//! objects are recorded. The states are then reduced to what a user could tell
//! apart ([`observe`]) and compared; each difference is either listed in
//! `tests/fixtures/oracle/kept.yaml` with the reason it is kept, or it fails the
//! run.

mod observe;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cluster;

/// How long nothing in a namespace may change before its scenario counts as
/// settled: longer than Kruise's default traffic grace period (3 s), after which
/// it moves again.
const QUIET: Duration = Duration::from_secs(6);
/// How long an action may take to settle before its state is recorded anyway
/// (and the record says so).
const LIMIT: Duration = Duration::from_secs(150);

/// Options of `cargo xtask oracle`.
#[derive(Debug, clap::Args)]
pub struct OracleArgs {
    /// The scenarios to run (file names of tests/fixtures/oracle/ without
    /// `.yaml`); all of them when none is given.
    pub scenarios: Vec<String>,
    /// Compare the records of an earlier run (target/oracle/) without running
    /// the engines again.
    #[arg(long)]
    pub compare_only: bool,
    /// Write the resulting table into docs/kruise-compatibility.md.
    #[arg(long, conflicts_with = "dir")]
    pub write_docs: bool,
    /// Read the scenarios from DIR instead of tests/fixtures/oracle/ (its
    /// `kept.yaml` if it has one, else the project's).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// The Kruise end-to-end test it transcribes.
    kruise: String,
    manifests: String,
    actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    #[serde(rename = "do")]
    what: String,
    patch: Option<Patch>,
    approve: Option<String>,
    apply: Option<String>,
    delete: Option<Target>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    kind: String,
    name: String,
    merge: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    kind: String,
    name: String,
}

/// A difference kept, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    /// The differing path; `*` stands for any characters.
    path: String,
    /// Only in these scenarios (all when empty).
    #[serde(default)]
    scenarios: Vec<String>,
    why: String,
}

/// The namespace's objects after one step settled.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    what: String,
    settled: bool,
    seconds: f64,
    /// The API server's refusal of the action, as kubectl printed it.
    refused: Option<String>,
    objects: BTreeMap<String, Value>,
}

const ENGINES: [&str; 2] = ["kruise", "sluice"];

fn fixtures(root: &Path) -> PathBuf {
    root.join("tests/fixtures/oracle")
}

fn load(dir: &Path, wanted: &[String]) -> anyhow::Result<BTreeMap<String, Scenario>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        if name == "kept" || !(wanted.is_empty() || wanted.iter().any(|w| w == name)) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let scenario: Scenario = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{}: not a scenario", path.display()))?;
        for (i, action) in scenario.actions.iter().enumerate() {
            let ops = usize::from(action.patch.is_some())
                + usize::from(action.approve.is_some())
                + usize::from(action.apply.is_some())
                + usize::from(action.delete.is_some());
            if ops != 1 {
                bail!(
                    "{}: actions[{i}] (`{}`) must have exactly one of patch, approve, apply, delete",
                    path.display(),
                    action.what
                );
            }
        }
        out.insert(name.to_string(), scenario);
    }
    for w in wanted {
        if !out.contains_key(w) {
            bail!(
                "no scenario `{w}` in {} (there are: {})",
                dir.display(),
                out.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if out.is_empty() {
        bail!("no scenarios (*.yaml) in {}", dir.display());
    }
    Ok(out)
}

/// The names of the objects a YAML stream creates.
fn names(yaml: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc)?;
        if let Some(n) = v["metadata"]["name"].as_str() {
            out.insert(n.to_string());
        }
    }
    Ok(out)
}

/// kubectl's name of a scenario's kind: the Rollout always in the version the
/// scenarios are written in (Kruise stores v1beta1).
fn resource(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "rollout" => "rollouts.v1alpha1.rollouts.kruise.io",
        "deployment" => "deployments.apps",
        "statefulset" => "statefulsets.apps",
        "service" => "services",
        "ingress" => "ingresses.networking.k8s.io",
        "httproute" => "httproutes.gateway.networking.k8s.io",
        other => bail!(
            "unknown kind `{other}` (deployment, statefulset, rollout, service, ingress, httproute)"
        ),
    })
}

fn namespace_of(scenario: &str) -> String {
    let mut ns = format!("oracle-{scenario}");
    ns.truncate(63);
    ns.trim_end_matches('-').to_string()
}

/// kubectl, its error as the text recorded as a refusal.
fn kubectl(k: &cluster::Kubectl, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    match stdin {
        Some(input) => k.run_input(args, input),
        None => k.run(args),
    }
    .map(drop)
    .map_err(|e| format!("{e:#}"))
}

/// Whether a Rollout has seen its generation and is not between two resting
/// states: an engine may wait seconds between the steps of a finalisation
/// without writing anything. (`Initial` rests: a Rollout waits there for its
/// workload.)
fn resting(rollout: &Value) -> bool {
    let status = &rollout["status"];
    let moving_reason = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Progressing"
                && c["status"] == "True"
                && matches!(
                    c["reason"].as_str(),
                    Some("Initializing" | "Finalising" | "Cancelling")
                )
        });
    let moving_phase = matches!(status["phase"].as_str(), Some("Disabling" | "Terminating"));
    status["observedGeneration"] == rollout["metadata"]["generation"]
        && !moving_reason
        && !moving_phase
}

/// Waits until nothing in `ns` has changed for [`QUIET`] and every Rollout
/// rests ([`resting`]), or [`LIMIT`] passed; whether it settled, and how long.
fn settle(store: &watch::Store, ns: &str, since: Instant) -> (bool, Duration) {
    loop {
        let now = Instant::now();
        let last = store.changed(ns).map_or(since, |c| c.max(since));
        let seen = store.all_in(ns, watch::RESOURCES[0], resting);
        if now - last >= QUIET && seen {
            return (true, now - since);
        }
        if now - since >= LIMIT {
            return (false, now - since);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn record(
    store: &watch::Store,
    ns: &str,
    what: &str,
    refused: Option<String>,
    since: Instant,
) -> Record {
    let (settled, took) = settle(store, ns, since);
    Record {
        what: what.to_string(),
        settled,
        seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
        refused,
        objects: store
            .namespace(ns)
            .into_iter()
            .map(|((r, n), v)| (format!("{r}/{n}"), v))
            .collect(),
    }
}

fn run_scenario(
    kubeconfig: &Path,
    store: &watch::Store,
    name: &str,
    scenario: &Scenario,
) -> Vec<Record> {
    let ns = namespace_of(name);
    let k = cluster::Kubectl::at(kubeconfig.to_path_buf());
    let mut records = Vec::new();
    let since = Instant::now();
    let created = kubectl(&k, &["create", "namespace", &ns], None).and_then(|()| {
        kubectl(
            &k,
            &["apply", "-n", &ns, "-f", "-"],
            Some(&scenario.manifests),
        )
    });
    records.push(record(
        store,
        &ns,
        "apply the manifests",
        created.err(),
        since,
    ));
    for action in &scenario.actions {
        let since = Instant::now();
        let done = if let Some(p) = &action.patch {
            resource(&p.kind).map_err(|e| e.to_string()).and_then(|r| {
                kubectl(
                    &k,
                    &[
                        "patch",
                        "-n",
                        &ns,
                        &format!("{r}/{}", p.name),
                        "--type",
                        "merge",
                        "-p",
                        &p.merge.to_string(),
                    ],
                    None,
                )
            })
        } else if let Some(rollout) = &action.approve {
            // What `kubectl-kruise rollout approve` and `vela workflow resume` send.
            kubectl(
                &k,
                &[
                    "patch",
                    "-n",
                    &ns,
                    &format!("rollouts.v1alpha1.rollouts.kruise.io/{rollout}"),
                    "--subresource=status",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"status":{"canaryStatus":{"currentStepState":"StepReady"}}}"#,
                ],
                None,
            )
        } else if let Some(yaml) = &action.apply {
            kubectl(&k, &["apply", "-n", &ns, "-f", "-"], Some(yaml))
        } else if let Some(t) = &action.delete {
            resource(&t.kind).map_err(|e| e.to_string()).and_then(|r| {
                kubectl(
                    &k,
                    &[
                        "delete",
                        "-n",
                        &ns,
                        &format!("{r}/{}", t.name),
                        "--wait=false",
                    ],
                    None,
                )
            })
        } else {
            Err("no operation".into())
        };
        records.push(record(store, &ns, &action.what, done.err(), since));
    }
    records
}

fn records_dir(root: &Path, engine: &str) -> PathBuf {
    root.join("target/oracle").join(engine)
}

/// Runs every scenario under `engine` on a fresh control plane and writes the
/// records to target/oracle/ENGINE/.
fn run_engine(
    root: &Path,
    engine: &str,
    scenarios: &BTreeMap<String, Scenario>,
) -> anyhow::Result<()> {
    eprintln!("xtask: oracle: {engine} on a fresh control plane …");
    let kubeconfig = cluster::engine_up(engine, 3, false)?;
    let result = (|| -> anyhow::Result<()> {
        let store = watch::Store::default();
        let _watches = watch::start(kubeconfig.clone(), &store, watch::RESOURCES)?;
        let started = Instant::now();
        let records: Vec<(String, Vec<Record>)> = std::thread::scope(|s| {
            let handles: Vec<_> = scenarios
                .iter()
                .map(|(name, scenario)| {
                    let (kubeconfig, store) = (&kubeconfig, &store);
                    s.spawn(move || {
                        let r = run_scenario(kubeconfig, store, name, scenario);
                        eprintln!(
                            "xtask: oracle: {engine}: {name}: {} steps{}",
                            r.len(),
                            if r.iter().all(|r| r.settled) {
                                ""
                            } else {
                                " (some did not settle)"
                            }
                        );
                        (name.clone(), r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a scenario's thread"))
                .collect()
        });
        if let Some(f) = store.failures().first() {
            bail!("{f}");
        }
        let dir = records_dir(root, engine);
        std::fs::create_dir_all(&dir)?;
        for (name, r) in records {
            std::fs::write(
                dir.join(format!("{name}.json")),
                serde_json::to_string_pretty(&r)?,
            )?;
        }
        eprintln!(
            "xtask: oracle: {engine}: {} scenarios in {:.0}s",
            scenarios.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })();
    cluster::stop()?;
    result
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(text) = text.strip_prefix(head) else {
                return false;
            };
            (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| glob(rest, &text[i..]))
        }
    }
}

/// One difference found.
struct Difference {
    step: String,
    path: String,
    kruise: Value,
    sluice: Value,
    kept: Option<usize>,
}

fn compare(
    name: &str,
    scenario: &Scenario,
    kept: &[Kept],
    records: &BTreeMap<&str, Vec<Record>>,
) -> anyhow::Result<Vec<Difference>> {
    let mut given = names(&scenario.manifests)?;
    for a in &scenario.actions {
        if let Some(y) = &a.apply {
            given.extend(names(y)?);
        }
    }
    let states: BTreeMap<&str, Vec<Value>> = records
        .iter()
        .map(|(engine, rs)| {
            let mut renamer = observe::Renamer::default();
            let states = rs
                .iter()
                .map(|r| {
                    let objects = r
                        .objects
                        .iter()
                        .filter_map(|(k, v)| {
                            let (res, n) = k.split_once('/')?;
                            Some(((res.to_string(), n.to_string()), v.clone()))
                        })
                        .collect();
                    let mut s = observe::state(&objects, &given, &mut renamer);
                    s["settled"] = json!(r.settled);
                    s["refused"] = json!(r.refused.is_some());
                    s
                })
                .collect();
            (*engine, states)
        })
        .collect();
    let (a, b) = (&states["kruise"], &states["sluice"]);
    if a.len() != b.len() {
        bail!(
            "{name}: the records have {} and {} steps: run again",
            a.len(),
            b.len()
        );
    }
    let mut out = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let mut found = Vec::new();
        observe::diff("", x, y, &mut found);
        for (path, kruise, sluice) in found {
            let kept = kept.iter().position(|k| {
                glob(&k.path, &path)
                    && (k.scenarios.is_empty() || k.scenarios.iter().any(|s| s == name))
            });
            out.push(Difference {
                step: records["kruise"][i].what.clone(),
                path,
                kruise,
                sluice,
                kept,
            });
        }
    }
    Ok(out)
}

fn shown(v: &Value) -> String {
    let mut s = match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …");
    }
    s
}

/// Runs `cargo xtask oracle`.
pub fn run(args: OracleArgs) -> anyhow::Result<ExitCode> {
    let root = cluster::Layout::new()?.root;
    let dir = args.dir.clone().unwrap_or_else(|| fixtures(&root));
    let scenarios = load(&dir, &args.scenarios)?;
    let kept_file = Some(dir.join("kept.yaml"))
        .filter(|f| f.exists())
        .unwrap_or_else(|| fixtures(&root).join("kept.yaml"));
    let kept: Vec<Kept> = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&kept_file)
            .with_context(|| format!("reading {}", kept_file.display()))?,
    )
    .with_context(|| kept_file.display().to_string())?;
    if !args.compare_only {
        cluster::build(true)?;
        for engine in ENGINES {
            run_engine(&root, engine, &scenarios)?;
        }
    }
    let mut table = String::from("| scenario | Kruise's test | result |\n|---|---|---|\n");
    let mut unexplained = 0;
    let mut used = BTreeSet::new();
    for (name, scenario) in &scenarios {
        let mut records = BTreeMap::new();
        for engine in ENGINES {
            let path = records_dir(&root, engine).join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{}: no record (run `cargo xtask oracle {name}`)",
                    path.display()
                )
            })?;
            records.insert(engine, serde_json::from_str::<Vec<Record>>(&text)?);
        }
        let differences = compare(name, scenario, &kept, &records)?;
        let open: Vec<&Difference> = differences.iter().filter(|d| d.kept.is_none()).collect();
        unexplained += open.len();
        let kept_here: BTreeSet<usize> = differences.iter().filter_map(|d| d.kept).collect();
        used.extend(kept_here.iter().copied());
        println!(
            "{name}: {}",
            if differences.is_empty() {
                "equal".to_string()
            } else {
                format!("{} differences, {} not kept", differences.len(), open.len())
            }
        );
        for d in &open {
            println!(
                "  after `{}`: {}\n      kruise: {}\n      sluice: {}",
                d.step,
                d.path,
                shown(&d.kruise),
                shown(&d.sluice)
            );
        }
        let result = if differences.is_empty() {
            "equal".to_string()
        } else if open.is_empty() {
            format!(
                "equal but for kept differences {}",
                kept_here
                    .iter()
                    .map(|k| format!("K{}", k + 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("**{} differences not kept**", open.len())
        };
        table.push_str(&format!(
            "| `{name}` | {} | {result} |\n",
            scenario.kruise.replace('|', "\\|")
        ));
    }
    table.push_str("\nKept differences (`tests/fixtures/oracle/kept.yaml`):\n\n");
    for (i, k) in kept.iter().enumerate() {
        table.push_str(&format!(
            "- **K{}** `{}`{}: {}\n",
            i + 1,
            k.path,
            if used.contains(&i) {
                ""
            } else {
                " (not seen in this run)"
            },
            k.why.trim()
        ));
    }
    std::fs::create_dir_all(root.join("target/oracle"))?;
    std::fs::write(root.join("target/oracle/table.md"), &table)?;
    if args.write_docs {
        write_docs(&root, &table)?;
    }
    println!(
        "oracle: {} scenarios, {unexplained} differences not kept (table: target/oracle/table.md)",
        scenarios.len()
    );
    Ok(if unexplained == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

const BEGIN: &str = "<!-- oracle:begin (written by `cargo xtask oracle --write-docs`) -->";
const END: &str = "<!-- oracle:end -->";

fn write_docs(root: &Path, table: &str) -> anyhow::Result<()> {
    let path = root.join("docs/kruise-compatibility.md");
    let text = std::fs::read_to_string(&path)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{}: no `{BEGIN}` … `{END}` section", path.display());
    };
    let out = format!("{}{BEGIN}\n\n{table}\n{}", &text[..b], &text[e..]);
    std::fs::write(&path, out)?;
    eprintln!(
        "xtask: oracle: the table is written into {}",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_any_characters_for_a_star() {
        assert!(glob(
            "rollout/*.status.message",
            "rollout/echo.status.message"
        ));
        assert!(glob("*message", "rollout/echo.status.canaryStatus.message"));
        assert!(!glob(
            "rollout/*.status.message",
            "rollout/echo.status.phase"
        ));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn a_rollout_finalising_or_behind_its_generation_does_not_rest() {
        let rollout = |generation: i64, phase: &str, reason: &str| {
            json!({"metadata": {"generation": 2}, "status": {
                "observedGeneration": generation, "phase": phase,
                "conditions": [{"type": "Progressing", "status": "True", "reason": reason}]}})
        };
        assert!(resting(&rollout(2, "Progressing", "InRolling")));
        assert!(resting(&rollout(2, "Initial", "")));
        assert!(!resting(&rollout(1, "Progressing", "InRolling")));
        assert!(!resting(&rollout(2, "Progressing", "Finalising")));
        assert!(!resting(&rollout(2, "Progressing", "Cancelling")));
        assert!(!resting(&rollout(2, "Disabling", "")));
    }

    #[test]
    fn every_scenario_in_the_repository_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let scenarios = load(&fixtures(root), &[]).expect("scenarios");
        for (name, s) in &scenarios {
            names(&s.manifests).unwrap_or_else(|e| panic!("{name}: {e}"));
            for a in &s.actions {
                if let Some(p) = &a.patch {
                    resource(&p.kind).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
        let kept: Vec<Kept> = serde_yaml_ng::from_str(
            &std::fs::read_to_string(fixtures(root).join("kept.yaml")).expect("kept.yaml"),
        )
        .expect("kept.yaml parses");
        assert!(kept.iter().all(|k| !k.why.trim().is_empty()));
    }
}
