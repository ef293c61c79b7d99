//! Instances kept between calls: the instance that answered a user's call
//! is kept for that user's next one, so a call costs no instantiation. A
//! user's calls may share an instance; different users' never do.

use crate::bindings::StorageService;
use crate::state::InstanceState;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Instances kept between calls (in a pool, at most half its slots).
pub(crate) const MAX_KEPT: usize = 32;

/// The most linear memory an instance may hold and still be kept.
pub(crate) const MAX_KEPT_MEMORY: usize = 8 << 20;

/// An instance that answered its user's last call.
pub(crate) struct Kept {
    pub(crate) user: Uuid,
    pub(crate) store: Store<InstanceState>,
    pub(crate) service: StorageService,
    pub(crate) stderr: MemoryOutputPipe,
}

/// The instances kept between calls, at most `max`, oldest dropped first.
pub(crate) struct KeptInstances {
    kept: Mutex<VecDeque<Kept>>,
    max: usize,
}

impl KeptInstances {
    pub(crate) fn new(max: usize) -> KeptInstances {
        KeptInstances {
            kept: Mutex::default(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Kept>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The user's kept instance, if there is one.
    pub(crate) fn take(&self, user: Uuid) -> Option<Kept> {
        let mut kept = self.lock();
        let at = kept.iter().rposition(|k| k.user == user)?;
        kept.remove(at)
    }

    /// Keeps an instance that answered, dropping the oldest past `max`.
    pub(crate) fn put(&self, instance: Kept) {
        let dropped = {
            let mut kept = self.lock();
            kept.push_back(instance);
            (kept.len() > self.max).then(|| kept.pop_front())
        };
        drop(dropped);
    }

    /// Drops every kept instance; whether there was one.
    pub(crate) fn clear(&self) -> bool {
        let dropped = std::mem::take(&mut *self.lock());
        !dropped.is_empty()
    }
}
