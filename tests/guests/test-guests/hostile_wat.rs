//! Hostile modules no compiler would emit, written as core wasm text against the
//! canonical ABI of `sluice:strategy@0.1.0` and made components with the contract's
//! own WIT: what an attacker who writes wasm by hand can hand the host.

use std::path::Path;

/// The exports every module here shares: a bump allocator, `describe` and
/// `validate-config` that behave, and a `$good` decision (step 1, one pod, 20%,
/// hold 5 s) written at offset 1024.
const SKELETON: &str = r#"
(module
  (memory (export "memory") 3)
  {MEMORIES}
  (global $heap (mut i32) (i32.const 131072))
  (data (i32.const 16) "hostile-wat")
  (data (i32.const 32) "0.0.0")
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $size)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (local.get $ptr))
  (func $good (result i32)
    (i32.store8 (i32.const 1024) (i32.const 0))
    (i32.store (i32.const 1028) (i32.const 1))
    (i32.store8 (i32.const 1032) (i32.const 0))
    (i32.store (i32.const 1036) (i32.const 1))
    (i32.store8 (i32.const 1040) (i32.const 1))
    (i32.store8 (i32.const 1041) (i32.const 20))
    (i32.store (i32.const 1044) (i32.const 0))
    (i32.store (i32.const 1048) (i32.const 0))
    (i32.store8 (i32.const 1052) (i32.const 0))
    (i32.store (i32.const 1056) (i32.const 5))
    (i32.store (i32.const 1064) (i32.const 0))
    (i32.store (i32.const 1068) (i32.const 0))
    (i32.store (i32.const 1072) (i32.const 0))
    (i32.store (i32.const 1076) (i32.const 0))
    (i32.const 1024))
  (func (export "sluice:strategy/strategy@0.1.0#validate-config") (param i32 i32) (result i32)
    (i32.store8 (i32.const 256) (i32.const 0))
    (i32.const 256))
  (func (export "sluice:strategy/strategy@0.1.0#describe") (result i32)
    (i32.store (i32.const 512) (i32.const 16))
    (i32.store (i32.const 516) (i32.const 11))
    (i32.store (i32.const 520) (i32.const 32))
    (i32.store (i32.const 524) (i32.const 5))
    (i32.store (i32.const 528) (i32.const 0))
    (i32.store (i32.const 532) (i32.const 0))
    (i32.store8 (i32.const 536) (i32.const 0))
    (i32.const 512))
  (func (export "sluice:strategy/strategy@0.1.0#decide") (param $input i32) (result i32)
    {DECIDE})
)
"#;

/// Four memories: grows each of the three extra ones by 12 MiB, then decides. Each
/// alone is far below a 32 MiB limit; together they are above it.
fn multi_memory_bomb() -> String {
    SKELETON
        .replace("{MEMORIES}", "(memory $m1 0) (memory $m2 0) (memory $m3 0)")
        .replace(
            "{DECIDE}",
            r#"
    (if (i32.eq (memory.grow $m1 (i32.const 192)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $m2 (i32.const 192)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $m3 (i32.const 192)) (i32.const -1)) (then unreachable))
    (call $good)"#,
        )
}

/// A decision whose 1024 routes all point at the same 1024 conditions, whose names
/// and values all point at the same 64 KiB string: 192 KiB of guest memory that
/// would be 128 GiB once copied into the host.
fn aliased_result() -> String {
    SKELETON.replace("{MEMORIES}", "").replace(
        "{DECIDE}",
        r#"
    (local $i i32)
    (local $at i32)
    (memory.fill (i32.const 65536) (i32.const 97) (i32.const 65536))
    (local.set $i (i32.const 0))
    (block $conditions_done
      (loop $conditions
        (br_if $conditions_done (i32.ge_u (local.get $i) (i32.const 1024)))
        (local.set $at (i32.add (i32.const 2048) (i32.mul (local.get $i) (i32.const 24))))
        (i32.store8 (local.get $at) (i32.const 0))
        (i32.store (i32.add (local.get $at) (i32.const 4)) (i32.const 65536))
        (i32.store (i32.add (local.get $at) (i32.const 8)) (i32.const 65536))
        (i32.store (i32.add (local.get $at) (i32.const 12)) (i32.const 65536))
        (i32.store (i32.add (local.get $at) (i32.const 16)) (i32.const 65536))
        (i32.store8 (i32.add (local.get $at) (i32.const 20)) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $conditions)))
    (local.set $i (i32.const 0))
    (block $routes_done
      (loop $routes
        (br_if $routes_done (i32.ge_u (local.get $i) (i32.const 1024)))
        (local.set $at (i32.add (i32.const 32768) (i32.mul (local.get $i) (i32.const 8))))
        (i32.store (local.get $at) (i32.const 2048))
        (i32.store (i32.add (local.get $at) (i32.const 4)) (i32.const 1024))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $routes)))
    (drop (call $good))
    (i32.store (i32.const 1044) (i32.const 32768))
    (i32.store (i32.const 1048) (i32.const 1024))
    (i32.const 1024)"#,
    )
}

/// A module that behaves, in the same hand-written shape: proof that the two above
/// fail for what they do, not for how they are written.
fn well_behaved() -> String {
    SKELETON
        .replace("{MEMORIES}", "")
        .replace("{DECIDE}", "(call $good)")
}

/// Builds each hand-written module as a component against `wit/v0.1.0`:
/// `(const name, component bytes)`.
pub fn build(workspace: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(workspace.join("wit/v0.1.0"))
        .unwrap_or_else(|e| panic!("wit/v0.1.0: {e:#}"));
    let world = resolve
        .select_world(&[package], Some("strategy-module"))
        .unwrap_or_else(|e| panic!("world: {e:#}"));
    [
        ("MULTI_MEMORY_BOMB", multi_memory_bomb()),
        ("ALIASED_RESULT", aliased_result()),
        ("HANDWRITTEN_GOOD", well_behaved()),
    ]
    .into_iter()
    .map(|(name, text)| {
        let mut module = wat::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
            false,
        )
        .unwrap_or_else(|e| panic!("{name}: embedding the WIT: {e:#}"));
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
            .validate(true)
            .encode()
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        (name, component)
    })
    .collect()
}
