//! Content on its way in: written into a host-private staging area, synced,
//! sized and hashed as it streams, in bounded memory, before any use case
//! runs. A use case then stores it by its token, and the unit of work moves
//! it into the chat directory when the call commits; content no call stored
//! is removed.

use crate::group_sync::GroupSync;
use crate::ids::parse_canonical;
use cap_std::fs::{Dir, File, FileExt, OpenOptions};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// How much staged content may wait in the page cache before its writeback
/// is started, where it goes through the page cache (see [`Large`]): the
/// disk works while the rest streams in, so the final sync has little left
/// to wait for.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Content up to this size is written and hashed by the caller, through the
/// page cache; past it, see [`Large`]. A multiple of [`ALIGN`].
const LARGE_AT: u64 = 4 << 20;

/// What direct writes' offsets, lengths and memory are aligned to: the
/// largest logical block size of common disks.
const ALIGN: usize = 4096;

/// The size of one block of large content (a multiple of [`ALIGN`]).
const BLOCK: usize = 1 << 20;

/// The blocks one large staging holds: filling, hashing, being written,
/// and enough waiting to ride out the disk's pauses (with 4, a 1 GiB
/// upload took a third longer).
const BLOCKS: usize = 16;

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
    readable: std::sync::OnceLock<File>,
    /// Whether large content is written directly where the filesystem
    /// allows it (always, but for tests of the other way).
    direct: bool,
}

impl Staging {
    /// The staging area in `dir`.
    pub fn new(dir: Dir) -> Arc<Staging> {
        Arc::new(Staging {
            dir,
            names: GroupSync::default(),
            readable: std::sync::OnceLock::new(),
            direct: true,
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
            file: Arc::new(file),
            hash: Sha256::new(),
            large: None,
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
        let mut small = vec![0; 64 << 10];
        loop {
            let read = if writer.size >= LARGE_AT {
                // Straight into the block that goes to the disk.
                writer.read_into_block(&mut content)
            } else {
                let room = small.len().min((LARGE_AT - writer.size) as usize);
                match content.read(&mut small[..room]) {
                    Ok(n) => writer.push(&small[..n]).map(|()| n),
                    Err(e) => Err(StageError::Read(e)),
                }
            };
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(StageError::Read(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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

/// Lowers the calling thread's CPU priority (nice 10) for the rest of its
/// life: large content then takes the CPU that other requests leave it,
/// rather than a share of theirs. Only for a thread that ends with the
/// staging: without privilege, a priority cannot be raised again.
pub fn bulk_thread() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Content being staged; dropped unfinished, its file is removed.
#[derive(Debug)]
pub struct StagingWriter {
    staging: Arc<Staging>,
    name: Option<String>,
    file: Arc<File>,
    /// The SHA-256 of the first [`LARGE_AT`] bytes; past them, [`Large`]'s.
    hash: Sha256,
    large: Option<Large>,
    size: u64,
    limit: u64,
    text: Option<Utf8Check>,
}

impl StagingWriter {
    /// Adds the next bytes of the content.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), StageError> {
        let size = admit(self.size, self.limit, &mut self.text, bytes)?;
        if self.size < LARGE_AT {
            let small = bytes.len().min((LARGE_AT - self.size) as usize);
            self.file
                .write_all_at(&bytes[..small], self.size)
                .map_err(StageError::Write)?;
            self.hash.update(&bytes[..small]);
            bytes = &bytes[small..];
        }
        while !bytes.is_empty() {
            let taken = self.block()?.fill(bytes);
            bytes = &bytes[taken..];
            self.send_if_full()?;
        }
        self.size = size;
        Ok(())
    }

    /// Reads the next bytes of large content from `content` straight into
    /// the block that goes to the disk; gives how many (0 at its end).
    fn read_into_block(&mut self, content: &mut impl Read) -> Result<usize, StageError> {
        self.start_large();
        let StagingWriter {
            large,
            text,
            size,
            limit,
            ..
        } = self;
        let large = large.as_mut().expect("large content has started");
        let block = large.block().map_err(StageError::Write)?;
        let n = content.read(block.room()).map_err(StageError::Read)?;
        *size = admit(*size, *limit, text, block.filled_after(n))?;
        large.send_if_full().map_err(StageError::Write)?;
        Ok(n)
    }

    /// Starts the threads of large content, once.
    fn start_large(&mut self) {
        if self.large.is_none() {
            let hash = std::mem::take(&mut self.hash);
            self.large = Some(Large::start(self.file.clone(), hash, self.staging.direct));
        }
    }

    /// The block being filled, the threads of large content started first
    /// if need be.
    fn block(&mut self) -> Result<&mut Block, StageError> {
        self.start_large();
        let large = self.large.as_mut().expect("large content has started");
        large.block().map_err(StageError::Write)
    }

    fn send_if_full(&mut self) -> Result<(), StageError> {
        match &mut self.large {
            Some(large) => large.send_if_full().map_err(StageError::Write),
            None => Ok(()),
        }
    }

    /// The bytes staged so far.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// The CPU time this content's own threads (hashing and writing large
    /// content) have used so far; the thread that pushes it counts its own.
    pub fn threads_cpu_time(&self) -> Duration {
        self.large.as_ref().map_or(Duration::ZERO, Large::cpu_time)
    }

    /// Ends the content: syncs the file and its name, and gives its size and digest.
    pub fn finish(mut self) -> Result<StagedContent, StageError> {
        if let Some(text) = &self.text {
            text.finish()?;
        }
        let hash = match self.large.take() {
            Some(large) => {
                let hash = large.finish().map_err(StageError::Write)?;
                // The last block may have gone out padded to its alignment.
                self.file.set_len(self.size).map_err(StageError::Write)?;
                hash
            }
            None => std::mem::take(&mut self.hash),
        };
        self.file.sync_all().map_err(StageError::Write)?;
        // Its name too, before any journal can refer to it: here, outside
        // any unit of work, in one sync with whatever finishes beside it.
        self.staging.sync_names().map_err(StageError::Write)?;
        Ok(StagedContent {
            name: self.name.take().unwrap_or_default(),
            size_bytes: self.size,
            sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// The size content of `size` bytes has with `bytes` more; refused past
/// `limit`, or if they are not text where text is due.
fn admit(
    size: u64,
    limit: u64,
    text: &mut Option<Utf8Check>,
    bytes: &[u8],
) -> Result<u64, StageError> {
    let size = size.saturating_add(bytes.len() as u64);
    if size > limit {
        return Err(StageError::TooLarge { limit });
    }
    if let Some(text) = text {
        text.push(bytes)?;
    }
    Ok(size)
}

impl Drop for StagingWriter {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self.staging.dir.remove_file(name);
        }
    }
}

/// Content past [`LARGE_AT`], in blocks of [`BLOCK`] bytes that go round
/// three threads: the caller fills one while a thread hashes the one
/// before and another writes the one before that, then hands it back. The
/// writing thread writes directly to the disk (`O_DIRECT`) where the
/// filesystem allows it: no copy into the page cache and none of its
/// per-page bookkeeping, which for large content cost more CPU than the
/// copy into the block. Memory stays at [`BLOCKS`] blocks whatever the size.
#[derive(Debug)]
struct Large {
    /// The block being filled, and the file offset where it goes.
    block: Option<Block>,
    offset: u64,
    allocated: usize,
    to_hash: std::sync::mpsc::SyncSender<(Block, u64)>,
    /// Blocks written, to be filled again.
    written: std::sync::mpsc::Receiver<Block>,
    hasher: std::thread::JoinHandle<Sha256>,
    /// Until it is joined, to learn why it stopped.
    writer: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// The CPU time, in nanoseconds, the hasher and the writer have used,
    /// as each last read its clock (after each block).
    cpu: Arc<[AtomicU64; 2]>,
}

impl Large {
    fn start(file: Arc<File>, mut hash: Sha256, direct: bool) -> Large {
        let (to_hash, arriving) = std::sync::mpsc::sync_channel::<(Block, u64)>(BLOCKS);
        let (to_write, hashed) = std::sync::mpsc::sync_channel::<(Block, u64)>(BLOCKS);
        let (done, written) = std::sync::mpsc::sync_channel::<Block>(BLOCKS);
        let cpu = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let used = move |cpu: &[AtomicU64; 2], thread: usize| {
            let nanos = u64::try_from(thread_cpu_time().as_nanos()).unwrap_or(u64::MAX);
            cpu[thread].store(nanos, Ordering::Relaxed);
        };
        let hasher_cpu = Arc::clone(&cpu);
        let hasher = std::thread::spawn(move || {
            bulk_thread();
            for (block, offset) in arriving {
                hash.update(block.filled());
                used(&hasher_cpu, 0);
                if to_write.send((block, offset)).is_err() {
                    break;
                }
            }
            hash
        });
        let writer_cpu = Arc::clone(&cpu);
        let writer = std::thread::spawn(move || {
            bulk_thread();
            let mut disk = Disk::new(&file, direct);
            for (mut block, offset) in hashed {
                disk.write(&mut block, offset)?;
                used(&writer_cpu, 1);
                block.len = 0;
                let _ = done.try_send(block);
            }
            Ok(())
        });
        Large {
            block: None,
            offset: LARGE_AT,
            allocated: 0,
            to_hash,
            written,
            hasher,
            writer: Some(writer),
            cpu,
        }
    }

    fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu.iter().map(|c| c.load(Ordering::Relaxed)).sum())
    }

    /// The block being filled: a new one, or one the writer handed back.
    fn block(&mut self) -> io::Result<&mut Block> {
        if self.block.is_none() {
            let block = if self.allocated < BLOCKS {
                self.allocated += 1;
                Block::new()
            } else {
                match self.written.recv() {
                    Ok(block) => block,
                    Err(_) => return Err(self.failure()),
                }
            };
            self.block = Some(block);
        }
        Ok(self.block.as_mut().expect("a block was just set"))
    }

    /// Hands the block on once it is full.
    fn send_if_full(&mut self) -> io::Result<()> {
        if self.block.as_ref().is_some_and(Block::is_full) {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let len = block.len as u64;
        if self.to_hash.send((block, self.offset)).is_err() {
            return Err(self.failure());
        }
        self.offset += len;
        Ok(())
    }

    /// Why the threads stopped early: the writer's error (the hasher only
    /// stops early when the writer has).
    fn failure(&mut self) -> io::Error {
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the staging writer panicked"),
            _ => io::Error::other("the staging writer stopped"),
        }
    }

    /// Sends the last block; gives the digest once every block is hashed
    /// and written.
    fn finish(mut self) -> io::Result<Sha256> {
        if self.block.as_ref().is_some_and(|b| b.len > 0) {
            self.send()?;
        }
        drop(self.to_hash);
        let hash = self.hasher.join();
        let written = match self.writer.take() {
            Some(writer) => writer.join(),
            None => Ok(Err(io::Error::other("the staging writer stopped"))),
        };
        match (hash, written) {
            (Ok(hash), Ok(Ok(()))) => Ok(hash),
            (_, Ok(Err(e))) => Err(e),
            _ => Err(io::Error::other("a staging thread panicked")),
        }
    }
}

/// How the writing thread writes blocks: directly where it can.
struct Disk<'a> {
    file: &'a File,
    direct: bool,
    /// Where the page cache's writeback started so far ends (when not direct).
    started: u64,
}

impl<'a> Disk<'a> {
    fn new(file: &'a File, direct: bool) -> Disk<'a> {
        let direct = direct && set_direct(file, true).is_ok();
        Disk {
            file,
            direct,
            started: LARGE_AT,
        }
    }

    fn write(&mut self, block: &mut Block, offset: u64) -> io::Result<()> {
        if self.direct {
            match self.file.write_all_at(block.padded(), offset) {
                // A filesystem that refuses the direct write after all gets
                // the same bytes through the page cache.
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    set_direct(self.file, false)?;
                    self.direct = false;
                }
                result => return result,
            }
        }
        self.file.write_all_at(block.filled(), offset)?;
        let written = offset + block.len as u64;
        if written - self.started >= WRITEBACK_EVERY {
            // Starts writing these pages back without waiting (and drops
            // them from the cache once written: staged content is not read
            // again soon). Only a hint: the final sync is what counts.
            let _ = rustix::fs::fadvise(
                self.file,
                self.started,
                std::num::NonZeroU64::new(written - self.started),
                rustix::fs::Advice::DontNeed,
            );
            self.started = written;
        }
        Ok(())
    }
}

const EINVAL: i32 = rustix::io::Errno::INVAL.raw_os_error();

/// One aligned block of content.
struct Block {
    /// `BLOCK + ALIGN` bytes, of which the aligned `BLOCK` starting at
    /// `start` are used.
    memory: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({} bytes)", self.len)
    }
}

impl Block {
    fn new() -> Block {
        let memory = vec![0; BLOCK + ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN);
        Block {
            memory,
            start,
            len: 0,
        }
    }

    /// Takes as many of `bytes` as fit; gives how many.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(BLOCK - self.len);
        self.room()[..taken].copy_from_slice(&bytes[..taken]);
        self.len += taken;
        taken
    }

    /// The part not filled yet.
    fn room(&mut self) -> &mut [u8] {
        let at = self.start + self.len;
        &mut self.memory[at..self.start + BLOCK]
    }

    /// Counts `n` more bytes as filled (written into [`Block::room`]);
    /// gives them.
    fn filled_after(&mut self, n: usize) -> &[u8] {
        let at = self.start + self.len;
        self.len += n;
        &self.memory[at..at + n]
    }

    fn filled(&self) -> &[u8] {
        &self.memory[self.start..self.start + self.len]
    }

    fn is_full(&self) -> bool {
        self.len == BLOCK
    }

    /// The filled bytes, with zeros up to the next aligned length.
    fn padded(&mut self) -> &[u8] {
        let end = self.len.next_multiple_of(ALIGN);
        let at = self.start;
        self.memory[at + self.len..at + end].fill(0);
        &self.memory[at..at + end]
    }
}

/// Turns direct I/O on or off for `file`; an error where the filesystem or
/// the system has no such thing.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::OFlags;
        let flags = rustix::fs::fcntl_getfl(file)?;
        let flags = if on {
            flags | OFlags::DIRECT
        } else {
            flags - OFlags::DIRECT
        };
        rustix::fs::fcntl_setfl(file, flags)?;
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, on);
        Err(io::Error::from(io::ErrorKind::Unsupported))
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

    /// Sizes around every edge of large content: where it starts, a block's
    /// end, an alignment's end, and a last block cut short.
    const LARGE_SIZES: [u64; 6] = [
        LARGE_AT - 1,
        LARGE_AT,
        LARGE_AT + 1,
        LARGE_AT + BLOCK as u64,
        LARGE_AT + 2 * BLOCK as u64 + ALIGN as u64,
        LARGE_AT + 2 * BLOCK as u64 + 12_345,
    ];

    /// Stages `content` through `push` in pieces of `piece` bytes and
    /// through `stage` in reads of `read` bytes, and checks the file, size
    /// and digest of both.
    fn stages_exactly(staging: &Arc<Staging>, tmp: &tempfile::TempDir, content: &[u8]) {
        let expected = (content.len() as u64, sha256_hex(content));
        for (piece, read) in [(100_003, 65_536), (BLOCK + 1, 1000), (7 * BLOCK, 3 * BLOCK)] {
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
    fn large_content_is_written_hashed_and_sized_exactly_directly_or_not() {
        let (tmp, direct) = staging();
        // Where the filesystem has no direct writes, blocks go through the
        // page cache, unpadded.
        let cached = Arc::new(Staging {
            dir: direct.dir.try_clone().unwrap(),
            names: GroupSync::default(),
            readable: std::sync::OnceLock::new(),
            direct: false,
        });
        for staging in [direct, cached] {
            for size in LARGE_SIZES {
                stages_exactly(&staging, &tmp, &varied(size));
            }
        }
        assert_eq!(files(&tmp), 0);
    }

    #[test]
    fn the_cpu_time_of_large_contents_threads_is_counted_once_a_block_comes_back() {
        let (_tmp, staging) = staging();
        let mut writer = staging.begin(ContentKind::Bytes, u64::MAX).unwrap();
        writer.push(&varied(LARGE_AT)).unwrap();
        // Small content has no threads of its own.
        assert_eq!(writer.threads_cpu_time(), Duration::ZERO);
        // One block more than are made: the last waits for one the writer
        // handed back, which it does only after reading its clock.
        for _ in 0..=BLOCKS {
            writer.push(&varied(BLOCK as u64)).unwrap();
        }
        writer.push(b"x").unwrap();
        assert!(writer.threads_cpu_time() > Duration::ZERO);
        let staged = writer.finish().unwrap();
        staging.discard(&staged);
    }

    #[test]
    fn large_content_past_the_limit_is_refused_and_leaves_nothing() {
        let (tmp, staging) = staging();
        let content = varied(LARGE_AT + 3 * BLOCK as u64);
        for limit in [LARGE_AT + 10, LARGE_AT + 2 * BLOCK as u64 + 1] {
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
    fn large_text_is_checked_across_blocks() {
        let (tmp, staging) = staging();
        // A three-byte character across the end of the small part and
        // across the end of the first block.
        let mut text = vec![b'a'; LARGE_AT as usize + BLOCK + 64];
        for at in [LARGE_AT as usize - 1, LARGE_AT as usize + BLOCK - 2] {
            text[at..at + 3].copy_from_slice("✓".as_bytes());
        }
        let staged = staging
            .stage(&text[..], ContentKind::Text, u64::MAX)
            .unwrap();
        assert_eq!(staged.sha256(), sha256_hex(&text));
        staging.discard(&staged);
        // The same with the character cut short at the very end, and with a
        // byte that is never UTF-8 in the second block.
        let cut = &text[..LARGE_AT as usize + BLOCK - 1];
        let refused = staging.stage(cut, ContentKind::Text, u64::MAX);
        assert!(matches!(refused, Err(StageError::NotText)));
        text[LARGE_AT as usize + BLOCK + 5] = 0xff;
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
