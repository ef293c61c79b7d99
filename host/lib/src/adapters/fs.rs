//! Chat directories on the local filesystem.
//!
//! Layout under the data directory:
//!
//! ```text
//! chatstore.lock      readers share it, a writer holds it alone (flock)
//! chatstore.db        metadata (SQLite), unless metadata is in memory
//! workspaces/<workspace-id>/chats/<chat-id>/history.md
//! workspaces/<workspace-id>/chats/<chat-id>/<attachment name>
//! staging/            host-private: staged writes, chats being deleted
//! ```
//!
//! Every access goes through a cap-std [`Dir`]: paths are resolved beneath
//! the chat directory (`openat2` with `RESOLVE_BENEATH` on Linux), so a
//! symlink a sandbox planted there cannot lead a read or a write outside it.
//! Paths are made only from [`Uuid`]s and checked names.
//!
//! A call never changes a chat directory while it runs. It stages new bytes
//! in `staging/` (written and synced) and records [`Effect`]s; only after
//! the metadata and the journal of those effects commit together are the
//! effects applied — renames and removals, each idempotent — and the
//! journal forgotten. After a crash, [`DataDir::recover`] replays a
//! committed journal and deletes staged files no journal refers to.

use crate::error::{PortError, PortResult};
use crate::ids::parse_canonical;
use crate::model::{Chat, Workspace, WorkspaceUsage};
use crate::names::{AttachmentName, HISTORY_FILE_NAME};
use crate::ports::{ChatStorage, StorageUsage};
use crate::unit::{Access, Effect};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

const WORKSPACES: &str = "workspaces";
const STAGING: &str = "staging";
const LOCK_FILE: &str = "chatstore.lock";
const LOST_AND_FOUND: &str = "lost+found";

/// A file name inside a chat directory: `history.md` or an attachment.
fn checked_name(name: &str) -> io::Result<&str> {
    if name == HISTORY_FILE_NAME || AttachmentName::new(name).is_ok() {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "journal names an invalid file",
        ))
    }
}

/// A staged file's name: what `staging/` holds besides deletions in progress.
fn checked_staged(name: &str) -> io::Result<&str> {
    let ok = name
        .strip_prefix("write-")
        .is_some_and(|id| parse_canonical(id).is_some());
    if ok {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "journal names an invalid staged file",
        ))
    }
}

/// An opened data directory, shared by everything that touches it.
#[derive(Debug)]
pub struct DataDir {
    root: Dir,
    staging: Dir,
}

/// A held lock on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DataDir {
    /// Opens the data directory at `path`, creating it and its layout if missing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Arc<DataDir>> {
        let path = path.as_ref();
        // The one place the adapter uses ambient authority: opening the root.
        Dir::create_ambient_dir_all(path, ambient_authority())?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        root.create_dir_all(WORKSPACES)?;
        root.create_dir_all(STAGING)?;
        let staging = root.open_dir(STAGING)?;
        Ok(Arc::new(DataDir { root, staging }))
    }

    /// Takes the data directory's lock: shared for reading, exclusive for
    /// writing; it holds across threads and processes (`flock`).
    pub fn lock(&self, access: Access) -> io::Result<DirLock> {
        let file = self.root.open_with(
            LOCK_FILE,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        let operation = match access {
            Access::Read => rustix::fs::FlockOperation::LockShared,
            Access::Write => rustix::fs::FlockOperation::LockExclusive,
        };
        rustix::fs::flock(&file, operation)?;
        Ok(DirLock { _file: file })
    }

    /// The chat directory's path relative to the root, built from ids only.
    fn chat_path(workspace_id: Uuid, chat_id: Uuid) -> String {
        format!("{WORKSPACES}/{workspace_id}/chats/{chat_id}")
    }

    fn chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<Dir> {
        self.root.open_dir(Self::chat_path(workspace_id, chat_id))
    }

    /// The directory holding a workspace's chat directories.
    fn chats_dir(&self, workspace_id: Uuid) -> io::Result<Dir> {
        self.root
            .open_dir(format!("{WORKSPACES}/{workspace_id}/chats"))
    }

    /// Writes `content` to a new, synced file in `staging/`; returns its name.
    fn stage(&self, content: &[u8]) -> io::Result<String> {
        let staged = format!("write-{}", Uuid::now_v7());
        let written = (|| {
            let mut file = self
                .staging
                .open_with(&staged, OpenOptions::new().write(true).create_new(true))?;
            file.write_all(content)?;
            file.sync_all()
        })();
        match written {
            Ok(()) => Ok(staged),
            Err(e) => {
                let _ = self.staging.remove_file(&staged);
                Err(e)
            }
        }
    }

    /// Applies one effect; safe to repeat.
    pub fn apply(&self, effect: &Effect) -> io::Result<()> {
        match effect {
            Effect::CreateChat {
                workspace_id,
                chat_id,
            } => {
                let path = Self::chat_path(*workspace_id, *chat_id);
                self.root.create_dir_all(&path)?;
                let dir = self.root.open_dir(&path)?;
                match dir.open_with(
                    HISTORY_FILE_NAME,
                    OpenOptions::new().write(true).create_new(true),
                ) {
                    Ok(file) => file.sync_all()?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                sync_dir(&dir)?;
                // The new directory entries themselves, up to `workspaces/`.
                let workspace = format!("{WORKSPACES}/{workspace_id}");
                sync_dir(&self.root.open_dir(format!("{workspace}/chats"))?)?;
                sync_dir(&self.root.open_dir(&workspace)?)?;
                sync_dir(&self.root.open_dir(WORKSPACES)?)
            }
            Effect::Install {
                workspace_id,
                chat_id,
                name,
                staged,
            } => {
                let (name, staged) = (checked_name(name)?, checked_staged(staged)?);
                match self.staging.symlink_metadata(staged) {
                    // Already renamed into place by an earlier attempt.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                let dir = self.chat_dir(*workspace_id, *chat_id)?;
                self.staging.rename(staged, &dir, name)?;
                sync_dir(&dir)
            }
            Effect::Remove {
                workspace_id,
                chat_id,
                name,
            } => {
                let name = checked_name(name)?;
                let dir = match self.chat_dir(*workspace_id, *chat_id) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    other => other?,
                };
                ignore_missing(dir.remove_file(name))?;
                sync_dir(&dir)
            }
            Effect::ClearAttachments {
                workspace_id,
                chat_id,
            } => {
                let dir = self.chat_dir(*workspace_id, *chat_id)?;
                for entry in dir.entries()? {
                    let entry = entry?;
                    if entry.file_name() == HISTORY_FILE_NAME {
                        continue;
                    }
                    if entry.file_type()?.is_dir() {
                        dir.remove_dir_all(entry.file_name())?;
                    } else {
                        entry.remove_file()?;
                    }
                }
                sync_dir(&dir)
            }
            Effect::DeleteChat {
                workspace_id,
                chat_id,
            } => {
                // Renamed out of the workspace first, so the chat disappears
                // at once; what is left to remove is host-private.
                let doomed = format!("delete-{}", Uuid::now_v7());
                let moved = self.root.rename(
                    Self::chat_path(*workspace_id, *chat_id),
                    &self.staging,
                    &doomed,
                );
                match moved {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    other => other?,
                }
                sync_dir(
                    &self
                        .root
                        .open_dir(format!("{WORKSPACES}/{workspace_id}/chats"))?,
                )?;
                self.staging.remove_dir_all(&doomed)
            }
        }
    }

    /// Replays committed effects, then removes every staged file they do
    /// not refer to (left by calls that never committed). Call it holding
    /// the exclusive lock.
    pub fn recover(&self, pending: &[Effect]) -> io::Result<()> {
        for effect in pending {
            self.apply(effect)?;
        }
        let keep: HashSet<&str> = pending
            .iter()
            .filter_map(|e| match e {
                Effect::Install { staged, .. } => Some(staged.as_str()),
                _ => None,
            })
            .collect();
        self.clean_staging(&keep)
    }

    fn clean_staging(&self, keep: &HashSet<&str>) -> io::Result<()> {
        for entry in self.staging.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| keep.contains(n)) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                self.staging.remove_dir_all(&name)?;
            } else {
                entry.remove_file()?;
            }
        }
        Ok(())
    }

    /// Makes the names of freshly staged files durable.
    fn sync_staging(&self) -> io::Result<()> {
        sync_dir(&self.staging)
    }

    fn remove_staged(&self, staged: &str) {
        let _ = self.staging.remove_file(staged);
    }

    /// Every workspace id and chat id with a directory, for `fsck`.
    pub fn chat_dirs(&self) -> io::Result<Vec<(Uuid, Uuid)>> {
        let mut found = Vec::new();
        for workspace in self.root.read_dir(WORKSPACES)? {
            let workspace = workspace?;
            let Some(workspace_id) = workspace.file_name().to_str().and_then(parse_canonical)
            else {
                continue;
            };
            let chats = match workspace.open_dir()?.read_dir("chats") {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            for chat in chats {
                if let Some(chat_id) = chat?.file_name().to_str().and_then(parse_canonical) {
                    found.push((workspace_id, chat_id));
                }
            }
        }
        Ok(found)
    }

    /// The regular files directly in a chat directory and their sizes, for `fsck`.
    pub fn chat_files(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
    ) -> io::Result<HashMap<String, u64>> {
        let dir = self.chat_dir(workspace_id, chat_id)?;
        let mut files = HashMap::new();
        for entry in dir.entries()? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                files.insert(name.to_owned(), entry.metadata()?.len());
            }
        }
        Ok(files)
    }

    /// Creates a missing chat directory or history, for `fsck --repair`.
    pub fn ensure_chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<()> {
        self.apply(&Effect::CreateChat {
            workspace_id,
            chat_id,
        })
    }

    /// Moves a chat directory no metadata names to
    /// `lost+found/<workspace-id>.<chat-id>`, for `fsck --repair`.
    pub fn move_to_lost_and_found(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<()> {
        self.root.create_dir_all(LOST_AND_FOUND)?;
        let found = self.root.open_dir(LOST_AND_FOUND)?;
        let mut name = format!("{workspace_id}.{chat_id}");
        if found.symlink_metadata(&name).is_ok() {
            name = format!("{name}.{}", Uuid::now_v7());
        }
        self.root
            .rename(Self::chat_path(workspace_id, chat_id), &found, &name)?;
        sync_dir(&found)?;
        sync_dir(
            &self
                .root
                .open_dir(format!("{WORKSPACES}/{workspace_id}/chats"))?,
        )
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    // `Dir` handles may be `O_PATH`, which cannot be synced: open it for reading.
    dir.open_with(".", OpenOptions::new().read(true))?
        .sync_all()
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Says which file an I/O error was about, without a host path.
fn about(what: &str, e: io::Error) -> PortError {
    PortError::new(format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The chat storage port for one call: reads the chat directories as they
/// were when the call began (plus its own history writes), and records
/// writes as staged [`Effect`]s for the commit.
#[derive(Debug)]
pub struct FsTransaction {
    data: Arc<DataDir>,
    access: Access,
    effects: Mutex<Vec<Effect>>,
    /// Histories this call rewrote, so a later append in it builds on them.
    histories: Mutex<HashMap<Uuid, String>>,
}

impl FsTransaction {
    /// Starts one call's chat storage.
    pub fn new(data: Arc<DataDir>, access: Access) -> Self {
        FsTransaction {
            data,
            access,
            effects: Mutex::default(),
            histories: Mutex::default(),
        }
    }

    fn dir(&self, chat: &Chat) -> PortResult<Dir> {
        self.data
            .chat_dir(chat.workspace_id, chat.chat_id)
            .map_err(|e| about("chat directory", e))
    }

    fn record(&self, effect: Effect) -> PortResult<()> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        lock(&self.effects).push(effect);
        Ok(())
    }

    fn install(&self, chat: &Chat, name: &str, content: &[u8]) -> PortResult<()> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        // The chat directory must exist now; the rename happens after commit.
        self.dir(chat)?;
        let staged = self.data.stage(content).map_err(|e| about(name, e))?;
        self.record(Effect::Install {
            workspace_id: chat.workspace_id,
            chat_id: chat.chat_id,
            name: name.to_owned(),
            staged,
        })
    }

    /// The effects recorded so far, after making staged files durable.
    pub fn prepare(&self) -> io::Result<Vec<Effect>> {
        let effects = lock(&self.effects).clone();
        if effects.iter().any(|e| matches!(e, Effect::Install { .. })) {
            self.data.sync_staging()?;
        }
        Ok(effects)
    }

    /// Drops every staged file of this call.
    pub fn discard(&self) {
        for effect in lock(&self.effects).drain(..) {
            if let Effect::Install { staged, .. } = effect {
                self.data.remove_staged(&staged);
            }
        }
    }

    fn history(&self, chat: &Chat) -> PortResult<String> {
        if let Some(written) = lock(&self.histories).get(&chat.chat_id) {
            return Ok(written.clone());
        }
        let bytes = self
            .dir(chat)?
            .read(HISTORY_FILE_NAME)
            .map_err(|e| about(HISTORY_FILE_NAME, e))?;
        String::from_utf8(bytes).map_err(|_| PortError::new("history.md is not valid UTF-8"))
    }

    fn replace_history(&self, chat: &Chat, content: String) -> PortResult<()> {
        self.install(chat, HISTORY_FILE_NAME, content.as_bytes())?;
        lock(&self.histories).insert(chat.chat_id, content);
        Ok(())
    }
}

impl ChatStorage for FsTransaction {
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()> {
        let exists = self
            .dir(chat)
            .is_ok_and(|dir| dir.symlink_metadata(HISTORY_FILE_NAME).is_ok());
        if exists {
            return Ok(());
        }
        self.record(Effect::CreateChat {
            workspace_id: chat.workspace_id,
            chat_id: chat.chat_id,
        })
    }

    fn read_history(&self, chat: &Chat) -> PortResult<String> {
        self.history(chat)
    }

    fn write_history(&self, chat: &Chat, content: &str) -> PortResult<()> {
        self.replace_history(chat, content.to_owned())
    }

    fn append_history(&self, chat: &Chat, content: &str) -> PortResult<()> {
        // An append is a replacement by old + new: a crash leaves one or the other.
        let mut history = self.history(chat)?;
        history.push_str(content);
        self.replace_history(chat, history)
    }

    fn delete_chat(&self, chat: &Chat) -> PortResult<()> {
        self.record(Effect::DeleteChat {
            workspace_id: chat.workspace_id,
            chat_id: chat.chat_id,
        })
    }

    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &[u8],
    ) -> PortResult<()> {
        self.install(chat, name.as_str(), content)
    }

    fn read_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Vec<u8>> {
        self.dir(chat)?
            .read(name.as_str())
            .map_err(|e| about(name.as_str(), e))
    }

    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()> {
        self.record(Effect::Remove {
            workspace_id: chat.workspace_id,
            chat_id: chat.chat_id,
            name: name.to_string(),
        })
    }

    fn clear_attachments(&self, chat: &Chat) -> PortResult<()> {
        self.dir(chat)?;
        self.record(Effect::ClearAttachments {
            workspace_id: chat.workspace_id,
            chat_id: chat.chat_id,
        })
    }
}

/// The usage port: sums the bytes under a workspace's chat directories,
/// sandbox-written files included, against a configured quota.
#[derive(Debug, Clone)]
pub struct FsStorageUsage {
    data: Arc<DataDir>,
    quota_bytes: u64,
}

impl FsStorageUsage {
    /// Usage of this data directory, with this quota for every workspace.
    pub fn new(data: Arc<DataDir>, quota_bytes: u64) -> Self {
        FsStorageUsage { data, quota_bytes }
    }

    /// Bytes in regular files under `dir`, walked without following symlinks.
    fn bytes_under(dir: Dir) -> io::Result<u64> {
        let mut total = 0u64;
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            for entry in dir.entries()? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.open_dir()?);
                } else if kind.is_file() {
                    total = total.saturating_add(entry.metadata()?.len());
                }
            }
        }
        Ok(total)
    }
}

impl StorageUsage for FsStorageUsage {
    fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage> {
        // Every chat directory of the workspace counts, whatever the metadata says.
        let used_bytes = match self.data.chats_dir(workspace.workspace_id) {
            Ok(dir) => Self::bytes_under(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
        .map_err(|e| about("usage", e))?;
        Ok(WorkspaceUsage {
            workspace_id: workspace.workspace_id,
            used_bytes,
            quota_bytes: self.quota_bytes,
        })
    }
}
