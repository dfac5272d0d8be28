//! Builds the built-in strategy modules for `wasm32-unknown-unknown` and embeds them.

use std::path::PathBuf;

use sluice_guest_build::{GuestBuild, PURE_TARGET, componentize_file};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));

    let build = GuestBuild::new(&workspace, PURE_TARGET).package("sluice-steps");
    build.watch(&["guest/steps", "guest/sdk", "wit"]);
    let cores = build.run().unwrap_or_else(|e| panic!("{e}"));
    for (core, name) in cores.iter().zip(["steps"]) {
        componentize_file(core, &out.join(format!("builtin-{name}.wasm")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
