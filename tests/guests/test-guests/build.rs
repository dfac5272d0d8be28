//! Builds the modules the tests load, as components, into OUT_DIR.

use std::fmt::Write as _;
use std::path::PathBuf;

use sluice_guest_build::{
    GuestBuild, PURE_TARGET, WASIP2_TARGET, componentize_file, target_installed,
};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .ancestors()
        .nth(3)
        .expect("tests/guests/test-guests")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));

    let pure = GuestBuild::new(&workspace, PURE_TARGET)
        .package("doubling-strategy")
        .package("hostile-strategy")
        .package("metrics-gate-strategy");
    pure.watch(&[
        "examples/strategies",
        "tests/guests/hostile",
        "guest/sdk",
        "wit",
    ]);
    let cores = pure.run().unwrap_or_else(|e| panic!("{e}"));
    let mut consts = String::new();
    writeln!(
        consts,
        "/// The example's core module, before it became a component.\npub const DOUBLING_CORE_PATH: &str = {:?};",
        cores[0].display().to_string()
    )
    .unwrap();
    for (core, name) in cores.iter().zip(["DOUBLING", "HOSTILE", "METRICS_GATE"]) {
        let path = out.join(format!("{}.wasm", name.to_lowercase()));
        componentize_file(core, &path).unwrap_or_else(|e| panic!("{e}"));
        writeln!(
            consts,
            "pub const {name}: &[u8] = include_bytes!({:?});",
            path.display().to_string()
        )
        .unwrap();
    }

    // The same example built for WASI: the host must load it with a WASI that grants nothing.
    if target_installed(WASIP2_TARGET) {
        let wasi = GuestBuild::new(&workspace, WASIP2_TARGET).package("doubling-strategy");
        let built = wasi.run().unwrap_or_else(|e| panic!("{e}"));
        writeln!(
            consts,
            "pub const DOUBLING_WASIP2: Result<&[u8], &str> = Ok(include_bytes!({:?}));",
            built[0].display().to_string()
        )
        .unwrap();
    } else {
        println!(
            "cargo:warning=wasm32-wasip2 is not installed: the WASI test module is not built (rustup target add wasm32-wasip2)"
        );
        writeln!(
            consts,
            "pub const DOUBLING_WASIP2: Result<&[u8], &str> = Err(\"the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`\");"
        )
        .unwrap();
    }
    std::fs::write(out.join("guests.rs"), consts).expect("write guests.rs");
}
