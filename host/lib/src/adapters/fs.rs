//! Chat directories on the local filesystem.
//!
//! Layout under the data directory:
//!
//! ```text
//! chatstore.lock      readers share it, a writer holds it alone (flock)
//! chatstore.db        metadata (SQLite), unless metadata is in memory
//! workspaces/<workspace-id>/chats/<chat-id>/history.md
//! workspaces/<workspace-id>/chats/<chat-id>/<attachment name>
//! workspaces/<workspace-id>/lost+found/<chat-id>.<id>/<name>
//!                     what stood in the way of a committed change
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
//! effects applied — renames, appends in place and removals, each
//! idempotent — and the journal forgotten. After a crash, [`DataDir::recover`] replays a
//! committed journal and deletes staged files no journal refers to.
//!
//! A chat directory is a sandbox's working directory, so its trouble stays
//! in it: a directory (or FIFO, symlink…) where a committed change must put
//! a file is moved aside into the workspace's `lost+found/`, where `fsck`
//! reports it and usage still counts it; a change that still cannot be
//! applied at recovery is quarantined there, so that no chat's contents can
//! stop start-up, another chat's writes or `fsck`.

use super::tree::{self, regular_file_size, remove_tree};
use crate::content::Content;
use crate::error::{PortError, PortResult};
use crate::ids::parse_canonical;
use crate::model::Chat;
use crate::names::{AttachmentName, HISTORY_FILE_NAME};
use crate::ports::ChatStorage;
use crate::staging::{StagedContent, Staging};
use crate::unit::{Access, Count, Effect, Held, Locks, Scope, UsageChange, signed_bytes};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions};
use std::collections::{HashMap, HashSet};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

const WORKSPACES: &str = "workspaces";
const STAGING: &str = "staging";
const LOCK_FILE: &str = "chatstore.lock";
/// Every opening of the data directory shares it; staging is cleaned only
/// by one that can hold it alone.
const STAGING_LOCK: &str = "staging.lock";
/// One lock file per user who has written, named by the user's id.
const LOCKS: &str = "locks";
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
    if Staging::is_staged_name(name) {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "journal names an invalid staged file",
        ))
    }
}

/// An entry at the top of a chat directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEntry {
    /// A regular file of this size.
    File {
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Anything else: a directory, a link, a FIFO, a name that is not UTF-8.
    Other {
        /// Its name (lossy if it is not UTF-8).
        name: String,
        /// Why it is not a file that could be registered.
        why: &'static str,
    },
}

/// An opened data directory, shared by everything that touches it.
#[derive(Debug)]
pub struct DataDir {
    root: Dir,
    /// The root's absolute path: only ever handed out (to mount a chat's
    /// directory in a sandbox), never used to reach a file.
    path: std::path::PathBuf,
    staging: Arc<Staging>,
    staging_lock: File,
}

/// A held lock on a data directory, and on a user's workspace in it;
/// dropping it releases both.
#[derive(Debug)]
pub struct DirLock {
    _data_dir: File,
    _user: Option<File>,
}

impl DataDir {
    /// Opens the data directory at `path`, creating it and its layout if missing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Arc<DataDir>> {
        let path = path.as_ref();
        // The one place the adapter uses ambient authority: opening the root.
        Dir::create_ambient_dir_all(path, ambient_authority())?;
        let root = Dir::open_ambient_dir(path, ambient_authority())?;
        let absolute = std::fs::canonicalize(path)?;
        root.create_dir_all(WORKSPACES)?;
        root.create_dir_all(STAGING)?;
        root.create_dir_all(LOCKS)?;
        let staging = Staging::new(root.open_dir(STAGING)?);
        // Held shared while this data directory is open here: staged
        // content of a live process is never another process's leftover.
        let staging_lock = root.open_with(
            STAGING_LOCK,
            OpenOptions::new().read(true).write(true).create(true),
        )?;
        rustix::fs::flock(&staging_lock, rustix::fs::FlockOperation::LockShared)?;
        Ok(Arc::new(DataDir {
            root,
            path: absolute,
            staging,
            staging_lock,
        }))
    }

    /// The staging area, where content waits for the call that stores it.
    pub fn staging(&self) -> &Arc<Staging> {
        &self.staging
    }

    /// Takes the locks a unit of work on `scope` needs (see [`Scope`]):
    /// for a user, the data directory's shared and the user's shared for
    /// reading or exclusive for writing; for the whole data directory, its
    /// lock shared or exclusive. They hold across threads and processes of
    /// one machine (`flock`).
    pub fn lock(&self, access: Access, scope: Scope) -> io::Result<DirLock> {
        let mode = match access {
            Access::Read => rustix::fs::FlockOperation::LockShared,
            Access::Write => rustix::fs::FlockOperation::LockExclusive,
        };
        let (data_dir_mode, user) = match scope {
            Scope::All => (mode, None),
            Scope::User(user_id) => (
                rustix::fs::FlockOperation::LockShared,
                Some(format!("{LOCKS}/{user_id}")),
            ),
        };
        let data_dir = self.locked(LOCK_FILE, data_dir_mode)?;
        let user = match user {
            Some(path) => Some(self.locked(&path, mode)?),
            None => None,
        };
        Ok(DirLock {
            _data_dir: data_dir,
            _user: user,
        })
    }

    fn locked(&self, path: &str, mode: rustix::fs::FlockOperation) -> io::Result<File> {
        let file = self
            .root
            .open_with(path, OpenOptions::new().read(true).write(true).create(true))?;
        rustix::fs::flock(&file, mode)?;
        Ok(file)
    }

    /// The chat directory's absolute path, for a sandbox to mount.
    pub fn chat_dir_path(&self, workspace_id: Uuid, chat_id: Uuid) -> std::path::PathBuf {
        self.path.join(Self::chat_path(workspace_id, chat_id))
    }

    /// The chat directory's path relative to the root, built from ids only.
    fn chat_path(workspace_id: Uuid, chat_id: Uuid) -> String {
        format!("{WORKSPACES}/{workspace_id}/chats/{chat_id}")
    }

    fn chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<ChatDir> {
        use cap_std::fs::OpenOptionsExt;
        let dir = self.root.open_with(
            Self::chat_path(workspace_id, chat_id),
            OpenOptions::new()
                .read(true)
                // Never blocks on a FIFO put where the directory was.
                .custom_flags(
                    (rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NONBLOCK).bits() as i32,
                ),
        )?;
        Ok(ChatDir(Dir::from_std_file(dir.into_std())))
    }

    /// A workspace's directory: its chat directories and `lost+found/`.
    fn workspace_dir(&self, workspace_id: Uuid) -> io::Result<Dir> {
        self.root.open_dir(format!("{WORKSPACES}/{workspace_id}"))
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
                match self.staging.dir().symlink_metadata(staged) {
                    // Already renamed into place by an earlier attempt.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                let dir = self.chat_dir(*workspace_id, *chat_id)?;
                self.clear_way(*workspace_id, *chat_id, &dir, name)?;
                self.staging.dir().rename(staged, &dir, name)?;
                dir.sync()
            }
            Effect::Append {
                workspace_id,
                chat_id,
                staged,
                at,
            } => {
                let staged = checked_staged(staged)?;
                let mut message = match self.staging.dir().open(staged) {
                    // Applied and cleaned up by an earlier attempt.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    other => other?,
                };
                let dir = self.chat_dir(*workspace_id, *chat_id)?;
                let mut history = match open_regular(&dir, HISTORY_FILE_NAME, true) {
                    Ok(history) => history,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        create_regular(&dir, HISTORY_FILE_NAME)?
                    }
                    // Not a regular file any more: moved aside, and the
                    // message lands at `at` in a new history. Any other
                    // failure (out of descriptors, I/O) is only an error.
                    Err(e) => match dir.symlink_metadata(HISTORY_FILE_NAME) {
                        Ok(meta) if !meta.is_file() => {
                            self.move_aside(*workspace_id, *chat_id, &dir, HISTORY_FILE_NAME)?;
                            create_regular(&dir, HISTORY_FILE_NAME)?
                        }
                        _ => return Err(e),
                    },
                };
                // Whatever a torn earlier attempt left past `at` is cut off,
                // so the history holds the whole message once.
                history.set_len(*at)?;
                history.seek(SeekFrom::Start(*at))?;
                io::copy(&mut message, &mut history)?;
                history.sync_data()?;
                self.staging.dir().remove_file(staged)?;
                self.staging.sync_names()
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
                // A directory there is the sandbox's, not the file removed.
                self.clear_way(*workspace_id, *chat_id, &dir, name)?;
                ignore_missing(dir.remove_file(name))?;
                dir.sync()
            }
            Effect::ClearAttachments {
                workspace_id,
                chat_id,
            } => {
                let dir = self.chat_dir(*workspace_id, *chat_id)?;
                for entry in dir.entries()? {
                    let name = entry?.file_name();
                    if name == HISTORY_FILE_NAME {
                        continue;
                    }
                    match dir.symlink_metadata(&name) {
                        // Out of the chat at once, then removed as host-private.
                        Ok(meta) if meta.is_dir() => {
                            let doomed = format!("delete-{}", Uuid::now_v7());
                            dir.rename(&name, self.staging.dir(), &doomed)?;
                            self.remove_doomed(&doomed);
                        }
                        Ok(_) => ignore_missing(dir.remove_file(&name))?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                dir.sync()
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
                    self.staging.dir(),
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
                self.remove_doomed(&doomed);
                Ok(())
            }
        }
    }

    /// Replays committed effects, then removes every staged file they do
    /// not refer to (left by calls that never committed) if `alone` finds
    /// no other opening of the store live, and runs the cleaning. Call it
    /// holding the store's exclusive lock.
    ///
    /// An effect that cannot be applied because of what a sandbox left in a
    /// chat directory is quarantined rather than retried forever: its
    /// staged content goes to the workspace's `lost+found/` and the error
    /// to the log, so one chat cannot stop the others. Only a full disk
    /// stops recovery.
    pub fn recover(
        &self,
        pending: &[Effect],
        alone: impl FnOnce(&mut dyn FnMut() -> io::Result<()>) -> PortResult<bool>,
    ) -> io::Result<()> {
        self.replay(pending)?;
        let keep: HashSet<&str> = pending
            .iter()
            .filter_map(|e| match e {
                Effect::Install { staged, .. } | Effect::Append { staged, .. } => {
                    Some(staged.as_str())
                }
                _ => None,
            })
            .collect();
        let cleaned = alone(&mut || self.remove_staged_except(&keep))
            .map_err(|e| io::Error::other(e.message))?;
        if !cleaned {
            tracing::info!("the store is open elsewhere: staging is cleaned when it is not");
        }
        Ok(())
    }

    /// Applies `pending`, quarantining what cannot be applied (see
    /// [`recover`](Self::recover)), and leaves the rest of staging alone:
    /// the recovery of one user's journal while others write.
    pub fn replay(&self, pending: &[Effect]) -> io::Result<()> {
        for effect in pending {
            if let Err(e) = self.apply(effect) {
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) {
                    return Err(e);
                }
                tracing::error!(?effect, error = %e, "a committed change could not be applied; quarantined");
                self.quarantine(effect);
            }
        }
        Ok(())
    }

    fn remove_staged_except(&self, keep: &HashSet<&str>) -> io::Result<()> {
        let staging = self.staging.dir();
        for entry in staging.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| keep.contains(n)) {
                continue;
            }
            match name.to_str() {
                Some(doomed) if entry.file_type()?.is_dir() => self.remove_doomed(doomed),
                _ => ignore_missing(entry.remove_file())?,
            }
        }
        Ok(())
    }

    /// Removes a directory moved into staging to be deleted. A tree that
    /// cannot be removed now (a sandbox took the permission away) is left
    /// for the next recovery and logged, never an error for the call.
    fn remove_doomed(&self, doomed: &str) {
        if let Err(e) = remove_tree(self.staging.dir(), doomed) {
            tracing::warn!(doomed, error = %e, "a deleted directory could not be removed yet");
        }
    }

    /// A new directory in the workspace's `lost+found/` for what a change
    /// of `chat_id` found in its way.
    fn lost_and_found(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<Dir> {
        let found = format!("{WORKSPACES}/{workspace_id}/{LOST_AND_FOUND}");
        self.root.create_dir_all(&found)?;
        let holder = format!("{found}/{chat_id}.{}", Uuid::now_v7());
        self.root.create_dir(&holder)?;
        sync_dir(&self.root.open_dir(&found)?)?;
        self.root.open_dir(&holder)
    }

    /// Moves whatever is at `name` in a chat directory into `lost+found/`
    /// under the same name, whatever it is.
    fn move_aside(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        dir: &ChatDir,
        name: &str,
    ) -> io::Result<()> {
        let holder = self.lost_and_found(workspace_id, chat_id)?;
        dir.rename(name, &holder, name)?;
        sync_dir(&holder)?;
        dir.sync()?;
        tracing::warn!(%workspace_id, %chat_id, name, "moved an obstacle in a chat directory to lost+found");
        Ok(())
    }

    /// Moves a directory at `name` aside, so that a file can be put there
    /// or removed; anything else at `name` is replaced or removed as it is.
    fn clear_way(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        dir: &ChatDir,
        name: &str,
    ) -> io::Result<()> {
        match dir.symlink_metadata(name) {
            Ok(meta) if meta.is_dir() => self.move_aside(workspace_id, chat_id, dir, name),
            _ => Ok(()),
        }
    }

    /// Keeps a committed effect that cannot be applied out of the way: its
    /// staged content, if any, goes to the workspace's `lost+found/`.
    fn quarantine(&self, effect: &Effect) {
        let (workspace_id, chat_id, name, staged) = match effect {
            Effect::Install {
                workspace_id,
                chat_id,
                name,
                staged,
            } => (*workspace_id, *chat_id, name.as_str(), staged),
            Effect::Append {
                workspace_id,
                chat_id,
                staged,
                ..
            } => (*workspace_id, *chat_id, "history.md.append", staged),
            _ => return,
        };
        let Ok(staged) = checked_staged(staged) else {
            return;
        };
        let moved = checked_name(name)
            .and_then(|name| Ok((name, self.lost_and_found(workspace_id, chat_id)?)))
            .and_then(|(name, holder)| self.staging.dir().rename(staged, &holder, name));
        if let Err(e) = moved {
            tracing::warn!(staged, error = %e, "quarantined content could not be kept; removed");
            let _ = self.staging.dir().remove_file(staged);
        }
    }

    fn remove_staged(&self, staged: &str) {
        let _ = self.staging.dir().remove_file(staged);
    }

    /// Each workspace's id and the entries of its subdirectory `sub`
    /// (`chats`, `lost+found`), where it has one.
    fn in_workspaces(&self, sub: &str) -> io::Result<Vec<(Uuid, cap_std::fs::ReadDir)>> {
        let mut found = Vec::new();
        for workspace in self.root.read_dir(WORKSPACES)? {
            let workspace = workspace?;
            let Some(workspace_id) = workspace.file_name().to_str().and_then(parse_canonical)
            else {
                continue;
            };
            match workspace.open_dir()?.read_dir(sub) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Ok(entries) => found.push((workspace_id, entries)),
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Counts the bytes under the workspace's directory, and each chat
    /// directory's share, for the usage ledger: one walk of each.
    pub fn count(&self, workspace_id: Uuid) -> io::Result<Count> {
        let workspace = match self.workspace_dir(workspace_id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Count::default()),
            other => other?,
        };
        let mut count = Count::default();
        for entry in workspace.entries()? {
            let entry = entry?;
            if entry.file_name() != "chats" || !entry.file_type()?.is_dir() {
                count.total += entry_bytes(&workspace, &entry)?;
                continue;
            }
            let chats = tree::open_subdir(&workspace, &entry.file_name())?;
            for chat in chats.entries()? {
                let chat = chat?;
                let bytes = entry_bytes(&chats, &chat)?;
                let chat_id = chat.file_name().to_str().and_then(parse_canonical);
                if let Some(chat_id) = chat_id
                    && chat.file_type()?.is_dir()
                {
                    count.chats.push((chat_id, bytes));
                }
                count.total += bytes;
            }
        }
        Ok(count)
    }

    /// Counts the bytes under one chat directory (none if it is gone).
    pub fn count_chat(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<u64> {
        match self.chat_dir(workspace_id, chat_id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            other => tree::bytes_under(other?.0),
        }
    }

    /// Every workspace id and chat id with a directory, for `fsck`.
    pub fn chat_dirs(&self) -> io::Result<Vec<(Uuid, Uuid)>> {
        let mut found = Vec::new();
        for (workspace_id, chats) in self.in_workspaces("chats")? {
            for chat in chats {
                if let Some(chat_id) = chat?.file_name().to_str().and_then(parse_canonical) {
                    found.push((workspace_id, chat_id));
                }
            }
        }
        Ok(found)
    }

    /// Renames an attachment an earlier version stored under a name the
    /// current rules refuse (`old`, still one safe path component) to
    /// `new`; whatever a sandbox put at `new` is moved aside first. Safe to
    /// repeat: once `old` is gone there is nothing to do.
    pub fn rename_stored(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        old: &str,
        new: &AttachmentName,
    ) -> io::Result<()> {
        let safe = !old.is_empty() && old != "." && old != ".." && !old.contains(['/', '\\', '\0']);
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stored name is not one path component",
            ));
        }
        let dir = match self.chat_dir(workspace_id, chat_id) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        if dir.symlink_metadata(old).is_err() {
            return Ok(());
        }
        if dir.symlink_metadata(new.as_str()).is_ok() {
            self.move_aside(workspace_id, chat_id, &dir, new.as_str())?;
        }
        dir.rename(old, &dir, new.as_str())?;
        dir.sync()
    }

    /// What the workspaces' `lost+found/` hold, as (workspace id,
    /// `<holder>/<name>`), for `fsck`.
    pub fn moved_aside(&self) -> io::Result<Vec<(Uuid, String)>> {
        let mut found = Vec::new();
        for (workspace_id, holders) in self.in_workspaces(LOST_AND_FOUND)? {
            for holder in holders {
                let holder = holder?;
                let holder_name = holder.file_name().to_string_lossy().into_owned();
                for kept in holder.open_dir()?.entries()? {
                    let kept = kept?.file_name();
                    found.push((
                        workspace_id,
                        format!("{holder_name}/{}", kept.to_string_lossy()),
                    ));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// The regular files directly in a chat directory and their sizes, for `fsck`.
    pub fn chat_files(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
    ) -> io::Result<HashMap<String, u64>> {
        let (entries, _) = self.chat_entries(workspace_id, chat_id, usize::MAX)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match entry {
                ChatEntry::File { name, size } => Some((name, size)),
                ChatEntry::Other { .. } => None,
            })
            .collect())
    }

    /// The size and SHA-256 of a regular file of a chat directory, read
    /// without following a symlink, for `fsck --repair`.
    pub fn digest(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        name: &str,
    ) -> io::Result<(u64, String)> {
        use sha2::{Digest, Sha256};
        let file = open_regular(&self.chat_dir(workspace_id, chat_id)?.0, name, false)?;
        let mut hash = Sha256::new();
        let size = io::copy(
            &mut io::BufReader::with_capacity(256 << 10, file),
            &mut hash,
        )?;
        let hex = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((size, hex))
    }

    /// Creates a missing chat directory or history, for `fsck --repair`.
    pub fn ensure_chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> io::Result<()> {
        self.apply(&Effect::CreateChat {
            workspace_id,
            chat_id,
        })
    }

    /// What stands at the top of a chat directory, at most `limit` entries
    /// (and whether there were more). Nothing is followed or opened.
    pub fn chat_entries(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        limit: usize,
    ) -> io::Result<(Vec<ChatEntry>, bool)> {
        let dir = self.chat_dir(workspace_id, chat_id)?;
        let mut found = Vec::new();
        for entry in dir.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            if found.len() == limit {
                return Ok((found, true));
            }
            let Some(name) = name.to_str().map(str::to_owned) else {
                found.push(ChatEntry::Other {
                    name: name.to_string_lossy().into_owned(),
                    why: "its name is not UTF-8",
                });
                continue;
            };
            let kind = entry.file_type()?;
            found.push(if kind.is_file() {
                ChatEntry::File {
                    size: entry.metadata()?.len(),
                    name,
                }
            } else {
                ChatEntry::Other {
                    name,
                    why: "it is not a regular file",
                }
            });
        }
        Ok((found, false))
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

/// The data directory's own locks, with `flock`: they hold across the
/// threads and processes of one machine.
impl Locks for DataDir {
    fn lock(&self, access: Access, scope: Scope) -> PortResult<Held> {
        DataDir::lock(self, access, scope)
            .map(Held::new)
            .map_err(|e| PortError::new(format!("lock: {e}")))
    }

    /// Every opening of the data directory holds `staging.lock` shared;
    /// one that can hold it alone is the only one.
    fn alone(&self, clean: &mut dyn FnMut() -> io::Result<()>) -> PortResult<bool> {
        use rustix::fs::FlockOperation::{LockShared, NonBlockingLockExclusive};
        let flock_error = |e: rustix::io::Errno| PortError::new(format!("staging.lock: {e}"));
        match rustix::fs::flock(&self.staging_lock, NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(false),
            Err(e) => return Err(flock_error(e)),
        }
        let cleaned = clean();
        rustix::fs::flock(&self.staging_lock, LockShared).map_err(flock_error)?;
        cleaned.map_err(|e| PortError::new(format!("cleaning staging: {e}")))?;
        Ok(true)
    }
}

/// A chat directory's handle, opened for reading (not `O_PATH`), so that
/// the handle that found a name is the one synced after renaming it.
#[derive(Debug)]
struct ChatDir(Dir);

impl std::ops::Deref for ChatDir {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        &self.0
    }
}

impl ChatDir {
    /// Makes a rename or removal in it durable.
    fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.0).map_err(io::Error::from)
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    // `Dir` handles may be `O_PATH`, which cannot be synced: open it for reading.
    dir.open_with(".", OpenOptions::new().read(true))?
        .sync_all()
}

/// Creates the regular file `name` in `dir`, for writing.
fn create_regular(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
    Ok(dir
        .open_with(name, OpenOptions::new().write(true).create_new(true))?
        .into_std())
}

/// Opens `name` in `dir` only if it is a regular file: without following a
/// symlink, without blocking on a FIFO or device; for writing with `write`.
fn open_regular(dir: &Dir, name: &str, write: bool) -> io::Result<std::fs::File> {
    use cap_std::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = dir.open_with(
        name,
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(flags.bits() as i32),
    )?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{name} is not a regular file"),
        ));
    }
    Ok(file.into_std())
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
/// were when the call began, and records writes as [`Effect`]s on staged
/// content for the commit.
#[derive(Debug)]
pub struct FsTransaction {
    data: Arc<DataDir>,
    access: Access,
    effects: Mutex<Vec<Effect>>,
    /// What the effects change in the usage ledger.
    usage: Mutex<Vec<UsageChange>>,
    /// Histories this call changed, and the length each will have.
    history_lens: Mutex<HashMap<Uuid, u64>>,
    /// Chats whose directories this call creates: empty until it commits.
    created: Mutex<HashSet<Uuid>>,
    /// The chat directory this call opened last (a call works in one chat):
    /// a call's lookups in it share one handle.
    chat_dir: Mutex<Option<(Uuid, Arc<ChatDir>)>>,
}

impl FsTransaction {
    /// Starts one call's chat storage.
    pub fn new(data: Arc<DataDir>, access: Access) -> Self {
        FsTransaction {
            data,
            access,
            effects: Mutex::default(),
            usage: Mutex::default(),
            history_lens: Mutex::default(),
            created: Mutex::default(),
            chat_dir: Mutex::default(),
        }
    }

    /// Whether this call creates the chat's directory (so it is not there yet).
    fn creates(&self, chat: &Chat) -> bool {
        lock(&self.created).contains(&chat.chat_id)
    }

    fn dir(&self, chat: &Chat) -> PortResult<Arc<ChatDir>> {
        let mut last = lock(&self.chat_dir);
        if let Some((chat_id, dir)) = &*last
            && *chat_id == chat.chat_id
        {
            return Ok(dir.clone());
        }
        let dir = self
            .data
            .chat_dir(chat.workspace_id, chat.chat_id)
            .map_err(|e| about("chat directory", e))?;
        Ok(last.insert((chat.chat_id, Arc::new(dir))).1.clone())
    }

    /// Records `effect`, and what it changes in the chat's usage.
    fn record(&self, effect: Effect, usage: UsageChange) -> PortResult<()> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        lock(&self.effects).push(effect);
        lock(&self.usage).push(usage);
        Ok(())
    }

    /// Records moving staged content to `name` in the chat's directory, in
    /// place of `replaced` bytes.
    fn install(
        &self,
        chat: &Chat,
        name: &str,
        content: &StagedContent,
        replaced: u64,
    ) -> PortResult<()> {
        // The chat directory must exist now, or be made by this call; the
        // rename happens after commit.
        if !self.creates(chat) {
            self.dir(chat)?;
        }
        self.record(
            Effect::Install {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
                name: name.to_owned(),
                staged: content.file_name().to_owned(),
            },
            grow(
                chat,
                signed_bytes(content.size_bytes()) - signed_bytes(replaced),
            ),
        )
    }

    /// The effects recorded so far (their staged files are durable: staging
    /// syncs each file and its name as it finishes).
    pub fn prepare(&self) -> Vec<Effect> {
        lock(&self.effects).clone()
    }

    /// What the effects recorded so far change in the usage ledger.
    pub fn usage_changes(&self) -> Vec<UsageChange> {
        lock(&self.usage).clone()
    }

    /// Drops every staged file this call stored.
    pub fn discard(&self) {
        for effect in lock(&self.effects).drain(..) {
            if let Effect::Install { staged, .. } | Effect::Append { staged, .. } = effect {
                self.data.remove_staged(&staged);
            }
        }
    }

    /// Opens a file of the chat's directory to serve. Anything but a
    /// regular file there (nothing, a directory, a symlink, a FIFO) means a
    /// sandbox changed it: `chat_file_changed`, without blocking.
    fn open(&self, chat: &Chat, name: &str) -> PortResult<Content> {
        let file = open_regular(&self.dir(chat)?.0, name, false).map_err(|e| {
            let changed = matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::InvalidData | io::ErrorKind::IsADirectory
            ) || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
            if changed {
                PortError::chat_file_changed(name, format!("{name}: {e}"))
            } else {
                about(name, e)
            }
        })?;
        Content::new(file).map_err(|e| about(name, e))
    }

    /// The size of the regular file at `name` in the chat's directory as it
    /// is now, or `None`: what a write there replaces. Anything else at the
    /// name is moved aside, not replaced, and usage still counts it.
    fn size(&self, chat: &Chat, name: &str) -> PortResult<Option<u64>> {
        if self.creates(chat) {
            return Ok(None);
        }
        regular_file_size(&self.dir(chat)?.0, name).map_err(|e| about(name, e))
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
        lock(&self.created).insert(chat.chat_id);
        self.record(
            Effect::CreateChat {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
            },
            UsageChange::Set {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
                bytes: 0,
            },
        )
    }

    fn history_size(&self, chat: &Chat) -> PortResult<u64> {
        if let Some(&len) = lock(&self.history_lens).get(&chat.chat_id) {
            return Ok(len);
        }
        Ok(self.size(chat, HISTORY_FILE_NAME)?.unwrap_or(0))
    }

    fn open_history(&self, chat: &Chat) -> PortResult<Content> {
        self.open(chat, HISTORY_FILE_NAME)
    }

    fn write_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()> {
        let replaced = self.history_size(chat)?;
        self.install(chat, HISTORY_FILE_NAME, content, replaced)?;
        lock(&self.history_lens).insert(chat.chat_id, content.size_bytes());
        Ok(())
    }

    fn append_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()> {
        // In place after commit, at the length the history has now (or will
        // have after this call's earlier changes): O(message), and a torn
        // append is cut back to `at` when the journal replays it. Only a
        // regular file is appended to; anything else fails the call now.
        let pending = lock(&self.history_lens).get(&chat.chat_id).copied();
        let at = match pending {
            Some(len) => len,
            None => self.open(chat, HISTORY_FILE_NAME)?.len(),
        };
        self.record(
            Effect::Append {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
                staged: content.file_name().to_owned(),
                at,
            },
            grow(chat, signed_bytes(content.size_bytes())),
        )?;
        lock(&self.history_lens).insert(chat.chat_id, at + content.size_bytes());
        Ok(())
    }

    fn delete_chat(&self, chat: &Chat) -> PortResult<()> {
        self.record(
            Effect::DeleteChat {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
            },
            UsageChange::Drop {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
            },
        )
    }

    fn attachment_size(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Option<u64>> {
        self.size(chat, name.as_str())
    }

    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &StagedContent,
    ) -> PortResult<()> {
        let replaced = self.size(chat, name.as_str())?.unwrap_or(0);
        self.install(chat, name.as_str(), content, replaced)
    }

    fn open_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Content> {
        self.open(chat, name.as_str())
    }

    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()> {
        let removed = self.size(chat, name.as_str())?.unwrap_or(0);
        self.record(
            Effect::Remove {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
                name: name.to_string(),
            },
            grow(chat, -signed_bytes(removed)),
        )
    }

    fn clear_attachments(&self, chat: &Chat) -> PortResult<()> {
        self.dir(chat)?;
        let history = self.history_size(chat)?;
        self.record(
            Effect::ClearAttachments {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
            },
            UsageChange::Set {
                workspace_id: chat.workspace_id,
                chat_id: chat.chat_id,
                bytes: history,
            },
        )
    }
}

/// The bytes of one directory entry: everything under it for a directory,
/// its size for a regular file, nothing for anything else or if it is gone.
fn entry_bytes(dir: &Dir, entry: &cap_std::fs::DirEntry) -> io::Result<u64> {
    let kind = entry.file_type()?;
    if kind.is_dir() {
        match tree::open_subdir(dir, &entry.file_name()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            sub => tree::bytes_under(sub?),
        }
    } else if kind.is_file() {
        Ok(entry.metadata()?.len())
    } else {
        Ok(0)
    }
}

/// The chat grows by `bytes` (shrinks if negative).
fn grow(chat: &Chat, bytes: i64) -> UsageChange {
    UsageChange::Grow {
        workspace_id: chat.workspace_id,
        chat_id: chat.chat_id,
        bytes,
    }
}
