//! A sandbox session's start and end on a chat: what the sandbox subsystem
//! calls. Starting one marks it active (so the chat's directory is not
//! deleted under it) and answers where the directory is and how much the
//! workspace may still grow; ending one counts what it wrote and has the
//! policy register the files it left as attachments.

use crate::error::Error;
use crate::model::{Chat, ChatFile, SandboxEnd, SandboxSession, SandboxStart, Unregistered};
use crate::store::{ChatStore, chat_and_workspace, unavailable};
use crate::unit::{Access, Scope};
use uuid::Uuid;

impl ChatStore {
    /// Marks a sandbox session active on the chat, as the sandbox subsystem
    /// does when it starts one; `delete_chat` and `clear_attachments` are
    /// refused until it ends. Answers where the chat's working directory
    /// is on this host and how much the workspace may still grow by.
    pub fn start_sandbox(&self, chat_id: Uuid) -> Result<SandboxStart, Error> {
        let owner = self.owner_of(chat_id)?;
        self.with_ports(Access::Write, owner, |ports, records| {
            let (chat, workspace) = chat_and_workspace(ports, chat_id)?;
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            let working_dir = match self.backend().chat_dir(chat.workspace_id, chat_id) {
                Some(path) => Some(path.into_os_string().into_string().map_err(|path| {
                    Error::StorageUnavailable {
                        port: "chat-storage".into(),
                        message: format!("the chat directory's path is not UTF-8: {path:?}"),
                    }
                })?),
                None => None,
            };
            let session = SandboxSession {
                session_id: ports.ids.new_id().map_err(unavailable("id-generator"))?,
                chat_id,
            };
            records
                .start_sandbox(&session)
                .map_err(unavailable("sandbox-session-repository"))?;
            Ok(SandboxStart {
                session_id: session.session_id,
                chat_id,
                working_dir,
                room_bytes: usage.quota_bytes.saturating_sub(usage.used_bytes),
            })
        })
    }

    /// Ends the chat's active sandbox session and counts what it wrote in
    /// the chat into the workspace's usage; returns the session, or `None`
    /// if there was none.
    pub fn end_sandbox(&self, chat_id: Uuid) -> Result<Option<SandboxEnd>, Error> {
        let owner = match self.owner_of(chat_id) {
            Ok(owner) => owner,
            // A deleted chat may still have had a session to end.
            Err(Error::ChatNotFound(_)) => Scope::All,
            Err(e) => return Err(e),
        };
        let (ended, chat) = self.with_unit(Access::Write, owner, |unit| {
            let ended = unit
                .records()
                .end_sandbox(chat_id)
                .map_err(unavailable("sandbox-session-repository"))?;
            // What the sandbox wrote in the chat joins the usage ledger. A
            // chat directory that cannot be counted (a tree past the walk's
            // bounds, say) keeps its last count: the session still ends.
            let chat = (unit.ports().chats.get(chat_id)).map_err(unavailable("chat-repository"))?;
            if let Some(chat) = &chat
                && let Err(e) = unit.recount(chat.workspace_id, Some(chat_id))
            {
                tracing::warn!(%chat_id, error = %e.message, "the sandbox's chat directory could not be counted");
            }
            Ok((ended, chat))
        })?;
        let Some(session) = ended else {
            return Ok(None);
        };
        let mut end = SandboxEnd {
            session_id: session.session_id,
            chat_id,
            registered: Vec::new(),
            unregistered: Vec::new(),
        };
        let (Some(chat), Scope::User(user_id)) = (chat, owner) else {
            return Ok(Some(end));
        };
        // What the session left, offered to the policy; the session has
        // ended either way, so trouble here is logged and reported, not
        // the call's failure.
        match self.register_outputs(user_id, &chat) {
            Ok((registered, unregistered)) => {
                end.registered = registered;
                end.unregistered = unregistered;
            }
            Err(e) => {
                tracing::warn!(%chat_id, error = %e, "the sandbox's outputs could not be registered");
                end.unregistered.push(Unregistered {
                    name: String::new(),
                    reason: e.code().to_owned(),
                    message: e.to_string(),
                });
            }
        }
        Ok(Some(end))
    }

    /// Finds what a session left in the chat's directory and has the
    /// policy register it.
    fn register_outputs(
        &self,
        user_id: Uuid,
        chat: &Chat,
    ) -> Result<(Vec<ChatFile>, Vec<Unregistered>), Error> {
        let recorded = self.with_ports(Access::Read, Scope::User(user_id), |ports, _| {
            (ports.files.list_by_chat_id(chat.chat_id)).map_err(unavailable("chat-file-repository"))
        })?;
        let outputs = self
            .backend()
            .sandbox_outputs(chat.workspace_id, chat.chat_id, &recorded)
            .map_err(unavailable("chat-storage"))?;
        let mut unregistered = outputs.unregistered;
        let mut registered = Vec::new();
        if outputs.found.is_empty() {
            return Ok((registered, unregistered));
        }
        let outcomes = self.register_sandbox_outputs(user_id, chat.chat_id, &outputs.found)?;
        for (output, outcome) in outputs.found.into_iter().zip(outcomes) {
            match outcome {
                Ok(file) => registered.push(file),
                Err(e) => unregistered.push(Unregistered {
                    name: output.name,
                    reason: e.code().to_owned(),
                    message: e.to_string(),
                }),
            }
        }
        Ok((registered, unregistered))
    }

    /// The scope of the user whose workspace holds the chat: a chat never
    /// changes workspace, nor a workspace its user, so it can be looked up
    /// before that user's lock is taken.
    fn owner_of(&self, chat_id: Uuid) -> Result<Scope, Error> {
        self.with_ports(Access::Read, Scope::All, |ports, _| {
            let (_, workspace) = chat_and_workspace(ports, chat_id)?;
            Ok(Scope::User(workspace.user_id))
        })
    }
}
