//! Chat directories on the local filesystem.
//!
//! Layout under the data directory:
//!
//! ```text
//! workspaces/<workspace-id>/chats/<chat-id>/history.md
//! workspaces/<workspace-id>/chats/<chat-id>/<attachment name>
//! staging/            host-private: files being written, chats being deleted
//! ```
//!
//! Every access goes through a cap-std [`Dir`]: paths are resolved beneath
//! the chat directory (`openat2` with `RESOLVE_BENEATH` on Linux), so a
//! symlink a sandbox planted there cannot lead a read or a write outside it.
//! Paths are made only from [`Uuid`]s and [`AttachmentName`]s, which cannot
//! hold a separator. Whole-file writes go to `staging/` first and are
//! renamed into place, so a reader sees the old bytes or the new, never a
//! torn file.

use crate::error::{PortError, PortResult};
use crate::model::{Chat, Workspace, WorkspaceUsage};
use crate::names::{AttachmentName, HISTORY_FILE_NAME};
use crate::ports::{ChatStorage, StorageUsage};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

const WORKSPACES: &str = "workspaces";
const STAGING: &str = "staging";

/// An opened data directory, shared by the chat storage and the usage reader.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    root: Dir,
    staging: Dir,
}

impl DataDir {
    /// Opens the data directory at `path`, creating it and its layout if missing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Arc<DataDir>> {
        let path = path.as_ref().to_path_buf();
        // The one place the adapter uses ambient authority: opening the root.
        Dir::create_ambient_dir_all(&path, ambient_authority())?;
        let root = Dir::open_ambient_dir(&path, ambient_authority())?;
        root.create_dir_all(WORKSPACES)?;
        root.create_dir_all(STAGING)?;
        let staging = root.open_dir(STAGING)?;
        Ok(Arc::new(DataDir {
            path,
            root,
            staging,
        }))
    }

    /// Where the data directory is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chat directory's path relative to the root, built from ids only.
    fn chat_path(chat: &Chat) -> String {
        format!("{WORKSPACES}/{}/chats/{}", chat.workspace_id, chat.chat_id)
    }

    fn chat_dir(&self, chat: &Chat) -> io::Result<Dir> {
        self.root.open_dir(Self::chat_path(chat))
    }

    /// Writes `content` to a fresh staging file and renames it to `name` in
    /// `dir`: the old file or the new one, never a mix.
    fn replace_file(&self, dir: &Dir, name: &str, content: &[u8]) -> io::Result<()> {
        let staged = format!("write-{}", Uuid::now_v7());
        let result = (|| {
            let mut file = self
                .staging
                .open_with(&staged, OpenOptions::new().write(true).create_new(true))?;
            file.write_all(content)?;
            file.sync_all()?;
            self.staging.rename(&staged, dir, name)?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = self.staging.remove_file(&staged);
        }
        result
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

/// The chat storage port on a [`DataDir`].
#[derive(Debug, Clone)]
pub struct FsChatStorage {
    data: Arc<DataDir>,
}

impl FsChatStorage {
    /// Chat storage in this data directory.
    pub fn new(data: Arc<DataDir>) -> Self {
        FsChatStorage { data }
    }

    fn dir(&self, chat: &Chat) -> PortResult<Dir> {
        self.data
            .chat_dir(chat)
            .map_err(|e| about("chat directory", e))
    }
}

impl ChatStorage for FsChatStorage {
    fn ensure_chat(&self, chat: &Chat) -> PortResult<()> {
        let path = DataDir::chat_path(chat);
        self.data
            .root
            .create_dir_all(&path)
            .map_err(|e| about("chat directory", e))?;
        let dir = self.dir(chat)?;
        if !dir.exists(HISTORY_FILE_NAME) {
            self.data
                .replace_file(&dir, HISTORY_FILE_NAME, b"")
                .map_err(|e| about(HISTORY_FILE_NAME, e))?;
        }
        Ok(())
    }

    fn read_history(&self, chat: &Chat) -> PortResult<String> {
        let bytes = self
            .dir(chat)?
            .read(HISTORY_FILE_NAME)
            .map_err(|e| about(HISTORY_FILE_NAME, e))?;
        String::from_utf8(bytes).map_err(|_| PortError::new("history.md is not valid UTF-8"))
    }

    fn write_history(&self, chat: &Chat, content: &str) -> PortResult<()> {
        let dir = self.dir(chat)?;
        self.data
            .replace_file(&dir, HISTORY_FILE_NAME, content.as_bytes())
            .map_err(|e| about(HISTORY_FILE_NAME, e))
    }

    fn append_history(&self, chat: &Chat, content: &str) -> PortResult<()> {
        let dir = self.dir(chat)?;
        let append = || -> io::Result<()> {
            let mut file = dir.open_with(
                HISTORY_FILE_NAME,
                OpenOptions::new().append(true).create(true),
            )?;
            file.write_all(content.as_bytes())?;
            file.sync_all()
        };
        append().map_err(|e| about(HISTORY_FILE_NAME, e))
    }

    fn delete_chat(&self, chat: &Chat) -> PortResult<()> {
        // Rename out of the workspace first, so the chat disappears at once
        // and a crash mid-way leaves only host-private garbage in staging.
        let doomed = format!("delete-{}", Uuid::now_v7());
        let moved = self
            .data
            .root
            .rename(DataDir::chat_path(chat), &self.data.staging, &doomed);
        match moved {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(about("chat directory", e)),
            Ok(()) => {}
        }
        self.data
            .staging
            .remove_dir_all(&doomed)
            .map_err(|e| about("chat directory", e))
    }

    fn write_attachment(
        &self,
        chat: &Chat,
        name: &AttachmentName,
        content: &[u8],
    ) -> PortResult<u64> {
        let dir = self.dir(chat)?;
        self.data
            .replace_file(&dir, name.as_str(), content)
            .map_err(|e| about(name.as_str(), e))?;
        Ok(content.len() as u64)
    }

    fn read_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Vec<u8>> {
        self.dir(chat)?
            .read(name.as_str())
            .map_err(|e| about(name.as_str(), e))
    }

    fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()> {
        ignore_missing(self.dir(chat)?.remove_file(name.as_str()))
            .map_err(|e| about(name.as_str(), e))
    }

    fn clear_attachments(&self, chat: &Chat) -> PortResult<()> {
        let dir = self.dir(chat)?;
        let clear = || -> io::Result<()> {
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
        };
        clear().map_err(|e| about("attachments", e))
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
    fn get_workspace_usage(
        &self,
        workspace: &Workspace,
        chats: &[Chat],
    ) -> PortResult<WorkspaceUsage> {
        let mut used_bytes = 0u64;
        // Only the workspace's own chats count, whatever list the guest passed.
        for chat in chats
            .iter()
            .filter(|c| c.workspace_id == workspace.workspace_id)
        {
            let bytes = match self.data.chat_dir(chat) {
                Ok(dir) => Self::bytes_under(dir),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(e),
            };
            used_bytes = used_bytes.saturating_add(bytes.map_err(|e| about("usage", e))?);
        }
        Ok(WorkspaceUsage {
            workspace_id: workspace.workspace_id,
            used_bytes,
            quota_bytes: self.quota_bytes,
        })
    }
}
