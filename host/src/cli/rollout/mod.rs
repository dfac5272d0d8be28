//! `sluice rollout …`, also run as the kubectl plugin `kubectl sluice …`: the verbs
//! operators know from Argo Rollouts and Kruise, over the Rollout's own API (no
//! private channel to the controller). What each verb writes is computed in
//! [`act`]; what it shows, in [`view`].

pub mod act;
pub mod lint;
pub mod view;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use crate::controller::plan::Request as Op;
use crate::kruise::v1alpha1::Rollout;
use act::{Body, Request, Target};
use view::{Outcome, Paint, Scene};

/// How to reach the cluster, as kubectl takes it.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// The kubeconfig file (default: $KUBECONFIG — several files joined by `:` as
    /// kubectl merges them —, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (`list` only).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

/// The operator's verbs on Rollouts.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(subcommand)]
    pub verb: Verb,
}

/// How `list` and `get` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Table,
    /// With more columns.
    Wide,
    /// The objects, as JSON.
    Json,
    /// The objects, as YAML.
    Yaml,
}

/// A name and whether to only show what would be written.
#[derive(Debug, Clone, Args)]
pub struct Named {
    /// The Rollout.
    pub name: String,
    /// Send the write as a server-side dry run: checked, admitted, not stored.
    #[arg(long)]
    pub dry_run: bool,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// The Rollouts of the namespace (or all, with -A): phase, step, weight, state, module.
    #[command(visible_alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// One Rollout as a tree: strategy, steps (the current one marked), traffic,
    /// the stable and canary workloads and their pods.
    Get {
        /// The Rollout.
        name: String,
        /// Redraw at every change (in place on a terminal).
        #[arg(short = 'w', long)]
        watch: bool,
        /// Output format (json and yaml print the Rollout).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Kruise's approval: the step waiting at a pause becomes ready.
    Approve(Named),
    /// What `vela workflow resume` does: unpause the Rollout and approve its paused step.
    Resume(Named),
    /// Hold the Rollout where it is (spec.strategy.paused: true).
    Pause(Named),
    /// Past the pause the release waits at (manual or timed), unpausing if needed;
    /// with --full, past every remaining step: the release completes.
    Promote {
        #[command(flatten)]
        target: Named,
        /// Skip the remaining steps (Argo's promote --full).
        #[arg(long)]
        full: bool,
    },
    /// Stop the release: traffic back to the stable version, the canary removed, the
    /// workload held at the stable version until `retry`, a revert or a new release.
    Abort(Named),
    /// Start an aborted release again at step 1.
    Retry(Named),
    /// The workload's template back to the previous revision (or --to-revision), as
    /// `kubectl rollout undo` does; the Rollout cancels the release.
    Undo {
        #[command(flatten)]
        target: Named,
        /// The revision to go back to (`deployment.kubernetes.io/revision`).
        #[arg(long)]
        to_revision: Option<i64>,
    },
    /// A new pod template (the restart annotation), released by the Rollout.
    Restart(Named),
    /// Change the workload's template.
    #[command(subcommand)]
    Set(SetVerb),
    /// The current release's decisions: when, the step and state each saw, the
    /// module and digest, the action and target, the digest of the observation.
    Explain {
        /// The Rollout.
        name: String,
        /// Output format (json and yaml print the records).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Write the decisions as a scenario that `sluice strategy test` replays,
        /// each on the observation it was made on (`-`: standard output).
        #[arg(long, value_name = "FILE", conflicts_with = "output")]
        scenario: Option<std::path::PathBuf>,
    },
    /// One line per release (the last ten): revision, images, module and digest,
    /// outcome, start and duration.
    History {
        /// The Rollout.
        name: String,
        /// Output format (json and yaml print the records).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Check Rollout manifests offline: the CRD's schema, the admission webhook's
    /// rules, and each strategy module's verdict on its configuration annotation;
    /// exits 1 when something is wrong, each finding at file:line.
    Lint(LintArgs),
    /// Where the Rollout stands; exits 0 healthy, 1 aborted or failed, 2 still
    /// progressing or paused (at once, or when --timeout ends).
    Status {
        /// The Rollout.
        name: String,
        /// Wait until it is healthy or failed.
        #[arg(short = 'w', long)]
        watch: bool,
        /// How long --watch waits (e.g. 90s, 10m); without it, until the end.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
}

/// `lint`'s arguments.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Manifests (YAML, several documents each); `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// A module the Rollouts name, as a file: `NAME=FILE` (repeat). Built-in modules
    /// need none; a module not given is not asked about its configuration.
    #[arg(long = "module", value_name = "NAME=FILE")]
    pub modules: Vec<String>,
    /// Kruise's limit on a partition-style step with traffic (as the controller's
    /// --partition-percent-limit).
    #[arg(long, default_value_t = 50)]
    pub partition_percent_limit: i64,
}

/// `set …`.
#[derive(Debug, Subcommand)]
pub enum SetVerb {
    /// New images for the workload's containers: `set image NAME CONTAINER=IMAGE…`.
    Image {
        #[command(flatten)]
        target: Named,
        /// `CONTAINER=IMAGE`, one or more.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// The cluster, as the verbs reach it.
struct Kube {
    client: kube::Client,
    namespace: String,
}

impl Kube {
    async fn connect(args: &KubeArgs) -> anyhow::Result<Kube> {
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if args.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await.context(
                "no cluster to talk to: set KUBECONFIG or --kubeconfig (or run in a Pod)",
            )?,
        };
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok(Kube {
            client: kube::Client::try_from(config)?,
            namespace,
        })
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn rollout(&self, name: &str) -> anyhow::Result<Rollout> {
        match self.rollouts().get(name).await {
            Ok(r) => Ok(r),
            Err(kube::Error::Api(e)) if e.code == 404 => bail!(
                "rollout {name:?} not found in namespace {:?} (`list` shows those there; -n picks another)",
                self.namespace
            ),
            Err(e) => Err(e).with_context(|| format!("cannot read rollout {name:?}")),
        }
    }

    fn workload_api(&self, r: &Rollout) -> anyhow::Result<(Api<DynamicObject>, String)> {
        let Some(w) = r.spec.object_ref.workload_ref.as_ref() else {
            bail!("the rollout names no workload (spec.objectRef.workloadRef)");
        };
        let resource = crate::workload::resource_of(&w.api_version, &w.kind);
        Ok((
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource),
            w.name.clone(),
        ))
    }

    async fn workload(&self, r: &Rollout) -> anyhow::Result<Option<Value>> {
        let (api, name) = self.workload_api(r)?;
        Ok(api
            .get_opt(&name)
            .await?
            .map(serde_json::to_value)
            .transpose()?)
    }

    async fn scene(&self, r: &Rollout) -> anyhow::Result<Scene> {
        let workload = self.workload(r).await?;
        let Some(w) = &workload else {
            return Ok(Scene::default());
        };
        let selector = crate::workload::string_map(w, "/spec/selector/matchLabels")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &crate::workload::resource_of("v1", "Pod"),
        );
        let mut pods =
            crate::workload::list_values(&pods, &ListParams::default().labels(&selector)).await?;
        pods.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        let canary = match w["kind"].as_str() {
            Some("Deployment") => {
                // The canary Deployment is labelled with the workload it is the
                // canary of (its name carries a hash of the release).
                let (api, name) = self.workload_api(r)?;
                let params = ListParams::default()
                    .labels(&format!("{}={name}", crate::workload::CANARY_LABEL));
                crate::workload::list_values(&api, &params)
                    .await?
                    .into_iter()
                    .max_by(|a, b| {
                        a["metadata"]["creationTimestamp"]
                            .as_str()
                            .cmp(&b["metadata"]["creationTimestamp"].as_str())
                    })
            }
            _ => None,
        };
        Ok(Scene {
            workload,
            canary,
            pods,
        })
    }

    /// Sends `requests` in order; says what was done as kubectl does.
    async fn send(
        &self,
        r: &Rollout,
        requests: &[Request],
        dry_run: bool,
        done: &str,
    ) -> anyhow::Result<()> {
        let name = r.metadata.name.clone().unwrap_or_default();
        let params = PatchParams {
            dry_run,
            ..Default::default()
        };
        for request in requests {
            let body = match &request.body {
                Body::Merge(v) => Patch::Merge(v.clone()),
                Body::Json(v) => Patch::Json::<Value>(serde_json::from_value(v.clone())?),
            };
            let result = match request.target {
                Target::Rollout => self
                    .rollouts()
                    .patch(&name, &params, &body)
                    .await
                    .map(|_| ()),
                Target::RolloutStatus => self
                    .rollouts()
                    .patch_status(&name, &params, &body)
                    .await
                    .map(|_| ()),
                Target::Workload => {
                    let (api, workload) = self.workload_api(r)?;
                    api.patch(&workload, &params, &body).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => bail!(
                    "rollout {name:?} moved on while this was sent ({}); look again with `get {name}` and retry",
                    e.message
                ),
                Err(kube::Error::Api(e))
                    if e.code == 422 && matches!(request.body, Body::Json(_)) =>
                {
                    bail!(
                        "rollout {name:?} or its workload moved on while this was sent ({}); look again with `get {name}` and retry",
                        e.message
                    )
                }
                Err(e) => return Err(e).context(format!("cannot write to rollout {name:?}")),
            }
        }
        let suffix = if dry_run { " (server dry run)" } else { "" };
        println!("rollout.rollouts.kruise.io/{name} {done}{suffix}");
        Ok(())
    }
}

/// Runs a verb.
pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    // Offline: no cluster is needed.
    if let Verb::Lint(lint) = &args.verb {
        return run_lint(lint);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let kube = Kube::connect(&args.kube).await?;
        if args.kube.all_namespaces && !matches!(args.verb, Verb::List { .. }) {
            bail!("-A (all namespaces) applies to `list` only; name the namespace with -n");
        }
        verb(&kube, &args.kube, args.verb).await
    })
}

fn paint() -> Paint {
    Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

async fn verb(kube: &Kube, args: &KubeArgs, verb: Verb) -> anyhow::Result<ExitCode> {
    match verb {
        Verb::List { output } => {
            let api: Api<Rollout> = if args.all_namespaces {
                Api::all(kube.client.clone())
            } else {
                kube.rollouts()
            };
            let mut rollouts = api.list(&ListParams::default()).await?.items;
            rollouts.sort_by(|a, b| {
                (&a.metadata.namespace, &a.metadata.name)
                    .cmp(&(&b.metadata.namespace, &b.metadata.name))
            });
            match output {
                Format::Table | Format::Wide => {
                    if rollouts.is_empty() {
                        eprintln!("No rollouts found in namespace {:?}.", kube.namespace);
                    } else {
                        let rows: Vec<_> = rollouts.iter().map(view::summary).collect();
                        print!(
                            "{}",
                            view::table(&rows, args.all_namespaces, output == Format::Wide)
                        );
                    }
                }
                Format::Json | Format::Yaml => print_objects(&rollouts, output)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Get {
            name,
            watch,
            output,
        } => {
            let r = kube.rollout(&name).await?;
            if matches!(output, Format::Json | Format::Yaml) {
                print_objects(std::slice::from_ref(&r), output)?;
                return Ok(ExitCode::SUCCESS);
            }
            let paint = paint();
            draw(&r, &kube.scene(&r).await?, paint, false);
            if watch {
                watch_rollout(kube, &name, |r| {
                    let r = r.clone();
                    async move {
                        draw(&r, &kube.scene(&r).await?, paint, true);
                        Ok(false)
                    }
                })
                .await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Approve(w) => {
            let r = kube.rollout(&w.name).await?;
            let request = act::approve(&r)
                .map_err(|e| anyhow::anyhow!("{e}; `get {}` shows where the release is", w.name))?;
            kube.send(&r, &[request], w.dry_run, "approved").await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Resume(w) => {
            let r = kube.rollout(&w.name).await?;
            let requests = act::resume(&r);
            if requests.is_empty() {
                println!(
                    "rollout.rollouts.kruise.io/{} is neither paused nor waiting for approval: nothing to resume",
                    w.name
                );
                return Ok(ExitCode::SUCCESS);
            }
            kube.send(&r, &requests, w.dry_run, "resumed").await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Pause(w) => {
            let r = kube.rollout(&w.name).await?;
            let request = act::pause(&r).map_err(anyhow::Error::msg)?;
            kube.send(&r, &[request], w.dry_run, "paused").await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Promote {
            target: w,
            full: false,
        } => {
            let r = kube.rollout(&w.name).await?;
            let requests = act::promote(&r).map_err(anyhow::Error::msg)?;
            kube.send(&r, &requests, w.dry_run, "promoted").await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Promote {
            target: w,
            full: true,
        } => request(kube, &w, Op::PromoteFull, "promoted in full").await,
        Verb::Abort(w) => request(kube, &w, Op::Abort, "aborted").await,
        Verb::Retry(w) => request(kube, &w, Op::Retry, "retried").await,
        Verb::Undo {
            target: w,
            to_revision,
        } => {
            let r = kube.rollout(&w.name).await?;
            let workload = kube
                .workload(&r)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the rollout's workload does not exist"))?;
            if workload["kind"] != "Deployment" {
                bail!(
                    "undo goes back through a Deployment's ReplicaSets; for a {} apply the earlier template (e.g. `vela workflow rollback`, or `kubectl apply` of the previous manifest)",
                    workload["kind"].as_str().unwrap_or("workload")
                );
            }
            let uid = workload["metadata"]["uid"].as_str().unwrap_or_default();
            let replica_sets: Api<DynamicObject> = Api::namespaced_with(
                kube.client.clone(),
                &kube.namespace,
                &crate::workload::resource_of("apps/v1", "ReplicaSet"),
            );
            let owned: Vec<Value> =
                crate::workload::list_values(&replica_sets, &ListParams::default())
                    .await?
                    .into_iter()
                    .filter(|rs| crate::workload::controller_uid(rs) == Some(uid))
                    .collect();
            let (revision, request) =
                act::undo(&workload, &owned, to_revision).map_err(anyhow::Error::msg)?;
            kube.send(
                &r,
                &[request],
                w.dry_run,
                &format!("rolled back to revision {revision}"),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Restart(w) => {
            let r = kube.rollout(&w.name).await?;
            let now = jiff::Timestamp::now().to_string();
            kube.send(&r, &[act::restart(&now)], w.dry_run, "restarted")
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Set(SetVerb::Image { target: w, images }) => {
            let pairs = act::image_pairs(&images).map_err(anyhow::Error::msg)?;
            let r = kube.rollout(&w.name).await?;
            let workload = kube
                .workload(&r)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the rollout's workload does not exist"))?;
            let request = act::set_image(&workload, &pairs).map_err(anyhow::Error::msg)?;
            kube.send(&r, &[request], w.dry_run, "image updated")
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Status {
            name,
            watch,
            timeout,
        } => status(kube, &name, watch, timeout).await,
        Verb::Lint(_) => unreachable!("lint runs offline"),
        Verb::Explain {
            name,
            scenario: Some(file),
            ..
        } => {
            let r = kube.rollout(&name).await?;
            write_replay(&r, &file)
        }
        Verb::Explain { name, output, .. } => {
            let r = kube.rollout(&name).await?;
            print_log(&r, output, |s| &s.decisions, view::decisions_table)?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::History { name, output } => {
            let r = kube.rollout(&name).await?;
            print_log(&r, output, |s| &s.releases, view::history_table)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_lint(args: &LintArgs) -> anyhow::Result<ExitCode> {
    use crate::controller::{CONFIG_ANNOTATION, DEFAULT_MODULE, MODULE_ANNOTATION};
    let mut manifests = Vec::new();
    let mut findings = Vec::new();
    for file in &args.files {
        let (name, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            (file.display().to_string(), text)
        };
        let (found, bad) = lint::manifests(&name, &text);
        manifests.extend(found);
        findings.extend(bad);
    }
    let options = crate::kruise::validate::Options {
        partition_limit: args.partition_percent_limit,
    };
    findings.extend(lint::check(&manifests, options));
    let files: std::collections::BTreeMap<String, PathBuf> = args
        .modules
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(n, f)| (n.to_owned(), PathBuf::from(f)))
                .ok_or_else(|| anyhow::anyhow!("--module {m:?} is not NAME=FILE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut runtime = None;
    let mut skipped = Vec::new();
    for m in &manifests {
        let Some(r) = &m.rollout else { continue };
        let annotations = r.metadata.annotations.clone().unwrap_or_default();
        let module = annotations
            .get(MODULE_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| DEFAULT_MODULE.to_owned());
        let reference = match files.get(&module) {
            Some(file) => crate::strategy::ModuleRef::File(file.clone()),
            None => match module.strip_prefix("builtin:") {
                Some(name) => crate::strategy::ModuleRef::Builtin(name.to_owned()),
                None => {
                    skipped.push(module);
                    continue;
                }
            },
        };
        let config = annotations
            .get(CONFIG_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if runtime.is_none() {
            runtime = Some(super::strategy::local_runtime(None)?);
        }
        let runtime = runtime.as_ref().expect("made above");
        let compiled = runtime
            .load(&reference.read()?)
            .with_context(|| format!("module {module}"))?;
        let strategy = crate::strategy::Strategy::new(
            compiled,
            crate::strategy::Limits::default(),
            crate::strategy::Grants::none(),
        );
        if let Err(e) = runtime.validate_config(&strategy, &config) {
            findings.push(lint::Finding {
                file: m.file.clone(),
                line: lint::line_of(&m.doc, "metadata.annotations"),
                rollout: format!(
                    "{}/{}",
                    r.metadata.namespace.as_deref().unwrap_or("default"),
                    r.metadata.name.as_deref().unwrap_or("")
                ),
                message: format!("{CONFIG_ANNOTATION}: module {module} refuses it: {e}"),
            });
        }
    }
    findings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    for f in &findings {
        println!("{f}");
    }
    skipped.sort();
    skipped.dedup();
    for module in &skipped {
        eprintln!(
            "note: module {module} not asked about its configuration: pass --module {module}=FILE"
        );
    }
    let rollouts = manifests.len();
    if findings.is_empty() {
        println!("{rollouts} rollout(s) checked: no findings");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{rollouts} rollout(s) checked: {} finding(s)",
            findings.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// How long a request waits for the controller to take it up.
const TAKEN_UP: Duration = Duration::from_secs(30);

/// Writes an operator request and waits until the controller has taken it up
/// (`status.strategy.handledRequest` shows it).
async fn request(kube: &Kube, w: &Named, what: Op, done: &str) -> anyhow::Result<ExitCode> {
    let r = kube.rollout(&w.name).await?;
    let now = jiff::Timestamp::now().to_string();
    let (request, value) = act::request(&r, what, &now).map_err(anyhow::Error::msg)?;
    kube.send(
        &r,
        &[request],
        w.dry_run,
        &format!("{} requested", what.name()),
    )
    .await?;
    if w.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let handled = |r: &Rollout| {
        r.status
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .is_some_and(|s| s.handled_request == value)
    };
    let taken = tokio::time::timeout(
        TAKEN_UP,
        watch_rollout(kube, &w.name, |r| std::future::ready(Ok(handled(r)))),
    )
    .await;
    match taken {
        Ok(result) => {
            result?;
            let r = kube.rollout(&w.name).await?;
            let outcome = r
                .status
                .as_ref()
                .and_then(|s| s.strategy.as_ref())
                .map(|s| s.request_outcome.clone())
                .unwrap_or_default();
            if let Some(why) = outcome.strip_prefix("ignored: ") {
                bail!(
                    "the controller did not act on {value}: {why} (`status {}` says where the rollout is)",
                    w.name
                );
            }
            let (_, why) = view::outcome(&r);
            println!("rollout.rollouts.kruise.io/{} {done}: {why}", w.name);
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => bail!(
            "the controller has not taken the request up within {}s: is it running? (the request stays in the annotation {})",
            TAKEN_UP.as_secs(),
            crate::controller::plan::REQUEST_ANNOTATION
        ),
    }
}

/// `explain --scenario`: the decision log as a replay scenario, in `file` (`-`:
/// standard output). What cannot be replayed is said on standard error.
fn write_replay(r: &Rollout, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (replay, skipped) = crate::scenario::replay::from_rollout(r).map_err(anyhow::Error::msg)?;
    for s in &skipped {
        eprintln!("left out the decision of {}: {}", s.at, s.why);
    }
    if replay.replay.is_empty() {
        anyhow::bail!("none of the recorded decisions can be replayed");
    }
    let module = if replay.module.name.starts_with("builtin:") {
        replay.module.name.clone()
    } else {
        format!("<the component of module {}>", replay.module.name)
    };
    let text = format!(
        "# The decisions of rollout {}, each with the observation and metric answers it\n\
         # was made on. Replay: sluice strategy test {module} --scenario <this file>\n{}",
        r.metadata.name.as_deref().unwrap_or_default(),
        serde_yaml_ng::to_string(&replay)?
    );
    if file.as_os_str() == "-" {
        print!("{text}");
    } else {
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!(
            "wrote {}: {} decision(s); replay with: sluice strategy test {module} --scenario {}",
            file.display(),
            replay.replay.len(),
            file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One of the logs of `status.strategy`: the records as JSON or YAML, else `table`.
fn print_log<T: serde::Serialize>(
    r: &Rollout,
    output: Format,
    records: impl Fn(&crate::kruise::v1alpha1::StrategyStatus) -> &Vec<T>,
    table: impl Fn(&Rollout) -> String,
) -> anyhow::Result<()> {
    match output {
        Format::Json | Format::Yaml => {
            let strategy = r
                .status
                .as_ref()
                .and_then(|s| s.strategy.clone())
                .unwrap_or_default();
            print_objects(std::slice::from_ref(records(&strategy)), output)
        }
        Format::Table | Format::Wide => {
            print!("{}", table(r));
            Ok(())
        }
    }
}

fn print_objects<T: serde::Serialize>(objects: &[T], format: Format) -> anyhow::Result<()> {
    let value = if objects.len() == 1 {
        serde_json::to_value(&objects[0])?
    } else {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
    };
    match format {
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(&value)?),
        _ => println!("{}", serde_json::to_string_pretty(&value)?),
    }
    Ok(())
}

fn draw(r: &Rollout, scene: &Scene, paint: Paint, again: bool) {
    let mut out = std::io::stdout().lock();
    if again {
        if paint.0 {
            // Home and clear: the tree redrawn in place.
            let _ = write!(out, "\x1b[H\x1b[2J");
        } else {
            let _ = writeln!(out);
        }
    }
    let _ = write!(out, "{}", view::tree(r, scene, paint));
    let _ = out.flush();
}

/// Calls `changed` with the Rollout at each change until it returns true.
async fn watch_rollout<F, Fut>(kube: &Kube, name: &str, mut changed: F) -> anyhow::Result<()>
where
    F: FnMut(&Rollout) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(kube.rollouts(), config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                if changed(&r).await? {
                    return Ok(());
                }
            }
            Ok(watcher::Event::Delete(_)) => bail!("rollout {name:?} was deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the rollout"),
        }
    }
    Ok(())
}

async fn status(
    kube: &Kube,
    name: &str,
    watch: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let judge = |r: Rollout| async move {
        let generation = kube
            .workload(&r)
            .await
            .ok()
            .flatten()
            .and_then(|w| w.pointer("/metadata/generation").and_then(Value::as_i64));
        view::outcome_seen(&r, generation)
    };
    let (mut outcome, why) = judge(kube.rollout(name).await?).await;
    let mut shown = format!("{}: {why}", label(outcome));
    println!("{shown}");
    if watch && outcome == Outcome::Pending {
        let wait = async {
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let mut events = std::pin::pin!(watcher(kube.rollouts(), config).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                        let (o, why) = judge(r).await;
                        let line = format!("{}: {why}", label(o));
                        if line != shown {
                            println!("{line}");
                            shown = line;
                        }
                        outcome = o;
                        if o != Outcome::Pending {
                            return Ok(());
                        }
                    }
                    Ok(watcher::Event::Delete(_)) => bail!("rollout {name:?} was deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "watching the rollout"),
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(result) => result?,
                Err(_) => eprintln!(
                    "still {} after {}",
                    label(outcome),
                    humantime::format_duration(limit)
                ),
            },
            None => wait.await?,
        }
    }
    Ok(ExitCode::from(outcome.code()))
}

fn label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Healthy => "healthy",
        Outcome::Failed => "failed",
        Outcome::Pending => "progressing",
    }
}
