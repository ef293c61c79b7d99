//! Running one use case, one straight path: a unit of work for the caller,
//! the caller's instance (kept from their last call, or new), the export
//! called with the content offered to it, the answer checked, and the unit
//! committed or rolled back by it.

use crate::bindings::{Guest, wit};
use crate::content::Content;
use crate::engine::{ran_out_of_time, ticks};
use crate::error::Error;
use crate::kept::{Kept, MAX_KEPT_MEMORY};
use crate::staging::StagedContent;
use crate::state::{InstanceState, Leftovers};
use crate::store::{ChatStore, settle, unavailable};
use crate::unit::{Access, Scope, UnitOfWork};
use crate::values::guest_error;
use std::time::Instant;
use uuid::Uuid;
use wasmtime::Store;

/// How a use case touches the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The built-in policy reads metadata alone: the call runs first in a
    /// unit without the user's lock, whose chat storage serves nothing, and
    /// again under the lock if the policy touched more (docs/017).
    Metadata,
    /// It reads, sharing the user's lock.
    Read,
    /// It may write, holding the user's lock.
    Write,
}

/// One use-case call, as the log names it.
pub(crate) struct UseCase {
    /// The export's WIT name.
    name: &'static str,
    kind: Kind,
    user: Uuid,
    chat: Option<Uuid>,
    file: Option<Uuid>,
}

impl UseCase {
    /// The call `name` of `kind` with its ids: the user's, then the chat's
    /// and the file's if it takes them.
    pub(crate) fn new(name: &'static str, kind: Kind, ids: &[Uuid]) -> UseCase {
        UseCase {
            name,
            kind,
            user: ids.first().copied().unwrap_or_default(),
            chat: ids.get(1).copied(),
            file: ids.get(2).copied(),
        }
    }

    /// The use case's span: user, chat and file now, outcome code and
    /// duration when it ends.
    fn span(&self) -> tracing::Span {
        let span = tracing::debug_span!(
            "use_case",
            name = self.name,
            user = %self.user,
            chat = tracing::field::Empty,
            file = tracing::field::Empty,
        );
        if let Some(chat) = self.chat {
            span.record("chat", tracing::field::display(chat));
        }
        if let Some(file) = self.file {
            span.record("file", tracing::field::display(file));
        }
        span
    }
}

/// What an export returns through wasmtime.
pub(crate) type GuestResult<T> = wasmtime::Result<Result<T, wit::StorageError>>;

/// What one run of an export left: its outcome, what the call leaves the
/// host, and what the guest printed on stderr.
struct Ran<T> {
    outcome: GuestResult<T>,
    leftovers: Leftovers,
    printed: String,
}

impl ChatStore {
    /// Runs one export in the user's instance, in a `use_case` span, with
    /// `staged` content offered to it, and checks its answer with
    /// `convert`. A trap is this call's `storage_unavailable`, with what
    /// the guest printed to stderr.
    pub(crate) fn call<T, U>(
        &self,
        use_case: UseCase,
        staged: Option<StagedContent>,
        export: impl Fn(
            &Guest,
            &mut Store<InstanceState>,
            Option<&wit::StagedContent>,
        ) -> GuestResult<T>,
        convert: impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Result<U, Error> {
        let span = use_case.span();
        let _entered = span.enter();
        let started = Instant::now();
        let user = use_case.user;
        let result = match use_case.kind {
            Kind::Metadata => self.run_unlocked(user, &export, &convert),
            Kind::Read => self.run_locked(user, Access::Read, staged, &export, &convert),
            Kind::Write => self.run_locked(user, Access::Write, staged, &export, &convert),
        };
        let duration_us = started.elapsed().as_micros() as u64;
        match &result {
            Ok(_) => tracing::debug!(code = "ok", duration_us, "use case"),
            Err(Error::StorageUnavailable { port, message }) => tracing::warn!(
                code = "storage_unavailable",
                port,
                message,
                duration_us,
                "use case"
            ),
            Err(e) => tracing::debug!(code = e.code(), duration_us, "use case"),
        }
        result
    }

    /// Runs the export in a unit that takes no lock of the user's; if the
    /// policy touched what such a unit does not serve, its answer is void
    /// and the call runs again under the user's lock. Reads have no
    /// effects, so running one twice is the same as running it once.
    fn run_unlocked<T, U>(
        &self,
        user: Uuid,
        export: &impl Fn(
            &Guest,
            &mut Store<InstanceState>,
            Option<&wit::StagedContent>,
        ) -> GuestResult<T>,
        convert: &impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Result<U, Error> {
        let unit = (self.backend().begin_unlocked(Scope::User(user)))
            .map_err(unavailable("transaction"))?;
        let ran = self.run_export(&*unit, user, None, export);
        if unit.needs_lock() {
            unit.rollback();
            return self.run_locked(user, Access::Read, None, export, convert);
        }
        self.answer(unit, ran, convert)
    }

    /// Runs the export in a unit under the user's lock.
    fn run_locked<T, U>(
        &self,
        user: Uuid,
        access: Access,
        staged: Option<StagedContent>,
        export: &impl Fn(
            &Guest,
            &mut Store<InstanceState>,
            Option<&wit::StagedContent>,
        ) -> GuestResult<T>,
        convert: &impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Result<U, Error> {
        let unit = match self.backend().begin(access, Scope::User(user)) {
            Ok(unit) => unit,
            Err(e) => {
                if let Some(content) = &staged {
                    self.staging().discard(content);
                }
                return Err(unavailable("transaction")(e));
            }
        };
        let ran = self.run_export(&*unit, user, staged, export);
        self.answer(unit, ran, convert)
    }

    /// Calls the export once in the user's instance on `unit`'s ports. The
    /// instance is kept for the user's next call if it answered without
    /// printing anything and its memory stayed small; one that trapped is
    /// never used again.
    fn run_export<T>(
        &self,
        unit: &dyn UnitOfWork,
        user: Uuid,
        staged: Option<StagedContent>,
        export: &impl Fn(
            &Guest,
            &mut Store<InstanceState>,
            Option<&wit::StagedContent>,
        ) -> GuestResult<T>,
    ) -> Ran<T> {
        let (runtime, kept) = (self.runtime(), self.kept());
        let (mut store, service, stderr) = match kept.take(user) {
            Some(Kept {
                store,
                service,
                stderr,
                ..
            }) => (store, Ok(service), stderr),
            None => {
                let mut new = runtime.instantiate(user);
                if new.service.is_err() && kept.clear() {
                    // The pool's slots may all be held by kept instances.
                    new.service = runtime.instantiate_again(&mut new.store);
                }
                (new.store, new.service, new.stderr)
            }
        };
        store
            .data_mut()
            .begin_call(unit.ports(), runtime.call_timeout);
        let offered = staged.and_then(|content| store.data_mut().offer(content));
        store.set_epoch_deadline(ticks(runtime.call_timeout));
        let (outcome, service) = match service {
            Ok(service) => {
                let guest = service.chatstore_storage_storage();
                (export(guest, &mut store, offered.as_ref()), Some(service))
            }
            Err(e) => (Err(e), None),
        };
        // Nothing of the unit of work outlives the call in the instance.
        let leftovers = store.data_mut().end_call();
        let printed = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_owned();
        if let Some(service) = service
            && outcome.is_ok()
            && printed.is_empty()
            && store.data().limits.memory_bytes <= MAX_KEPT_MEMORY
        {
            kept.put(Kept {
                user,
                store,
                service,
                stderr,
            });
        }
        Ran {
            outcome,
            leftovers,
            printed,
        }
    }

    /// The call's answer from what its run left, and the unit of work
    /// ended by it: committed on `Ok`, rolled back otherwise. Staged
    /// content the guest did not store is removed either way.
    fn answer<T, U>(
        &self,
        unit: Box<dyn UnitOfWork>,
        ran: Ran<T>,
        convert: &impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Result<U, Error> {
        let Ran {
            outcome,
            leftovers,
            printed,
        } = ran;
        for content in &leftovers.unstored {
            self.staging().discard(content);
        }
        let result = match (outcome, leftovers.changed_file) {
            (Ok(Ok(value)), _) => convert(value, leftovers.opened),
            // The guest saw a port error; the caller learns what it was.
            (Ok(Err(_)), Some(name)) => Err(Error::ChatFileChanged(name)),
            (Ok(Err(e)), None) => Err(guest_error(e)),
            (Err(trap), _) => {
                let mut message = if ran_out_of_time(&trap) {
                    format!(
                        "the component ran past its deadline of {} ms of guest time ({trap:#})",
                        self.runtime().call_timeout.as_millis()
                    )
                } else {
                    format!("the component trapped: {trap:#}")
                };
                if !printed.is_empty() {
                    message.push_str(&format!(" ({printed})"));
                }
                Err(Error::unavailable("guest", message))
            }
        };
        settle(unit, result)
    }
}
