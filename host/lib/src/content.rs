//! Content on its way out: a file the policy opened for the caller, read
//! from the one descriptor the host opened, with its length taken from that
//! descriptor when it was opened.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A history or an attachment to read: an open file and how many bytes of it
/// to serve. Reading gives at most that many bytes, however the file changes.
#[derive(Debug)]
pub struct Content {
    file: File,
    start: u64,
    len: u64,
    remaining: u64,
}

impl Content {
    /// The whole of an open file, as long as it is now.
    pub(crate) fn new(file: File) -> io::Result<Content> {
        let len = file.metadata()?.len();
        Ok(Content {
            file,
            start: 0,
            len,
            remaining: len,
        })
    }

    /// The number of bytes to serve.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes `first..=last` of this content (`last` below its length).
    pub fn range(mut self, first: u64, last: u64) -> io::Result<Content> {
        if first > last || last >= self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the range is not within the content",
            ));
        }
        self.start += first;
        self.len = last - first + 1;
        self.remaining = self.len;
        Ok(self)
    }

    /// The open file, positioned at the first byte to serve, and how many
    /// bytes to serve from there (for serving it asynchronously).
    pub fn into_file(mut self) -> io::Result<(File, u64)> {
        self.file.seek(SeekFrom::Start(self.start))?;
        Ok((self.file, self.len))
    }

    /// Writes every byte to `out` and returns how many there were. From
    /// one file to another, or to a pipe or socket, the kernel copies them
    /// (`copy_file_range`, `sendfile`, `splice`) without passing through
    /// this process.
    pub fn copy_to<W: Write + ?Sized>(self, out: &mut W) -> io::Result<u64> {
        let (file, len) = self.into_file()?;
        let copied = io::copy(&mut file.take(len), out)?;
        if copied < len {
            return Err(shrank());
        }
        Ok(copied)
    }

    /// All the bytes, in memory (for small content).
    pub fn into_bytes(mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0).min(1 << 20));
        self.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// All the bytes as text, in memory (for a small history).
    pub fn into_string(self) -> io::Result<String> {
        String::from_utf8(self.into_bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the content is not UTF-8"))
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.remaining == self.len {
            self.file.seek(SeekFrom::Start(self.start))?;
        }
        let max = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.file.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            return Err(shrank());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The file ended before the length it had when it was opened: what was
/// served so far is not the content, and the reader must not take it as such.
fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file shrank while it was read",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(bytes: &[u8]) -> (tempfile::TempDir, Content) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c"), bytes).unwrap();
        let file = File::open(dir.path().join("c")).unwrap();
        (dir, Content::new(file).unwrap())
    }

    #[test]
    fn a_range_is_what_reading_and_copying_give() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (dir, c) = content(&bytes);
        assert_eq!(
            c.range(10, 20).unwrap().into_bytes().unwrap(),
            bytes[10..=20]
        );
        // Into a file (the kernel copies) and into memory (through a buffer).
        let (_, c) = content(&bytes);
        let mut out = File::create(dir.path().join("out")).unwrap();
        assert_eq!(
            c.range(7, 99_990).unwrap().copy_to(&mut out).unwrap(),
            99_984
        );
        assert!(std::fs::read(dir.path().join("out")).unwrap() == bytes[7..=99_990]);
        let (_, c) = content(&bytes);
        let mut memory = Vec::new();
        c.range(50_000, 99_999)
            .unwrap()
            .copy_to(&mut memory)
            .unwrap();
        assert!(memory == bytes[50_000..]);
        let (_, c) = content(&bytes);
        assert!(c.range(5, 100_000).is_err(), "past the end");
    }

    #[test]
    fn reading_gives_no_more_than_the_length_it_had_when_opened() {
        let (dir, c) = content(b"0123456789");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("c"))
            .unwrap()
            .write_all(b"grown since")
            .unwrap();
        assert_eq!(c.len(), 10);
        assert_eq!(c.into_bytes().unwrap(), b"0123456789");
    }

    #[test]
    fn a_file_that_shrinks_under_a_read_is_an_error_not_a_short_content() {
        for copy in [false, true] {
            let (dir, c) = content(&[7u8; 100_000]);
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("c"))
                .unwrap()
                .set_len(10)
                .unwrap();
            let e = if copy {
                c.copy_to(&mut Vec::new()).unwrap_err()
            } else {
                c.into_bytes().unwrap_err()
            };
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
    }
}
