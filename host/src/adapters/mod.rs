//! Port adapters: in-memory metadata, the filesystem chat storage, ids.

pub mod fs;
pub mod memory;
#[cfg(test)]
mod suite;

use crate::error::PortResult;
use crate::ports::IdGenerator;
use uuid::Uuid;

/// UUID version 7 ids: unique, and ordered by creation time.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> PortResult<Uuid> {
        Ok(Uuid::now_v7())
    }
}
