//! Values across the boundary: what the guest passes is checked before an
//! adapter sees it (ids must be canonical UUIDs, names valid attachment
//! names by the host's own rules, timestamps well formed), and host values
//! are converted to the WIT's.

use crate::bindings::wit;
use crate::content::Content;
use crate::error::{Error, PortError, PortErrorKind};
use crate::ids::{echo, parse_canonical};
use crate::model::{
    Chat, ChatFile, SandboxOutput, SandboxSession, Timestamp, Workspace, WorkspaceUsage,
};
use crate::names::AttachmentName;
use uuid::Uuid;

/// Why a port call did not succeed, and whose fault that is.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The guest passed something the host refuses.
    Refused(String),
    /// An adapter failed: the one of the port called, or of `port` if the
    /// host's own lookup for this call failed.
    Failed {
        port: Option<&'static str>,
        message: String,
        /// The chat-directory file that was not a regular file, if that
        /// was the failure.
        changed: Option<String>,
    },
}

impl From<PortError> for Fault {
    fn from(e: PortError) -> Self {
        Fault::Failed {
            port: None,
            message: e.message,
            changed: match e.kind {
                PortErrorKind::ChatFileChanged(name) => Some(name),
                PortErrorKind::Failed => None,
            },
        }
    }
}

impl Fault {
    /// The failure of another port's adapter than the one called.
    pub(crate) fn failed_at(port: &'static str) -> impl Fn(PortError) -> Fault {
        move |e| Fault::Failed {
            port: Some(port),
            message: e.message,
            changed: None,
        }
    }
}

/// A checked value, or the refusal of an unchecked one.
pub(crate) type Checked<T> = Result<T, Fault>;

/// Refuses with `message`.
pub(crate) fn refuse<T>(message: impl Into<String>) -> Checked<T> {
    Err(Fault::Refused(message.into()))
}

pub(crate) fn id(s: &str) -> Checked<Uuid> {
    parse_canonical(s)
        .ok_or_else(|| Fault::Refused(format!("{:?} is not a canonical UUID", echo(s))))
}

pub(crate) fn name(s: String) -> Checked<AttachmentName> {
    AttachmentName::new(s).map_err(|why| Fault::Refused(format!("invalid attachment name: {why}")))
}

fn timestamp(t: wit::Timestamp) -> Checked<Timestamp> {
    crate::model::timestamp(t.seconds, t.nanoseconds)
        .ok_or_else(|| Fault::Refused("timestamp out of range".into()))
}

pub(crate) fn workspace(w: wit::Workspace) -> Checked<Workspace> {
    Ok(Workspace {
        workspace_id: id(&w.workspace_id)?,
        user_id: id(&w.user_id)?,
        created_at: timestamp(w.created_at)?,
    })
}

pub(crate) fn chat(c: wit::Chat) -> Checked<Chat> {
    Ok(Chat {
        chat_id: id(&c.chat_id)?,
        workspace_id: id(&c.workspace_id)?,
        created_at: timestamp(c.created_at)?,
    })
}

/// A SHA-256 as the WIT writes it: 64 lowercase hex digits.
fn sha256(s: String) -> Checked<String> {
    let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(s)
    } else {
        refuse(format!("{:?} is not a SHA-256", echo(&s)))
    }
}

pub(crate) fn chat_file(f: wit::ChatFile) -> Checked<ChatFile> {
    Ok(ChatFile {
        file_id: id(&f.file_id)?,
        chat_id: id(&f.chat_id)?,
        name: name(f.name)?,
        content_type: f.content_type,
        size_bytes: f.size_bytes,
        sha256: f.sha256.map(sha256).transpose()?,
        created_at: timestamp(f.created_at)?,
    })
}

// ---- what the guest's exports return, trusted for nothing ----

/// The guest's answer of a malformed `what`: the guest's failure.
fn malformed(what: &str) -> Error {
    Error::unavailable(
        "guest",
        format!("the component returned a malformed {what}"),
    )
}

fn returned_id(s: &str) -> Result<Uuid, Error> {
    parse_canonical(s).ok_or_else(|| malformed("id"))
}

/// What an export answers, checked: a malformed value is the guest's
/// failure. `opened` is the file the guest opened for the host to serve.
pub(crate) trait FromGuest: Sized {
    type Wit;
    fn from_guest(wit: Self::Wit, opened: Option<Content>) -> Result<Self, Error>;
}

impl FromGuest for () {
    type Wit = ();
    fn from_guest((): (), _: Option<Content>) -> Result<(), Error> {
        Ok(())
    }
}

impl FromGuest for Workspace {
    type Wit = wit::Workspace;
    fn from_guest(w: wit::Workspace, _: Option<Content>) -> Result<Self, Error> {
        workspace(w).map_err(|_| malformed("workspace"))
    }
}

impl FromGuest for WorkspaceUsage {
    type Wit = wit::WorkspaceUsage;
    fn from_guest(u: wit::WorkspaceUsage, _: Option<Content>) -> Result<Self, Error> {
        Ok(WorkspaceUsage {
            workspace_id: returned_id(&u.workspace_id)?,
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        })
    }
}

impl FromGuest for Chat {
    type Wit = wit::Chat;
    fn from_guest(c: wit::Chat, _: Option<Content>) -> Result<Self, Error> {
        chat(c).map_err(|_| malformed("chat"))
    }
}

impl FromGuest for ChatFile {
    type Wit = wit::ChatFile;
    fn from_guest(f: wit::ChatFile, _: Option<Content>) -> Result<Self, Error> {
        chat_file(f).map_err(|_| malformed("chat file"))
    }
}

impl<T: FromGuest> FromGuest for Vec<T> {
    type Wit = Vec<T::Wit>;
    fn from_guest(items: Vec<T::Wit>, _: Option<Content>) -> Result<Self, Error> {
        items.into_iter().map(|i| T::from_guest(i, None)).collect()
    }
}

/// A read the guest allowed: what it opened to serve.
impl FromGuest for Content {
    type Wit = ();
    fn from_guest((): (), opened: Option<Content>) -> Result<Self, Error> {
        opened.ok_or_else(opened_nothing)
    }
}

impl FromGuest for (ChatFile, Content) {
    type Wit = wit::ChatFile;
    fn from_guest(f: wit::ChatFile, opened: Option<Content>) -> Result<Self, Error> {
        let content = opened.ok_or_else(opened_nothing)?;
        Ok((ChatFile::from_guest(f, None)?, content))
    }
}

impl FromGuest for Result<ChatFile, Error> {
    type Wit = wit::OutputOutcome;
    fn from_guest(outcome: wit::OutputOutcome, _: Option<Content>) -> Result<Self, Error> {
        match outcome {
            wit::OutputOutcome::Registered(f) => ChatFile::from_guest(f, None).map(Ok),
            wit::OutputOutcome::Refused(e) => Ok(Err(guest_error(e))),
        }
    }
}

/// A read the guest allowed without opening anything to serve.
fn opened_nothing() -> Error {
    Error::unavailable(
        "guest",
        "the component authorized the read but opened nothing to serve",
    )
}

/// The error an export answered, with what it carries checked.
pub(crate) fn guest_error(e: wit::StorageError) -> Error {
    use wit::StorageError as W;
    let with_id = |s: &str, make: fn(Uuid) -> Error| returned_id(s).map_or_else(|e| e, make);
    match e {
        W::WorkspaceNotFound(id) => with_id(&id, Error::WorkspaceNotFound),
        W::WorkspaceQuotaExceeded(id) => with_id(&id, Error::WorkspaceQuotaExceeded),
        W::ChatNotFound(id) => with_id(&id, Error::ChatNotFound),
        W::ChatHasActiveSandbox(id) => with_id(&id, Error::ChatHasActiveSandbox),
        W::ChatFileNotFound(id) => with_id(&id, Error::ChatFileNotFound),
        W::InvalidAttachmentName(name) => Error::InvalidAttachmentName(echo(&name)),
        W::ReservedAttachmentName(name) => Error::ReservedAttachmentName(echo(&name)),
        W::InvalidId(s) => Error::InvalidId(echo(&s)),
        W::StorageUnavailable(p) => Error::StorageUnavailable {
            port: p.port,
            message: p.message,
        },
    }
}

// ---- host values to the guest ----

impl From<Timestamp> for wit::Timestamp {
    fn from(t: Timestamp) -> Self {
        wit::Timestamp {
            seconds: t.timestamp(),
            nanoseconds: t.timestamp_subsec_nanos(),
        }
    }
}

impl From<Workspace> for wit::Workspace {
    fn from(w: Workspace) -> Self {
        wit::Workspace {
            workspace_id: w.workspace_id.to_string(),
            user_id: w.user_id.to_string(),
            created_at: w.created_at.into(),
        }
    }
}

impl From<Chat> for wit::Chat {
    fn from(c: Chat) -> Self {
        wit::Chat {
            chat_id: c.chat_id.to_string(),
            workspace_id: c.workspace_id.to_string(),
            created_at: c.created_at.into(),
        }
    }
}

impl From<ChatFile> for wit::ChatFile {
    fn from(f: ChatFile) -> Self {
        wit::ChatFile {
            file_id: f.file_id.to_string(),
            chat_id: f.chat_id.to_string(),
            name: f.name.to_string(),
            content_type: f.content_type,
            size_bytes: f.size_bytes,
            sha256: f.sha256,
            created_at: f.created_at.into(),
        }
    }
}

impl From<WorkspaceUsage> for wit::WorkspaceUsage {
    fn from(u: WorkspaceUsage) -> Self {
        wit::WorkspaceUsage {
            workspace_id: u.workspace_id.to_string(),
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        }
    }
}

impl From<SandboxSession> for wit::SandboxSession {
    fn from(s: SandboxSession) -> Self {
        wit::SandboxSession {
            session_id: s.session_id.to_string(),
            chat_id: s.chat_id.to_string(),
        }
    }
}

impl From<&SandboxOutput> for wit::SandboxOutput {
    fn from(o: &SandboxOutput) -> Self {
        wit::SandboxOutput {
            name: o.name.clone(),
            content_type: o.content_type.clone(),
            size_bytes: o.size_bytes,
            sha256: o.sha256.clone(),
        }
    }
}
