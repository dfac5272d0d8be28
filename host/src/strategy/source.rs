//! Naming a module: a built-in or a file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::builtin;
use super::error::LoadError;

/// Where a module's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRef {
    /// A module compiled into the binary: `builtin:<name>`.
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

impl ModuleRef {
    /// The module's bytes.
    pub fn read(&self) -> Result<std::borrow::Cow<'static, [u8]>, LoadError> {
        match self {
            ModuleRef::Builtin(name) => builtin::builtin(name)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| LoadError::UnknownBuiltin {
                    name: name.clone(),
                    known: builtin::names(),
                }),
            ModuleRef::File(path) => {
                std::fs::read(path)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|source| LoadError::Read {
                        path: path.display().to_string(),
                        source: std::sync::Arc::new(source),
                    })
            }
        }
    }

    /// Whether this names a module compiled into the binary.
    pub fn is_builtin(&self) -> bool {
        matches!(self, ModuleRef::Builtin(_))
    }
}

impl FromStr for ModuleRef {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.strip_prefix("builtin:") {
            Some(name) => ModuleRef::Builtin(name.to_owned()),
            None => ModuleRef::File(PathBuf::from(s)),
        })
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleRef::Builtin(name) => write!(f, "builtin:{name}"),
            ModuleRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}
