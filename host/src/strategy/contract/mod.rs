//! The strategy contract versions this host speaks, and which one a module uses.
//!
//! Each released version of `wit/` has its own module here with its own
//! `bindgen!`, converting to and from the host's model. A module's version is read
//! from the name of the interface it exports, before anything is instantiated.

pub mod v0_1;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::host_state::HostState;

/// A contract version this host supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    /// `sluice:strategy@0.1.x`.
    V0_1,
}

impl ContractVersion {
    /// Every supported version, newest first.
    pub const ALL: &[ContractVersion] = &[ContractVersion::V0_1];

    /// The version's name as `wit/` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => "0.1.0",
        }
    }

    /// The supported versions, for messages.
    pub fn supported() -> String {
        ContractVersion::ALL
            .iter()
            .map(|v| format!("sluice:strategy@{}", v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The supported version that serves a module built against `version`: the same
    /// major and, before 1.0, the same minor (wasmtime links compatible patch
    /// versions to each other).
    pub fn serving(version: &str) -> Option<ContractVersion> {
        let parts: Vec<&str> = version.split('.').collect();
        match parts.as_slice() {
            ["0", "1", patch] if patch.parse::<u32>().is_ok() => Some(ContractVersion::V0_1),
            _ => None,
        }
    }
}

/// The package every contract version lives in.
pub const PACKAGE: &str = "sluice:strategy";

/// The name of the interface a strategy exports, e.g. `sluice:strategy/strategy@0.1.0`.
pub const STRATEGY_INTERFACE: &str = "sluice:strategy/strategy";

/// The contract version in an export or import name such as `sluice:strategy/strategy@0.1.0`.
pub fn version_of(name: &str, interface: &str) -> Option<String> {
    name.strip_prefix(interface)?
        .strip_prefix('@')
        .map(str::to_owned)
}

/// A module's imports and exports, by name.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    /// Imported interface names.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
}

impl Surface {
    /// Reads a compiled component's surface.
    pub fn of(component: &Component, engine: &Engine) -> Surface {
        let ty = component.component_type();
        Surface {
            imports: ty.imports(engine).map(|(n, _)| n.to_owned()).collect(),
            exports: ty.exports(engine).map(|(n, _)| n.to_owned()).collect(),
        }
    }

    /// Whether the module imports WASI (it was built for `wasm32-wasip2`).
    pub fn needs_wasi(&self) -> bool {
        self.imports.iter().any(|i| i.starts_with("wasi:"))
    }
}

/// Adds every supported version's host imports to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)
}

/// A module ready to be instantiated, for its contract version.
pub enum Pre {
    /// `sluice:strategy@0.1.x`.
    V0_1(v0_1::Pre),
}

impl Pre {
    /// Prepares `component` for its contract version.
    pub fn new(
        version: ContractVersion,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> wasmtime::Result<Pre> {
        match version {
            ContractVersion::V0_1 => Ok(Pre::V0_1(v0_1::Pre::new(linker, component)?)),
        }
    }
}
