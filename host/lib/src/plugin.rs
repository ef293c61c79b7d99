//! The `user-storage` interface, for components that use the storage (an
//! agent's tools, plugins): [`add_to_linker`] offers it to any wasmtime
//! application's `Linker`. The store a component opens is bound by the host
//! to one user ([`UserStorage`]); every method runs the policy component's
//! use case as that user, through [`ChatStore`], so the policy still decides
//! and the host still holds the bytes. Content comes in through an output
//! stream into staging (bounded memory, cut off past the workspace's room)
//! and goes out through an input stream from the file the policy opened.

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin-imports",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "chatstore:storage/types": crate::bindings::wit,
            "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll,
            "wasi:io/streams": wasmtime_wasi::p2::bindings::io::streams,
            "wasi:io/error": wasmtime_wasi::p2::bindings::io::error,
            "chatstore:storage/user-storage.store": super::Store,
            "chatstore:storage/user-storage.outgoing": super::Outgoing,
        },
    });
}

use crate::bindings::wit;
use crate::content::Content;
use crate::error::Error;
use crate::ids::parse_id;
use crate::page::PageRequest;
use crate::staging::{ContentKind, StageError, StagingWriter};
use crate::store::{ChatStore, Replacing};
use generated::chatstore::storage::user_storage::{
    self as api, ChatPage, Error as ApiError, FilePage, Host, HostOutgoing, HostStore,
};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

/// The storage a component's calls use: a store and the one user it is
/// bound to.
#[derive(Clone)]
pub struct UserStorage {
    store: ChatStore,
    user: Uuid,
}

impl UserStorage {
    /// `store`, bound to `user`: every call of the component is that user's.
    pub fn new(store: ChatStore, user: Uuid) -> UserStorage {
        UserStorage { store, user }
    }

    /// The user the storage is bound to.
    pub fn user(&self) -> Uuid {
        self.user
    }
}

/// What [`add_to_linker`] needs of an application's store data: the bound
/// storage, and the resource table its WASI context keeps (streams live
/// there, beside the component's other handles).
pub struct UserStorageView<'a> {
    /// The storage the calls use.
    pub storage: &'a UserStorage,
    /// The WASI context's resource table.
    pub table: &'a mut ResourceTable,
}

/// An application's store data that can give a [`UserStorageView`].
pub trait HasUserStorage: Send {
    /// The view the interface's calls run in.
    fn user_storage(&mut self) -> UserStorageView<'_>;
}

struct Data;

impl HasData for Data {
    type Data<'a> = UserStorageView<'a>;
}

/// Adds `chatstore:storage/user-storage` to `linker`. The application adds
/// WASI itself (`wasmtime_wasi::p2::add_to_linker_sync`): the streams this
/// interface hands out are WASI's.
pub fn add_to_linker<T: HasUserStorage + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    api::add_to_linker::<T, Data>(linker, T::user_storage)
}

/// The handle `open` gives; the binding is the view's, not the handle's.
pub struct Store;

/// Content on its way in: where it goes, and the staging it streams into.
pub struct Outgoing {
    target: Target,
    staged: Shared,
    body_taken: bool,
}

enum Target {
    Attachment {
        chat_id: Uuid,
        name: String,
        content_type: Option<String>,
    },
    History {
        chat_id: Uuid,
    },
}

/// The staging an outgoing value and its body stream share; the first
/// error the stream met stays for `finish` to report.
#[derive(Clone)]
struct Shared(Arc<Mutex<Staged>>);

struct Staged {
    writer: Option<StagingWriter>,
    failed: Option<StageError>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Staged> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Answer<T> = wasmtime::Result<Result<T, ApiError>>;

/// The host's error as the interface's.
fn api_error(e: Error) -> ApiError {
    match e {
        Error::WorkspaceNotFound(id) => ApiError::WorkspaceNotFound(id.to_string()),
        Error::WorkspaceQuotaExceeded(id) => ApiError::WorkspaceQuotaExceeded(id.to_string()),
        Error::ChatNotFound(id) => ApiError::ChatNotFound(id.to_string()),
        Error::ChatHasActiveSandbox(id) => ApiError::ChatHasActiveSandbox(id.to_string()),
        Error::ChatFileNotFound(id) => ApiError::ChatFileNotFound(id.to_string()),
        Error::InvalidAttachmentName(name) => ApiError::InvalidAttachmentName(name),
        Error::ReservedAttachmentName(name) => ApiError::ReservedAttachmentName(name),
        Error::ChatFileChanged(name) => ApiError::ChatFileChanged(name),
        Error::InvalidId(s) => ApiError::InvalidId(s),
        Error::InvalidHistory => ApiError::InvalidHistory("the history is not UTF-8 text".into()),
        Error::InvalidLimit(limit) => {
            ApiError::InvalidLimit(u32::try_from(limit).unwrap_or(u32::MAX))
        }
        Error::AfterNotFound(id) => ApiError::AfterNotFound(id.to_string()),
        Error::StorageUnavailable { port, message } => {
            ApiError::StorageUnavailable(wit::PortError { port, message })
        }
        other @ (Error::InvalidArchive(_) | Error::WorkspaceNotEmpty(_)) => {
            ApiError::StorageUnavailable(wit::PortError {
                port: "storage".into(),
                message: other.to_string(),
            })
        }
    }
}

fn page(limit: u32, after: Option<&str>) -> Result<PageRequest, Error> {
    PageRequest::new(Some(u64::from(limit)), after.map(parse_id).transpose()?)
}

impl UserStorageView<'_> {
    /// Runs `call` as the bound user; the host's error as the interface's.
    fn call<T>(
        &self,
        call: impl FnOnce(&ChatStore, Uuid) -> Result<T, Error>,
    ) -> Result<T, ApiError> {
        call(&self.storage.store, self.storage.user).map_err(api_error)
    }

    fn stream(&mut self, content: Content) -> wasmtime::Result<Resource<DynInputStream>> {
        let stream: DynInputStream = Box::new(ContentStream(content));
        Ok(self.table.push(stream)?)
    }

    /// A new outgoing value for `target`, staging into the room the write
    /// has (what it replaces counted back).
    fn outgoing(
        &mut self,
        target: Target,
        replacing: Replacing,
        kind: ContentKind,
    ) -> Answer<Resource<Outgoing>> {
        let chat_id = match target {
            Target::Attachment { chat_id, .. } | Target::History { chat_id } => chat_id,
        };
        let writer = self.call(|s, u| {
            let room = s.room(u, chat_id, replacing)?;
            s.staging()
                .begin(kind, room)
                .map_err(|e| s.staging_failed(u, e))
        });
        let writer = match writer {
            Ok(writer) => writer,
            Err(e) => return Ok(Err(e)),
        };
        let staged = Shared(Arc::new(Mutex::new(Staged {
            writer: Some(writer),
            failed: None,
        })));
        let outgoing = Outgoing {
            target,
            staged,
            body_taken: false,
        };
        Ok(Ok(self.table.push(outgoing)?))
    }
}

impl Host for UserStorageView<'_> {
    fn open(&mut self) -> Answer<Resource<Store>> {
        Ok(Ok(self.table.push(Store)?))
    }
}

impl HostStore for UserStorageView<'_> {
    fn ensure_workspace(&mut self, _: Resource<Store>) -> Answer<wit::Workspace> {
        Ok(self.call(|s, u| s.ensure_workspace(u)).map(Into::into))
    }

    fn get_workspace(&mut self, _: Resource<Store>) -> Answer<wit::Workspace> {
        Ok(self.call(|s, u| s.get_workspace(u)).map(Into::into))
    }

    fn get_usage(&mut self, _: Resource<Store>) -> Answer<wit::WorkspaceUsage> {
        Ok(self.call(|s, u| s.get_usage(u)).map(Into::into))
    }

    fn create_chat(&mut self, _: Resource<Store>) -> Answer<wit::Chat> {
        Ok(self.call(|s, u| s.create_chat(u)).map(Into::into))
    }

    fn get_chat(&mut self, _: Resource<Store>, chat_id: String) -> Answer<wit::Chat> {
        Ok(self
            .call(|s, u| s.get_chat(u, parse_id(&chat_id)?))
            .map(Into::into))
    }

    fn list_chats(
        &mut self,
        _: Resource<Store>,
        limit: u32,
        after: Option<String>,
    ) -> Answer<ChatPage> {
        let page = self.call(|s, u| s.list_chats_page(u, &page(limit, after.as_deref())?));
        Ok(page.map(|p| ChatPage {
            data: p.data.into_iter().map(Into::into).collect(),
            has_more: p.has_more,
            last_id: p.last_id.map(|id| id.to_string()),
        }))
    }

    fn delete_chat(&mut self, _: Resource<Store>, chat_id: String) -> Answer<()> {
        Ok(self.call(|s, u| s.delete_chat(u, parse_id(&chat_id)?)))
    }

    fn read_history(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
    ) -> Answer<(Resource<DynInputStream>, u64)> {
        match self.call(|s, u| s.read_history(u, parse_id(&chat_id)?)) {
            Ok(content) => {
                let len = content.len();
                Ok(Ok((self.stream(content)?, len)))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn append_history(&mut self, _: Resource<Store>, chat_id: String, text: String) -> Answer<()> {
        Ok(self.call(|s, u| s.append_history(u, parse_id(&chat_id)?, text.as_bytes())))
    }

    fn write_history(&mut self, _: Resource<Store>, chat_id: String) -> Answer<Resource<Outgoing>> {
        let chat_id = match self.call(|_, _| parse_id(&chat_id)) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        self.outgoing(
            Target::History { chat_id },
            Replacing::History,
            ContentKind::Text,
        )
    }

    fn list_attachments(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
        limit: u32,
        after: Option<String>,
    ) -> Answer<FilePage> {
        let page = self.call(|s, u| {
            s.list_attachments_page(u, parse_id(&chat_id)?, &page(limit, after.as_deref())?)
        });
        Ok(page.map(|p| FilePage {
            data: p.data.into_iter().map(Into::into).collect(),
            has_more: p.has_more,
            last_id: p.last_id.map(|id| id.to_string()),
        }))
    }

    fn get_attachment(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
        file_id: String,
    ) -> Answer<wit::ChatFile> {
        let file = self.call(|s, u| s.get_attachment(u, parse_id(&chat_id)?, parse_id(&file_id)?));
        Ok(file.map(Into::into))
    }

    fn read_attachment(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
        file_id: String,
    ) -> Answer<(wit::ChatFile, Resource<DynInputStream>)> {
        match self.call(|s, u| s.read_attachment(u, parse_id(&chat_id)?, parse_id(&file_id)?)) {
            Ok((file, content)) => Ok(Ok((file.into(), self.stream(content)?))),
            Err(e) => Ok(Err(e)),
        }
    }

    fn upload_attachment(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
        name: String,
        content_type: Option<String>,
    ) -> Answer<Resource<Outgoing>> {
        let chat_id = match self.call(|_, _| parse_id(&chat_id)) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let target = Target::Attachment {
            chat_id,
            name: name.clone(),
            content_type,
        };
        self.outgoing(target, Replacing::Attachment(&name), ContentKind::Bytes)
    }

    fn delete_attachment(
        &mut self,
        _: Resource<Store>,
        chat_id: String,
        file_id: String,
    ) -> Answer<()> {
        Ok(self.call(|s, u| s.delete_attachment(u, parse_id(&chat_id)?, parse_id(&file_id)?)))
    }

    fn drop(&mut self, store: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl HostOutgoing for UserStorageView<'_> {
    fn body(&mut self, this: Resource<Outgoing>) -> Answer<Resource<DynOutputStream>> {
        let outgoing = self.table.get_mut(&this)?;
        if std::mem::replace(&mut outgoing.body_taken, true) {
            return Ok(Err(ApiError::StorageUnavailable(wit::PortError {
                port: "staging".into(),
                message: "the body was already taken".into(),
            })));
        }
        let stream: DynOutputStream = Box::new(StagingStream(outgoing.staged.clone()));
        Ok(Ok(self.table.push(stream)?))
    }

    fn finish(&mut self, this: Resource<Outgoing>) -> Answer<Option<wit::ChatFile>> {
        let Outgoing { target, staged, .. } = self.table.delete(this)?;
        let UserStorage { store, user } = self.storage;
        let (writer, failed) = {
            let mut staged = staged.lock();
            (staged.writer.take(), staged.failed.take())
        };
        let staged = match (writer, failed) {
            (_, Some(e)) => Err(e),
            (Some(writer), None) => writer.finish(),
            (None, None) => Err(StageError::Write(std::io::Error::other(
                "the content was already finished",
            ))),
        };
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => return Ok(Err(api_error(store.staging_failed(*user, e)))),
        };
        Ok(match target {
            Target::Attachment {
                chat_id,
                name,
                content_type,
            } => store
                .upload_staged(*user, chat_id, &name, content_type.as_deref(), staged)
                .map(|file| Some(file.into())),
            Target::History { chat_id } => store
                .write_staged_history(*user, chat_id, staged)
                .map(|()| None),
        }
        .map_err(api_error))
    }

    fn drop(&mut self, this: Resource<Outgoing>) -> wasmtime::Result<()> {
        // Unfinished content: its staged file goes with its writer.
        self.table.delete(this)?;
        Ok(())
    }
}

/// A file the policy opened, as a WASI input stream.
struct ContentStream(Content);

/// The most one read gives, and the most a write is offered at once (a
/// piece stays in the allocator's heap rather than a mapping of its own).
const PIECE: usize = 256 << 10;

impl InputStream for ContentStream {
    fn read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        let mut piece = vec![0; size.min(PIECE)];
        match self.0.read(&mut piece) {
            Ok(0) if size > 0 => Err(StreamError::Closed),
            Ok(n) => {
                piece.truncate(n);
                Ok(piece.into())
            }
            Err(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ContentStream {
    async fn ready(&mut self) {}
}

/// The body of an outgoing value: every write goes into staging.
struct StagingStream(Shared);

impl OutputStream for StagingStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut staged = self.0.lock();
        if staged.failed.is_some() {
            return Err(StreamError::Closed);
        }
        let Some(writer) = staged.writer.as_mut() else {
            return Err(StreamError::Closed);
        };
        match writer.push(&bytes) {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = e.to_string();
                // Nothing of it stays; `finish` says why.
                staged.writer = None;
                staged.failed = Some(e);
                Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                    message,
                )))
            }
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.0.lock().failed {
            Some(_) => Err(StreamError::Closed),
            None => Ok(PIECE),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StagingStream {
    async fn ready(&mut self) {}
}

/// The limits of one plugin's run.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// The most linear memory the plugin may grow to, in bytes.
    pub memory_bytes: usize,
    /// The wall time after which its code is stopped.
    pub timeout: std::time::Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_bytes: 512 << 20,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// How a plugin's run ended, when it did not exit by itself.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The component could not be compiled, or is not a command of the
    /// `plugin` world (it exports no `wasi:cli/run`, or imports what the
    /// host does not give).
    #[error("the plugin cannot run: {0}")]
    Load(String),
    /// It ran past its time.
    #[error("the plugin ran past its {0:?} and was stopped")]
    TimedOut(std::time::Duration),
    /// It trapped (out of memory, a panic, …).
    #[error("the plugin trapped: {0}")]
    Trapped(String),
}

/// A plugin's store data: its WASI context (standard streams and arguments;
/// no files, no sockets), its memory limit and the bound storage.
struct PluginState {
    wasi: wasmtime_wasi::WasiCtx,
    table: ResourceTable,
    limits: wasmtime::StoreLimits,
    storage: UserStorage,
}

impl wasmtime_wasi::WasiView for PluginState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HasUserStorage for PluginState {
    fn user_storage(&mut self) -> UserStorageView<'_> {
        UserStorageView {
            storage: &self.storage,
            table: &mut self.table,
        }
    }
}

/// Runs the command component `wasm` (`wasi:cli/run`) with `args`, its
/// standard streams the process's, and the storage bound to `storage`'s
/// user: the `chatstore run` command. Gives its exit status. `cache` keeps
/// the compiled component between runs, as for the policy.
pub fn run_command(
    storage: UserStorage,
    wasm: &[u8],
    args: &[String],
    limits: PluginLimits,
    cache: Option<&std::path::Path>,
) -> Result<i32, PluginError> {
    let load = |e: wasmtime::Error| PluginError::Load(format!("{e:#}"));
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).map_err(load)?;
    let (component, _) = crate::compiled::load(&engine, wasm, cache).map_err(load)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(load)?;
    add_to_linker(&mut linker).map_err(load)?;
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .inherit_stdio()
        .args(args)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = PluginState {
        wasi,
        table: ResourceTable::new(),
        limits: wasmtime::StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .build(),
        storage,
    };
    let mut store = wasmtime::Store::new(&engine, state);
    store.limiter(|state| &mut state.limits);
    // One tick: the deadline is the first epoch the timer thread gives.
    store.set_epoch_deadline(1);
    let timer = Timer::start(&engine, limits.timeout);
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .map_err(load)?;
    let ran = command.wasi_cli_run().call_run(&mut store);
    drop(timer);
    match ran {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(exit.0),
            None if e.downcast_ref() == Some(&wasmtime::Trap::Interrupt) => {
                Err(PluginError::TimedOut(limits.timeout))
            }
            None => Err(PluginError::Trapped(format!("{e:#}"))),
        },
    }
}

/// Advances an engine's epoch once `after` has passed, unless dropped first.
struct Timer(Option<std::sync::mpsc::Sender<()>>);

impl Timer {
    fn start(engine: &wasmtime::Engine, after: std::time::Duration) -> Timer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let engine = engine.weak();
        std::thread::spawn(move || {
            if stopped.recv_timeout(after) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                && let Some(engine) = engine.upgrade()
            {
                engine.increment_epoch();
            }
        });
        Timer(Some(stop))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}
