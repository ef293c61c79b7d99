//! The seven ports as the guest calls them: each function checks what the
//! guest passed (`values`), scopes it to the calling user (`call`), then
//! calls the adapter. A refusal is a `port-error`, never a trap.

use crate::bindings::{
    chat_file_repository, chat_repository, chat_storage, id_generator, sandbox_session_repository,
    storage_usage, wit, workspace_repository,
};
use crate::state::InstanceState;
use crate::values::{self, refuse};

pub(crate) const WORKSPACES: &str = "workspace-repository";
pub(crate) const CHATS: &str = "chat-repository";
const FILES: &str = "chat-file-repository";
const SANDBOXES: &str = "sandbox-session-repository";
const STORAGE: &str = "chat-storage";
pub(crate) const USAGE: &str = "storage-usage";
const IDS: &str = "id-generator";

type WitResult<T> = Result<T, wit::PortError>;

impl wit::Host for InstanceState {}

impl workspace_repository::Host for InstanceState {
    fn get(&mut self, workspace_id: String) -> WitResult<Option<wit::Workspace>> {
        self.port(WORKSPACES, "get", |s| {
            let found = s.ports().workspaces.get(values::id(&workspace_id)?)?;
            Ok(found.filter(|w| w.user_id == s.caller()).map(Into::into))
        })
    }

    fn get_by_user_id(&mut self, user_id: String) -> WitResult<Option<wit::Workspace>> {
        self.port(WORKSPACES, "get-by-user-id", |s| {
            let id = values::id(&user_id)?;
            if id != s.caller() {
                return Ok(None);
            }
            let found = s.ports().workspaces.get_by_user_id(id)?;
            // The caller's own workspace: the scoping checks need it too.
            s.knows_workspace(found.clone());
            Ok(found.map(Into::into))
        })
    }

    fn save(&mut self, workspace: wit::Workspace) -> WitResult<()> {
        self.port(WORKSPACES, "save", |s| {
            let workspace = values::workspace(workspace)?;
            let existing = s.ports().workspaces.get(workspace.workspace_id)?;
            if workspace.user_id != s.caller() || existing.is_some_and(|w| w.user_id != s.caller())
            {
                return refuse("the workspace is not the calling user's");
            }
            // A user has one workspace, and it keeps its id.
            let own = s.ports().workspaces.get_by_user_id(s.caller())?;
            if own.is_some_and(|w| w.workspace_id != workspace.workspace_id) {
                return refuse("the calling user already has a workspace with another id");
            }
            s.workspace_changed();
            Ok(s.ports().workspaces.save(&workspace)?)
        })
    }
}

impl chat_repository::Host for InstanceState {
    fn get(&mut self, chat_id: String) -> WitResult<Option<wit::Chat>> {
        self.port(CHATS, "get", |s| {
            match s.chat_row(values::id(&chat_id)?)? {
                Some(chat) if s.is_own_workspace(chat.workspace_id)? => Ok(Some(chat.into())),
                _ => Ok(None),
            }
        })
    }

    fn list_by_workspace_id(&mut self, workspace_id: String) -> WitResult<Vec<wit::Chat>> {
        self.port(CHATS, "list-by-workspace-id", |s| {
            let id = values::id(&workspace_id)?;
            if !s.is_own_workspace(id)? {
                return Ok(Vec::new());
            }
            let chats = s.ports().chats.list_by_workspace_id(id)?;
            Ok(chats.into_iter().map(Into::into).collect())
        })
    }

    fn save(&mut self, chat: wit::Chat) -> WitResult<()> {
        self.port(CHATS, "save", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, false)?;
            s.chats_changed();
            Ok(s.ports().chats.save(&chat)?)
        })
    }

    fn delete(&mut self, chat_id: String) -> WitResult<()> {
        self.port(CHATS, "delete", |s| {
            let id = values::id(&chat_id)?;
            s.check_own_chat_id(id)?;
            s.chats_changed();
            Ok(s.ports().chats.delete(id)?)
        })
    }
}

impl chat_file_repository::Host for InstanceState {
    fn get(&mut self, file_id: String) -> WitResult<Option<wit::ChatFile>> {
        self.port(FILES, "get", |s| {
            match s.ports().files.get(values::id(&file_id)?)? {
                Some(file) if s.is_own_chat(file.chat_id)? => Ok(Some(file.into())),
                _ => Ok(None),
            }
        })
    }

    fn get_by_chat_id_and_name(
        &mut self,
        chat_id: String,
        name: String,
    ) -> WitResult<Option<wit::ChatFile>> {
        self.port(FILES, "get-by-chat-id-and-name", |s| {
            let (id, name) = (values::id(&chat_id)?, values::name(name)?);
            if !s.is_own_chat(id)? {
                return Ok(None);
            }
            Ok(s.ports()
                .files
                .get_by_chat_id_and_name(id, &name)?
                .map(Into::into))
        })
    }

    fn list_by_chat_id(&mut self, chat_id: String) -> WitResult<Vec<wit::ChatFile>> {
        self.port(FILES, "list-by-chat-id", |s| {
            let id = values::id(&chat_id)?;
            if !s.is_own_chat(id)? {
                return Ok(Vec::new());
            }
            let files = s.ports().files.list_by_chat_id(id)?;
            Ok(files.into_iter().map(Into::into).collect())
        })
    }

    fn save(&mut self, chat_file: wit::ChatFile) -> WitResult<()> {
        self.port(FILES, "save", |s| {
            let file = values::chat_file(chat_file)?;
            if !s.is_own_chat(file.chat_id)? {
                return refuse("the file's chat is not in the calling user's workspace");
            }
            if let Some(existing) = s.ports().files.get(file.file_id)?
                && existing.chat_id != file.chat_id
            {
                return refuse("the file id belongs to another chat");
            }
            Ok(s.ports().files.save(&file)?)
        })
    }

    fn delete(&mut self, file_id: String) -> WitResult<()> {
        self.port(FILES, "delete", |s| {
            let id = values::id(&file_id)?;
            if let Some(file) = s.ports().files.get(id)? {
                s.check_own_chat_id(file.chat_id)?;
            }
            Ok(s.ports().files.delete(id)?)
        })
    }

    fn delete_by_chat_id(&mut self, chat_id: String) -> WitResult<()> {
        self.port(FILES, "delete-by-chat-id", |s| {
            let id = values::id(&chat_id)?;
            s.check_own_chat_id(id)?;
            Ok(s.ports().files.delete_by_chat_id(id)?)
        })
    }
}

impl sandbox_session_repository::Host for InstanceState {
    fn get_active_by_chat_id(&mut self, chat_id: String) -> WitResult<Option<wit::SandboxSession>> {
        self.port(SANDBOXES, "get-active-by-chat-id", |s| {
            let id = values::id(&chat_id)?;
            if !s.is_own_chat(id)? {
                return Ok(None);
            }
            Ok(s.ports()
                .sandboxes
                .get_active_by_chat_id(id)?
                .map(Into::into))
        })
    }
}

impl chat_storage::Host for InstanceState {
    fn ensure_chat(&mut self, chat: wit::Chat) -> WitResult<()> {
        self.port(STORAGE, "ensure-chat", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, false)?;
            Ok(s.ports().storage.ensure_chat(&chat)?)
        })
    }

    fn history_size(&mut self, chat: wit::Chat) -> WitResult<u64> {
        self.port(STORAGE, "history-size", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            Ok(s.ports().storage.history_size(&chat)?)
        })
    }

    fn open_history(&mut self, chat: wit::Chat) -> WitResult<()> {
        self.port(STORAGE, "open-history", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            let content = s.ports().storage.open_history(&chat)?;
            s.keep_opened(content)
        })
    }

    fn write_history(&mut self, chat: wit::Chat, content: String) -> WitResult<()> {
        self.port(STORAGE, "write-history", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            s.store_staged(&content, |s, content| {
                // Counted from the disk, not from what the guest says.
                let replaced = s.ports().storage.history_size(&chat)?;
                s.spend(content.size_bytes().saturating_sub(replaced))?;
                Ok(s.ports().storage.write_history(&chat, content)?)
            })
        })
    }

    fn append_history(&mut self, chat: wit::Chat, content: String) -> WitResult<()> {
        self.port(STORAGE, "append-history", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            s.store_staged(&content, |s, content| {
                s.spend(content.size_bytes())?;
                Ok(s.ports().storage.append_history(&chat, content)?)
            })
        })
    }

    fn delete_chat(&mut self, chat: wit::Chat) -> WitResult<()> {
        self.port(STORAGE, "delete-chat", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            Ok(s.ports().storage.delete_chat(&chat)?)
        })
    }

    fn attachment_size(&mut self, chat: wit::Chat, name: String) -> WitResult<Option<u64>> {
        self.port(STORAGE, "attachment-size", |s| {
            let (chat, name) = (values::chat(chat)?, values::name(name)?);
            s.check_chat(&chat, true)?;
            Ok(s.ports().storage.attachment_size(&chat, &name)?)
        })
    }

    fn write_attachment(
        &mut self,
        chat: wit::Chat,
        name: String,
        content: String,
    ) -> WitResult<()> {
        self.port(STORAGE, "write-attachment", |s| {
            let (chat, name) = (values::chat(chat)?, values::name(name)?);
            s.check_chat(&chat, true)?;
            s.store_staged(&content, |s, content| {
                let replaced = s.ports().storage.attachment_size(&chat, &name)?;
                s.spend(content.size_bytes().saturating_sub(replaced.unwrap_or(0)))?;
                Ok(s.ports().storage.write_attachment(&chat, &name, content)?)
            })
        })
    }

    fn open_attachment(&mut self, chat: wit::Chat, name: String) -> WitResult<()> {
        self.port(STORAGE, "open-attachment", |s| {
            let (chat, name) = (values::chat(chat)?, values::name(name)?);
            s.check_chat(&chat, true)?;
            let content = s.ports().storage.open_attachment(&chat, &name)?;
            s.keep_opened(content)
        })
    }

    fn delete_attachment(&mut self, chat: wit::Chat, name: String) -> WitResult<()> {
        self.port(STORAGE, "delete-attachment", |s| {
            let (chat, name) = (values::chat(chat)?, values::name(name)?);
            s.check_chat(&chat, true)?;
            Ok(s.ports().storage.delete_attachment(&chat, &name)?)
        })
    }

    fn clear_attachments(&mut self, chat: wit::Chat) -> WitResult<()> {
        self.port(STORAGE, "clear-attachments", |s| {
            let chat = values::chat(chat)?;
            s.check_chat(&chat, true)?;
            Ok(s.ports().storage.clear_attachments(&chat)?)
        })
    }
}

impl storage_usage::Host for InstanceState {
    fn get_workspace_usage(&mut self, workspace: wit::Workspace) -> WitResult<wit::WorkspaceUsage> {
        self.port(USAGE, "get-workspace-usage", |s| {
            let workspace = values::workspace(workspace)?;
            if !s.is_own_workspace(workspace.workspace_id)? {
                return refuse("the workspace is not the calling user's");
            }
            let usage = s.ports().usage.get_workspace_usage(&workspace)?;
            // The call's write budget starts from the same count.
            s.knows_usage(&usage);
            Ok(usage.into())
        })
    }
}

impl id_generator::Host for InstanceState {
    fn new_id(&mut self) -> WitResult<String> {
        self.port(IDS, "new-id", |s| Ok(s.ports().ids.new_id()?.to_string()))
    }
}
