//! Compiled modules cached on disk, authenticated before they are loaded.
//!
//! A compiled artifact is native code: loading one runs whatever it holds. So an
//! artifact is only loaded when this controller can prove it wrote it for exactly
//! these wasm bytes and this engine: each file carries an HMAC-SHA256 tag over the
//! wasm digest, the engine's compatibility hash and the artifact, under a key kept
//! outside the cache directory. A garbage file, a file written by someone else, or a
//! valid artifact of another module renamed to this one's name fails the check and
//! the module is compiled again.
//!
//! The directory must belong to this process's user and be private to it; files
//! are opened without following links, must be regular, owned by this user and
//! writable by nobody else, and are read into memory — checked and deserialized
//! from that copy — so nothing is ever mapped from a file that could change. The
//! directory is bounded: past its size budget the least recently used files go.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ring::hmac;
use sha2::{Digest, Sha256};
use wasmtime::Engine;

/// Whether an artifact came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled now.
    Compiled,
    /// Loaded from the on-disk cache.
    Cached,
}

/// Bytes of the tag at the start of each file.
const TAG_BYTES: usize = 32;

/// What the cache holds for a digest.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// An authenticated artifact.
    Hit(Vec<u8>),
    /// Nothing.
    Miss,
    /// A file that failed a check: why. It has been removed.
    Refused(String),
}

/// The key that authenticates artifacts.
pub struct CacheKey(hmac::Key);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// A key for this process only: artifacts written by an earlier process are not
    /// trusted and are compiled again.
    pub fn ephemeral() -> CacheKey {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    /// The key in `path` (at least 32 bytes, e.g. a mounted Secret); when the file
    /// does not exist it is created with a new random key, readable by this user
    /// only. A key inside `cache_dir` is refused: whoever writes the cache could
    /// then forge it.
    pub fn load_or_create(path: &Path, cache_dir: &Path) -> std::io::Result<CacheKey> {
        let dir = absolute(cache_dir);
        if absolute(path).starts_with(&dir) {
            return Err(std::io::Error::other(format!(
                "the cache key {} is inside the cache directory {}: keep it elsewhere (a mounted Secret)",
                path.display(),
                cache_dir.display()
            )));
        }
        match fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 => {
                Ok(CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
            }
            Ok(bytes) => Err(std::io::Error::other(format!(
                "the cache key {} holds {} bytes; it needs at least 32",
                path.display(),
                bytes.len()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut file = private_new_file(path)?;
                file.write_all(&key)?;
                file.sync_all()?;
                Ok(CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &key)))
            }
            Err(e) => Err(e),
        }
    }
}

/// A directory of compiled modules.
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: CacheKey,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ArtifactCache {
    /// Opens the cache at `dir` for `engine`, creating the directory private to this
    /// user; refuses a directory that is a link or belongs to another user.
    pub fn open(dir: &Path, engine: &Engine, key: CacheKey) -> std::io::Result<Self> {
        private_dir(dir)?;
        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_key: hex::encode(&hasher.0.finalize()[..16]),
            key,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an artifact of `digest` lives in.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The authenticated artifact for the module whose sha256 is `digest`, if any.
    pub fn lookup(&self, digest: &str) -> Lookup {
        let path = self.path(digest);
        let bytes = match read_private(&path, super::compile::MAX_ARTIFACT + TAG_BYTES as u64) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Lookup::Miss,
            Err(why) => return self.refuse(&path, why),
        };
        if bytes.len() < TAG_BYTES {
            return self.refuse(&path, "it is too short to be an artifact".into());
        }
        let (tag, artifact) = bytes.split_at(TAG_BYTES);
        if hmac::verify(&self.key.0, &self.message(digest, artifact), tag).is_err() {
            return self.refuse(
                &path,
                "its tag does not authenticate it as this module's artifact".into(),
            );
        }
        Lookup::Hit(artifact.to_vec())
    }

    /// Keeps `artifact`, the compiled module whose sha256 is `digest`.
    pub fn store(&self, digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let tag = hmac::sign(&self.key.0, &self.message(digest, artifact));
        let (tmp, mut file) = temp_file(&self.dir)?;
        let written = file
            .write_all(tag.as_ref())
            .and_then(|()| file.write_all(artifact))
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, self.path(digest)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn message(&self, digest: &str, artifact: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(artifact.len() + 128);
        message.extend_from_slice(b"sluice-artifact-v1\0");
        message.extend_from_slice(digest.as_bytes());
        message.push(0);
        message.extend_from_slice(self.engine_key.as_bytes());
        message.push(0);
        message.extend_from_slice(artifact);
        message
    }

    fn refuse(&self, path: &Path, why: String) -> Lookup {
        tracing::warn!(path = %path.display(), %why, "refusing a cached module; compiling it again");
        // Not followed if it is a link: this removes the link itself.
        let _ = fs::remove_file(path);
        Lookup::Refused(why)
    }
}

/// Removes the least recently used files of `dirs` (by modification time) until
/// they hold at most `max_bytes`, keeping those whose name starts with a digest for
/// which `in_use` says yes. Returns the files removed.
pub fn enforce_budget(
    dirs: &[&Path],
    max_bytes: u64,
    in_use: &dyn Fn(&str) -> bool,
) -> Vec<PathBuf> {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((modified, meta.len(), entry.path()));
        }
    }
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    let mut removed = Vec::new();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let digest = name.get(..64).unwrap_or(name);
        if in_use(digest) {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(len);
            removed.push(path);
        }
    }
    removed
}

/// Reads `path` if it is a regular file of this user that no one else may write,
/// without following a link and at most `max` bytes; `Ok(None)` when it does not
/// exist, `Err` with the reason when it fails a check.
pub fn read_private(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    let mut options = fs::File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a link; not blocking on a FIFO planted under the name.
        options.custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the name is a symbolic link.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err("it is a symbolic link".into());
        }
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("it cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "it belongs to uid {}, not to this process's uid {me}",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "others may write it (mode {:o})",
                meta.mode() & 0o777
            ));
        }
    }
    if meta.len() > max {
        return Err(format!("it is {} bytes, more than {max}", meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(max)).unwrap_or(0));
    // Read through the handle already checked, never by name again.
    (&mut file)
        .take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("it cannot be read: {e}"))?;
    // Touched through the same handle, so the size budget evicts what is least
    // recently used.
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(bytes))
}

/// Creates `dir` if needed and makes sure it is this user's and private to it.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(dir)?,
        Err(e) => return Err(e),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; give the cache a real directory",
                dir.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(_) => {}
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::symlink_metadata(dir)?;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(std::io::Error::other(format!(
                "{} belongs to uid {}, not to this process's uid {me}; the cache must be this user's own",
                dir.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// A new file at `path`, readable and writable by this user only; fails if it exists.
fn private_new_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A new private file in `dir`, for an atomic write-then-rename.
pub fn temp_file(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let name = format!(".tmp-{}-{}", std::process::id(), unique());
    let path = dir.join(name);
    let file = private_new_file(&path)?;
    Ok((path, file))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> ArtifactCache {
        let engine = Engine::default();
        ArtifactCache::open(dir, &engine, CacheKey::ephemeral()).expect("cache")
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_stored_artifact_comes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path());
        assert_eq!(c.lookup(A), Lookup::Miss);
        c.store(A, b"machine code").expect("store");
        assert_eq!(c.lookup(A), Lookup::Hit(b"machine code".to_vec()));
    }

    #[test]
    fn another_modules_artifact_under_this_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path());
        c.store(B, b"code of B").expect("store");
        fs::rename(c.path(B), c.path(A)).expect("rename");
        assert!(matches!(c.lookup(A), Lookup::Refused(why) if why.contains("tag")));
        assert!(!c.path(A).exists(), "the refused file is removed");
    }

    #[test]
    fn another_keys_artifact_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        cache(dir.path()).store(A, b"code").expect("store");
        assert!(matches!(cache(dir.path()).lookup(A), Lookup::Refused(_)));
    }

    #[test]
    fn garbage_links_and_open_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path());
        fs::write(c.path(A), b"x").expect("write");
        fs::set_permissions(c.path(A), fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(c.lookup(A), Lookup::Refused(why) if why.contains("too short")));

        c.store(B, b"code of B").expect("store");
        std::os::unix::fs::symlink(c.path(B), c.path(A)).expect("link");
        assert!(matches!(c.lookup(A), Lookup::Refused(why) if why.contains("symbolic link")));
        assert_eq!(
            c.lookup(B),
            Lookup::Hit(b"code of B".to_vec()),
            "the link's target stays"
        );

        fs::set_permissions(c.path(B), fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(c.lookup(B), Lookup::Refused(why) if why.contains("others may write")));
    }

    #[test]
    fn a_file_written_by_another_user_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = cache(dir.path());
        c.store(A, b"code").expect("store");
        if rustix::process::geteuid().is_root() {
            // As root the test can make the file another user's, as an intruder would.
            std::os::unix::fs::chown(c.path(A), Some(65534), Some(65534)).expect("chown");
            assert!(
                matches!(c.lookup(A), Lookup::Refused(why) if why.contains("belongs to uid 65534"))
            );
        } else {
            // Otherwise, a file another user could have written: open to everyone.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(c.path(A), fs::Permissions::from_mode(0o646)).expect("chmod");
            assert!(
                matches!(c.lookup(A), Lookup::Refused(why) if why.contains("others may write"))
            );
        }
    }

    #[test]
    fn a_directory_of_someone_else_or_a_link_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let err = ArtifactCache::open(&link, &Engine::default(), CacheKey::ephemeral())
            .expect_err("a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_key_inside_the_cache_is_refused_and_a_new_key_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        fs::create_dir(&cache_dir).expect("mkdir");
        let err = CacheKey::load_or_create(&cache_dir.join("key"), &cache_dir).expect_err("inside");
        assert!(
            err.to_string().contains("inside the cache directory"),
            "{err}"
        );
        let key_path = dir.path().join("cache.key");
        CacheKey::load_or_create(&key_path, &cache_dir).expect("created");
        let mode = fs::metadata(&key_path).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&key_path).expect("key").len(), 32);
    }

    #[test]
    fn the_budget_evicts_least_recently_used_files_not_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        for (i, name) in [A, B, "c"].iter().enumerate() {
            let path = dir.path().join(format!("{name}.wasm"));
            fs::write(&path, vec![0u8; 100]).expect("write");
            let file = fs::File::options().append(true).open(&path).expect("open");
            file.set_modified(old + std::time::Duration::from_secs(i as u64))
                .expect("mtime");
        }
        // A is the oldest but in use: B goes, then the budget is met.
        let removed = enforce_budget(&[dir.path()], 200, &|d| d == A);
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("{B}.wasm")]);
    }
}
