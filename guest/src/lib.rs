//! chatstore's domain and use cases.
//!
//! This crate holds the storage policy and nothing else: entities, the
//! attachment-name rules, the error codes, and the sixteen use cases written
//! against port traits. It never builds a path or touches a filesystem.
//!
//! Built for `wasm32-wasip2` it becomes the storage component: the
//! `component` module wires the port traits to the WIT imports and exports
//! `chatstore:storage/storage`. Built natively it is an ordinary library, so
//! the policy can be unit-tested and benchmarked without a runtime.

pub mod domain;
pub mod usecase;

pub use usecase::{BuiltIn, Policy, Storage};

#[cfg(target_arch = "wasm32")]
pub mod component;

#[cfg(any(all(target_arch = "wasm32", not(target_feature = "atomics")), test))]
mod allocator;

// The free lists take no lock: only where a component runs on one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator::new();
