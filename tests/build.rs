//! Builds the test components under `components/` for `wasm32-wasip2`.

fn main() {
    chatstore_build_support::build_component(
        "chatstore-hostile-guest",
        "chatstore_hostile_guest",
        &[
            "tests/components/hostile/src",
            "tests/components/hostile/Cargo.toml",
        ],
        "hostile.wasm",
    );
}
