//! Builds the modules the tests load, as components, into OUT_DIR.

#[path = "hostile_wat.rs"]
mod hostile_wat;

use std::fmt::Write as _;
use std::path::PathBuf;

use sluice_guest_build::{
    BuildError, GuestBuild, PURE_TARGET, WASIP2_TARGET, build_javascript, build_python,
    componentize_file, ensure_target,
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
    // The sources only: an example's node_modules (after `npm ci` there) would be
    // scanned at every build and rebuild the modules whenever npm touched it.
    pure.watch(&[
        "examples/strategies/doubling",
        "examples/strategies/metrics-gate",
        "examples/strategies/linear-js/strategy.js",
        "examples/strategies/linear-js/package.json",
        "examples/strategies/linear-js/package-lock.json",
        "examples/strategies/approval-py/app.py",
        "examples/strategies/approval-py/requirements.txt",
        "tests/guests/hostile",
        "tests/guests/wasi-hostile",
        "tests/guests/test-guests/hostile_wat.rs",
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

    // Hand-written hostile modules: what the canonical ABI lets an attacker say.
    for (name, bytes) in hostile_wat::build(&workspace) {
        let path = out.join(format!("{}.wasm", name.to_lowercase()));
        std::fs::write(&path, bytes).expect("write a hand-written module");
        writeln!(
            consts,
            "pub const {name}: &[u8] = include_bytes!({:?});",
            path.display().to_string()
        )
        .unwrap();
    }

    // Built for WASI: the example (the host must load it with a WASI that grants
    // nothing) and a module that sleeps and reaches for files, sockets and clocks.
    let wasi_modules = ["DOUBLING_WASIP2", "WASI_HOSTILE"];
    if ensure_target(WASIP2_TARGET) {
        let wasi = GuestBuild::new(&workspace, WASIP2_TARGET)
            .package("doubling-strategy")
            .package("wasi-hostile-strategy");
        let built = wasi.run().unwrap_or_else(|e| panic!("{e}"));
        for (path, name) in built.iter().zip(wasi_modules) {
            writeln!(
                consts,
                "pub const {name}: Result<&[u8], &str> = Ok(include_bytes!({:?}));",
                path.display().to_string()
            )
            .unwrap();
        }
    } else {
        println!(
            "cargo:warning=wasm32-wasip2 is not installed: the WASI test modules are not built (rustup target add wasm32-wasip2)"
        );
        for name in wasi_modules {
            writeln!(
                consts,
                "pub const {name}: Result<&[u8], &str> = Err(\"the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`\");"
            )
            .unwrap();
        }
    }
    // The examples in other languages, each with its own toolchain. A missing
    // toolchain fails only the tests that load these modules, naming what to install.
    type Builder =
        fn(&std::path::Path, &std::path::Path, &std::path::Path) -> Result<(), BuildError>;
    let others: [(&str, &str, Builder); 2] = [
        (
            "LINEAR_JS",
            "examples/strategies/linear-js",
            build_javascript,
        ),
        (
            "APPROVAL_PY",
            "examples/strategies/approval-py",
            build_python,
        ),
    ];
    for (name, dir, build) in others {
        let path = out.join(format!("{}.wasm", name.to_lowercase()));
        let line = match build(&workspace, &workspace.join(dir), &path) {
            Ok(()) => format!(
                "pub const {name}: Result<&[u8], &str> = Ok(include_bytes!({:?}));",
                path.display().to_string()
            ),
            Err(e) => {
                println!("cargo:warning={dir} was not built: {e}");
                format!(
                    "pub const {name}: Result<&[u8], &str> = Err({:?});",
                    format!("{dir} was not built: {e}")
                )
            }
        };
        writeln!(
            consts,
            "/// The example strategy in `{dir}`, built.\n{line}"
        )
        .unwrap();
    }
    std::fs::write(out.join("guests.rs"), consts).expect("write guests.rs");
}
