//! Group commit for `fsync`: callers that need the same file synced after
//! their own writes share one `fsync` instead of queueing one each.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};

/// One file's (or directory's) syncs, shared between the callers that
/// arrive while one is under way.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    synced: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Callers that have asked for a sync.
    asked: u64,
    /// Of those, how many a finished sync covers.
    covered: u64,
    /// Whether a sync is under way.
    syncing: bool,
}

impl GroupSync {
    /// Returns once a `sync` that began after this call did has succeeded:
    /// so everything written before the call is durable. One caller at a
    /// time runs `sync`, for itself and every caller before it began; the
    /// others wait for it, and retry it themselves if it fails.
    pub(crate) fn sync(&self, sync: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.lock();
        state.asked += 1;
        let mine = state.asked;
        while state.covered < mine {
            if state.syncing {
                state = (self.synced.wait(state)).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.syncing = true;
            let covers = state.asked;
            drop(state);
            let synced = sync();
            state = self.lock();
            state.syncing = false;
            if synced.is_ok() {
                state.covered = state.covered.max(covers);
            }
            self.synced.notify_all();
            synced?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn every_caller_returns_after_a_sync_that_began_after_it_asked() {
        let group = Arc::new(GroupSync::default());
        // Each sync records the highest "write" it covers.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, written, durable, syncs) = (
                    group.clone(),
                    written.clone(),
                    durable.clone(),
                    syncs.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .sync(|| {
                                syncs.fetch_add(1, Ordering::SeqCst);
                                durable.fetch_max(written.load(Ordering::SeqCst), Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(durable.load(Ordering::SeqCst) >= mine);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(written.load(Ordering::SeqCst), 1600);
        assert!((1..=1600).contains(&syncs.load(Ordering::SeqCst)));
    }

    #[test]
    fn a_failed_sync_fails_its_caller_and_the_next_caller_syncs_again() {
        let group = GroupSync::default();
        let failed = group.sync(|| Err(io::Error::other("disk gone")));
        assert!(failed.is_err());
        let runs = AtomicU64::new(0);
        group
            .sync(|| {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
