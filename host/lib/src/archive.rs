//! A workspace as one tar archive: exported through the policy's reads,
//! imported into a user's new or empty workspace in one unit of work.
//!
//! The archive holds `manifest.json` first (the workspace's, chats' and
//! files' metadata), then each chat's history at `chats/<chat-id>/history.md`
//! and each attachment at `chats/<chat-id>/files/<file-id>`: entry names
//! are built from ids only, so no stored name ever becomes a path, and an
//! importer accepts exactly those names and nothing else. Content streams
//! in both directions in bounded memory.

use crate::error::Error;
use crate::model::{Chat, ChatFile, Timestamp, Workspace};
use crate::names::AttachmentName;
use crate::staging::{ContentKind, StageError, StagedContent};
use crate::store::{ChatStore, unavailable};
use crate::unit::{Access, Scope};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use uuid::Uuid;

/// What the manifest's `format` says.
const FORMAT: &str = "chatstore-workspace";
/// The manifest's version this chatstore writes and reads.
const VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
/// The largest manifest an import reads (about 200,000 files' metadata).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The archive's table of contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    workspace: ArchivedWorkspace,
    chats: Vec<ArchivedChat>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedWorkspace {
    workspace_id: Uuid,
    created_at: Stamp,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedChat {
    chat_id: Uuid,
    created_at: Stamp,
    files: Vec<ArchivedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedFile {
    file_id: Uuid,
    name: String,
    content_type: Option<String>,
    size_bytes: u64,
    sha256: Option<String>,
    created_at: Stamp,
}

/// A timestamp exactly as stored.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    seconds: i64,
    nanoseconds: u32,
}

impl From<Timestamp> for Stamp {
    fn from(t: Timestamp) -> Stamp {
        Stamp {
            seconds: t.timestamp(),
            nanoseconds: t.timestamp_subsec_nanos(),
        }
    }
}

impl Stamp {
    fn timestamp(self) -> Result<Timestamp, Error> {
        crate::model::timestamp(self.seconds, self.nanoseconds)
            .ok_or_else(|| invalid("a timestamp must be a time, its nanoseconds below 1000000000"))
    }
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidArchive(why.into())
}

fn history_entry(chat_id: Uuid) -> String {
    format!("chats/{chat_id}/history.md")
}

fn file_entry(chat_id: Uuid, file_id: Uuid) -> String {
    format!("chats/{chat_id}/files/{file_id}")
}

/// What an export wrote or an import restored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// Chats.
    pub chats: usize,
    /// Attachments.
    pub files: usize,
    /// Bytes of histories and attachments.
    pub bytes: u64,
}

impl ChatStore {
    /// Writes the user's workspace to `out` as a tar archive: its chats,
    /// their histories and attachments, with every name, content type,
    /// digest and creation time. Each chat is read through the policy's own
    /// reads; writes made meanwhile may or may not be in it. An attachment
    /// a sandbox changed on disk is `chat_file_changed`.
    pub fn export_workspace(
        &self,
        user_id: Uuid,
        out: impl Write,
    ) -> Result<ArchiveSummary, Error> {
        let workspace = self.get_workspace(user_id)?;
        let mut manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            workspace: ArchivedWorkspace {
                workspace_id: workspace.workspace_id,
                created_at: workspace.created_at.into(),
            },
            chats: Vec::new(),
        };
        for chat in self.list_chats(user_id)? {
            let files = self.list_attachments(user_id, chat.chat_id)?;
            manifest.chats.push(ArchivedChat {
                chat_id: chat.chat_id,
                created_at: chat.created_at.into(),
                files: files
                    .into_iter()
                    .map(|f| ArchivedFile {
                        file_id: f.file_id,
                        name: f.name.to_string(),
                        content_type: f.content_type,
                        size_bytes: f.size_bytes,
                        sha256: f.sha256,
                        created_at: f.created_at.into(),
                    })
                    .collect(),
            });
        }
        let write_error = |e: std::io::Error| Error::unavailable("export", format!("writing: {e}"));
        let mut tar = tar::Builder::new(out);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::unavailable("export", e.to_string()))?;
        append(&mut tar, MANIFEST, json.len() as u64, 0, &json[..]).map_err(write_error)?;
        let mut summary = ArchiveSummary::default();
        for chat in &manifest.chats {
            let history = self.read_history(user_id, chat.chat_id)?;
            let (len, mtime) = (history.len(), chat.created_at.seconds);
            append(&mut tar, &history_entry(chat.chat_id), len, mtime, history)
                .map_err(write_error)?;
            summary.bytes += len;
            for file in &chat.files {
                let (_, content) = self.read_attachment(user_id, chat.chat_id, file.file_id)?;
                if content.len() != file.size_bytes {
                    return Err(Error::ChatFileChanged(file.name.clone()));
                }
                let entry = file_entry(chat.chat_id, file.file_id);
                append(
                    &mut tar,
                    &entry,
                    file.size_bytes,
                    file.created_at.seconds,
                    content,
                )
                .map_err(write_error)?;
                summary.bytes += file.size_bytes;
                summary.files += 1;
            }
            summary.chats += 1;
        }
        tar.into_inner()
            .and_then(|mut out| out.flush())
            .map_err(write_error)?;
        Ok(summary)
    }

    /// Restores an archive that [`export_workspace`](Self::export_workspace)
    /// wrote into the user's workspace, which must be new or hold no chat
    /// (`workspace_not_empty`). Every chat and file gets a new id and keeps
    /// its name, content type, digest and creation time. The archive is
    /// read to its end and every entry checked (names built from ids only,
    /// regular files only, sizes and digests as the manifest says, every
    /// name by the attachment-name rules) and staged before anything is
    /// written; then it is stored in one unit of work, within the
    /// workspace's quota. A truncated, corrupt or hostile archive is
    /// `invalid_archive` and changes nothing.
    pub fn import_workspace(
        &self,
        user_id: Uuid,
        archive: impl Read,
    ) -> Result<ArchiveSummary, Error> {
        let mut staged = Staged::new(self);
        let result = self.import_staged(user_id, archive, &mut staged);
        if result.is_err() {
            staged.discard();
        }
        result
    }

    fn import_staged(
        &self,
        user_id: Uuid,
        archive: impl Read,
        staged: &mut Staged<'_>,
    ) -> Result<ArchiveSummary, Error> {
        let mut archive = tar::Archive::new(archive);
        let mut entries = archive.entries().map_err(corrupt)?;
        let manifest = match entries.next() {
            Some(entry) => read_manifest(entry.map_err(corrupt)?)?,
            None => return Err(invalid("the archive is empty")),
        };
        let expected = expected_entries(&manifest)?;
        let declared: u64 = expected.values().filter_map(|e| e.size_bytes).sum();
        let quota = self.room_for_import(user_id)?;
        if declared > quota {
            return Err(Error::WorkspaceQuotaExceeded(
                manifest.workspace.workspace_id,
            ));
        }
        let mut bytes = 0u64;
        for entry in entries {
            let entry = entry.map_err(corrupt)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(invalid(format!(
                    "{}: only regular files belong in an archive",
                    String::from_utf8_lossy(&entry.path_bytes())
                )));
            }
            let name = std::str::from_utf8(&entry.path_bytes())
                .map_err(|_| invalid("an entry's name is not UTF-8"))?
                .to_owned();
            let Some(expect) = expected.get(name.as_str()) else {
                return Err(invalid(format!("{name:?} is not an entry of this archive")));
            };
            if staged.contents.contains_key(&name) {
                return Err(invalid(format!("{name:?} appears twice")));
            }
            let size = entry.header().size().map_err(corrupt)?;
            let limit = match expect.size_bytes {
                Some(declared) if declared != size => {
                    return Err(invalid(format!(
                        "{name:?} holds {size} bytes, not the {declared} its manifest says"
                    )));
                }
                Some(declared) => declared,
                None => quota.saturating_sub(bytes),
            };
            if size > limit {
                return Err(Error::WorkspaceQuotaExceeded(
                    manifest.workspace.workspace_id,
                ));
            }
            let content = self
                .staging()
                .stage(entry, expect.kind, limit)
                .map_err(|e| match e {
                    StageError::NotText => invalid(format!("{name:?} is not UTF-8 text")),
                    StageError::Read(e) => corrupt(e),
                    e => self.staging_failed(user_id, e),
                })?;
            let content = staged.keep(name.clone(), content);
            if content.size_bytes() != size {
                return Err(invalid(format!("{name:?} ends early")));
            }
            if let Some(digest) = &expect.sha256
                && digest != content.sha256()
            {
                return Err(invalid(format!("{name:?} does not match its SHA-256")));
            }
            bytes += size;
        }
        if let Some(missing) = expected
            .keys()
            .find(|name| !staged.contents.contains_key(*name))
        {
            return Err(invalid(format!("the archive ends before {missing:?}")));
        }
        self.store_import(user_id, &manifest, staged, bytes)
    }

    /// The most an import may bring: the quota of the user's workspace (or
    /// the configured one, for a new workspace) less what it holds.
    fn room_for_import(&self, user_id: Uuid) -> Result<u64, Error> {
        self.with_unit(Access::Read, Scope::User(user_id), |unit| {
            let ports = unit.ports();
            let existing = ports
                .workspaces
                .get_by_user_id(user_id)
                .map_err(unavailable("workspace-repository"))?;
            // A workspace not yet made has what a new one would.
            let workspace = existing.unwrap_or(Workspace {
                workspace_id: Uuid::now_v7(),
                user_id,
                created_at: Timestamp::default(),
            });
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            Ok(usage.quota_bytes.saturating_sub(usage.used_bytes))
        })
    }

    /// Stores the checked, staged archive in one unit of work.
    fn store_import(
        &self,
        user_id: Uuid,
        manifest: &Manifest,
        staged: &Staged<'_>,
        bytes: u64,
    ) -> Result<ArchiveSummary, Error> {
        self.with_unit(Access::Write, Scope::User(user_id), |unit| {
            let ports = unit.ports();
            let repository = unavailable("workspace-repository");
            let workspace = match ports
                .workspaces
                .get_by_user_id(user_id)
                .map_err(&repository)?
            {
                Some(workspace) => {
                    let chats = ports.chats.list_by_workspace_id(workspace.workspace_id);
                    if !chats.map_err(unavailable("chat-repository"))?.is_empty() {
                        return Err(Error::WorkspaceNotEmpty(user_id));
                    }
                    workspace
                }
                None => {
                    let workspace = Workspace {
                        workspace_id: ports.ids.new_id().map_err(unavailable("id-generator"))?,
                        user_id,
                        created_at: manifest.workspace.created_at.timestamp()?,
                    };
                    ports.workspaces.save(&workspace).map_err(&repository)?;
                    workspace
                }
            };
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            if usage.used_bytes.saturating_add(bytes) > usage.quota_bytes {
                return Err(Error::WorkspaceQuotaExceeded(workspace.workspace_id));
            }
            let storage = unavailable("chat-storage");
            let mut summary = ArchiveSummary {
                bytes,
                ..ArchiveSummary::default()
            };
            for archived in &manifest.chats {
                let chat = Chat {
                    chat_id: ports.ids.new_id().map_err(unavailable("id-generator"))?,
                    workspace_id: workspace.workspace_id,
                    created_at: archived.created_at.timestamp()?,
                };
                ports
                    .chats
                    .save(&chat)
                    .map_err(unavailable("chat-repository"))?;
                ports.storage.ensure_chat(&chat).map_err(&storage)?;
                let history = staged.get(&history_entry(archived.chat_id))?;
                ports
                    .storage
                    .write_history(&chat, history)
                    .map_err(&storage)?;
                for file in &archived.files {
                    let content = staged.get(&file_entry(archived.chat_id, file.file_id))?;
                    let name = AttachmentName::new(file.name.as_str())
                        .map_err(|e| invalid(format!("{:?}: {e}", file.name)))?;
                    ports
                        .storage
                        .write_attachment(&chat, &name, content)
                        .map_err(&storage)?;
                    ports
                        .files
                        .save(&ChatFile {
                            file_id: ports.ids.new_id().map_err(unavailable("id-generator"))?,
                            chat_id: chat.chat_id,
                            name,
                            content_type: file.content_type.clone(),
                            size_bytes: content.size_bytes(),
                            sha256: Some(content.sha256().to_owned()),
                            created_at: file.created_at.timestamp()?,
                        })
                        .map_err(unavailable("chat-file-repository"))?;
                    summary.files += 1;
                }
                summary.chats += 1;
            }
            Ok(summary)
        })
    }
}

fn corrupt(e: std::io::Error) -> Error {
    invalid(format!("the archive is truncated or corrupt: {e}"))
}

/// Appends one regular file of `len` bytes from `content`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    mtime: i64,
    content: impl Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(len);
    header.set_mode(0o644);
    header.set_mtime(mtime.max(0) as u64);
    tar.append_data(&mut header, name, content.take(len))
}

fn read_manifest(mut entry: tar::Entry<'_, impl Read>) -> Result<Manifest, Error> {
    if entry.header().entry_type() != tar::EntryType::Regular
        || &*entry.path_bytes() != MANIFEST.as_bytes()
    {
        return Err(invalid("the archive does not begin with manifest.json"));
    }
    let size = entry.header().size().map_err(corrupt)?;
    if size > MAX_MANIFEST_BYTES {
        return Err(invalid("manifest.json is too large"));
    }
    let mut json = Vec::with_capacity(size as usize);
    (&mut entry)
        .take(size)
        .read_to_end(&mut json)
        .map_err(corrupt)?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(invalid(format!(
            "manifest.json is {} version {}, not {FORMAT} version {VERSION}",
            manifest.format, manifest.version
        )));
    }
    Ok(manifest)
}

/// An entry the manifest calls for.
struct Expected {
    kind: ContentKind,
    /// An attachment's size (a history's is its entry's).
    size_bytes: Option<u64>,
    sha256: Option<String>,
}

/// Every entry the manifest calls for, by name; checks the manifest on the
/// way (unique ids, valid names unique in their chat, timestamps, digests).
fn expected_entries(manifest: &Manifest) -> Result<HashMap<String, Expected>, Error> {
    manifest.workspace.created_at.timestamp()?;
    let mut expected = HashMap::new();
    let mut ids = HashSet::new();
    for chat in &manifest.chats {
        chat.created_at.timestamp()?;
        if !ids.insert(chat.chat_id) {
            return Err(invalid(format!("chat {} appears twice", chat.chat_id)));
        }
        expected.insert(
            history_entry(chat.chat_id),
            Expected {
                kind: ContentKind::Text,
                size_bytes: None,
                sha256: None,
            },
        );
        let mut names = HashSet::new();
        for file in &chat.files {
            file.created_at.timestamp()?;
            let name = AttachmentName::new(file.name.as_str())
                .map_err(|e| invalid(format!("{:?}: {e}", file.name)))?;
            if !names.insert(name.to_string()) {
                return Err(invalid(format!(
                    "{name} appears twice in chat {}",
                    chat.chat_id
                )));
            }
            if !ids.insert(file.file_id) {
                return Err(invalid(format!("file {} appears twice", file.file_id)));
            }
            if let Some(digest) = &file.sha256
                && (digest.len() != 64
                    || !digest
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            {
                return Err(invalid(format!(
                    "{name}: a SHA-256 is 64 lowercase hex digits"
                )));
            }
            expected.insert(
                file_entry(chat.chat_id, file.file_id),
                Expected {
                    kind: ContentKind::Bytes,
                    size_bytes: Some(file.size_bytes),
                    sha256: file.sha256.clone(),
                },
            );
        }
    }
    Ok(expected)
}

/// Content staged for an import, by entry name; discarded unless stored.
struct Staged<'a> {
    store: &'a ChatStore,
    contents: HashMap<String, StagedContent>,
}

impl<'a> Staged<'a> {
    fn new(store: &'a ChatStore) -> Staged<'a> {
        Staged {
            store,
            contents: HashMap::new(),
        }
    }

    fn keep(&mut self, name: String, content: StagedContent) -> &StagedContent {
        self.contents.entry(name).or_insert(content)
    }

    fn get(&self, name: &str) -> Result<&StagedContent, Error> {
        self.contents
            .get(name)
            .ok_or_else(|| invalid(format!("the archive ends before {name:?}")))
    }

    fn discard(&self) {
        let staging = self.store.staging();
        for content in self.contents.values() {
            staging.discard(content);
        }
    }
}
