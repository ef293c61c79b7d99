//! Port adapters: metadata in memory, SQLite or PostgreSQL, the chat directories on
//! the filesystem, ids; and [`DataDirBackend`], which ties one call's
//! metadata transaction and file effects into one unit of work.

pub mod fs;
pub mod memory;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;
mod tree;

use crate::content::Content;
use crate::error::{PortError, PortResult};
use crate::model::Chat;
use crate::model::{ChatFile, SandboxOutput, Unregistered};
use crate::model::{Workspace, WorkspaceUsage};
use crate::names::{AttachmentName, HISTORY_FILE_NAME, closest_valid};
use crate::ports::{ChatStorage, HostRecords, IdGenerator, Ports, StorageUsage};
use crate::staging::StagedContent;
use crate::staging::Staging;
use crate::unit::{
    Access, Backend, Held, Locks, MetadataStore, MetadataTransaction, Outputs, Scope, UnitOfWork,
    UsageChange,
};
use fs::{ChatEntry, DataDir, FsTransaction};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// UUID version 7 ids: unique, and ordered by creation time.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> PortResult<Uuid> {
        Ok(Uuid::now_v7())
    }
}

/// The default backend: a data directory and a metadata store.
///
/// One call is one unit of work. A write call holds its user's lock from
/// start to finish (see [`Scope`]), so one user's writers, in any thread or
/// process, run one at a time and a quota check cannot race another write,
/// while other users' writers run beside it; a read call shares its user's
/// lock and sees no write half done. On commit the metadata commits
/// together with the journal of file effects (the staged files are already
/// durable), and the effects are applied and synced before the call
/// returns; the journal is then forgotten without a sync of its own. A
/// call that fails or traps commits nothing and leaves no file.
pub struct DataDirBackend {
    data: Arc<DataDir>,
    metadata: Arc<dyn MetadataStore>,
    /// The data directory's locks, for a metadata store of one machine;
    /// `None` for one that several hosts share, whose transactions hold
    /// their own.
    locks: Option<Arc<dyn Locks>>,
    quota_bytes: u64,
    ids: Arc<dyn IdGenerator>,
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> PortError {
    move |e| PortError::new(format!("{what}: {e}"))
}

impl DataDirBackend {
    /// A backend on this data directory and metadata store. Recovers first:
    /// replays committed file effects, removes staging left by crashes.
    pub fn open(
        data: Arc<DataDir>,
        metadata: Arc<dyn MetadataStore>,
        quota_bytes: u64,
    ) -> PortResult<Self> {
        let locks: Option<Arc<dyn Locks>> = match metadata.shared() {
            Some(_) => None,
            None => Some(data.clone()),
        };
        let backend = DataDirBackend {
            quota_bytes,
            data,
            metadata,
            locks,
            ids: Arc::new(UuidV7Ids),
        };
        let unit = backend.begin(Access::Write, Scope::All)?;
        backend.rename_refused_names()?;
        unit.rollback();
        Ok(backend)
    }

    /// Gives every attachment an earlier version stored under a name the
    /// current rules refuse (`History.md`, `" x"`, control characters, a
    /// name not in NFC) the closest valid name free in its chat, on disk
    /// and in the metadata, so that no stored row makes its chat
    /// unreadable. Call it holding the exclusive lock.
    fn rename_refused_names(&self) -> PortResult<()> {
        let stored = self.metadata.stored_names()?;
        let refused = |name: &str| AttachmentName::new(name).is_err();
        if !stored.iter().any(|s| refused(&s.name)) {
            return Ok(());
        }
        let mut taken: HashMap<Uuid, HashSet<String>> = HashMap::new();
        for s in &stored {
            taken.entry(s.chat_id).or_default().insert(s.name.clone());
        }
        for s in stored.iter().filter(|s| refused(&s.name)) {
            let names = taken.entry(s.chat_id).or_default();
            let renamed = closest_valid(&s.name, names);
            self.data
                .rename_stored(s.workspace_id, s.chat_id, &s.name, &renamed)
                .map_err(io_error("renaming a stored attachment"))?;
            self.metadata.rename_file(s.file_id, &renamed)?;
            tracing::warn!(file_id = %s.file_id, from = ?s.name, to = %renamed, "renamed an attachment the name rules now refuse");
            names.insert(renamed.to_string());
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Arc<DataDir> {
        &self.data
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.metadata
    }

    /// Replays `scope`'s journal; for the whole data directory, also
    /// cleans staging. Call it holding `scope`'s write lock.
    fn recover(&self, scope: Scope) -> PortResult<()> {
        let pending = self.metadata.pending_effects(scope)?;
        match scope {
            Scope::All => {
                let alone = |clean: &mut dyn FnMut() -> std::io::Result<()>| match (
                    self.metadata.shared(),
                    &self.locks,
                ) {
                    (Some(shared), _) => shared.alone(clean),
                    (None, Some(locks)) => locks.alone(clean),
                    (None, None) => Ok(false),
                };
                self.data.recover(&pending, alone)
            }
            Scope::User(_) if pending.is_empty() => return Ok(()),
            Scope::User(_) => self.data.replay(&pending),
        }
        .map_err(io_error("recovery"))?;
        if !pending.is_empty() {
            self.metadata.forget_effects(scope)?;
        }
        Ok(())
    }
}

impl Backend for DataDirBackend {
    fn staging(&self) -> Arc<Staging> {
        self.data.staging().clone()
    }

    fn chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> Option<std::path::PathBuf> {
        Some(self.data.chat_dir_path(workspace_id, chat_id))
    }

    fn sandbox_outputs(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        recorded: &[ChatFile],
    ) -> PortResult<Outputs> {
        let (entries, more) = self
            .data
            .chat_entries(workspace_id, chat_id, MAX_OUTPUTS)
            .map_err(io_error("chat directory"))?;
        let mut outputs = Outputs::default();
        let unregistered = |name: String, reason: &str, message: &str| Unregistered {
            name,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        for entry in entries {
            let (name, size) = match entry {
                ChatEntry::File { name, .. } | ChatEntry::Other { name, .. }
                    if name == HISTORY_FILE_NAME =>
                {
                    continue;
                }
                ChatEntry::File { name, size } => (name, size),
                ChatEntry::Other { name, why } => {
                    outputs
                        .unregistered
                        .push(unregistered(name, "not_a_regular_file", why));
                    continue;
                }
            };
            // Unchanged since it was recorded (by size: files are not read
            // again at every session's end).
            if recorded
                .iter()
                .any(|f| f.name.as_str() == name && f.size_bytes == size)
            {
                continue;
            }
            // A record's name must be the name on disk: one the name rules
            // would change (not in NFC) cannot be found again by it.
            if AttachmentName::new(name.as_str()).is_ok_and(|valid| valid.as_str() != name) {
                outputs.unregistered.push(unregistered(
                    name,
                    "invalid_attachment_name",
                    "the name is not in Unicode NFC",
                ));
                continue;
            }
            match self.data.digest(workspace_id, chat_id, &name) {
                Ok((size_bytes, sha256)) => outputs.found.push(SandboxOutput {
                    content_type: content_type_of(&name),
                    name,
                    size_bytes,
                    sha256,
                }),
                // Gone or replaced by something else since it was listed.
                Err(e) => outputs.unregistered.push(unregistered(
                    name,
                    "not_a_regular_file",
                    &e.to_string(),
                )),
            }
        }
        if more {
            outputs.unregistered.push(unregistered(
                String::new(),
                "not_examined",
                "the chat directory holds more entries than are examined at a session's end",
            ));
        }
        Ok(outputs)
    }

    fn begin(&self, access: Access, scope: Scope) -> PortResult<Box<dyn UnitOfWork>> {
        let lock = match &self.locks {
            Some(locks) => Some(locks.lock(access, scope)?),
            None => None,
        };
        let tx = self.metadata.begin(access, scope)?;
        if access == Access::Write {
            // A journal left by a writer of this scope whose effects failed
            // to apply, or that crashed.
            self.recover(scope)?;
        }
        self.unit(lock, tx, access, scope, None)
    }

    /// No lock of the data directory's, so no journal replayed: a journal's
    /// effects come after its commit, so the metadata already says what
    /// they will leave. (A store that several hosts share takes its own
    /// locks, shared, in every transaction.)
    fn begin_unlocked(&self, scope: Scope) -> PortResult<Box<dyn UnitOfWork>> {
        let tx = self.metadata.begin(Access::Read, scope)?;
        let unlocked = Some(Unlocked::default());
        self.unit(None, tx, Access::Read, scope, unlocked)
    }
}

impl DataDirBackend {
    fn unit(
        &self,
        lock: Option<Held>,
        tx: Arc<dyn MetadataTransaction>,
        access: Access,
        scope: Scope,
        unlocked: Option<Unlocked>,
    ) -> PortResult<Box<dyn UnitOfWork>> {
        let fs = Arc::new(FsTransaction::new(self.data.clone(), access));
        let storage: Arc<dyn ChatStorage> = match &unlocked {
            Some(unlocked) => Arc::new(unlocked.clone()),
            None => fs.clone(),
        };
        Ok(Box::new(DataDirUnit {
            lock,
            access,
            scope,
            fs,
            storage,
            usage: Arc::new(LedgerUsage {
                tx: tx.clone(),
                data: self.data.clone(),
                quota_bytes: self.quota_bytes,
                access,
                unlocked: unlocked.clone(),
            }),
            tx,
            data: self.data.clone(),
            metadata: self.metadata.clone(),
            ids: self.ids.clone(),
            unlocked,
        }))
    }
}

/// The chat storage of a unit begun without locks: it serves nothing, and
/// remembers being asked (so the call runs again under its locks).
#[derive(Clone, Default)]
struct Unlocked(Arc<AtomicBool>);

impl Unlocked {
    fn refuse<T>(&self) -> PortResult<T> {
        self.0.store(true, Ordering::Relaxed);
        Err(PortError::new(
            "a call that reads metadata only touched the chat directories",
        ))
    }

    fn asked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl ChatStorage for Unlocked {
    fn ensure_chat(&self, _: &Chat) -> PortResult<()> {
        self.refuse()
    }
    fn history_size(&self, _: &Chat) -> PortResult<u64> {
        self.refuse()
    }
    fn open_history(&self, _: &Chat) -> PortResult<Content> {
        self.refuse()
    }
    fn write_history(&self, _: &Chat, _: &StagedContent) -> PortResult<()> {
        self.refuse()
    }
    fn append_history(&self, _: &Chat, _: &StagedContent) -> PortResult<()> {
        self.refuse()
    }
    fn delete_chat(&self, _: &Chat) -> PortResult<()> {
        self.refuse()
    }
    fn attachment_size(&self, _: &Chat, _: &AttachmentName) -> PortResult<Option<u64>> {
        self.refuse()
    }
    fn write_attachment(&self, _: &Chat, _: &AttachmentName, _: &StagedContent) -> PortResult<()> {
        self.refuse()
    }
    fn open_attachment(&self, _: &Chat, _: &AttachmentName) -> PortResult<Content> {
        self.refuse()
    }
    fn delete_attachment(&self, _: &Chat, _: &AttachmentName) -> PortResult<()> {
        self.refuse()
    }
    fn clear_attachments(&self, _: &Chat) -> PortResult<()> {
        self.refuse()
    }
}

/// The most entries of a chat directory examined when a sandbox session ends.
const MAX_OUTPUTS: usize = 10_000;

/// The media type of a file by its name's extension, for the few kinds an
/// agent's sandbox commonly makes; `None` otherwise.
fn content_type_of(name: &str) -> Option<String> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    let kind = match extension.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "py" => "text/x-python",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "parquet" => "application/vnd.apache.parquet",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    };
    Some(kind.to_owned())
}

struct DataDirUnit {
    /// The data directory's locks, if the metadata store takes none itself.
    lock: Option<Held>,
    access: Access,
    scope: Scope,
    tx: Arc<dyn MetadataTransaction>,
    fs: Arc<FsTransaction>,
    /// What the call's chat-storage port is: `fs`, or [`Unlocked`].
    storage: Arc<dyn ChatStorage>,
    /// Set where the unit was begun without locks.
    unlocked: Option<Unlocked>,
    data: Arc<DataDir>,
    metadata: Arc<dyn MetadataStore>,
    usage: Arc<LedgerUsage>,
    ids: Arc<dyn IdGenerator>,
}

/// The usage port: the workspace's bytes from the usage ledger, in this
/// call's transaction, against the workspace's own quota or else the
/// configured one. A workspace the ledger
/// has not counted yet (one stored by an earlier version) is counted on
/// disk, once: the count is kept by the first call that may write.
struct LedgerUsage {
    tx: Arc<dyn MetadataTransaction>,
    data: Arc<DataDir>,
    quota_bytes: u64,
    access: Access,
    /// Set where the unit was begun without locks: then nothing is counted
    /// on disk.
    unlocked: Option<Unlocked>,
}

impl LedgerUsage {
    /// Counts the workspace on disk into the ledger.
    fn count(&self, workspace_id: Uuid) -> PortResult<u64> {
        if let Some(unlocked) = &self.unlocked {
            return unlocked.refuse();
        }
        let count = self.data.count(workspace_id).map_err(io_error("usage"))?;
        if self.access == Access::Write {
            self.tx.set_count(workspace_id, &count)?;
        }
        Ok(count.total)
    }
}

impl StorageUsage for LedgerUsage {
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage> {
        let (used_bytes, quota_bytes) = self.tx.usage_and_quota(workspace.workspace_id)?;
        let used_bytes = match used_bytes {
            Some(bytes) => bytes,
            None => self.count(workspace.workspace_id)?,
        };
        Ok(WorkspaceUsage {
            workspace_id: workspace.workspace_id,
            used_bytes,
            quota_bytes: quota_bytes.unwrap_or(self.quota_bytes),
        })
    }
}

impl UnitOfWork for DataDirUnit {
    fn ports(&self) -> Ports {
        Ports {
            workspaces: self.tx.clone(),
            chats: self.tx.clone(),
            files: self.tx.clone(),
            sandboxes: self.tx.clone(),
            storage: self.storage.clone(),
            usage: self.usage.clone(),
            ids: self.ids.clone(),
        }
    }

    fn records(&self) -> Arc<dyn HostRecords> {
        self.tx.clone()
    }

    fn recount(&self, workspace_id: Uuid, chat_id: Option<Uuid>) -> PortResult<Option<u64>> {
        let counted = self.tx.used_bytes(workspace_id)?.is_some();
        match chat_id {
            Some(chat_id) if counted => {
                let bytes =
                    (self.data.count_chat(workspace_id, chat_id)).map_err(io_error("usage"))?;
                self.tx.change_usage(&[UsageChange::Set {
                    workspace_id,
                    chat_id,
                    bytes,
                }])?;
            }
            _ => {
                self.usage.count(workspace_id)?;
            }
        }
        self.tx.used_bytes(workspace_id)
    }

    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()> {
        self.tx.set_quota(workspace_id, quota_bytes)
    }

    fn needs_lock(&self) -> bool {
        self.unlocked.as_ref().is_some_and(Unlocked::asked)
    }

    fn commit(mut self: Box<Self>) -> PortResult<()> {
        if self.access == Access::Read {
            self.tx.rollback();
            return Ok(());
        }
        let effects = self.fs.prepare();
        if let Err(e) = self.tx.change_usage(&self.fs.usage_changes()) {
            self.rollback();
            return Err(e);
        }
        // Locks lost since the call began may be another writer's now, and
        // its quota check and files would race this one's: commit nothing.
        // (A store's own locks fail its commit.)
        if let Err(e) = self.confirm_locks() {
            self.rollback();
            return Err(e);
        }
        if let Err(e) = self.tx.commit(&effects) {
            self.fs.discard();
            return Err(e);
        }
        // Committed: from here the journal makes the effects happen, now or
        // at the next recovery. Locks lost meanwhile leave them to the
        // journal's next writer, which holds the locks.
        if !effects.is_empty() {
            (self.confirm_locks().and_then(|()| self.tx.confirm_locks())).map_err(|e| {
                PortError::new(format!(
                    "{e}; the committed change is applied by the user's next write"
                ))
            })?;
        }
        for effect in &effects {
            self.data.apply(effect).map_err(io_error(
                "applying a committed change (it is retried on the next write)",
            ))?;
        }
        if !effects.is_empty() {
            self.metadata.forget_effects(self.scope)?;
        }
        Ok(())
    }

    fn rollback(self: Box<Self>) {
        self.tx.rollback();
        self.fs.discard();
    }
}

impl DataDirUnit {
    /// Confirms the data directory's locks, if the unit holds them.
    fn confirm_locks(&mut self) -> PortResult<()> {
        self.lock.as_mut().map_or(Ok(()), Held::confirm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Chat, ChatFile, Timestamp, Workspace};
    use crate::names::AttachmentName;
    use crate::ports::{ChatFileRepository, ChatStorage};
    use crate::staging::{ContentKind, StagedContent};
    use crate::unit::{Effect, Lease};
    use sqlite::SqliteMetadata;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: std::path::PathBuf,
        data: Arc<DataDir>,
        metadata: Arc<SqliteMetadata>,
        chat: Chat,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let data = DataDir::open(&root).unwrap();
        let metadata = Arc::new(SqliteMetadata::open(root.join("chatstore.db")).unwrap());
        let chat = Chat {
            chat_id: Uuid::now_v7(),
            workspace_id: Uuid::now_v7(),
            created_at: Timestamp::default(),
        };
        let backend = DataDirBackend::open(data.clone(), metadata.clone(), 1 << 20).unwrap();
        let unit = backend.begin(Access::Write, Scope::All).unwrap();
        unit.ports().storage.ensure_chat(&chat).unwrap();
        unit.ports().chats.save(&chat).unwrap();
        unit.commit().unwrap();
        Fixture {
            _tmp: tmp,
            root,
            data,
            metadata,
            chat,
        }
    }

    fn staged_count(root: &std::path::Path) -> usize {
        std::fs::read_dir(root.join("staging")).unwrap().count()
    }

    fn stage(f: &Fixture, content: &[u8]) -> StagedContent {
        f.data
            .staging()
            .stage(content, ContentKind::Bytes, u64::MAX)
            .unwrap()
    }

    fn history(f: &Fixture) -> std::path::PathBuf {
        f.root.join(format!(
            "workspaces/{}/chats/{}/history.md",
            f.chat.workspace_id, f.chat.chat_id
        ))
    }

    #[test]
    fn a_journal_committed_before_a_crash_is_replayed_on_open() {
        let f = fixture();
        let name = AttachmentName::new("report.txt").unwrap();
        // A call that committed, then "crashed" before applying its effects.
        let tx = f.metadata.begin(Access::Write, Scope::All).unwrap();
        let fs = FsTransaction::new(f.data.clone(), Access::Write);
        fs.write_attachment(&f.chat, &name, &stage(&f, b"committed bytes"))
            .unwrap();
        ChatFileRepository::save(
            &*tx,
            &ChatFile {
                file_id: Uuid::now_v7(),
                chat_id: f.chat.chat_id,
                name: name.clone(),
                content_type: None,
                size_bytes: 15,
                sha256: None,
                created_at: Timestamp::default(),
            },
        )
        .unwrap();
        tx.commit(&fs.prepare()).unwrap();
        let target = f.root.join(format!(
            "workspaces/{}/chats/{}/report.txt",
            f.chat.workspace_id, f.chat.chat_id
        ));
        assert!(!target.exists());
        assert_eq!(staged_count(&f.root), 1);

        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();

        assert_eq!(std::fs::read(&target).unwrap(), b"committed bytes");
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
        assert_eq!(staged_count(&f.root), 0);
    }

    /// A committed journal that installs `name` (not yet applied).
    fn committed_install(f: &Fixture, name: &str, bytes: &[u8]) {
        let tx = f.metadata.begin(Access::Write, Scope::All).unwrap();
        let fs = FsTransaction::new(f.data.clone(), Access::Write);
        let name = AttachmentName::new(name).unwrap();
        fs.write_attachment(&f.chat, &name, &stage(f, bytes))
            .unwrap();
        tx.commit(&fs.prepare()).unwrap();
    }

    fn lost_and_found(f: &Fixture) -> Vec<std::path::PathBuf> {
        let found = f
            .root
            .join(format!("workspaces/{}/lost+found", f.chat.workspace_id));
        let mut kept: Vec<_> = std::fs::read_dir(found)
            .unwrap()
            .flat_map(|holder| std::fs::read_dir(holder.unwrap().path()).unwrap())
            .map(|entry| entry.unwrap().path())
            .collect();
        kept.sort();
        kept
    }

    #[test]
    fn a_directory_a_sandbox_made_where_a_committed_file_goes_is_moved_aside() {
        let f = fixture();
        committed_install(&f, "report.txt", b"committed bytes");
        let chat_dir = history(&f).parent().unwrap().to_owned();
        std::fs::create_dir_all(chat_dir.join("report.txt/inner")).unwrap();
        std::fs::write(chat_dir.join("report.txt/inner/work"), b"sandbox's").unwrap();

        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();

        assert_eq!(
            std::fs::read(chat_dir.join("report.txt")).unwrap(),
            b"committed bytes"
        );
        let kept = lost_and_found(&f);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].ends_with("report.txt"));
        assert_eq!(
            std::fs::read(kept[0].join("inner/work")).unwrap(),
            b"sandbox's"
        );
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
    }

    #[test]
    fn a_committed_change_that_cannot_be_applied_is_quarantined_not_retried_forever() {
        let f = fixture();
        committed_install(&f, "report.txt", b"committed bytes");
        // The chat directory itself is gone: nothing can be installed there.
        let chat_dir = history(&f).parent().unwrap().to_owned();
        std::fs::remove_dir_all(&chat_dir).unwrap();

        // Start-up, and every later writer, go on.
        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
        assert_eq!(staged_count(&f.root), 0);
        let kept = lost_and_found(&f);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"committed bytes");
    }

    #[test]
    fn names_an_earlier_version_stored_are_renamed_to_valid_ones_on_open() {
        let f = fixture();
        let chat_dir = history(&f).parent().unwrap().to_owned();
        let db = rusqlite::Connection::open(f.root.join("chatstore.db")).unwrap();
        for (name, bytes) in [("History.md", "theirs"), (" notes ", "spaced")] {
            db.execute(
                "INSERT INTO chat_files (file_id, chat_id, name, content_type, size_bytes, \
                 sha256, created_s, created_ns) VALUES (?1, ?2, ?3, NULL, ?4, NULL, 0, 0)",
                rusqlite::params![
                    Uuid::now_v7().to_string(),
                    f.chat.chat_id.to_string(),
                    name,
                    bytes.len() as i64
                ],
            )
            .unwrap();
            std::fs::write(chat_dir.join(name), bytes).unwrap();
        }
        // A sandbox's file where the first one's new name would go.
        std::fs::write(chat_dir.join("_History.md"), b"sandbox").unwrap();
        drop(db);

        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();

        let unit = f.metadata.begin(Access::Read, Scope::All).unwrap();
        let mut names: Vec<String> = unit
            .list_by_chat_id(f.chat.chat_id)
            .unwrap()
            .into_iter()
            .map(|file| file.name.to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["_History.md", "notes"]);
        assert_eq!(
            std::fs::read(chat_dir.join("_History.md")).unwrap(),
            b"theirs"
        );
        assert_eq!(std::fs::read(chat_dir.join("notes")).unwrap(), b"spaced");
        let kept = lost_and_found(&f);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), b"sandbox");
        // Opening again changes nothing more.
        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        assert_eq!(lost_and_found(&f).len(), 1);
    }

    #[test]
    fn staging_left_by_a_call_that_never_committed_is_removed_on_open() {
        let f = fixture();
        let fs = FsTransaction::new(f.data.clone(), Access::Write);
        fs.write_attachment(
            &f.chat,
            &AttachmentName::new("lost.txt").unwrap(),
            &stage(&f, b"never acknowledged"),
        )
        .unwrap();
        fs.prepare();
        assert_eq!(staged_count(&f.root), 1);

        DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();

        assert_eq!(staged_count(&f.root), 0);
        let dir = f.root.join(format!(
            "workspaces/{}/chats/{}",
            f.chat.workspace_id, f.chat.chat_id
        ));
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["history.md"]);
    }

    #[test]
    fn replaying_an_effect_twice_is_the_same_as_once() {
        let f = fixture();
        let effects = [
            Effect::Remove {
                workspace_id: f.chat.workspace_id,
                chat_id: f.chat.chat_id,
                name: "none".into(),
            },
            Effect::ClearAttachments {
                workspace_id: f.chat.workspace_id,
                chat_id: f.chat.chat_id,
            },
            Effect::CreateChat {
                workspace_id: f.chat.workspace_id,
                chat_id: f.chat.chat_id,
            },
            Effect::DeleteChat {
                workspace_id: f.chat.workspace_id,
                chat_id: f.chat.chat_id,
            },
        ];
        for effect in &effects {
            f.data.apply(effect).unwrap();
            f.data.apply(effect).unwrap();
        }
        let dir = f.root.join(format!(
            "workspaces/{}/chats/{}",
            f.chat.workspace_id, f.chat.chat_id
        ));
        assert!(!dir.exists());
    }

    #[test]
    fn an_append_torn_by_a_crash_is_cut_back_and_completed_by_the_replay() {
        let f = fixture();
        std::fs::write(history(&f), b"# chat\n").unwrap();
        let message = stage(&f, b"hello\n");
        let append = Effect::Append {
            workspace_id: f.chat.workspace_id,
            chat_id: f.chat.chat_id,
            staged: message.file_name().to_owned(),
            at: 7,
        };
        // The crash came in the middle of writing the message.
        std::fs::write(history(&f), b"# chat\nhel").unwrap();
        f.data.apply(&append).unwrap();
        assert_eq!(std::fs::read(history(&f)).unwrap(), b"# chat\nhello\n");
        // Replayed once more (the journal was not yet forgotten): the same.
        f.data.apply(&append).unwrap();
        assert_eq!(std::fs::read(history(&f)).unwrap(), b"# chat\nhello\n");
        assert_eq!(staged_count(&f.root), 0);
    }

    #[test]
    fn appends_in_one_call_land_in_order_after_a_rewrite() {
        let f = fixture();
        let backend = DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        let unit = backend.begin(Access::Write, Scope::All).unwrap();
        let storage = unit.ports().storage;
        storage
            .write_history(&f.chat, &stage(&f, b"new\n"))
            .unwrap();
        storage
            .append_history(&f.chat, &stage(&f, b"one\n"))
            .unwrap();
        storage
            .append_history(&f.chat, &stage(&f, b"two\n"))
            .unwrap();
        assert_eq!(storage.history_size(&f.chat).unwrap(), 12);
        // Nothing is visible before the commit.
        assert_eq!(std::fs::read(history(&f)).unwrap(), b"");
        unit.commit().unwrap();
        assert_eq!(std::fs::read(history(&f)).unwrap(), b"new\none\ntwo\n");
        assert_eq!(staged_count(&f.root), 0);
    }

    #[test]
    fn a_rolled_back_call_leaves_no_staged_file() {
        let f = fixture();
        let backend = DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        let unit = backend.begin(Access::Write, Scope::All).unwrap();
        unit.ports()
            .storage
            .write_attachment(
                &f.chat,
                &AttachmentName::new("a").unwrap(),
                &stage(&f, b"bytes"),
            )
            .unwrap();
        assert_eq!(staged_count(&f.root), 1);
        unit.rollback();
        assert_eq!(staged_count(&f.root), 0);
    }

    #[test]
    fn one_users_writer_does_not_wait_for_anothers() {
        let f = fixture();
        let backend =
            Arc::new(DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap());
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        // Alice's call is under way: it has read, and holds her lock.
        let held = backend.begin(Access::Write, Scope::User(alice)).unwrap();
        held.ports().chats.get(f.chat.chat_id).unwrap();

        let (done, finished) = std::sync::mpsc::channel();
        let other = backend.clone();
        std::thread::spawn(move || {
            let unit = other.begin(Access::Write, Scope::User(bob)).unwrap();
            let chat = Chat {
                chat_id: Uuid::now_v7(),
                workspace_id: Uuid::now_v7(),
                created_at: Timestamp::default(),
            };
            unit.ports().storage.ensure_chat(&chat).unwrap();
            unit.ports().chats.save(&chat).unwrap();
            unit.commit().unwrap();
            let read = other.begin(Access::Read, Scope::User(bob)).unwrap();
            done.send(read.ports().chats.get(chat.chat_id).unwrap())
                .unwrap();
        });
        // Not a timing check: a writer that waited for Alice would wait forever.
        let bobs = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("Bob's write waited for Alice's call");
        assert!(bobs.is_some());
        held.commit().unwrap();
    }

    #[test]
    fn a_metadata_read_waits_for_no_writer_and_serves_no_chat_directory() {
        let f = fixture();
        let backend =
            Arc::new(DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap());
        let alice = Uuid::now_v7();
        // Alice's writer is under way and holds her lock (and shares the
        // data directory's).
        let held = backend.begin(Access::Write, Scope::User(alice)).unwrap();
        held.ports().chats.get(f.chat.chat_id).unwrap();

        let (done, finished) = std::sync::mpsc::channel();
        let other = backend.clone();
        let chat = f.chat.clone();
        std::thread::spawn(move || {
            let read = other.begin_unlocked(Scope::User(alice)).unwrap();
            let found = read.ports().chats.get(chat.chat_id).unwrap();
            let before = read.needs_lock();
            // Her chat directory is not served without her lock; the unit
            // says so.
            let size = read.ports().storage.history_size(&chat);
            let workspace = crate::model::Workspace {
                workspace_id: chat.workspace_id,
                user_id: alice,
                created_at: Timestamp::default(),
            };
            // Nor a count on disk (the ledger has never counted this one).
            let usage = read.ports().usage.get_workspace_usage(&workspace);
            done.send((
                found,
                before,
                size.is_err(),
                usage.is_err(),
                read.needs_lock(),
            ))
            .unwrap();
            read.rollback();
        });
        // Not a timing check: a read that waited for Alice would wait forever.
        let (found, before, refused_size, refused_count, needs_lock) = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the metadata read waited for Alice's writer");
        assert_eq!(found, Some(f.chat.clone()));
        assert!(!before && refused_size && refused_count && needs_lock);
        held.commit().unwrap();
    }

    #[test]
    fn a_users_journal_is_recovered_by_that_users_next_writer_only() {
        let f = fixture();
        let backend = DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        // Alice's call committed, then its process died before applying it.
        let tx = f.metadata.begin(Access::Write, Scope::User(alice)).unwrap();
        let fs = FsTransaction::new(f.data.clone(), Access::Write);
        let name = AttachmentName::new("report.txt").unwrap();
        fs.write_attachment(&f.chat, &name, &stage(&f, b"committed"))
            .unwrap();
        tx.commit(&fs.prepare()).unwrap();
        let target = history(&f).with_file_name("report.txt");

        backend
            .begin(Access::Write, Scope::User(bob))
            .unwrap()
            .commit()
            .unwrap();
        assert!(!target.exists(), "Bob's writer replayed Alice's journal");
        assert_eq!(
            f.metadata
                .pending_effects(Scope::User(alice))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(staged_count(&f.root), 1, "Bob's writer cleaned staging");

        backend
            .begin(Access::Write, Scope::User(alice))
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"committed");
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
        assert_eq!(staged_count(&f.root), 0);
    }

    #[test]
    fn a_workspace_the_ledger_never_counted_is_counted_on_disk_by_its_first_writer() {
        let f = fixture();
        let backend = DataDirBackend::open(f.data.clone(), f.metadata.clone(), 1 << 20).unwrap();
        let user = Uuid::now_v7();
        let workspace = Workspace {
            workspace_id: f.chat.workspace_id,
            user_id: user,
            created_at: Timestamp::default(),
        };
        // Bytes from before the ledger was kept.
        std::fs::write(history(&f), [b'h'; 40]).unwrap();
        std::fs::write(history(&f).with_file_name("old.bin"), [0; 60]).unwrap();
        let usage = |access| {
            let unit = backend.begin(access, Scope::User(user)).unwrap();
            let used = unit.ports().usage.get_workspace_usage(&workspace).unwrap();
            unit.commit().unwrap();
            used.used_bytes
        };
        assert_eq!(usage(Access::Read), 100);
        std::fs::write(history(&f).with_file_name("more.bin"), [0; 5]).unwrap();
        // A reader counts and keeps nothing; a writer keeps its count.
        assert_eq!(usage(Access::Read), 105);
        assert_eq!(usage(Access::Write), 105);
        std::fs::write(history(&f).with_file_name("behind.bin"), [0; 1]).unwrap();
        assert_eq!(usage(Access::Read), 105);
        let counted = f.metadata.begin(Access::Read, Scope::All).unwrap();
        assert_eq!(counted.chat_bytes(f.chat.chat_id).unwrap(), Some(105));
    }

    /// Locks whose holding ends at the `lost_at`-th confirmation, as a
    /// database session's may end while its unit runs.
    struct Losing {
        lost_at: usize,
        confirmed: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Locks for Losing {
        fn lock(&self, _: Access, _: Scope) -> PortResult<Held> {
            struct Lost(usize, Arc<std::sync::atomic::AtomicUsize>);
            impl Lease for Lost {
                fn confirm(&mut self) -> PortResult<()> {
                    if self.1.fetch_add(1, Ordering::SeqCst) + 1 >= self.0 {
                        return Err(PortError::new("the lock's session ended"));
                    }
                    Ok(())
                }
            }
            Ok(Held::lease(Lost(self.lost_at, self.confirmed.clone())))
        }

        fn alone(&self, clean: &mut dyn FnMut() -> std::io::Result<()>) -> PortResult<bool> {
            clean().map_err(io_error("cleaning staging"))?;
            Ok(true)
        }
    }

    /// The fixture's store, with locks lost at their `lost_at`-th confirmation.
    fn losing_locks(f: &Fixture, lost_at: usize) -> DataDirBackend {
        DataDirBackend {
            data: f.data.clone(),
            metadata: f.metadata.clone(),
            locks: Some(Arc::new(Losing {
                lost_at,
                confirmed: Arc::default(),
            })),
            quota_bytes: 1 << 20,
            ids: Arc::new(UuidV7Ids),
        }
    }

    /// Begins `user`'s write of `report.txt` in the fixture's chat,
    /// metadata and file.
    fn write_report(backend: &DataDirBackend, f: &Fixture, user: Uuid) -> Box<dyn UnitOfWork> {
        let unit = backend.begin(Access::Write, Scope::User(user)).unwrap();
        let name = AttachmentName::new("report.txt").unwrap();
        unit.ports()
            .storage
            .write_attachment(&f.chat, &name, &stage(f, b"report"))
            .unwrap();
        unit.ports()
            .files
            .save(&ChatFile {
                file_id: Uuid::now_v7(),
                chat_id: f.chat.chat_id,
                name,
                content_type: None,
                size_bytes: 6,
                sha256: None,
                created_at: Timestamp::default(),
            })
            .unwrap();
        unit
    }

    fn stored_files(f: &Fixture) -> usize {
        let tx = f.metadata.begin(Access::Read, Scope::All).unwrap();
        let files = ChatFileRepository::list_by_chat_id(&*tx, f.chat.chat_id).unwrap();
        tx.rollback();
        files.len()
    }

    #[test]
    fn a_write_whose_locks_were_lost_before_its_commit_commits_nothing() {
        let f = fixture();
        let backend = losing_locks(&f, 1);
        let unit = write_report(&backend, &f, Uuid::now_v7());
        let refused = unit.commit().unwrap_err();
        assert!(refused.to_string().contains("session ended"), "{refused}");
        assert_eq!(stored_files(&f), 0);
        assert!(!history(&f).with_file_name("report.txt").exists());
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
        assert_eq!(staged_count(&f.root), 0);
    }

    #[test]
    fn effects_of_a_commit_whose_locks_were_lost_after_it_are_left_to_the_next_writer() {
        let f = fixture();
        let backend = losing_locks(&f, 2);
        let user = Uuid::now_v7();
        let unit = write_report(&backend, &f, user);
        let refused = unit.commit().unwrap_err();
        assert!(refused.to_string().contains("next write"), "{refused}");
        // Committed, but its file not touched without the locks.
        assert_eq!(stored_files(&f), 1);
        let report = history(&f).with_file_name("report.txt");
        assert!(!report.exists());
        assert_eq!(f.metadata.pending_effects(Scope::All).unwrap().len(), 1);
        // The user's next writer, holding the locks, applies them.
        let next = DataDirBackend {
            locks: Some(f.data.clone()),
            ..losing_locks(&f, usize::MAX)
        };
        next.begin(Access::Write, Scope::User(user))
            .unwrap()
            .rollback();
        assert_eq!(std::fs::read(&report).unwrap(), b"report");
        assert!(f.metadata.pending_effects(Scope::All).unwrap().is_empty());
    }

    #[test]
    fn a_write_whose_database_session_ended_commits_nothing() {
        let Some(db) = postgres::ScratchDatabase::from_env() else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path().join("data")).unwrap();
        let metadata = Arc::new(postgres::PostgresMetadata::open(db.url()).unwrap());
        let backend = DataDirBackend::open(data, metadata, 1 << 20).unwrap();
        let user = Uuid::now_v7();
        let workspace = Workspace {
            workspace_id: Uuid::now_v7(),
            user_id: user,
            created_at: Timestamp::default(),
        };
        let unit = backend.begin(Access::Write, Scope::User(user)).unwrap();
        unit.ports().workspaces.save(&workspace).unwrap();
        // The session that holds the user's lock (the only one holding an
        // advisory lock exclusively) ends, as after a broken connection, a
        // restarted server or an operator; this waits until it has.
        let mut admin = db.client();
        let ended: i64 = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(l.pid, 60000)) FROM pg_locks l \
                 JOIN pg_database d ON d.oid = l.database \
                 WHERE d.datname = current_database() AND l.locktype = 'advisory' \
                 AND l.mode = 'ExclusiveLock' AND l.granted",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(ended, 1);
        let refused = unit.commit().unwrap_err();
        assert!(
            refused.to_string().contains("session that held"),
            "{refused}"
        );
        let reader = backend.begin(Access::Read, Scope::User(user)).unwrap();
        assert_eq!(
            reader.ports().workspaces.get_by_user_id(user).unwrap(),
            None
        );
    }

    #[test]
    fn a_journal_with_a_path_in_a_name_is_refused() {
        let f = fixture();
        let hostile = Effect::Remove {
            workspace_id: f.chat.workspace_id,
            chat_id: f.chat.chat_id,
            name: "../../../x".into(),
        };
        assert!(f.data.apply(&hostile).is_err());
        let hostile = Effect::Install {
            workspace_id: f.chat.workspace_id,
            chat_id: f.chat.chat_id,
            name: "a".into(),
            staged: "../chatstore.db".into(),
        };
        assert!(f.data.apply(&hostile).is_err());
    }
}
