//! Builds the storage component (`component/`, on `guest/`) and puts it in `OUT_DIR`,
//! where `STORAGE_COMPONENT` includes it.

fn main() {
    chatstore_build_support::build_component(
        "chatstore-storage",
        "chatstore_storage",
        &["guest/src", "guest/Cargo.toml", "component"],
        "chatstore_storage.wasm",
    );
}
