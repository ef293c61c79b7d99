//! Content on its way out: a file the policy opened for the caller, read
//! from the one descriptor the host opened, with its length taken from that
//! descriptor when it was opened.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

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
        self.remaining -= n as u64;
        Ok(n)
    }
}
