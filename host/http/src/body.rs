//! Bodies in and out, streamed: a request body goes to staging on a
//! blocking thread as it arrives (bounded memory, cut off past its limit);
//! a response body comes from the file the policy opened, a range of it if
//! asked, with `Content-Length` from that file.

use crate::app::{App, Slot};
use crate::failure::Failure;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatstore_host::{Content, ContentKind, Error, StageError, StagedContent, Uuid};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

/// What a request body may be at most, and what passing it means.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limit {
    /// The most bytes the body may have.
    pub(crate) bytes: u64,
    /// Whether passing it passes the workspace's quota (413
    /// `workspace_quota_exceeded`) rather than the server's upload limit
    /// (413 `upload_too_large`).
    pub(crate) quota: bool,
}

impl Limit {
    /// The tighter of the upload limit and the room the write has.
    pub(crate) fn of(app: &App, room: u64) -> Limit {
        if room < app.config.max_upload_bytes {
            Limit {
                bytes: room,
                quota: true,
            }
        } else {
            Limit {
                bytes: app.config.max_upload_bytes,
                quota: false,
            }
        }
    }

    /// The refusal of a body past this limit.
    pub(crate) async fn refuse(self, app: &App, slot: &Slot, user: Uuid) -> Failure {
        if !self.quota {
            return Failure::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload_too_large",
                format!("the body is larger than {} bytes", self.bytes),
            );
        }
        match app.run_in(slot, move |s| s.get_workspace(user)).await {
            Ok(workspace) => Error::WorkspaceQuotaExceeded(workspace.workspace_id).into(),
            Err(failure) => failure,
        }
    }

    /// Refuses a body whose declared length passes the limit, before a byte
    /// of it is read.
    pub(crate) async fn check_declared(
        self,
        app: &App,
        slot: &Slot,
        user: Uuid,
        headers: &HeaderMap,
    ) -> Result<(), Failure> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(length) if length > self.bytes => Err(self.refuse(app, slot, user).await),
            _ => Ok(()),
        }
    }
}

/// A request body that declares at most this many bytes is read whole
/// before its call, then staged on the call's own thread.
pub(crate) const SMALL_BODY: u64 = 256 << 10;

/// Whether the body declares a length small enough to read whole (and
/// within the upload limit).
pub(crate) fn declares_small(app: &App, headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length <= SMALL_BODY.min(app.config.max_upload_bytes))
}

/// Reads a body [`declares_small`] accepted, whole: a body that fails or
/// ends early is a 400, one that stalls past the body timeout a 408.
pub(crate) async fn read_small(app: &App, body: Body) -> Result<Bytes, Failure> {
    let mut body = body;
    let mut whole = Vec::new();
    loop {
        let frame = tokio::time::timeout(app.config.body_timeout, body.frame())
            .await
            .map_err(|_| body_timed_out(app))?;
        match frame {
            None => return Ok(Bytes::from(whole)),
            Some(Ok(frame)) => {
                if let Ok(bytes) = frame.into_data() {
                    whole.extend_from_slice(&bytes);
                }
            }
            Some(Err(e)) => return Err(body_unread(Some(&e.to_string()))),
        }
    }
}

fn body_timed_out(app: &App) -> Failure {
    Failure::plain(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body sent nothing for {} s",
            app.config.body_timeout.as_secs()
        ),
    )
}

fn body_unread(why: Option<&str>) -> Failure {
    Failure::plain(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!(
            "the request body could not be read to its end: {}",
            why.unwrap_or("it stopped")
        ),
    )
}

/// A message from the request to the thread that stages its body.
enum Piece {
    Bytes(Bytes),
    End,
}

/// Streams a request body into staging, in the request's slot. A body that
/// fails (the client went away, or sent less than its `Content-Length`) is
/// a 400 and leaves nothing; one that stalls past the body timeout is a
/// 408; one past `limit` is cut off there with its 413.
pub(crate) async fn stage(
    app: &App,
    slot: &Slot,
    user: Uuid,
    body: Body,
    kind: ContentKind,
    limit: Limit,
) -> Result<StagedContent, Failure> {
    let mut writer = app
        .store
        .staging()
        .begin(kind, limit.bytes)
        .map_err(staging_failed)?;
    let (pieces, mut arrived) = mpsc::channel::<Piece>(8);
    let (staged, stager) = tokio::sync::oneshot::channel();
    // A thread of its own, which keeps the request's slot until it is done.
    let held = slot.clone();
    std::thread::spawn(move || {
        let _slot = held;
        let result = (|| {
            while let Some(piece) = arrived.blocking_recv() {
                match piece {
                    Piece::Bytes(bytes) => writer.push(&bytes)?,
                    Piece::End => return writer.finish().map(Some),
                }
            }
            // The request stopped sending: nothing is kept.
            Ok(None)
        })();
        let _ = staged.send(result);
    });
    let mut body = body;
    let mut failed = None;
    loop {
        let Ok(frame) = tokio::time::timeout(app.config.body_timeout, body.frame()).await else {
            drop(pieces);
            let _ = stager.await;
            return Err(body_timed_out(app));
        };
        match frame {
            None => {
                let _ = pieces.send(Piece::End).await;
                break;
            }
            Some(Ok(frame)) => {
                if let Ok(bytes) = frame.into_data()
                    && pieces.send(Piece::Bytes(bytes)).await.is_err()
                {
                    // The stager stopped: its result says why.
                    break;
                }
            }
            Some(Err(e)) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    drop(pieces);
    let staged = stager.await.map_err(|e| {
        tracing::error!(error = %e, "a request's stager failed");
        Failure::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the request's stager failed",
        )
    })?;
    match (staged, failed) {
        (Err(StageError::TooLarge { .. }), _) => Err(limit.refuse(app, slot, user).await),
        (Err(e), _) => Err(staging_failed(e)),
        (Ok(Some(staged)), None) => Ok(staged),
        (Ok(_), why) => Err(body_unread(why.as_deref())),
    }
}

fn staging_failed(e: StageError) -> Failure {
    match e {
        StageError::NotText => Error::InvalidHistory.into(),
        e => {
            tracing::warn!(error = %e, "staging failed");
            Failure::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "staging failed; nothing of the request was kept",
            )
        }
    }
}

/// What to serve: the content, its media type and, if it has one, its
/// strong `ETag`.
pub(crate) struct Served {
    pub(crate) content: Content,
    pub(crate) content_type: HeaderValue,
    pub(crate) etag: Option<String>,
    /// The file's name, for `Content-Disposition`.
    pub(crate) name: String,
}

/// Content up to this size is read whole and sent in one piece; larger
/// content is streamed from its file.
const SMALL: u64 = 64 << 10;

/// A 200 with the whole content, a 206 with one range of it, a 304 if the
/// caller has it already, or a 416 for a range outside it. Small content is
/// read here: call it on the thread that ran the use case, not on the
/// server's.
pub(crate) fn serve(served: Served, request: &HeaderMap) -> Result<Response, Failure> {
    let etag = served
        .etag
        .and_then(|tag| HeaderValue::from_str(&format!("\"{tag}\"")).ok());
    let len = served.content.len();
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition(&served.name));
    if let Some(etag) = &etag {
        headers.insert(header::ETAG, etag.clone());
        if matches_etag(request, etag) {
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
    }
    let (status, content) = match requested_range(request, len) {
        Range::Whole => (StatusCode::OK, served.content),
        Range::Unsatisfiable => {
            let mut failure = Failure::plain(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the content has {len} bytes"),
            )
            .into_response();
            if let Ok(range) = HeaderValue::from_str(&format!("bytes */{len}")) {
                failure.headers_mut().insert(header::CONTENT_RANGE, range);
            }
            return Ok(failure);
        }
        Range::Bytes(first, last) => {
            if let Ok(range) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")) {
                headers.insert(header::CONTENT_RANGE, range);
            }
            let part = served.content.range(first, last).map_err(read_failed)?;
            (StatusCode::PARTIAL_CONTENT, part)
        }
    };
    headers.insert(header::CONTENT_TYPE, served.content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.len()));
    let body = if content.len() <= SMALL {
        Body::from(content.into_bytes().map_err(read_failed)?)
    } else {
        let (file, len) = content.into_file().map_err(read_failed)?;
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 << 10,
        ))
    };
    Ok((status, headers, body).into_response())
}

/// `attachment`, with the name percent-encoded as RFC 6266 and RFC 8187
/// say: a browser saves the file rather than rendering it, whatever it holds.
fn disposition(name: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn read_failed(e: std::io::Error) -> Failure {
    tracing::warn!(error = %e, "serving content failed");
    Failure::plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the content could not be read",
    )
}

/// Whether `If-None-Match` names this `ETag` (or `*`).
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(tags) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// The part of the content a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// No range, or one this server does not serve as a range (several
    /// ranges, another unit, a malformed header): the whole content.
    Whole,
    /// One satisfiable range: its first and last byte.
    Bytes(u64, u64),
    /// One range that lies outside the content.
    Unsatisfiable,
}

fn requested_range(request: &HeaderMap, len: u64) -> Range {
    let Some(spec) = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim(), last.trim()) {
        ("", "") => Range::Whole,
        // The last n bytes.
        ("", n) => match number(n) {
            None => Range::Whole,
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Bytes(len.saturating_sub(n), len - 1),
        },
        (first, last) => match (number(first), last) {
            (None, _) => Range::Whole,
            (Some(first), _) if first >= len => Range::Unsatisfiable,
            (Some(first), "") => Range::Bytes(first, len - 1),
            (Some(first), last) => match number(last) {
                Some(last) if last >= first => Range::Bytes(first, last.min(len - 1)),
                _ => Range::Whole,
            },
        },
    }
}

/// A response body that a blocking writer fills: what it writes goes out
/// in chunks of about 256 KiB, at most four in flight.
pub(crate) fn chunks() -> (ChunkWriter, Body) {
    let (sender, receiver) = mpsc::channel(4);
    (
        ChunkWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
        },
        Body::from_stream(Chunks(receiver)),
    )
}

const CHUNK: usize = 256 << 10;

/// The writing end of [`chunks`], for a blocking thread.
pub(crate) struct ChunkWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }

    /// Ends the body with an error instead of its end.
    pub(crate) fn fail(mut self, why: String) {
        self.buffer.clear();
        let _ = self.sender.blocking_send(Err(std::io::Error::other(why)));
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

struct Chunks(mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, len: u64) -> Range {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(spec).unwrap());
        requested_range(&headers, len)
    }

    #[test]
    fn ranges_are_read_as_the_http_specification_says() {
        assert_eq!(range("bytes=0-0", 10), Range::Bytes(0, 0));
        assert_eq!(range("bytes=2-5", 10), Range::Bytes(2, 5));
        assert_eq!(range("bytes=2-", 10), Range::Bytes(2, 9));
        assert_eq!(range("bytes=5-100", 10), Range::Bytes(5, 9));
        assert_eq!(range("bytes=-3", 10), Range::Bytes(7, 9));
        assert_eq!(range("bytes=-30", 10), Range::Bytes(0, 9));
        assert_eq!(range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=-1", 0), Range::Unsatisfiable);
        // Served whole: several ranges, other units, nonsense.
        assert_eq!(range("bytes=0-1,3-4", 10), Range::Whole);
        assert_eq!(range("items=0-1", 10), Range::Whole);
        assert_eq!(range("bytes=5-2", 10), Range::Whole);
        assert_eq!(range("bytes=a-b", 10), Range::Whole);
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_stars() {
        let etag = HeaderValue::from_static("\"abc\"");
        let asks = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            matches_etag(&headers, &etag)
        };
        assert!(asks("\"abc\""));
        assert!(asks("\"x\", \"abc\""));
        assert!(asks("W/\"abc\""));
        assert!(asks("*"));
        assert!(!asks("\"abd\""));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }
}
