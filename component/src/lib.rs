//! The built-in storage component: every rule as `chatstore-guest` states
//! it, exported as `chatstore:storage/storage`. The host builds this crate
//! for `wasm32-wasip2` and embeds it (`chatstore_host::STORAGE_COMPONENT`).
//!
//! It is a crate of its own so that `chatstore-guest`, the library every
//! policy depends on, is only ever linked into the component that uses it.

#[cfg(target_arch = "wasm32")]
chatstore_guest::export_policy!(chatstore_guest::BuiltIn);
