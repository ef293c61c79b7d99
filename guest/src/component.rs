//! The component: the port traits wired to the WIT imports, and the use
//! cases exported as `chatstore:storage/storage`.
//!
//! Everything a port returns is parsed like any other input: a malformed id
//! or name from a port is that port's failure, never a panic.
//!
//! This crate exports nothing itself: the crate that is the component
//! implements [`Policy`] for its own type, overriding only the exports whose
//! rules change (or not at all: `chatstore_guest::BuiltIn`), and exports it
//! with `chatstore_guest::export_policy!(MyPolicy);`.

wit_bindgen::generate!({
    path: "../wit",
    world: "storage-service",
    pub_export_macro: true,
    default_bindings_module: "chatstore_guest::component",
});

use crate::domain::{
    AttachmentName, Chat, ChatFile, Id, PortError, SandboxOutput, SandboxSession, StagedContent,
    StorageError, Timestamp, Workspace, WorkspaceUsage,
};
use crate::usecase::ports::{self, PortResult};
use crate::usecase::{Policy, Ports, Storage};
/// The WIT imports themselves, for a policy (or a test) that calls a port
/// with values of its own.
pub use chatstore::storage as imports;
use chatstore::storage::types as wit;
/// The WIT values the `storage` exports take and return.
pub use chatstore::storage::types;
use chatstore::storage::{
    chat_file_repository, chat_repository, chat_storage, id_generator, sandbox_session_repository,
    storage_usage, workspace_repository,
};
pub use exports::chatstore::storage::storage::Guest;
use std::marker::PhantomData;

/// Exports a [`Policy`] as the component's `storage` interface.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        type __ChatstorePolicy = $crate::component::Exported<$policy>;
        $crate::component::export!(__ChatstorePolicy with_types_in $crate::component);
    };
}

/// The imports, one unit struct per port.
struct Imports;

const PORTS: Ports<'static> = Ports {
    workspaces: &Imports,
    chats: &Imports,
    files: &Imports,
    sandboxes: &Imports,
    storage: &Imports,
    usage: &Imports,
    ids: &Imports,
    clock: &Imports,
};

fn storage() -> Storage<'static> {
    Storage::new(PORTS)
}

// ---- values out of the guest ----

fn timestamp(t: Timestamp) -> wit::Timestamp {
    wit::Timestamp {
        seconds: t.seconds,
        nanoseconds: t.nanoseconds,
    }
}

fn workspace(w: Workspace) -> wit::Workspace {
    wit::Workspace {
        workspace_id: w.workspace_id.canonical(),
        user_id: w.user_id.canonical(),
        created_at: timestamp(w.created_at),
    }
}

fn chat(c: &Chat) -> wit::Chat {
    wit::Chat {
        chat_id: c.chat_id.canonical(),
        workspace_id: c.workspace_id.canonical(),
        created_at: timestamp(c.created_at),
    }
}

fn chat_file(f: &ChatFile) -> wit::ChatFile {
    wit::ChatFile {
        file_id: f.file_id.canonical(),
        chat_id: f.chat_id.canonical(),
        name: f.name.to_string(),
        content_type: f.content_type.clone(),
        size_bytes: f.size_bytes,
        sha256: f.sha256.clone(),
        created_at: timestamp(f.created_at),
    }
}

fn staged(c: wit::StagedContent) -> StagedContent {
    StagedContent {
        token: c.token,
        size_bytes: c.size_bytes,
        sha256: c.sha256,
    }
}

fn usage(u: WorkspaceUsage) -> wit::WorkspaceUsage {
    wit::WorkspaceUsage {
        workspace_id: u.workspace_id.canonical(),
        used_bytes: u.used_bytes,
        quota_bytes: u.quota_bytes,
    }
}

fn storage_error(e: StorageError) -> wit::StorageError {
    use wit::StorageError as W;
    match e {
        StorageError::WorkspaceNotFound(id) => W::WorkspaceNotFound(id.canonical()),
        StorageError::WorkspaceQuotaExceeded(id) => W::WorkspaceQuotaExceeded(id.canonical()),
        StorageError::ChatNotFound(id) => W::ChatNotFound(id.canonical()),
        StorageError::ChatHasActiveSandbox(id) => W::ChatHasActiveSandbox(id.canonical()),
        StorageError::ChatFileNotFound(id) => W::ChatFileNotFound(id.canonical()),
        StorageError::InvalidAttachmentName(n) => W::InvalidAttachmentName(n),
        StorageError::ReservedAttachmentName(n) => W::ReservedAttachmentName(n),
        StorageError::InvalidId(s) => W::InvalidId(s),
        StorageError::StorageUnavailable(p) => W::StorageUnavailable(wit::PortError {
            port: p.port,
            message: p.message,
        }),
    }
}

// ---- values into the guest, from ports that are trusted for nothing ----

/// Parses what a port returned; a malformed value is that port's failure.
struct Port(&'static str);

impl Port {
    fn fail(&self, what: &str) -> PortError {
        PortError {
            port: self.0.to_owned(),
            message: format!("returned a malformed {what}"),
        }
    }

    fn port_error(&self, e: wit::PortError) -> PortError {
        PortError {
            port: if e.port.is_empty() {
                self.0.to_owned()
            } else {
                e.port
            },
            message: e.message,
        }
    }

    fn id(&self, s: &str) -> PortResult<Id> {
        Id::read(s).ok_or_else(|| self.fail("id"))
    }

    fn timestamp(&self, t: wit::Timestamp) -> PortResult<Timestamp> {
        if t.nanoseconds >= 1_000_000_000 {
            return Err(self.fail("timestamp"));
        }
        Ok(Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        })
    }

    fn workspace(&self, w: wit::Workspace) -> PortResult<Workspace> {
        Ok(Workspace {
            workspace_id: self.id(&w.workspace_id)?,
            user_id: self.id(&w.user_id)?,
            created_at: self.timestamp(w.created_at)?,
        })
    }

    fn chat(&self, c: wit::Chat) -> PortResult<Chat> {
        Ok(Chat {
            chat_id: self.id(&c.chat_id)?,
            workspace_id: self.id(&c.workspace_id)?,
            created_at: self.timestamp(c.created_at)?,
        })
    }

    fn chat_file(&self, f: wit::ChatFile) -> PortResult<ChatFile> {
        Ok(ChatFile {
            file_id: self.id(&f.file_id)?,
            chat_id: self.id(&f.chat_id)?,
            name: AttachmentName::try_from(f.name).map_err(|_| self.fail("attachment name"))?,
            content_type: f.content_type,
            size_bytes: f.size_bytes,
            sha256: f.sha256,
            created_at: self.timestamp(f.created_at)?,
        })
    }

    fn result<T, U>(
        &self,
        r: Result<T, wit::PortError>,
        convert: impl FnOnce(&Self, T) -> PortResult<U>,
    ) -> PortResult<U> {
        convert(self, r.map_err(|e| self.port_error(e))?)
    }

    fn unit(&self, r: Result<(), wit::PortError>) -> PortResult<()> {
        r.map_err(|e| self.port_error(e))
    }
}

const WORKSPACES: Port = Port("workspace-repository");
const CHATS: Port = Port("chat-repository");
const FILES: Port = Port("chat-file-repository");
const SANDBOXES: Port = Port("sandbox-session-repository");
const STORAGE: Port = Port("chat-storage");
const USAGE: Port = Port("storage-usage");
const IDS: Port = Port("id-generator");

fn each<T, U>(
    p: &Port,
    items: Vec<T>,
    f: impl Fn(&Port, T) -> PortResult<U>,
) -> PortResult<Vec<U>> {
    items.into_iter().map(|item| f(p, item)).collect()
}

fn maybe<T, U>(
    p: &Port,
    item: Option<T>,
    f: impl Fn(&Port, T) -> PortResult<U>,
) -> PortResult<Option<U>> {
    item.map(|item| f(p, item)).transpose()
}

impl ports::WorkspaceRepository for Imports {
    fn get(&self, id: &Id) -> PortResult<Option<Workspace>> {
        WORKSPACES.result(workspace_repository::get(&id.canonical()), |p, w| {
            maybe(p, w, Port::workspace)
        })
    }
    fn get_by_user_id(&self, user_id: &Id) -> PortResult<Option<Workspace>> {
        WORKSPACES.result(
            workspace_repository::get_by_user_id(&user_id.canonical()),
            |p, w| maybe(p, w, Port::workspace),
        )
    }
    fn save(&self, w: &Workspace) -> PortResult<()> {
        WORKSPACES.unit(workspace_repository::save(&workspace(w.clone())))
    }
}

impl ports::ChatRepository for Imports {
    fn get(&self, id: &Id) -> PortResult<Option<Chat>> {
        CHATS.result(chat_repository::get(&id.canonical()), |p, c| {
            maybe(p, c, Port::chat)
        })
    }
    fn list_by_workspace_id(&self, id: &Id) -> PortResult<Vec<Chat>> {
        CHATS.result(
            chat_repository::list_by_workspace_id(&id.canonical()),
            |p, cs| each(p, cs, Port::chat),
        )
    }
    fn save(&self, c: &Chat) -> PortResult<()> {
        CHATS.unit(chat_repository::save(&chat(c)))
    }
    fn delete(&self, id: &Id) -> PortResult<()> {
        CHATS.unit(chat_repository::delete(&id.canonical()))
    }
}

impl ports::ChatFileRepository for Imports {
    fn get(&self, id: &Id) -> PortResult<Option<ChatFile>> {
        FILES.result(chat_file_repository::get(&id.canonical()), |p, f| {
            maybe(p, f, Port::chat_file)
        })
    }
    fn get_by_chat_id_and_name(
        &self,
        chat_id: &Id,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        FILES.result(
            chat_file_repository::get_by_chat_id_and_name(&chat_id.canonical(), name.as_str()),
            |p, f| maybe(p, f, Port::chat_file),
        )
    }
    fn list_by_chat_id(&self, chat_id: &Id) -> PortResult<Vec<ChatFile>> {
        FILES.result(
            chat_file_repository::list_by_chat_id(&chat_id.canonical()),
            |p, fs| each(p, fs, Port::chat_file),
        )
    }
    fn save(&self, f: &ChatFile) -> PortResult<()> {
        FILES.unit(chat_file_repository::save(&chat_file(f)))
    }
    fn delete(&self, id: &Id) -> PortResult<()> {
        FILES.unit(chat_file_repository::delete(&id.canonical()))
    }
    fn delete_by_chat_id(&self, chat_id: &Id) -> PortResult<()> {
        FILES.unit(chat_file_repository::delete_by_chat_id(
            &chat_id.canonical(),
        ))
    }
}

impl ports::SandboxSessionRepository for Imports {
    fn get_active_by_chat_id(&self, chat_id: &Id) -> PortResult<Option<SandboxSession>> {
        SANDBOXES.result(
            sandbox_session_repository::get_active_by_chat_id(&chat_id.canonical()),
            |p, s| {
                maybe(p, s, |p, s| {
                    Ok(SandboxSession {
                        session_id: p.id(&s.session_id)?,
                        chat_id: p.id(&s.chat_id)?,
                    })
                })
            },
        )
    }
}

impl ports::ChatStorage for Imports {
    fn ensure_chat(&self, c: &Chat) -> PortResult<()> {
        STORAGE.unit(chat_storage::ensure_chat(&chat(c)))
    }
    fn history_size(&self, c: &Chat) -> PortResult<u64> {
        STORAGE.result(chat_storage::history_size(&chat(c)), |_, n| Ok(n))
    }
    fn open_history(&self, c: &Chat) -> PortResult<()> {
        STORAGE.unit(chat_storage::open_history(&chat(c)))
    }
    fn write_history(&self, c: &Chat, content: &StagedContent) -> PortResult<()> {
        STORAGE.unit(chat_storage::write_history(&chat(c), &content.token))
    }
    fn append_history(&self, c: &Chat, content: &StagedContent) -> PortResult<()> {
        STORAGE.unit(chat_storage::append_history(&chat(c), &content.token))
    }
    fn delete_chat(&self, c: &Chat) -> PortResult<()> {
        STORAGE.unit(chat_storage::delete_chat(&chat(c)))
    }
    fn attachment_size(&self, c: &Chat, name: &AttachmentName) -> PortResult<Option<u64>> {
        STORAGE.result(
            chat_storage::attachment_size(&chat(c), name.as_str()),
            |_, n| Ok(n),
        )
    }
    fn write_attachment(
        &self,
        c: &Chat,
        name: &AttachmentName,
        content: &StagedContent,
    ) -> PortResult<()> {
        STORAGE.unit(chat_storage::write_attachment(
            &chat(c),
            name.as_str(),
            &content.token,
        ))
    }
    fn open_attachment(&self, c: &Chat, name: &AttachmentName) -> PortResult<()> {
        STORAGE.unit(chat_storage::open_attachment(&chat(c), name.as_str()))
    }
    fn delete_attachment(&self, c: &Chat, name: &AttachmentName) -> PortResult<()> {
        STORAGE.unit(chat_storage::delete_attachment(&chat(c), name.as_str()))
    }
    fn clear_attachments(&self, c: &Chat) -> PortResult<()> {
        STORAGE.unit(chat_storage::clear_attachments(&chat(c)))
    }
}

impl ports::StorageUsage for Imports {
    fn get_workspace_usage(&self, w: &Workspace) -> PortResult<WorkspaceUsage> {
        USAGE.result(
            storage_usage::get_workspace_usage(&workspace(w.clone())),
            |p, u| {
                Ok(WorkspaceUsage {
                    workspace_id: p.id(&u.workspace_id)?,
                    used_bytes: u.used_bytes,
                    quota_bytes: u.quota_bytes,
                })
            },
        )
    }
}

impl ports::IdGenerator for Imports {
    fn new_id(&self) -> PortResult<Id> {
        IDS.result(id_generator::new_id(), |p, id| p.id(&id))
    }
}

impl ports::Clock for Imports {
    fn now(&self) -> Timestamp {
        // The WASI wall clock: the host decides what time it is.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: since_epoch.subsec_nanos(),
        }
    }
}

type Out<T> = Result<T, wit::StorageError>;

fn out<T, U>(r: Result<T, StorageError>, f: impl FnOnce(T) -> U) -> Out<U> {
    r.map(f).map_err(storage_error)
}

fn done(r: Result<(), StorageError>) -> Out<()> {
    r.map_err(storage_error)
}

/// A [`Policy`] as the `Guest` of the `storage` interface: each export
/// converts its WIT values and runs the policy's function over the imports.
pub struct Exported<P>(PhantomData<P>);

impl<P: Policy> Guest for Exported<P> {
    fn ensure_workspace(user_id: String) -> Out<wit::Workspace> {
        out(P::ensure_workspace(&storage(), &user_id), workspace)
    }
    fn get_workspace(user_id: String) -> Out<wit::Workspace> {
        out(P::get_workspace(&storage(), &user_id), workspace)
    }
    fn get_usage(user_id: String) -> Out<wit::WorkspaceUsage> {
        out(P::get_usage(&storage(), &user_id), usage)
    }
    fn create_chat(user_id: String) -> Out<wit::Chat> {
        out(P::create_chat(&storage(), &user_id), |c| chat(&c))
    }
    fn list_chats(user_id: String) -> Out<Vec<wit::Chat>> {
        out(P::list_chats(&storage(), &user_id), |cs| {
            cs.iter().map(chat).collect()
        })
    }
    fn get_chat(user_id: String, chat_id: String) -> Out<wit::Chat> {
        out(P::get_chat(&storage(), &user_id, &chat_id), |c| chat(&c))
    }
    fn delete_chat(user_id: String, chat_id: String) -> Out<()> {
        done(P::delete_chat(&storage(), &user_id, &chat_id))
    }
    fn read_history(user_id: String, chat_id: String) -> Out<()> {
        done(P::read_history(&storage(), &user_id, &chat_id))
    }
    fn write_history(user_id: String, chat_id: String, content: wit::StagedContent) -> Out<()> {
        done(P::write_history(
            &storage(),
            &user_id,
            &chat_id,
            &staged(content),
        ))
    }
    fn append_history(user_id: String, chat_id: String, content: wit::StagedContent) -> Out<()> {
        done(P::append_history(
            &storage(),
            &user_id,
            &chat_id,
            &staged(content),
        ))
    }
    fn upload_attachment(
        user_id: String,
        chat_id: String,
        name: String,
        content_type: Option<String>,
        content: wit::StagedContent,
    ) -> Out<wit::ChatFile> {
        let r = P::upload_attachment(
            &storage(),
            &user_id,
            &chat_id,
            &name,
            content_type.as_deref(),
            &staged(content),
        );
        out(r, |f| chat_file(&f))
    }
    fn list_attachments(user_id: String, chat_id: String) -> Out<Vec<wit::ChatFile>> {
        out(P::list_attachments(&storage(), &user_id, &chat_id), |fs| {
            fs.iter().map(chat_file).collect()
        })
    }
    fn get_attachment(user_id: String, chat_id: String, file_id: String) -> Out<wit::ChatFile> {
        let r = P::get_attachment(&storage(), &user_id, &chat_id, &file_id);
        out(r, |f| chat_file(&f))
    }
    fn read_attachment(user_id: String, chat_id: String, file_id: String) -> Out<wit::ChatFile> {
        let r = P::read_attachment(&storage(), &user_id, &chat_id, &file_id);
        out(r, |f| chat_file(&f))
    }
    fn delete_attachment(user_id: String, chat_id: String, file_id: String) -> Out<()> {
        let r = P::delete_attachment(&storage(), &user_id, &chat_id, &file_id);
        done(r)
    }
    fn clear_attachments(user_id: String, chat_id: String) -> Out<()> {
        done(P::clear_attachments(&storage(), &user_id, &chat_id))
    }
    fn register_sandbox_outputs(
        user_id: String,
        chat_id: String,
        outputs: Vec<wit::SandboxOutput>,
    ) -> Out<Vec<wit::OutputOutcome>> {
        let outputs: Vec<SandboxOutput> = outputs
            .into_iter()
            .map(|o| SandboxOutput {
                name: o.name,
                content_type: o.content_type,
                size_bytes: o.size_bytes,
                sha256: o.sha256,
            })
            .collect();
        let r = P::register_sandbox_outputs(&storage(), &user_id, &chat_id, &outputs);
        out(r, |outcomes| {
            outcomes
                .into_iter()
                .map(|o| match o {
                    Ok(f) => wit::OutputOutcome::Registered(chat_file(&f)),
                    Err(e) => wit::OutputOutcome::Refused(storage_error(e)),
                })
                .collect()
        })
    }
}
