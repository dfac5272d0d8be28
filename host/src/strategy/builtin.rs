//! Strategy modules compiled into the binary.

/// The built-in strategies: name and component bytes.
pub const BUILTINS: &[(&str, &[u8])] = &[(
    "steps",
    include_bytes!(concat!(env!("OUT_DIR"), "/builtin-steps.wasm")),
)];

/// The name of the strategy a Rollout gets when it names none.
pub const DEFAULT: &str = "steps";

/// The component bytes of a built-in strategy.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the built-ins, for messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|(n, _)| format!("builtin:{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
