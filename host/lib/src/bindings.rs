//! The WIT world `storage-service` on the host side: the only place
//! `bindgen!` appears. The port implementations are in `imports.rs`, the
//! checks and conversions of values in `values.rs`.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "storage-service",
    });
}

pub use generated::chatstore::storage::types as wit;
pub(crate) use generated::chatstore::storage::{
    chat_file_repository, chat_repository, chat_storage, id_generator, sandbox_session_repository,
    storage_usage, workspace_repository,
};
pub(crate) use generated::exports::chatstore::storage::storage::Guest;
pub(crate) use generated::{StorageService, StorageServicePre};

use crate::state::InstanceState;
use wasmtime::component::{HasSelf, Linker};

/// Adds the seven ports and the WASI interfaces the guest's standard library
/// uses (clocks, stdio, …; the component imports no filesystem) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    generated::StorageService::add_to_linker::<InstanceState, HasSelf<InstanceState>>(linker, |s| s)
}
