//! The WIT world `storage-service` on the host side: the only place
//! `bindgen!` appears.
//!
//! Every value the guest hands to a port is checked here before an adapter
//! sees it: ids must be canonical UUIDs, names valid attachment names,
//! timestamps well formed. A refusal is a `port-error`, never a trap.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "storage-service",
    });
}

pub(crate) use generated::StorageServicePre;
pub(crate) use generated::chatstore::storage::types as wit;
pub(crate) use generated::exports::chatstore::storage::storage::Guest;

use crate::error::{Error, PortError};
use crate::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace, WorkspaceUsage};
use crate::names::AttachmentName;
use crate::ports::Ports;
use generated::chatstore::storage::{
    chat_file_repository, chat_repository, chat_storage, id_generator, sandbox_session_repository,
    storage_usage, workspace_repository,
};
use uuid::Uuid;
use wasmtime::StoreLimits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What one call's store holds: WASI for the guest's standard library, the
/// limits, and the ports.
pub(crate) struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) ports: Ports,
    /// The user the call is for: every record the guest touches must be theirs.
    pub(crate) caller: Uuid,
    /// The caller's workspace, once looked up.
    pub(crate) caller_workspace: Option<Workspace>,
    /// What the call may still write to chat storage, once looked up: the
    /// workspace's quota, less what the call has written.
    pub(crate) write_budget: Option<u64>,
}

/// Scoping: a guest may only see and touch the calling user's records.
/// Another user's records read as missing; writing them is refused.
impl CallState {
    fn own_workspace(&mut self) -> WitResult<Option<Uuid>> {
        if self.caller_workspace.is_none() {
            let found = self
                .ports
                .workspaces
                .get_by_user_id(self.caller)
                .map_err(|e| WORKSPACES.failed(e))?;
            self.caller_workspace = found;
        }
        Ok(self.caller_workspace.as_ref().map(|w| w.workspace_id))
    }

    fn is_own_workspace(&mut self, workspace_id: Uuid) -> WitResult<bool> {
        Ok(self.own_workspace()? == Some(workspace_id))
    }

    fn is_own_chat(&mut self, chat_id: Uuid) -> WitResult<bool> {
        match self.ports.chats.get(chat_id).map_err(|e| CHATS.failed(e))? {
            Some(chat) => self.is_own_workspace(chat.workspace_id),
            None => Ok(false),
        }
    }

    /// Refuses a chat record that is not the caller's; with `must_exist`,
    /// also one that has no row (or a row in another workspace).
    fn check_chat(&mut self, port: &Port, chat: &Chat, must_exist: bool) -> WitResult<()> {
        if !self.is_own_workspace(chat.workspace_id)? {
            return Err(port.refuse("the chat is not in the calling user's workspace".into()));
        }
        match self
            .ports
            .chats
            .get(chat.chat_id)
            .map_err(|e| CHATS.failed(e))?
        {
            Some(row) if row.workspace_id != chat.workspace_id => {
                Err(port.refuse("the chat is not in the calling user's workspace".into()))
            }
            None if must_exist => Err(port.refuse("no such chat".into())),
            _ => Ok(()),
        }
    }

    /// Charges `bytes` written to the caller's workspace against the call's
    /// budget: one call writes at most the workspace's quota in total, so a
    /// policy that ignores the quota still cannot fill the disk in one call.
    /// Called after `check_chat`, so the caller's workspace is known.
    fn spend(&mut self, bytes: usize) -> WitResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        let budget = match (self.write_budget, &self.caller_workspace) {
            (Some(budget), _) => budget,
            (None, Some(workspace)) => {
                self.ports
                    .usage
                    .get_workspace_usage(workspace)
                    .map_err(|e| USAGE.failed(e))?
                    .quota_bytes
            }
            (None, None) => return Err(STORAGE.refuse("the caller has no workspace".into())),
        };
        let bytes = bytes as u64;
        if bytes > budget {
            return Err(STORAGE.refuse(format!(
                "refused to write {bytes} bytes: one call may write at most the workspace's \
                 quota, and {budget} bytes of it are left"
            )));
        }
        self.write_budget = Some(budget - bytes);
        Ok(())
    }

    /// Refuses a chat id whose row is in another workspace; a missing chat passes.
    fn check_own_chat_id(&mut self, port: &Port, chat_id: Uuid) -> WitResult<()> {
        match self.ports.chats.get(chat_id).map_err(|e| CHATS.failed(e))? {
            Some(chat) if !self.is_own_workspace(chat.workspace_id)? => {
                Err(port.refuse("the chat is not in the calling user's workspace".into()))
            }
            _ => Ok(()),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Adds the seven ports and the WASI interfaces the guest's standard library
/// uses (clocks, stdio, …; the component imports no filesystem) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    generated::StorageService::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

// ---- checking what the guest passes ----

/// Checks values for one port, and names that port in its refusals.
struct Port(&'static str);

type WitResult<T> = Result<T, wit::PortError>;

impl Port {
    fn refuse(&self, message: String) -> wit::PortError {
        wit::PortError {
            port: self.0.to_owned(),
            message,
        }
    }

    fn failed(&self, e: PortError) -> wit::PortError {
        self.refuse(e.message)
    }

    fn id(&self, s: &str) -> WitResult<Uuid> {
        parse_canonical_uuid(s)
            .ok_or_else(|| self.refuse(format!("{:?} is not a canonical UUID", shorten(s))))
    }

    fn name(&self, s: String) -> WitResult<AttachmentName> {
        AttachmentName::new(s).map_err(|why| self.refuse(format!("invalid attachment name: {why}")))
    }

    fn timestamp(&self, t: wit::Timestamp) -> WitResult<Timestamp> {
        if t.nanoseconds >= 1_000_000_000 {
            return Err(self.refuse("timestamp nanoseconds out of range".into()));
        }
        Ok(Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        })
    }

    fn workspace(&self, w: wit::Workspace) -> WitResult<Workspace> {
        Ok(Workspace {
            workspace_id: self.id(&w.workspace_id)?,
            user_id: self.id(&w.user_id)?,
            created_at: self.timestamp(w.created_at)?,
        })
    }

    fn chat(&self, c: wit::Chat) -> WitResult<Chat> {
        Ok(Chat {
            chat_id: self.id(&c.chat_id)?,
            workspace_id: self.id(&c.workspace_id)?,
            created_at: self.timestamp(c.created_at)?,
        })
    }

    fn chat_file(&self, f: wit::ChatFile) -> WitResult<ChatFile> {
        Ok(ChatFile {
            file_id: self.id(&f.file_id)?,
            chat_id: self.id(&f.chat_id)?,
            name: self.name(f.name)?,
            content_type: f.content_type,
            size_bytes: f.size_bytes,
            created_at: self.timestamp(f.created_at)?,
        })
    }
}

/// A UUID in exactly the canonical form (36 characters, lowercase, hyphenated).
pub(crate) fn parse_canonical_uuid(s: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(s).ok()?;
    let mut buf = Uuid::encode_buffer();
    (id.hyphenated().encode_lower(&mut buf) == s).then_some(id)
}

/// At most 64 characters of `s`, for error messages about hostile input.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

// ---- values to the guest ----

impl From<Timestamp> for wit::Timestamp {
    fn from(t: Timestamp) -> Self {
        wit::Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }
    }
}

impl From<Workspace> for wit::Workspace {
    fn from(w: Workspace) -> Self {
        wit::Workspace {
            workspace_id: w.workspace_id.to_string(),
            user_id: w.user_id.to_string(),
            created_at: w.created_at.into(),
        }
    }
}

impl From<Chat> for wit::Chat {
    fn from(c: Chat) -> Self {
        wit::Chat {
            chat_id: c.chat_id.to_string(),
            workspace_id: c.workspace_id.to_string(),
            created_at: c.created_at.into(),
        }
    }
}

impl From<ChatFile> for wit::ChatFile {
    fn from(f: ChatFile) -> Self {
        wit::ChatFile {
            file_id: f.file_id.to_string(),
            chat_id: f.chat_id.to_string(),
            name: f.name.to_string(),
            content_type: f.content_type,
            size_bytes: f.size_bytes,
            created_at: f.created_at.into(),
        }
    }
}

impl From<WorkspaceUsage> for wit::WorkspaceUsage {
    fn from(u: WorkspaceUsage) -> Self {
        wit::WorkspaceUsage {
            workspace_id: u.workspace_id.to_string(),
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        }
    }
}

impl From<SandboxSession> for wit::SandboxSession {
    fn from(s: SandboxSession) -> Self {
        wit::SandboxSession {
            session_id: s.session_id.to_string(),
            chat_id: s.chat_id.to_string(),
        }
    }
}

// ---- the ports ----

const WORKSPACES: Port = Port("workspace-repository");
const CHATS: Port = Port("chat-repository");
const FILES: Port = Port("chat-file-repository");
const SANDBOXES: Port = Port("sandbox-session-repository");
const STORAGE: Port = Port("chat-storage");
const USAGE: Port = Port("storage-usage");
const IDS: Port = Port("id-generator");

impl wit::Host for CallState {}

impl workspace_repository::Host for CallState {
    fn get(&mut self, workspace_id: String) -> WitResult<Option<wit::Workspace>> {
        let id = WORKSPACES.id(&workspace_id)?;
        let found = self
            .ports
            .workspaces
            .get(id)
            .map_err(|e| WORKSPACES.failed(e))?;
        Ok(found.filter(|w| w.user_id == self.caller).map(Into::into))
    }

    fn get_by_user_id(&mut self, user_id: String) -> WitResult<Option<wit::Workspace>> {
        let id = WORKSPACES.id(&user_id)?;
        if id != self.caller {
            return Ok(None);
        }
        let found = self
            .ports
            .workspaces
            .get_by_user_id(id)
            .map_err(|e| WORKSPACES.failed(e))?;
        Ok(found.map(Into::into))
    }

    fn save(&mut self, workspace: wit::Workspace) -> WitResult<()> {
        let workspace = WORKSPACES.workspace(workspace)?;
        let existing = self
            .ports
            .workspaces
            .get(workspace.workspace_id)
            .map_err(|e| WORKSPACES.failed(e))?;
        if workspace.user_id != self.caller || existing.is_some_and(|w| w.user_id != self.caller) {
            return Err(WORKSPACES.refuse("the workspace is not the calling user's".into()));
        }
        self.caller_workspace = None;
        self.ports
            .workspaces
            .save(&workspace)
            .map_err(|e| WORKSPACES.failed(e))
    }
}

impl chat_repository::Host for CallState {
    fn get(&mut self, chat_id: String) -> WitResult<Option<wit::Chat>> {
        let id = CHATS.id(&chat_id)?;
        let found = self.ports.chats.get(id).map_err(|e| CHATS.failed(e))?;
        match found {
            Some(chat) if self.is_own_workspace(chat.workspace_id)? => Ok(Some(chat.into())),
            _ => Ok(None),
        }
    }

    fn list_by_workspace_id(&mut self, workspace_id: String) -> WitResult<Vec<wit::Chat>> {
        let id = CHATS.id(&workspace_id)?;
        if !self.is_own_workspace(id)? {
            return Ok(Vec::new());
        }
        let chats = self
            .ports
            .chats
            .list_by_workspace_id(id)
            .map_err(|e| CHATS.failed(e))?;
        Ok(chats.into_iter().map(Into::into).collect())
    }

    fn save(&mut self, chat: wit::Chat) -> WitResult<()> {
        let chat = CHATS.chat(chat)?;
        self.check_chat(&CHATS, &chat, false)?;
        self.ports.chats.save(&chat).map_err(|e| CHATS.failed(e))
    }

    fn delete(&mut self, chat_id: String) -> WitResult<()> {
        let id = CHATS.id(&chat_id)?;
        self.check_own_chat_id(&CHATS, id)?;
        self.ports.chats.delete(id).map_err(|e| CHATS.failed(e))
    }
}

impl chat_file_repository::Host for CallState {
    fn get(&mut self, file_id: String) -> WitResult<Option<wit::ChatFile>> {
        let id = FILES.id(&file_id)?;
        let found = self.ports.files.get(id).map_err(|e| FILES.failed(e))?;
        match found {
            Some(file) if self.is_own_chat(file.chat_id)? => Ok(Some(file.into())),
            _ => Ok(None),
        }
    }

    fn get_by_chat_id_and_name(
        &mut self,
        chat_id: String,
        name: String,
    ) -> WitResult<Option<wit::ChatFile>> {
        let (id, name) = (FILES.id(&chat_id)?, FILES.name(name)?);
        if !self.is_own_chat(id)? {
            return Ok(None);
        }
        let found = self
            .ports
            .files
            .get_by_chat_id_and_name(id, &name)
            .map_err(|e| FILES.failed(e))?;
        Ok(found.map(Into::into))
    }

    fn list_by_chat_id(&mut self, chat_id: String) -> WitResult<Vec<wit::ChatFile>> {
        let id = FILES.id(&chat_id)?;
        if !self.is_own_chat(id)? {
            return Ok(Vec::new());
        }
        let files = self
            .ports
            .files
            .list_by_chat_id(id)
            .map_err(|e| FILES.failed(e))?;
        Ok(files.into_iter().map(Into::into).collect())
    }

    fn save(&mut self, chat_file: wit::ChatFile) -> WitResult<()> {
        let file = FILES.chat_file(chat_file)?;
        if !self.is_own_chat(file.chat_id)? {
            return Err(
                FILES.refuse("the file's chat is not in the calling user's workspace".into())
            );
        }
        if let Some(existing) = self
            .ports
            .files
            .get(file.file_id)
            .map_err(|e| FILES.failed(e))?
            && existing.chat_id != file.chat_id
        {
            return Err(FILES.refuse("the file id belongs to another chat".into()));
        }
        self.ports.files.save(&file).map_err(|e| FILES.failed(e))
    }

    fn delete(&mut self, file_id: String) -> WitResult<()> {
        let id = FILES.id(&file_id)?;
        if let Some(file) = self.ports.files.get(id).map_err(|e| FILES.failed(e))? {
            self.check_own_chat_id(&FILES, file.chat_id)?;
        }
        self.ports.files.delete(id).map_err(|e| FILES.failed(e))
    }

    fn delete_by_chat_id(&mut self, chat_id: String) -> WitResult<()> {
        let id = FILES.id(&chat_id)?;
        self.check_own_chat_id(&FILES, id)?;
        self.ports
            .files
            .delete_by_chat_id(id)
            .map_err(|e| FILES.failed(e))
    }
}

impl sandbox_session_repository::Host for CallState {
    fn get_active_by_chat_id(&mut self, chat_id: String) -> WitResult<Option<wit::SandboxSession>> {
        let id = SANDBOXES.id(&chat_id)?;
        if !self.is_own_chat(id)? {
            return Ok(None);
        }
        let found = self
            .ports
            .sandboxes
            .get_active_by_chat_id(id)
            .map_err(|e| SANDBOXES.failed(e))?;
        Ok(found.map(Into::into))
    }
}

impl chat_storage::Host for CallState {
    fn ensure_chat(&mut self, chat: wit::Chat) -> WitResult<()> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, false)?;
        self.ports
            .storage
            .ensure_chat(&chat)
            .map_err(|e| STORAGE.failed(e))
    }

    fn read_history(&mut self, chat: wit::Chat) -> WitResult<String> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, true)?;
        self.ports
            .storage
            .read_history(&chat)
            .map_err(|e| STORAGE.failed(e))
    }

    fn write_history(&mut self, chat: wit::Chat, content: String) -> WitResult<()> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, true)?;
        self.spend(content.len())?;
        self.ports
            .storage
            .write_history(&chat, &content)
            .map_err(|e| STORAGE.failed(e))
    }

    fn append_history(&mut self, chat: wit::Chat, content: String) -> WitResult<()> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, true)?;
        self.spend(content.len())?;
        self.ports
            .storage
            .append_history(&chat, &content)
            .map_err(|e| STORAGE.failed(e))
    }

    fn delete_chat(&mut self, chat: wit::Chat) -> WitResult<()> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, true)?;
        self.ports
            .storage
            .delete_chat(&chat)
            .map_err(|e| STORAGE.failed(e))
    }

    fn write_attachment(
        &mut self,
        chat: wit::Chat,
        name: String,
        content: Vec<u8>,
    ) -> WitResult<()> {
        let (chat, name) = (STORAGE.chat(chat)?, STORAGE.name(name)?);
        self.check_chat(&STORAGE, &chat, true)?;
        self.spend(content.len())?;
        self.ports
            .storage
            .write_attachment(&chat, &name, &content)
            .map_err(|e| STORAGE.failed(e))
    }

    fn read_attachment(&mut self, chat: wit::Chat, name: String) -> WitResult<Vec<u8>> {
        let (chat, name) = (STORAGE.chat(chat)?, STORAGE.name(name)?);
        self.check_chat(&STORAGE, &chat, true)?;
        self.ports
            .storage
            .read_attachment(&chat, &name)
            .map_err(|e| STORAGE.failed(e))
    }

    fn delete_attachment(&mut self, chat: wit::Chat, name: String) -> WitResult<()> {
        let (chat, name) = (STORAGE.chat(chat)?, STORAGE.name(name)?);
        self.check_chat(&STORAGE, &chat, true)?;
        self.ports
            .storage
            .delete_attachment(&chat, &name)
            .map_err(|e| STORAGE.failed(e))
    }

    fn clear_attachments(&mut self, chat: wit::Chat) -> WitResult<()> {
        let chat = STORAGE.chat(chat)?;
        self.check_chat(&STORAGE, &chat, true)?;
        self.ports
            .storage
            .clear_attachments(&chat)
            .map_err(|e| STORAGE.failed(e))
    }
}

impl storage_usage::Host for CallState {
    fn get_workspace_usage(&mut self, workspace: wit::Workspace) -> WitResult<wit::WorkspaceUsage> {
        let workspace = USAGE.workspace(workspace)?;
        if !self.is_own_workspace(workspace.workspace_id)? {
            return Err(USAGE.refuse("the workspace is not the calling user's".into()));
        }
        let usage = self
            .ports
            .usage
            .get_workspace_usage(&workspace)
            .map_err(|e| USAGE.failed(e))?;
        Ok(usage.into())
    }
}

impl id_generator::Host for CallState {
    fn new_id(&mut self) -> WitResult<String> {
        let id = self.ports.ids.new_id().map_err(|e| IDS.failed(e))?;
        Ok(id.to_string())
    }
}

// ---- values from the guest's exports, trusted for nothing ----

/// Checks what the guest returned; a malformed value is the guest's failure.
pub(crate) struct FromGuest;

impl FromGuest {
    fn malformed(what: &str) -> Error {
        Error::unavailable(
            "guest",
            format!("the component returned a malformed {what}"),
        )
    }

    fn id(s: &str) -> Result<Uuid, Error> {
        parse_canonical_uuid(s).ok_or_else(|| Self::malformed("id"))
    }

    pub(crate) fn workspace(w: wit::Workspace) -> Result<Workspace, Error> {
        GUEST.workspace(w).map_err(|_| Self::malformed("workspace"))
    }

    pub(crate) fn usage(u: wit::WorkspaceUsage) -> Result<WorkspaceUsage, Error> {
        Ok(WorkspaceUsage {
            workspace_id: Self::id(&u.workspace_id)?,
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        })
    }

    pub(crate) fn chat(c: wit::Chat) -> Result<Chat, Error> {
        GUEST.chat(c).map_err(|_| Self::malformed("chat"))
    }

    pub(crate) fn chats(cs: Vec<wit::Chat>) -> Result<Vec<Chat>, Error> {
        cs.into_iter().map(Self::chat).collect()
    }

    pub(crate) fn chat_file(f: wit::ChatFile) -> Result<ChatFile, Error> {
        GUEST.chat_file(f).map_err(|_| Self::malformed("chat file"))
    }

    pub(crate) fn chat_files(fs: Vec<wit::ChatFile>) -> Result<Vec<ChatFile>, Error> {
        fs.into_iter().map(Self::chat_file).collect()
    }

    pub(crate) fn error(e: wit::StorageError) -> Error {
        use wit::StorageError as W;
        let with_id = |s: &str, make: fn(Uuid) -> Error| Self::id(s).map_or_else(|e| e, make);
        match e {
            W::WorkspaceNotFound(id) => with_id(&id, Error::WorkspaceNotFound),
            W::WorkspaceQuotaExceeded(id) => with_id(&id, Error::WorkspaceQuotaExceeded),
            W::ChatNotFound(id) => with_id(&id, Error::ChatNotFound),
            W::ChatHasActiveSandbox(id) => with_id(&id, Error::ChatHasActiveSandbox),
            W::ChatFileNotFound(id) => with_id(&id, Error::ChatFileNotFound),
            W::InvalidAttachmentName(name) => Error::InvalidAttachmentName(name),
            W::ReservedAttachmentName(name) => Error::ReservedAttachmentName(name),
            W::InvalidId(s) => Error::InvalidId(s),
            W::StorageUnavailable(p) => Error::StorageUnavailable {
                port: p.port,
                message: p.message,
            },
        }
    }
}

const GUEST: Port = Port("guest");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_accepted() {
        let id = "0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
        assert!(parse_canonical_uuid(id).is_some());
        for bad in [
            "0192F0C1-7D3A-7C4E-8A5B-1F2E3D4C5B6A",
            "0192f0c17d3a7c4e8a5b1f2e3d4c5b6a",
            "{0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a}",
            "urn:uuid:0192f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
            "../../etc",
            "",
        ] {
            assert_eq!(parse_canonical_uuid(bad), None, "{bad}");
        }
    }
}
