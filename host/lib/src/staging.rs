//! Content on its way in: written into a host-private staging area, synced,
//! sized and hashed as it streams, in bounded memory, before any use case
//! runs. A use case then stores it by its token, and the unit of work moves
//! it into the chat directory when the call commits; content no call stored
//! is removed.

use crate::group_sync::GroupSync;
use crate::ids::parse_canonical;
use cap_std::fs::{Dir, File, OpenOptions};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::Arc;
use uuid::Uuid;

/// How much of the content is held in memory at a time while staging.
const CHUNK: usize = 256 << 10;

/// How much staged content may wait in the page cache before its writeback
/// is started: the disk works while the rest streams in and is hashed, so
/// the final sync has little left to wait for.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Past this size, hashing (as slow as the disk: about 1.4 GB/s) moves to a
/// thread of its own, so that it overlaps reading and writing.
const PIPELINE_AT: u64 = 4 << 20;

/// Pieces waiting for the writing thread: bounds the memory staging holds.
const PIPELINE_DEPTH: usize = 4;

/// The prefix of every staged file's name.
const PREFIX: &str = "write-";

/// Content the host staged for a call: a synced file in the staging area,
/// its size, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedContent {
    name: String,
    size_bytes: u64,
    sha256: String,
}

impl StagedContent {
    /// Its size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Its SHA-256, 64 lowercase hex digits.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The staged file's name inside the staging area.
    pub fn file_name(&self) -> &str {
        &self.name
    }
}

/// Why content could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The content is longer than the limit it was staged with.
    #[error("the content is larger than {limit} bytes")]
    TooLarge {
        /// The most it could have been.
        limit: u64,
    },
    /// Content staged as text is not UTF-8.
    #[error("the content is not UTF-8 text")]
    NotText,
    /// Reading the content failed (the caller's source, not the store).
    #[error("reading the content: {0}")]
    Read(io::Error),
    /// Writing the staged file failed.
    #[error("staging: {0}")]
    Write(io::Error),
}

/// What content must be: any bytes, or UTF-8 text (a history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    /// Any bytes: an attachment.
    Bytes,
    /// UTF-8 text: a history or a message appended to one.
    Text,
}

/// The staging area of a data directory (`staging/`).
#[derive(Debug)]
pub struct Staging {
    dir: Dir,
    /// Syncs of the directory, shared by content finishing together.
    names: GroupSync,
}

impl Staging {
    /// The staging area in `dir`.
    pub fn new(dir: Dir) -> Arc<Staging> {
        Arc::new(Staging {
            dir,
            names: GroupSync::default(),
        })
    }

    /// The staging area at `path`, created if missing (for adapters of
    /// your own; a data directory has its own).
    pub fn open(path: impl AsRef<std::path::Path>) -> io::Result<Arc<Staging>> {
        let path = path.as_ref();
        Dir::create_ambient_dir_all(path, cap_std::ambient_authority())?;
        Ok(Staging::new(Dir::open_ambient_dir(
            path,
            cap_std::ambient_authority(),
        )?))
    }

    /// The directory itself, for the unit of work that moves staged files
    /// out of it and for recovery.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Starts staging content of `kind`, refused once it passes `limit` bytes.
    pub fn begin(
        self: &Arc<Self>,
        kind: ContentKind,
        limit: u64,
    ) -> Result<StagingWriter, StageError> {
        let name = format!("{PREFIX}{}", Uuid::now_v7());
        let file = self
            .dir
            .open_with(&name, OpenOptions::new().write(true).create_new(true))
            .map_err(StageError::Write)?;
        Ok(StagingWriter {
            staging: self.clone(),
            name: Some(name),
            file: Writeback::new(file),
            hash: Some(Hasher::Inline(Sha256::new())),
            spare: Vec::new(),
            size: 0,
            limit,
            text: (kind == ContentKind::Text).then(Utf8Check::default),
        })
    }

    /// Stages everything `content` gives, up to `limit` bytes.
    pub fn stage(
        self: &Arc<Self>,
        mut content: impl Read,
        kind: ContentKind,
        limit: u64,
    ) -> Result<StagedContent, StageError> {
        let mut writer = self.begin(kind, limit)?;
        loop {
            let mut buffer = writer.buffer();
            let n = match content.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StageError::Read(e)),
            };
            buffer.truncate(n);
            writer.push_owned(buffer)?;
        }
        writer.finish()
    }

    /// Removes a staged file that no call stored.
    pub fn discard(&self, content: &StagedContent) {
        let _ = self.dir.remove_file(&content.name);
    }

    /// Whether `name` is a staged file's name (as journals must give it).
    pub(crate) fn is_staged_name(name: &str) -> bool {
        name.strip_prefix(PREFIX)
            .is_some_and(|id| parse_canonical(id).is_some())
    }
}

/// Lowers the calling thread's CPU priority (nice 10) for the rest of its
/// life: large content then takes the CPU that other requests leave it,
/// rather than a share of theirs. Only for a thread that ends with the
/// staging: without privilege, a priority cannot be raised again.
pub fn bulk_thread() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// Content being staged; dropped unfinished, its file is removed.
#[derive(Debug)]
pub struct StagingWriter {
    staging: Arc<Staging>,
    name: Option<String>,
    file: Writeback,
    hash: Option<Hasher>,
    /// A buffer to take the next piece, when hashing is inline.
    spare: Vec<u8>,
    size: u64,
    limit: u64,
    text: Option<Utf8Check>,
}

/// The staged file, with its writeback started as it grows.
#[derive(Debug)]
struct Writeback {
    file: File,
    written: u64,
    /// Where the writeback started so far ends.
    started: u64,
}

impl Writeback {
    fn new(file: File) -> Writeback {
        Writeback {
            file,
            written: 0,
            started: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            // Starts writing these pages back without waiting (and drops
            // them from the cache once written: staged content is not read
            // again soon). Only a hint: the final sync is what counts.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.started,
                std::num::NonZeroU64::new(self.written - self.started),
                rustix::fs::Advice::DontNeed,
            );
            self.started = self.written;
        }
        Ok(())
    }
}

/// A piece of content on its way to the hasher: a buffer staging may use
/// again, or bytes shared with the caller (an HTTP body's frames).
enum Piece {
    Buffer(Vec<u8>),
    Shared(Box<dyn AsRef<[u8]> + Send>),
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Piece({} bytes)", self.bytes().len())
    }
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Buffer(buffer) => buffer,
            Piece::Shared(shared) => (**shared).as_ref(),
        }
    }
}

/// The SHA-256 on its way: computed by the caller, or, for large content,
/// by a thread of its own while the caller reads and writes.
#[derive(Debug)]
enum Hasher {
    Inline(Sha256),
    Pipelined {
        pieces: std::sync::mpsc::SyncSender<Piece>,
        /// Buffers the hasher is done with, to take the next pieces.
        hashed: std::sync::mpsc::Receiver<Vec<u8>>,
        thread: std::thread::JoinHandle<Sha256>,
    },
}

impl Hasher {
    /// Moves hashing to its own thread.
    fn pipelined(mut hash: Sha256) -> Hasher {
        let (pieces, arriving) = std::sync::mpsc::sync_channel::<Piece>(PIPELINE_DEPTH);
        let (done, hashed) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 2);
        let thread = std::thread::spawn(move || {
            bulk_thread();
            for piece in arriving {
                hash.update(piece.bytes());
                if let Piece::Buffer(buffer) = piece {
                    let _ = done.try_send(buffer);
                }
            }
            hash
        });
        Hasher::Pipelined {
            pieces,
            hashed,
            thread,
        }
    }

    /// The digest, in lowercase hex, once every piece is hashed.
    fn finish(self) -> io::Result<String> {
        let hash = match self {
            Hasher::Inline(hash) => hash,
            Hasher::Pipelined { pieces, thread, .. } => {
                drop(pieces);
                thread
                    .join()
                    .map_err(|_| io::Error::other("the staging hasher panicked"))?
            }
        };
        Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl StagingWriter {
    /// Adds the next bytes of the content.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), StageError> {
        let mut piece = self.recycled();
        piece.extend_from_slice(bytes);
        self.push_owned(piece)
    }

    /// An empty buffer: one the hasher is done with, when there is one.
    fn recycled(&mut self) -> Vec<u8> {
        let mut buffer = match &self.hash {
            Some(Hasher::Pipelined { hashed, .. }) => hashed.try_recv().unwrap_or_default(),
            _ => std::mem::take(&mut self.spare),
        };
        buffer.clear();
        buffer
    }

    /// A buffer of `CHUNK` bytes to read the next piece into.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = self.recycled();
        buffer.resize(CHUNK, 0);
        buffer
    }

    /// Adds the next bytes of the content, handing over their buffer.
    pub fn push_owned(&mut self, piece: Vec<u8>) -> Result<(), StageError> {
        self.add(Piece::Buffer(piece))
    }

    /// Adds the next bytes of the content, shared with the caller (no copy
    /// is made of them).
    pub fn push_shared(
        &mut self,
        piece: impl AsRef<[u8]> + Send + 'static,
    ) -> Result<(), StageError> {
        self.add(Piece::Shared(Box::new(piece)))
    }

    fn add(&mut self, piece: Piece) -> Result<(), StageError> {
        let bytes = piece.bytes();
        let size = self.size.saturating_add(bytes.len() as u64);
        if size > self.limit {
            return Err(StageError::TooLarge { limit: self.limit });
        }
        if let Some(text) = &mut self.text {
            text.push(bytes)?;
        }
        self.file.write(bytes).map_err(StageError::Write)?;
        self.size = size;
        if size > PIPELINE_AT
            && let Some(Hasher::Inline(hash)) = &mut self.hash
        {
            let hash = std::mem::take(hash);
            self.hash = Some(Hasher::pipelined(hash));
        }
        match &mut self.hash {
            Some(Hasher::Inline(hash)) => {
                hash.update(piece.bytes());
                if let Piece::Buffer(buffer) = piece {
                    self.spare = buffer;
                }
                Ok(())
            }
            Some(Hasher::Pipelined { pieces, .. }) => pieces
                .send(piece)
                .map_err(|_| StageError::Write(io::Error::other("the staging hasher stopped"))),
            None => Err(StageError::Write(io::Error::other("staging has ended"))),
        }
    }

    /// The bytes staged so far.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Ends the content: syncs the file and its name, and gives its size and digest.
    pub fn finish(mut self) -> Result<StagedContent, StageError> {
        if let Some(text) = &self.text {
            text.finish()?;
        }
        let hash = self
            .hash
            .take()
            .ok_or_else(|| StageError::Write(io::Error::other("staging has ended")))?;
        let sha256 = hash.finish().map_err(StageError::Write)?;
        self.file.file.sync_all().map_err(StageError::Write)?;
        // Its name too, before any journal can refer to it: here, outside
        // any unit of work, in one sync with whatever finishes beside it.
        let dir = &self.staging.dir;
        (self.staging.names)
            .sync(|| dir.open(".").and_then(|d| d.sync_all()))
            .map_err(StageError::Write)?;
        Ok(StagedContent {
            name: self.name.take().unwrap_or_default(),
            size_bytes: self.size,
            sha256,
        })
    }
}

impl Drop for StagingWriter {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self.staging.dir.remove_file(name);
        }
    }
}

/// Checks that bytes arriving in pieces are UTF-8, holding at most the three
/// bytes of a character cut between two pieces.
#[derive(Debug, Default)]
struct Utf8Check {
    pending: Vec<u8>,
}

impl Utf8Check {
    fn push(&mut self, bytes: &[u8]) -> Result<(), StageError> {
        let mut rest = bytes;
        if let Some(&lead) = self.pending.first() {
            // Complete the character cut at the end of the last piece first.
            let need = char_len(lead) - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if take < need {
                return Ok(());
            }
            std::str::from_utf8(&self.pending).map_err(|_| StageError::NotText)?;
            self.pending.clear();
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(StageError::NotText),
            Err(e) => {
                // A valid start of a character that the next piece completes.
                self.pending.extend_from_slice(&rest[e.valid_up_to()..]);
                Ok(())
            }
        }
    }

    fn finish(&self) -> Result<(), StageError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(StageError::NotText)
        }
    }
}

/// The length of the UTF-8 character a lead byte starts (a valid lead byte:
/// `from_utf8` left it pending).
fn char_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    fn staging() -> (tempfile::TempDir, Arc<Staging>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        (tmp, Staging::new(dir))
    }

    fn files(tmp: &tempfile::TempDir) -> usize {
        std::fs::read_dir(tmp.path()).unwrap().count()
    }

    #[test]
    fn staged_content_has_its_size_and_sha256() {
        let (tmp, staging) = staging();
        let staged = staging.stage(&b"abc"[..], ContentKind::Bytes, 10).unwrap();
        assert_eq!(staged.size_bytes(), 3);
        assert_eq!(
            staged.sha256(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            std::fs::read(tmp.path().join(staged.file_name())).unwrap(),
            b"abc"
        );
    }

    #[test]
    fn content_past_the_limit_is_refused_and_leaves_nothing() {
        let (tmp, staging) = staging();
        let refused = staging.stage(&b"abcd"[..], ContentKind::Bytes, 3);
        assert!(matches!(refused, Err(StageError::TooLarge { limit: 3 })));
        assert_eq!(files(&tmp), 0);
        let exact = staging.stage(&b"abc"[..], ContentKind::Bytes, 3).unwrap();
        assert_eq!(exact.size_bytes(), 3);
    }

    #[test]
    fn text_is_checked_across_pieces() {
        let (tmp, staging) = staging();
        let text = "héllo wörld — ✓ 𝄞".as_bytes();
        // Every way of cutting the text in two and three pieces.
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut w = staging.begin(ContentKind::Text, 1 << 10).unwrap();
                w.push(&text[..i]).unwrap();
                w.push(&text[i..j]).unwrap();
                w.push(&text[j..]).unwrap();
                staging.discard(&w.finish().unwrap());
            }
        }
        for bad in [&b"\xff"[..], b"ab\xc3", b"\xe2\x82", b"a\xc3(b"] {
            let mut w = staging.begin(ContentKind::Text, 1 << 10).unwrap();
            let refused = bad
                .iter()
                .try_for_each(|b| w.push(std::slice::from_ref(b)))
                .and_then(|()| w.finish().map(drop));
            assert!(matches!(refused, Err(StageError::NotText)), "{bad:?}");
        }
        assert_eq!(files(&tmp), 0);
    }

    #[test]
    fn large_content_is_hashed_by_its_own_thread_with_the_same_digest() {
        let (tmp, staging) = staging();
        let size = 3 * PIPELINE_AT + 12_345;
        let content = || std::io::Read::take(std::io::repeat(9), size);
        let staged = staging.stage(content(), ContentKind::Bytes, size).unwrap();
        let mut expected = Sha256::new();
        std::io::copy(&mut content(), &mut expected).unwrap();
        let hex: String = expected
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!((staged.size_bytes(), staged.sha256()), (size, hex.as_str()));
        let on_disk = std::fs::read(tmp.path().join(staged.file_name())).unwrap();
        assert!(on_disk.len() as u64 == size && on_disk.iter().all(|&b| b == 9));
        // One byte too many, found while the thread writes: nothing stays.
        staging.discard(&staged);
        let refused = staging.stage(content(), ContentKind::Bytes, size - 1);
        assert!(matches!(refused, Err(StageError::TooLarge { .. })));
        assert_eq!(files(&tmp), 0);
    }

    #[test]
    fn an_unfinished_staging_leaves_nothing() {
        let (tmp, staging) = staging();
        let mut w = staging.begin(ContentKind::Bytes, 100).unwrap();
        w.push(b"partial").unwrap();
        assert_eq!(files(&tmp), 1);
        drop(w);
        assert_eq!(files(&tmp), 0);
    }
}
