//! Fault injection: a [`Backend`] wrapper that fails the Nth call of a
//! chosen port, or makes a port slow, for testing that a policy (the
//! built-in one or yours) leaves nothing behind when a port fails.
//!
//! ```
//! use chatstore_testkit::faults::{Fault, FaultInjector};
//! use chatstore_host::{ChatStore, Error, Uuid};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let builder = ChatStore::builder().data_dir(dir.path());
//! let faults = Arc::new(FaultInjector::new(builder.open_backend()?));
//! let store = builder.build_with_backend(faults.clone())?;
//! let user = Uuid::now_v7();
//! store.ensure_workspace(user)?;
//! // The second port call of the next use case fails as a full disk would.
//! faults.fail_nth(None, 2, Fault::DiskFull);
//! let err = store.create_chat(user).unwrap_err();
//! assert_eq!(err.code(), "storage_unavailable");
//! assert!(store.list_chats(user)?.is_empty());
//! # Ok(()) }
//! ```

use chatstore_host::model::{Chat, ChatFile, SandboxSession, Workspace, WorkspaceUsage};
use chatstore_host::names::AttachmentName;
use chatstore_host::ports::{
    ChatFileRepository, ChatRepository, ChatStorage, HostRecords, IdGenerator, Ports,
    SandboxSessionRepository, StorageUsage, WorkspaceRepository,
};
use chatstore_host::staging::Staging;
use chatstore_host::unit::{Access, Backend, Scope, UnitOfWork};
use chatstore_host::{Content, PortError, PortResult, StagedContent, Uuid};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What an injected failure looks like to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An I/O error.
    Io,
    /// The disk is full.
    DiskFull,
    /// The database is busy.
    DatabaseBusy,
}

impl Fault {
    /// Every kind of fault.
    pub const ALL: [Fault; 3] = [Fault::Io, Fault::DiskFull, Fault::DatabaseBusy];

    fn error(self) -> PortError {
        PortError::new(match self {
            Fault::Io => "injected: input/output error",
            Fault::DiskFull => "injected: no space left on device",
            Fault::DatabaseBusy => "injected: database is locked",
        })
    }
}

/// The port names, as in the WIT.
pub const PORTS: [&str; 7] = [
    "workspace-repository",
    "chat-repository",
    "chat-file-repository",
    "sandbox-session-repository",
    "chat-storage",
    "storage-usage",
    "id-generator",
];

#[derive(Default)]
struct State {
    /// (port or any, 1-based position, fault); taken when it fires.
    plan: Option<(Option<&'static str>, usize, Fault)>,
    /// Port calls since the plan was set, in order.
    calls: Vec<&'static str>,
    /// A port (or any, if `None`) whose every call first waits this long.
    slow: Option<(Option<&'static str>, Duration)>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wraps a backend; every port call of every unit of work goes through it.
pub struct FaultInjector {
    inner: Arc<dyn Backend>,
    state: Arc<Mutex<State>>,
}

impl FaultInjector {
    /// Wraps `inner`; no fault is planned.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultInjector {
            inner,
            state: Arc::default(),
        }
    }

    /// Fails the `nth` (from 1) port call from now on — of `port` only, or
    /// of any port if `None` — with `fault`. Fires once. Resets the call log.
    pub fn fail_nth(&self, port: Option<&'static str>, nth: usize, fault: Fault) {
        let mut state = lock(&self.state);
        state.plan = Some((port, nth, fault));
        state.calls.clear();
    }

    /// Makes every call of `port` (of any port if `None`) wait `delay`
    /// before it runs, as a slow disk or a busy database would; until
    /// [`clear`](Self::clear).
    pub fn slow_down(&self, port: Option<&'static str>, delay: Duration) {
        lock(&self.state).slow = Some((port, delay));
    }

    /// Plans nothing and slows nothing; resets the call log.
    pub fn clear(&self) {
        let mut state = lock(&self.state);
        state.plan = None;
        state.slow = None;
        state.calls.clear();
    }

    /// The ports called since the last plan or clear, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        lock(&self.state).calls.clone()
    }

    /// Whether the planned fault has fired.
    pub fn fired(&self) -> bool {
        lock(&self.state).plan.is_none()
    }
}

/// One port's calls, counted and perhaps failed.
struct Gate {
    port: &'static str,
    state: Arc<Mutex<State>>,
}

impl Gate {
    fn pass(&self) -> PortResult<()> {
        let delay = match lock(&self.state).slow {
            Some((port, delay)) if port.is_none_or(|p| p == self.port) => Some(delay),
            _ => None,
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let mut state = lock(&self.state);
        state.calls.push(self.port);
        let Some((port, nth, fault)) = state.plan else {
            return Ok(());
        };
        let seen = match port {
            None => state.calls.len(),
            Some(p) => state.calls.iter().filter(|c| **c == p).count(),
        };
        if port.is_none_or(|p| p == self.port) && seen == nth {
            state.plan = None;
            return Err(fault.error());
        }
        Ok(())
    }
}

struct Faulty<T: ?Sized> {
    gate: Gate,
    inner: Arc<T>,
}

impl<T: ?Sized> Faulty<T> {
    fn new(port: &'static str, state: &Arc<Mutex<State>>, inner: Arc<T>) -> Arc<Self> {
        Arc::new(Faulty {
            gate: Gate {
                port,
                state: state.clone(),
            },
            inner,
        })
    }
}

impl Backend for FaultInjector {
    fn staging(&self) -> Arc<Staging> {
        self.inner.staging()
    }

    fn chat_dir(&self, workspace_id: Uuid, chat_id: Uuid) -> Option<std::path::PathBuf> {
        self.inner.chat_dir(workspace_id, chat_id)
    }

    fn sandbox_outputs(
        &self,
        workspace_id: Uuid,
        chat_id: Uuid,
        recorded: &[chatstore_host::ChatFile],
    ) -> PortResult<chatstore_host::unit::Outputs> {
        self.inner.sandbox_outputs(workspace_id, chat_id, recorded)
    }

    fn begin(&self, access: Access, scope: Scope) -> PortResult<Box<dyn UnitOfWork>> {
        Ok(Box::new(FaultyUnit {
            inner: self.inner.begin(access, scope)?,
            state: self.state.clone(),
        }))
    }
}

struct FaultyUnit {
    inner: Box<dyn UnitOfWork>,
    state: Arc<Mutex<State>>,
}

impl UnitOfWork for FaultyUnit {
    fn ports(&self) -> Ports {
        let p = self.inner.ports();
        let s = &self.state;
        Ports {
            workspaces: Faulty::new(PORTS[0], s, p.workspaces),
            chats: Faulty::new(PORTS[1], s, p.chats),
            files: Faulty::new(PORTS[2], s, p.files),
            sandboxes: Faulty::new(PORTS[3], s, p.sandboxes),
            storage: Faulty::new(PORTS[4], s, p.storage),
            usage: Faulty::new(PORTS[5], s, p.usage),
            ids: Faulty::new(PORTS[6], s, p.ids),
        }
    }

    fn records(&self) -> Arc<dyn HostRecords> {
        // The host's own calls are not the policy's: never failed.
        self.inner.records()
    }

    fn recount(&self, workspace_id: Uuid, chat_id: Option<Uuid>) -> PortResult<Option<u64>> {
        self.inner.recount(workspace_id, chat_id)
    }

    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()> {
        self.inner.set_quota(workspace_id, quota_bytes)
    }

    fn commit(self: Box<Self>) -> PortResult<()> {
        self.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback()
    }
}

/// Delegates each method after the gate lets it pass.
macro_rules! gated {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.gate.pass()?;
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl WorkspaceRepository for Faulty<dyn WorkspaceRepository> {
    gated! {
        fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>>;
        fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>>;
        fn save(&self, workspace: &Workspace) -> PortResult<()>;
    }
}

impl ChatRepository for Faulty<dyn ChatRepository> {
    gated! {
        fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>>;
        fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>>;
        fn save(&self, chat: &Chat) -> PortResult<()>;
        fn delete(&self, chat_id: Uuid) -> PortResult<()>;
    }
}

impl ChatFileRepository for Faulty<dyn ChatFileRepository> {
    gated! {
        fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>>;
        fn get_by_chat_id_and_name(&self, chat_id: Uuid, name: &AttachmentName) -> PortResult<Option<ChatFile>>;
        fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>>;
        fn save(&self, file: &ChatFile) -> PortResult<()>;
        fn delete(&self, file_id: Uuid) -> PortResult<()>;
        fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()>;
    }
}

impl SandboxSessionRepository for Faulty<dyn SandboxSessionRepository> {
    gated! {
        fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>>;
    }
}

impl ChatStorage for Faulty<dyn ChatStorage> {
    gated! {
        fn ensure_chat(&self, chat: &Chat) -> PortResult<()>;
        fn history_size(&self, chat: &Chat) -> PortResult<u64>;
        fn open_history(&self, chat: &Chat) -> PortResult<Content>;
        fn write_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
        fn append_history(&self, chat: &Chat, content: &StagedContent) -> PortResult<()>;
        fn delete_chat(&self, chat: &Chat) -> PortResult<()>;
        fn attachment_size(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Option<u64>>;
        fn write_attachment(&self, chat: &Chat, name: &AttachmentName, content: &StagedContent) -> PortResult<()>;
        fn open_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<Content>;
        fn delete_attachment(&self, chat: &Chat, name: &AttachmentName) -> PortResult<()>;
        fn clear_attachments(&self, chat: &Chat) -> PortResult<()>;
    }
}

impl StorageUsage for Faulty<dyn StorageUsage> {
    gated! {
        fn get_workspace_usage(&self, workspace: &Workspace) -> PortResult<WorkspaceUsage>;
    }
}

impl IdGenerator for Faulty<dyn IdGenerator> {
    gated! {
        fn new_id(&self) -> PortResult<Uuid>;
    }
}
