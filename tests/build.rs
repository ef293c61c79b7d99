//! Builds the test components under `components/` for `wasm32-wasip2`.

fn main() {
    chatstore_build_support::build_component(
        "chatstore-hostile-guest",
        "chatstore_hostile_guest",
        &[
            "tests/components/hostile/src",
            "tests/components/hostile/Cargo.toml",
            "guest/src",
            "guest/Cargo.toml",
        ],
        "hostile.wasm",
    );
    chatstore_build_support::build_component(
        "chatstore-file-limit-guest",
        "chatstore_file_limit_guest",
        &[
            "tests/components/file-limit/src",
            "tests/components/file-limit/Cargo.toml",
            "guest/src",
            "guest/Cargo.toml",
        ],
        "file-limit.wasm",
    );
    chatstore_build_support::build_component(
        "chatstore-plugin-probe",
        "plugin-probe",
        &[
            "tests/components/plugin-probe/src",
            "tests/components/plugin-probe/Cargo.toml",
        ],
        "plugin-probe.wasm",
    );
}
