//! Values across the boundary: what the guest passes is checked before an
//! adapter sees it (ids must be canonical UUIDs, names valid attachment
//! names by the host's own rules, timestamps well formed), and host values
//! are converted to the WIT's.

use crate::bindings::wit;
use crate::error::{Error, PortError, PortErrorKind};
use crate::ids::{canonical, echo, parse_canonical};
use crate::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace, WorkspaceUsage};
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
    if t.nanoseconds >= 1_000_000_000 {
        return refuse("timestamp nanoseconds out of range");
    }
    Ok(Timestamp {
        seconds: t.seconds,
        nanoseconds: t.nanoseconds,
    })
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

/// Checks what the guest returned; a malformed value is the guest's failure.
pub(crate) struct FromGuest;

impl FromGuest {
    fn malformed(what: &str) -> Error {
        Error::unavailable(
            "guest",
            format!("the component returned a malformed {what}"),
        )
    }

    fn id(s: &str) -> Result<Uuid, Error> {
        parse_canonical(s).ok_or_else(|| Self::malformed("id"))
    }

    /// A read the guest allowed without opening anything to serve.
    pub(crate) fn opened_nothing() -> Error {
        Error::unavailable(
            "guest",
            "the component authorized the read but opened nothing to serve",
        )
    }

    pub(crate) fn workspace(w: wit::Workspace) -> Result<Workspace, Error> {
        workspace(w).map_err(|_| Self::malformed("workspace"))
    }

    pub(crate) fn usage(u: wit::WorkspaceUsage) -> Result<WorkspaceUsage, Error> {
        Ok(WorkspaceUsage {
            workspace_id: Self::id(&u.workspace_id)?,
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        })
    }

    pub(crate) fn chat(c: wit::Chat) -> Result<Chat, Error> {
        chat(c).map_err(|_| Self::malformed("chat"))
    }

    pub(crate) fn chats(cs: Vec<wit::Chat>) -> Result<Vec<Chat>, Error> {
        cs.into_iter().map(Self::chat).collect()
    }

    pub(crate) fn chat_file(f: wit::ChatFile) -> Result<ChatFile, Error> {
        chat_file(f).map_err(|_| Self::malformed("chat file"))
    }

    pub(crate) fn chat_files(fs: Vec<wit::ChatFile>) -> Result<Vec<ChatFile>, Error> {
        fs.into_iter().map(Self::chat_file).collect()
    }

    pub(crate) fn outcomes(
        outcomes: Vec<wit::OutputOutcome>,
        asked: usize,
    ) -> Result<Vec<Result<ChatFile, Error>>, Error> {
        if outcomes.len() != asked {
            return Err(Self::malformed("list of outcomes (not one per output)"));
        }
        outcomes
            .into_iter()
            .map(|o| match o {
                wit::OutputOutcome::Registered(f) => Self::chat_file(f).map(Ok),
                wit::OutputOutcome::Refused(e) => Ok(Err(Self::error(e))),
            })
            .collect()
    }

    pub(crate) fn error(e: wit::StorageError) -> Error {
        use wit::StorageError as W;
        let with_id = |s: &str, make: fn(Uuid) -> Error| Self::id(s).map_or_else(|e| e, make);
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
}

// ---- host values to the guest ----

impl From<Timestamp> for wit::Timestamp {
    fn from(t: Timestamp) -> Self {
        wit::Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }
    }
}

impl From<Workspace> for wit::Workspace {
    fn from(w: Workspace) -> Self {
        wit::Workspace {
            workspace_id: canonical(w.workspace_id),
            user_id: canonical(w.user_id),
            created_at: w.created_at.into(),
        }
    }
}

impl From<Chat> for wit::Chat {
    fn from(c: Chat) -> Self {
        wit::Chat {
            chat_id: canonical(c.chat_id),
            workspace_id: canonical(c.workspace_id),
            created_at: c.created_at.into(),
        }
    }
}

impl From<ChatFile> for wit::ChatFile {
    fn from(f: ChatFile) -> Self {
        wit::ChatFile {
            file_id: canonical(f.file_id),
            chat_id: canonical(f.chat_id),
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
            workspace_id: canonical(u.workspace_id),
            used_bytes: u.used_bytes,
            quota_bytes: u.quota_bytes,
        }
    }
}

impl From<SandboxSession> for wit::SandboxSession {
    fn from(s: SandboxSession) -> Self {
        wit::SandboxSession {
            session_id: canonical(s.session_id),
            chat_id: canonical(s.chat_id),
        }
    }
}
