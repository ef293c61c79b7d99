//! Content on its way in: written into a host-private staging area, sized
//! and hashed as it streams, in bounded memory, and synced, before any use
//! case runs. A use case then stores it by its token, and the unit of work
//! moves it into the chat directory when the call commits; content no call
//! stored is removed.

use crate::group_sync::GroupSync;
use crate::ids::parse_canonical;
use cap_std::fs::{Dir, File, FileExt, OpenOptions};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// How much staged content may wait in the page cache before its writeback
/// is started: the disk works while the rest streams in, so the final sync
/// has little left to wait for.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// How much [`Staging::stage`] reads at a time.
const READ_AT_ONCE: usize = 256 << 10;

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
    /// Syncs of the directory, shared by everything that asks for one at
    /// the same time (content finishing, an append clearing its staged file).
    names: GroupSync,
    /// The directory opened for reading, once, for those syncs (`dir` may
    /// be an `O_PATH` handle, which cannot be synced).
    readable: OnceLock<File>,
}

impl Staging {
    /// The staging area in `dir`.
    pub fn new(dir: Dir) -> Arc<Staging> {
        Arc::new(Staging {
            dir,
            names: GroupSync::default(),
            readable: OnceLock::new(),
        })
    }

    /// Makes the names in the staging area durable, in one sync with
    /// whatever else asks at the same time: its directory is opened for
    /// reading at its first sync, and that handle kept.
    pub(crate) fn sync_names(&self) -> io::Result<()> {
        self.names.sync(|| {
            let readable = match self.readable.get() {
                Some(file) => file,
                None => {
                    let file = self.dir.open(".")?;
                    self.readable.get_or_init(|| file)
                }
            };
            readable.sync_all()
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
            file,
            hash: Sha256::new(),
            size: 0,
            written_back: 0,
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
        let mut piece = vec![0; READ_AT_ONCE];
        loop {
            match content.read(&mut piece) {
                Ok(0) => break,
                Ok(n) => writer.push(&piece[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StageError::Read(e)),
            }
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

/// Content being staged; dropped unfinished, its file is removed.
#[derive(Debug)]
pub struct StagingWriter {
    staging: Arc<Staging>,
    name: Option<String>,
    file: File,
    hash: Sha256,
    size: u64,
    /// Where the writeback started so far ends.
    written_back: u64,
    limit: u64,
    text: Option<Utf8Check>,
}

impl StagingWriter {
    /// Adds the next bytes of the content: checked against the limit (and
    /// as text, for text), hashed, and written.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), StageError> {
        let size = self.size.saturating_add(bytes.len() as u64);
        if size > self.limit {
            return Err(StageError::TooLarge { limit: self.limit });
        }
        if let Some(text) = &mut self.text {
            text.push(bytes)?;
        }
        self.hash.update(bytes);
        self.file
            .write_all_at(bytes, self.size)
            .map_err(StageError::Write)?;
        self.size = size;
        if size - self.written_back >= WRITEBACK_EVERY {
            // Starts writing these pages back without waiting (and drops
            // them from the cache once written: staged content is not read
            // again soon). Only a hint: the final sync is what counts.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.written_back,
                std::num::NonZeroU64::new(size - self.written_back),
                rustix::fs::Advice::DontNeed,
            );
            self.written_back = size;
        }
        Ok(())
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
        self.file.sync_all().map_err(StageError::Write)?;
        // Its name too, before any journal can refer to it: here, outside
        // any unit of work, in one sync with whatever finishes beside it.
        self.staging.sync_names().map_err(StageError::Write)?;
        let hash = std::mem::take(&mut self.hash);
        Ok(StagedContent {
            name: self.name.take().unwrap_or_default(),
            size_bytes: self.size,
            sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
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

    const MIB: usize = 1 << 20;

    /// Content no two blocks of which are alike (a block written at the
    /// wrong offset cannot go unnoticed).
    fn varied(size: u64) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A reader that gives at most `most` bytes a read, as sockets and pipes do.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Sizes around the writeback's edges, and past two of them.
    const LARGE_SIZES: [u64; 4] = [
        WRITEBACK_EVERY - 1,
        WRITEBACK_EVERY,
        WRITEBACK_EVERY + 1,
        2 * WRITEBACK_EVERY + 12_345,
    ];

    /// Stages `content` through `push` in pieces of `piece` bytes and
    /// through `stage` in reads of `read` bytes, and checks the file, size
    /// and digest of both.
    fn stages_exactly(staging: &Arc<Staging>, tmp: &tempfile::TempDir, content: &[u8]) {
        let expected = (content.len() as u64, sha256_hex(content));
        for (piece, read) in [(100_003, 65_536), (MIB + 1, 1000), (7 * MIB, 3 * MIB)] {
            let mut writer = staging.begin(ContentKind::Bytes, u64::MAX).unwrap();
            content.chunks(piece).for_each(|p| writer.push(p).unwrap());
            let pushed = writer.finish().unwrap();
            let read =
                (staging.stage(Trickle(content, read), ContentKind::Bytes, u64::MAX)).unwrap();
            for staged in [pushed, read] {
                let got = (staged.size_bytes(), staged.sha256().to_owned());
                assert_eq!(got, expected, "{piece}-byte pieces");
                let on_disk = std::fs::read(tmp.path().join(staged.file_name())).unwrap();
                assert!(on_disk == content, "the file differs ({piece}-byte pieces)");
                staging.discard(&staged);
            }
        }
    }

    #[test]
    fn large_content_is_written_hashed_and_sized_exactly() {
        let (tmp, staging) = staging();
        for size in LARGE_SIZES {
            stages_exactly(&staging, &tmp, &varied(size));
        }
        assert_eq!(files(&tmp), 0);
    }

    #[test]
    fn large_content_past_the_limit_is_refused_and_leaves_nothing() {
        let (tmp, staging) = staging();
        let content = varied(WRITEBACK_EVERY + 3 * MIB as u64);
        for limit in [WRITEBACK_EVERY + 10, WRITEBACK_EVERY + 2 * MIB as u64 + 1] {
            let refused = staging.stage(&content[..], ContentKind::Bytes, limit);
            assert!(matches!(refused, Err(StageError::TooLarge { .. })));
            let mut writer = staging.begin(ContentKind::Bytes, limit).unwrap();
            let refused = content.chunks(300_000).try_for_each(|p| writer.push(p));
            assert!(matches!(refused, Err(StageError::TooLarge { .. })));
            drop(writer);
        }
        assert_eq!(files(&tmp), 0);
    }

    #[test]
    fn large_text_is_checked_across_reads_and_writebacks() {
        let (tmp, staging) = staging();
        // A three-byte character across the end of the first read and
        // across where the first writeback starts.
        let edge = WRITEBACK_EVERY as usize;
        let mut text = vec![b'a'; edge + MIB + 64];
        for at in [READ_AT_ONCE - 1, edge - 2] {
            text[at..at + 3].copy_from_slice("✓".as_bytes());
        }
        let staged = staging
            .stage(&text[..], ContentKind::Text, u64::MAX)
            .unwrap();
        assert_eq!(staged.sha256(), sha256_hex(&text));
        staging.discard(&staged);
        // The same with the character cut short at the very end, and with a
        // byte that is never UTF-8 past the first writeback.
        let cut = &text[..edge - 1];
        let refused = staging.stage(cut, ContentKind::Text, u64::MAX);
        assert!(matches!(refused, Err(StageError::NotText)));
        text[edge + MIB + 5] = 0xff;
        let refused = staging.stage(&text[..], ContentKind::Text, u64::MAX);
        assert!(matches!(refused, Err(StageError::NotText)));
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
