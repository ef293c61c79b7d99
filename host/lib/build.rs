//! Builds the storage component from `guest/` and puts it in `OUT_DIR`,
//! where `STORAGE_COMPONENT` includes it.

fn main() {
    chatstore_build_support::build_component(
        "chatstore-guest",
        "chatstore_guest",
        &["guest/src", "guest/Cargo.toml", "ids"],
        "chatstore_storage.wasm",
    );
}
