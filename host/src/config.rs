//! The operator's configuration file (`sluice controller --config FILE`): the
//! sandbox's ceilings and sizing, how modules are compiled and cached, and the
//! metric providers with the namespaces granted each. Every field has a safe
//! default; an unknown field is an error, so a misspelt setting is never ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::providers::ProviderConfig;
use crate::strategy::{Ceilings, Compiler, IsolatedCompiler, QueueConfig, RuntimeConfig};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    /// The sandbox modules run in.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Compiling modules.
    #[serde(default)]
    pub compile: CompileConfig,
    /// The on-disk cache of compiled modules and downloads.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Metric providers modules may query, each granted to some namespaces.
    #[serde(default)]
    pub metric_providers: Vec<ProviderConfig>,
}

/// The sandbox: what a module may ask for, and how calls share it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfig {
    /// The most a module may ask for.
    #[serde(default)]
    pub ceilings: Ceilings,
    /// Instances that may exist at once (the pool's size).
    pub instances: u32,
    /// Calls running at once, all namespaces together (below `instances`).
    pub calls: Option<usize>,
    /// Calls one namespace runs at once.
    pub calls_per_namespace: Option<usize>,
    /// Calls one namespace may have waiting; more are retried later.
    pub waiting_per_namespace: Option<usize>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            ceilings: Ceilings::default(),
            instances: 16,
            calls: None,
            calls_per_namespace: None,
            waiting_per_namespace: None,
        }
    }
}

/// Compilation limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CompileConfig {
    /// Wall-clock time one compilation may take.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Memory the compiler process may use, in bytes.
    pub memory_bytes: u64,
    /// Modules compiled at once.
    pub concurrency: usize,
}

impl Default for CompileConfig {
    fn default() -> Self {
        let helper = IsolatedCompiler::with_program(PathBuf::new());
        CompileConfig {
            timeout: helper.timeout,
            memory_bytes: helper.memory_bytes,
            concurrency: 1,
        }
    }
}

/// The on-disk cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// The directory (or `--cache-dir`); none keeps compiled modules in memory only.
    pub dir: Option<PathBuf>,
    /// The key authenticating cached artifacts, outside the directory (a mounted
    /// Secret); `<dir>.key`, created on first use, when not given.
    pub key_file: Option<PathBuf>,
    /// Bytes the directory may hold; the least recently used files go first.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: None,
            key_file: None,
            max_bytes: 1 << 30,
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration (write 60s, 2m): {e}"))
    })
}

impl OperatorConfig {
    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> anyhow::Result<OperatorConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the configuration {}: {e}", path.display()))?;
        let config: OperatorConfig = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the configuration {}: {e}", path.display()))?;
        config
            .check()
            .map_err(|e| anyhow::anyhow!("the configuration {}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks the settings against each other.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.sandbox;
        if s.instances == 0 {
            return Err("sandbox.instances: at least 1".into());
        }
        let queue = self.queue();
        if queue.global > s.instances as usize {
            return Err(format!(
                "sandbox.calls: {} is more than sandbox.instances ({}); calls must fit the pool",
                queue.global, s.instances
            ));
        }
        if queue.per_tenant == 0 || queue.global == 0 {
            return Err("sandbox.calls and sandbox.callsPerNamespace: at least 1".into());
        }
        if queue.waiting_per_tenant == 0 {
            return Err("sandbox.waitingPerNamespace: at least 1".into());
        }
        if s.ceilings.deadline_ms == 0 || s.ceilings.memory_bytes == 0 {
            return Err("sandbox.ceilings: deadlineMs and memoryBytes must be above 0".into());
        }
        if self.compile.concurrency == 0 {
            return Err("compile.concurrency: at least 1".into());
        }
        for provider in &self.metric_providers {
            provider
                .check()
                .map_err(|e| format!("metricProviders: {e}"))?;
        }
        Ok(())
    }

    /// How calls share the pool.
    pub fn queue(&self) -> QueueConfig {
        let s = &self.sandbox;
        let derived = QueueConfig::for_pool(s.instances.max(1) as usize);
        QueueConfig {
            global: s.calls.unwrap_or(derived.global),
            per_tenant: s.calls_per_namespace.unwrap_or(derived.per_tenant),
            waiting_per_tenant: s
                .waiting_per_namespace
                .unwrap_or(derived.waiting_per_tenant),
        }
    }

    /// The runtime this configuration describes, compiling with `compiler` (the
    /// binary itself, when it runs as the controller).
    pub fn runtime_config(&self, compiler: Option<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            max_concurrent_calls: self.sandbox.instances,
            queue: Some(self.queue()),
            ceilings: self.sandbox.ceilings,
            cache_dir: self.cache.dir.clone(),
            cache_key_file: self.cache.key_file.clone(),
            cache_max_bytes: self.cache.max_bytes,
            compiler: match compiler {
                Some(program) => Compiler::Isolated(IsolatedCompiler {
                    program,
                    timeout: self.compile.timeout,
                    memory_bytes: self.compile.memory_bytes,
                }),
                None => Compiler::InProcess,
            },
            compile_concurrency: self.compile.concurrency,
            ..RuntimeConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_safe_defaults() {
        let c: OperatorConfig = serde_yaml_ng::from_str("{}").expect("config");
        assert_eq!(c, OperatorConfig::default());
        c.check().expect("valid");
        let q = c.queue();
        assert_eq!((q.global, q.per_tenant), (12, 4));
        assert!(c.metric_providers.is_empty(), "no provider unless declared");
    }

    /// The configuration deploy/controller.yaml ships, and where its volumes are
    /// mounted: the cache must be a folder the controller makes below a volume's
    /// root (the kubelet makes the root root's, and the cache refuses a folder
    /// that is not this user's own), and the key must not be inside the cache.
    #[test]
    fn the_shipped_deployments_configuration_reads_and_its_cache_is_the_controllers_own() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/controller.yaml"
        ))
        .expect("deploy/controller.yaml");
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let config_map = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "sluice-config")
            .expect("the ConfigMap sluice-config");
        let config: OperatorConfig = serde_yaml_ng::from_str(
            config_map["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        )
        .expect("the shipped configuration reads");
        config.check().expect("and is consistent");
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("the Deployment");
        let mounts: Vec<&str> = deployment
            .pointer("/spec/template/spec/containers/0/volumeMounts")
            .and_then(serde_json::Value::as_array)
            .expect("volume mounts")
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        let cache = config.cache.dir.as_deref().expect("a cache folder");
        assert!(
            !mounts.iter().any(|m| Path::new(m) == cache),
            "the cache {} is a volume's root",
            cache.display()
        );
        assert!(
            mounts.iter().any(|m| cache.starts_with(m)),
            "the cache {} is on no volume (the root filesystem is read-only)",
            cache.display()
        );
        let key = config.cache.key_file.as_deref().expect("a key file");
        assert!(!key.starts_with(cache), "the key is inside the cache");
    }

    #[test]
    fn the_documented_example_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/config.example.yaml"
        ))
        .expect("deploy/config.example.yaml");
        let c: OperatorConfig = serde_yaml_ng::from_str(&text).expect("config");
        c.check().expect("valid");
        assert_eq!(c.metric_providers.len(), 1);
        assert_eq!(c.compile.timeout, Duration::from_secs(60));
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let c: OperatorConfig = serde_yaml_ng::from_str(
            "sandbox: {ceilings: {deadlineMs: 500}}\ncompile: {timeout: 10s}\ncache: {maxBytes: 1024}\n",
        )
        .expect("partial sections");
        assert_eq!(c.sandbox.ceilings.deadline_ms, 500);
        assert_eq!(
            c.sandbox.ceilings.memory_bytes,
            Ceilings::default().memory_bytes
        );
        assert_eq!(c.sandbox.instances, 16);
        assert_eq!(c.compile.timeout, Duration::from_secs(10));
        assert_eq!(c.compile.concurrency, 1);
        assert_eq!(c.cache.max_bytes, 1024);
        c.check().expect("valid");
    }

    #[test]
    fn misspelt_and_inconsistent_settings_are_refused() {
        let err = serde_yaml_ng::from_str::<OperatorConfig>("sandbox: {instance: 4}")
            .expect_err("misspelt");
        assert!(
            err.to_string().contains("unknown field `instance`"),
            "{err}"
        );
        let c: OperatorConfig =
            serde_yaml_ng::from_str("sandbox: {instances: 4, calls: 8}").expect("parses");
        assert!(
            c.check()
                .expect_err("too many")
                .contains("sandbox.calls: 8")
        );
    }
}
