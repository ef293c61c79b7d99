//! [`ChatStore`]: the storage component, compiled once, called through a
//! typed Rust API with the ports wired in. The typed use cases are
//! declared in `use_cases.rs`, run by `call.rs`; the sandbox's start and
//! end are in `sandbox.rs`; what is here is the store itself and the
//! host's own calls on its units of work.

use crate::ComponentSource;
use crate::engine::Runtime;
use crate::error::{Error, PortError, PortResult};
use crate::kept::{KeptInstances, MAX_KEPT};
use crate::model::{Chat, ChatFile, Workspace, WorkspaceUsage};
use crate::names::AttachmentName;
use crate::page::{Page, PageRequest};
use crate::ports::{HostRecords, Ports};
use crate::staging::{ContentKind, StageError, StagedContent, Staging};
use crate::unit::{Access, Backend, Scope, UnitOfWork};
use std::io::Read;
use std::sync::Arc;
use uuid::Uuid;

/// The storage API: each method runs one use case of the storage component
/// in a guest instance of the calling user alone (the one that answered
/// that user's last call, or a new one). Cheap to clone and safe to share
/// between threads; calls block.
#[derive(Clone)]
pub struct ChatStore {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    backend: Arc<dyn Backend>,
    kept: KeptInstances,
}

/// What a write replaces, for [`ChatStore::room`].
#[derive(Clone, Copy, Debug)]
pub enum Replacing<'a> {
    /// Nothing: the write adds (a new attachment, an append).
    Nothing,
    /// The chat's history.
    History,
    /// The attachment of this name, if there is one.
    Attachment(&'a str),
}

impl ChatStore {
    /// A builder with the defaults: `./chatstore-data`, SQLite metadata,
    /// 1 GiB quota, the system clock, the built-in component.
    pub fn builder() -> crate::ChatStoreBuilder {
        crate::ChatStoreBuilder::default()
    }

    pub(crate) fn new(
        runtime: Runtime,
        backend: Arc<dyn Backend>,
        pooled: Option<u32>,
    ) -> ChatStore {
        // In a pool, kept instances leave half its slots to calls.
        let kept = pooled.map_or(MAX_KEPT, |n| (n as usize / 2).min(MAX_KEPT));
        ChatStore {
            inner: Arc::new(Inner {
                runtime,
                backend,
                kept: KeptInstances::new(kept),
            }),
        }
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(crate) fn kept(&self) -> &KeptInstances {
        &self.inner.kept
    }

    /// Whether the component was compiled at start or loaded from the
    /// compile cache.
    pub fn component_source(&self) -> ComponentSource {
        self.inner.runtime.source
    }

    /// A page of the user's chats, in the order of [`list_chats`](Self::list_chats).
    pub fn list_chats_page(&self, user_id: Uuid, page: &PageRequest) -> Result<Page<Chat>, Error> {
        page.cut(self.list_chats(user_id)?, |chat| chat.chat_id)
    }

    /// A page of the chat's attachments, in the order of
    /// [`list_attachments`](Self::list_attachments).
    pub fn list_attachments_page(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<ChatFile>, Error> {
        page.cut(self.list_attachments(user_id, chat_id)?, |file| {
            file.file_id
        })
    }

    /// Runs `f` on the ports and records of one unit of work on `scope`,
    /// outside the component (for the host's own calls and for
    /// inspection); commits if `f` succeeds.
    pub fn with_ports<T>(
        &self,
        access: Access,
        scope: Scope,
        f: impl FnOnce(&Ports, &dyn HostRecords) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.with_unit(access, scope, |unit| f(&unit.ports(), &*unit.records()))
    }

    /// Runs `f` on the ports and records of one unit of work that reads
    /// `scope`'s metadata alone and waits for no lock, as the built-in
    /// policy's reads of metadata run ([`Backend::begin_unlocked`]): its
    /// chat storage serves nothing.
    pub fn with_metadata_ports<T>(
        &self,
        scope: Scope,
        f: impl FnOnce(&Ports, &dyn HostRecords) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let unit = (self.backend().begin_unlocked(scope)).map_err(unavailable("transaction"))?;
        let result = f(&unit.ports(), &*unit.records());
        settle(unit, result)
    }

    pub(crate) fn with_unit<T>(
        &self,
        access: Access,
        scope: Scope,
        f: impl FnOnce(&dyn UnitOfWork) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let unit = (self.backend().begin(access, scope)).map_err(unavailable("transaction"))?;
        let result = f(&*unit);
        settle(unit, result)
    }

    /// Counts the user's workspace on disk into the usage ledger and gives
    /// its usage: what sandboxes wrote since the last count included.
    pub fn recount_usage(&self, user_id: Uuid) -> Result<WorkspaceUsage, Error> {
        self.change_workspace(user_id, |unit, workspace| {
            unit.recount(workspace.workspace_id, None).map(drop)
        })
    }

    /// Gives the user's workspace a quota of its own, or with `None` the
    /// configured one again, and answers its usage against it. A quota
    /// below what the workspace holds refuses its growing writes until it
    /// is back under (shrinking ones pass); nothing is removed.
    pub fn set_quota(
        &self,
        user_id: Uuid,
        quota_bytes: Option<u64>,
    ) -> Result<WorkspaceUsage, Error> {
        self.change_workspace(user_id, |unit, workspace| {
            unit.set_quota(workspace.workspace_id, quota_bytes)
        })
    }

    /// Makes the host's own `change` to the user's workspace's usage in one
    /// unit of work, and answers its usage after.
    fn change_workspace(
        &self,
        user_id: Uuid,
        change: impl FnOnce(&dyn UnitOfWork, &Workspace) -> PortResult<()>,
    ) -> Result<WorkspaceUsage, Error> {
        self.with_unit(Access::Write, Scope::User(user_id), |unit| {
            let ports = unit.ports();
            let workspace = users_workspace(&ports, user_id)?;
            change(unit, &workspace).map_err(unavailable("storage-usage"))?;
            ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))
        })
    }

    /// The staging area: content is written there, in bounded memory, before
    /// the call that stores it (`upload_staged` and the like).
    pub fn staging(&self) -> Arc<Staging> {
        self.backend().staging()
    }

    /// The most bytes a write into the user's chat may bring now: the
    /// quota, less what the workspace uses, plus what the write replaces on
    /// disk. Content past it cannot fit, so it can be refused while it
    /// streams in; the call itself checks again, exactly, as it writes.
    pub fn room(&self, user_id: Uuid, chat_id: Uuid, replacing: Replacing) -> Result<u64, Error> {
        self.with_ports(Access::Read, Scope::User(user_id), |ports, _| {
            let workspace = users_workspace(ports, user_id)?;
            let chat = ports
                .chats
                .get(chat_id)
                .map_err(unavailable("chat-repository"))?
                .filter(|c| c.workspace_id == workspace.workspace_id)
                .ok_or(Error::ChatNotFound(chat_id))?;
            let storage = unavailable("chat-storage");
            let replaced = match replacing {
                Replacing::Nothing => 0,
                Replacing::History => ports.storage.history_size(&chat).map_err(storage)?,
                Replacing::Attachment(name) => match AttachmentName::normalized(name) {
                    Ok(name) => (ports.storage.attachment_size(&chat, &name))
                        .map_err(storage)?
                        .unwrap_or(0),
                    Err(_) => 0,
                },
            };
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            let others = usage.used_bytes.saturating_sub(replaced);
            // A write no larger than what it replaces always fits, even over quota.
            Ok(usage.quota_bytes.saturating_sub(others).max(replaced))
        })
    }

    /// Stages `content` for a write into the user's chat, refusing it once
    /// it passes the room the write has.
    pub(crate) fn stage_for(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        replacing: Replacing,
        kind: ContentKind,
        content: impl Read,
    ) -> Result<StagedContent, Error> {
        let limit = self.room(user_id, chat_id, replacing)?;
        self.staging()
            .stage(content, kind, limit)
            .map_err(|e| self.staging_failed(user_id, e))
    }

    /// The error of content that could not be staged for the user.
    pub fn staging_failed(&self, user_id: Uuid, e: StageError) -> Error {
        match e {
            StageError::TooLarge { .. } => match self.get_workspace(user_id) {
                Ok(workspace) => Error::WorkspaceQuotaExceeded(workspace.workspace_id),
                Err(e) => e,
            },
            StageError::NotText => Error::InvalidHistory,
            StageError::Read(e) => {
                Error::unavailable("content", format!("reading the content: {e}"))
            }
            StageError::Write(e) => Error::unavailable("staging", e.to_string()),
        }
    }
}

/// Ends a unit of work by the call's outcome: commit on `Ok`, roll back on `Err`.
pub(crate) fn settle<T>(unit: Box<dyn UnitOfWork>, result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Ok(value) => {
            unit.commit().map_err(unavailable("transaction"))?;
            Ok(value)
        }
        Err(e) => {
            unit.rollback();
            Err(e)
        }
    }
}

/// The user's workspace, for the host's own calls on it.
fn users_workspace(ports: &Ports, user_id: Uuid) -> Result<Workspace, Error> {
    ports
        .workspaces
        .get_by_user_id(user_id)
        .map_err(unavailable("workspace-repository"))?
        .ok_or(Error::WorkspaceNotFound(user_id))
}

/// The chat and its workspace, for the host's own calls on a chat by id
/// alone (a chat without its workspace is as missing as one without a row).
pub(crate) fn chat_and_workspace(ports: &Ports, chat_id: Uuid) -> Result<(Chat, Workspace), Error> {
    let chat = ports
        .chats
        .get(chat_id)
        .map_err(unavailable("chat-repository"))?
        .ok_or(Error::ChatNotFound(chat_id))?;
    let workspace = ports
        .workspaces
        .get(chat.workspace_id)
        .map_err(unavailable("workspace-repository"))?
        .ok_or(Error::ChatNotFound(chat_id))?;
    Ok((chat, workspace))
}

/// Maps a port's failure to `storage_unavailable` for calls the host makes itself.
pub(crate) fn unavailable(port: &'static str) -> impl Fn(PortError) -> Error {
    move |e| Error::unavailable(port, e.message)
}
