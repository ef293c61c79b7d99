//! How the server shares itself out: its configuration, and the slots and
//! per-user turns every request takes before it does any work.
//!
//! A request takes one of its user's turns (at most
//! `max_concurrent_per_user` at once), then one of the server's slots (at
//! most `max_concurrent`), and keeps both until its work is done: the use
//! case, the staging of its body, or the writing of an export. A user's
//! further requests wait for a turn without holding a slot, so a burst from
//! one user leaves every other user the rest.

use crate::failure::Failure;
use axum::http::StatusCode;
use chatstore_host::{ChatStore, Error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The most requests doing work at once; a request takes one of these
    /// slots before it reads its body.
    pub max_concurrent: usize,
    /// The most slots one user's requests hold at once. The user's further
    /// requests wait their turn without holding one, so a burst from one
    /// user (writes queued behind that user's own lock, slow bodies, slow
    /// exports) leaves every other user the rest.
    pub max_concurrent_per_user: usize,
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a request body may go without sending a byte (408).
    pub body_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_upload_bytes: 256 << 20,
            max_concurrent: 64,
            max_concurrent_per_user: 4,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) store: ChatStore,
    pub(crate) config: ServerConfig,
    running: Arc<Semaphore>,
    users: Arc<UserTurns>,
}

/// A request's place among those doing work: one of its user's turns and
/// one of the server's slots, given back when the last clone is dropped.
/// Work that runs on a thread of its own takes a clone along, so a client
/// that goes away never frees the slot of work still running.
#[derive(Clone)]
pub(crate) struct Slot(#[allow(dead_code)] Arc<(OwnedSemaphorePermit, UserTurn)>);

impl App {
    pub(crate) fn new(store: ChatStore, config: ServerConfig) -> App {
        App {
            running: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            users: Arc::new(UserTurns::new(config.max_concurrent_per_user)),
            store,
            config,
        }
    }

    /// Takes one of the user's turns, then one of the request slots.
    pub(crate) async fn slot(&self, user: Uuid) -> Result<Slot, Failure> {
        let shutting_down = |_| {
            Failure::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "shutting down",
            )
        };
        let turn = UserTurns::take(&self.users, user)
            .await
            .map_err(shutting_down)?;
        let running = (self.running.clone().acquire_owned())
            .await
            .map_err(shutting_down)?;
        Ok(Slot(Arc::new((running, turn))))
    }

    /// Runs a use case of `user` on a blocking thread, in the request's
    /// span, in a slot of its own.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        user: Uuid,
        f: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let slot = self.slot(user).await?;
        self.run_in(&slot, f).await
    }

    /// Runs a use case on a blocking thread, in the request's span, in the
    /// slot the request holds; the thread keeps the slot until it is done.
    pub(crate) async fn run_in<T: Send + 'static>(
        &self,
        slot: &Slot,
        f: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let (store, slot) = (self.store.clone(), slot.clone());
        let span = tracing::Span::current();
        let work = move || {
            let _slot = slot;
            span.in_scope(|| f(&store))
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => Ok(result?),
            Err(e) => {
                tracing::error!(error = %e, "a request's worker failed");
                Err(Failure::plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the request's worker failed",
                ))
            }
        }
    }
}

/// The turns each user's requests take before a slot: a semaphore per user
/// with requests running or waiting, dropped when the last one ends.
struct UserTurns {
    each: usize,
    users: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
}

/// One of a user's turns, or a wait for one; given back when dropped.
struct UserTurn {
    turns: Arc<UserTurns>,
    user: Uuid,
    semaphore: Arc<Semaphore>,
    held: bool,
}

impl UserTurns {
    fn new(each: usize) -> UserTurns {
        UserTurns {
            each: each.max(1),
            users: Mutex::default(),
        }
    }

    fn users(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Semaphore>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn take(
        turns: &Arc<UserTurns>,
        user: Uuid,
    ) -> Result<UserTurn, tokio::sync::AcquireError> {
        let semaphore = turns
            .users()
            .entry(user)
            .or_insert_with(|| Arc::new(Semaphore::new(turns.each)))
            .clone();
        let mut turn = UserTurn {
            turns: turns.clone(),
            user,
            semaphore,
            held: false,
        };
        // Borrowed, not owned: a wait given up holds no other reference,
        // so the turn's drop still sees whether the user's entry is idle.
        if turn
            .semaphore
            .try_acquire()
            .map(|permit| permit.forget())
            .is_err()
        {
            tracing::debug!(%user, turns = turns.each, "waiting for one of the user's turns");
            turn.semaphore.acquire().await?.forget();
        }
        turn.held = true;
        Ok(turn)
    }

    /// How many users have requests running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.users().len()
    }
}

impl Drop for UserTurn {
    fn drop(&mut self) {
        let mut users = self.turns.users();
        if self.held {
            self.semaphore.add_permits(1);
        }
        // The map's and this one: no other request of the user is here.
        if Arc::strong_count(&self.semaphore) == 2 {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls `future` once: its output if it is ready, `None` if it waits.
    fn now<F: Future>(future: F) -> Option<F::Output> {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_user_past_its_turns_waits_and_other_users_do_not() {
        let turns = Arc::new(UserTurns::new(2));
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let first = now(UserTurns::take(&turns, alice)).unwrap().unwrap();
        let second = now(UserTurns::take(&turns, alice)).unwrap().unwrap();
        assert!(
            now(UserTurns::take(&turns, alice)).is_none(),
            "alice took a third turn"
        );
        let bobs = now(UserTurns::take(&turns, bob)).unwrap().unwrap();
        drop(first);
        let third = now(UserTurns::take(&turns, alice)).unwrap().unwrap();
        drop((second, third, bobs));
    }

    #[test]
    fn a_users_entry_goes_with_its_last_request_even_one_that_gave_up_waiting() {
        let turns = Arc::new(UserTurns::new(1));
        let alice = Uuid::now_v7();
        let held = now(UserTurns::take(&turns, alice)).unwrap().unwrap();
        // A waiting request whose client went away.
        assert!(now(UserTurns::take(&turns, alice)).is_none());
        assert_eq!(turns.len(), 1);
        drop(held);
        assert_eq!(turns.len(), 0);
        // And the user's next request finds its turns whole.
        let again = now(UserTurns::take(&turns, alice)).unwrap().unwrap();
        assert!(now(UserTurns::take(&turns, alice)).is_none());
        drop(again);
        assert_eq!(turns.len(), 0);
    }
}
