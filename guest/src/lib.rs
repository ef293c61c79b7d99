//! chatstore's domain and use cases.
//!
//! This crate holds the storage policy and nothing else: entities, the
//! attachment-name rules, the error codes, and the sixteen use cases written
//! against port traits. It never builds a path or touches a filesystem.
//!
//! Built for `wasm32-wasip2`, its `component` module wires the port traits
//! to the WIT imports, and `export_policy!` exports a [`Policy`] as
//! `chatstore:storage/storage` from the crate that becomes the component:
//! the built-in one (`component/`, crate `chatstore-storage`) or a policy of
//! your own (`docs/testing-your-own-policy.md`). Built natively it is an
//! ordinary library, so a policy can be unit-tested and benchmarked without
//! a runtime.

pub mod domain;
pub mod usecase;

pub use usecase::{BuiltIn, Policy, Storage};

#[cfg(target_arch = "wasm32")]
pub mod component;
