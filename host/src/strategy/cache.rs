//! Compiled modules cached on disk, keyed by what makes them valid.
//!
//! A compiled artifact is native code: loading one is only safe if this host made it
//! with an engine of the same configuration. The key is therefore the sha256 of the
//! wasm bytes the host holds together with the engine's compatibility hash, and the
//! files are written by this host only, into a directory only it may write.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether an artifact came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled now.
    Compiled,
    /// Loaded from the on-disk cache.
    Cached,
}

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// Opens (creating it, private to this user) the cache at `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: hex::encode(&hasher.0.finalize()[..16]),
        })
    }

    /// The file an artifact of `digest` lives in.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The component for `bytes` (whose sha256 is `digest`): from the cache, or
    /// compiled and then stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Provenance)> {
        let path = self.path(digest);
        if path.is_file() {
            // SAFETY: the file is named by the sha256 of bytes this host holds and by
            // this engine's compatibility hash, and only this host writes into its
            // private cache directory: it is an artifact this host compiled for this
            // engine configuration.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Provenance::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached module");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a compiled module");
        }
        Ok((component, Provenance::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize()?;
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(&bytes)?;
        tmp.1.sync_all()?;
        fs::rename(&tmp.0, path)?;
        Ok(())
    }
}

/// A new private file in `dir`, for an atomic write-then-rename.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let name = format!(".tmp-{}-{}", std::process::id(), unique());
    let path = dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    Ok((path, file))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Feeds `Hash` output into sha256, so the key does not depend on std's hasher.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The sha256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
