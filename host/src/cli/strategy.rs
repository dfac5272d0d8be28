//! `sluice strategy …`: tools for strategy authors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::scenario::{self, Scenario};
use crate::strategy::{
    CompiledModule, Grants, Limits, ModuleInfo, ModuleRef, Runtime, RuntimeConfig, Strategy,
};

/// Strategy module tools.
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Show a module's contract version, exports, imports, size and sha256.
    Inspect {
        /// A component file, or `builtin:<name>`.
        module: ModuleRef,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Check a configuration with the module's own `validate-config`.
    Validate {
        /// A component file, or `builtin:<name>`.
        module: ModuleRef,
        /// The configuration: JSON text, or `@file` to read it from a file.
        #[arg(long, default_value = "")]
        config: String,
    },
    /// Replay scenarios against a module and check the decisions they expect.
    Test {
        /// A component file, or `builtin:<name>`.
        module: ModuleRef,
        /// Scenario files (YAML); repeat for several.
        #[arg(long = "scenario", short, required = true)]
        scenarios: Vec<PathBuf>,
        /// Print only failures and the summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Turn a core module built with the sluice-strategy SDK (wasm32-unknown-unknown)
    /// into a component.
    Componentize {
        /// The core module, e.g. target/wasm32-unknown-unknown/release/my_strategy.wasm.
        core: PathBuf,
        /// Where to write the component.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// JSON.
    Json,
}

/// A runtime for modules on the user's own machine.
pub(crate) fn local_runtime(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
    // The module may be anyone's: compile it in the bounded helper, as the controller does.
    let mut compiler = crate::strategy::IsolatedCompiler::current_exe()
        .context("finding this binary to compile modules")?;
    // The user's own module on the user's own machine: a module with an interpreter
    // inside (JavaScript, Python) can take minutes to compile on a busy laptop, and
    // Ctrl-C stops a runaway one. The memory bound stays.
    compiler.timeout = std::time::Duration::from_secs(600);
    Runtime::new(RuntimeConfig {
        cache_dir,
        compiler: crate::strategy::Compiler::Isolated(compiler),
        ..RuntimeConfig::default()
    })
}

/// Runs a strategy command.
pub fn run(cmd: StrategyCommand, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = local_runtime(cache_dir)?;
    match cmd {
        StrategyCommand::Inspect { module, output } => inspect(&runtime, &module, output),
        StrategyCommand::Validate { module, config } => validate(&runtime, &module, &config),
        StrategyCommand::Test {
            module,
            scenarios,
            quiet,
        } => test(&runtime, &module, &scenarios, quiet),
        StrategyCommand::Componentize { core, output } => componentize(&runtime, &core, &output),
    }
}

fn load(runtime: &Runtime, module: &ModuleRef) -> anyhow::Result<Arc<CompiledModule>> {
    let bytes = module.read()?;
    Ok(runtime.load(&bytes)?)
}

/// What `inspect` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspection {
    module: String,
    sha256: String,
    size: usize,
    contract: String,
    wasi: bool,
    exports: Vec<String>,
    imports: Vec<String>,
    describe: Option<ModuleInfo>,
    describe_error: Option<String>,
}

fn inspect(runtime: &Runtime, module: &ModuleRef, output: Output) -> anyhow::Result<ExitCode> {
    let compiled = load(runtime, module)?;
    let strategy = Strategy::new(compiled.clone(), Limits::default(), Grants::none());
    let described = runtime.describe(&strategy);
    let report = Inspection {
        module: module.to_string(),
        sha256: compiled.digest().to_owned(),
        size: compiled.size(),
        contract: format!("sluice:strategy@{}", compiled.contract_version()),
        wasi: compiled.surface().needs_wasi(),
        exports: compiled.surface().exports.clone(),
        imports: compiled.surface().imports.clone(),
        describe_error: described.as_ref().err().map(ToString::to_string),
        describe: described.ok(),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            println!("module:    {}", report.module);
            println!("sha256:    {}", report.sha256);
            println!("size:      {} bytes", report.size);
            println!("contract:  {}", report.contract);
            println!(
                "target:    {}",
                if report.wasi {
                    "wasm32-wasip2 component (runs with a WASI that grants nothing)"
                } else {
                    "pure component (no WASI)"
                }
            );
            println!("exports:   {}", report.exports.join(", "));
            println!(
                "imports:   {}",
                if report.imports.is_empty() {
                    "none".to_owned()
                } else {
                    report.imports.join(", ")
                }
            );
            match (&report.describe, &report.describe_error) {
                (Some(info), _) => {
                    println!("name:      {} {}", info.name, info.version);
                    if !info.description.is_empty() {
                        println!("about:     {}", info.description);
                    }
                    println!(
                        "config:    {}",
                        info.config_schema
                            .as_deref()
                            .unwrap_or("no schema declared")
                    );
                }
                (None, Some(e)) => println!("describe:  failed: {e}"),
                (None, None) => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(runtime: &Runtime, module: &ModuleRef, config: &str) -> anyhow::Result<ExitCode> {
    let config = match config.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading config file {path}"))?
        }
        None => config.to_owned(),
    };
    let compiled = load(runtime, module)?;
    let strategy = Strategy::new(compiled, Limits::default(), Grants::none());
    match runtime.validate_config(&strategy, &config) {
        Ok(()) => {
            println!("configuration accepted by {module}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("configuration rejected: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test(
    runtime: &Runtime,
    module: &ModuleRef,
    files: &[PathBuf],
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let compiled = load(runtime, module)?;
    let mut failed = 0;
    for file in files {
        let scenario = read_scenario(file)?;
        if let Some(recorded) = &scenario.module
            && !recorded.digest.is_empty()
            && recorded.digest != compiled.digest()
        {
            eprintln!(
                "note: {} was recorded with module {} ({}); this is {}: its decisions may differ",
                file.display(),
                recorded.name,
                recorded.digest,
                compiled.digest()
            );
        }
        let strategy = Strategy::new(compiled.clone(), Limits::default(), scenario.grants.clone());
        if let Some(config) = &scenario.config {
            runtime
                .validate_config(&strategy, &config.to_string())
                .with_context(|| format!("{}: config", file.display()))?;
        }
        let outcome = scenario::run(runtime, &strategy, &scenario)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let title = if scenario.name.is_empty() {
            file.display().to_string()
        } else {
            format!("{} ({})", scenario.name, file.display())
        };
        let report = scenario::render(&title, &outcome);
        if quiet && outcome.failures.is_empty() {
            if let Some(summary) = report.lines().last() {
                println!("{title}: {summary}");
            }
        } else {
            println!("{report}");
        }
        if !outcome.failures.is_empty() {
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} scenarios failed", files.len());
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn componentize(runtime: &Runtime, core: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|e| e.validate(true).encode())
        .with_context(|| {
            format!(
                "{} is not a core module built with the sluice-strategy SDK (wit-bindgen)",
                core.display()
            )
        })?;
    let module = runtime.load(&component)?;
    std::fs::write(output, &component).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "wrote {} ({} bytes, sha256 {}, contract sluice:strategy@{})",
        output.display(),
        component.len(),
        module.digest(),
        module.contract_version()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_scenario(path: &Path) -> anyhow::Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a valid scenario", path.display()))
}
