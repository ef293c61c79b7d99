//! [`ChatStore`]: the storage component, compiled once, called through a
//! typed Rust API with the ports wired in.

use crate::adapters::DataDirBackend;
use crate::adapters::fs::DataDir;
use crate::adapters::memory::MemoryMetadata;
use crate::adapters::postgres::PostgresMetadata;
use crate::adapters::sqlite::SqliteMetadata;
use crate::bindings::{self, Guest, StorageService, StorageServicePre, wit};
use crate::call::{CallState, Limit};
use crate::compiled::{self, ComponentSource};
use crate::content::Content;
use crate::error::{Error, PortError, PortResult, SetupError};
use crate::ids::canonical;
use crate::model::{
    Chat, ChatFile, SandboxEnd, SandboxOutput, SandboxSession, SandboxStart, Unregistered,
    Workspace, WorkspaceUsage,
};
use crate::names::AttachmentName;
use crate::page::{Page, PageRequest};
use crate::ports::{HostRecords, Ports};
use crate::staging::{ContentKind, StageError, StagedContent, Staging};
use crate::unit::{Access, Backend, FixedPorts, MetadataStore, Scope, UnitOfWork};
use crate::values::FromGuest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

/// The storage component built from this repository's `guest/` crate.
pub const STORAGE_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/chatstore_storage.wasm"));

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./chatstore-data";

/// The default quota of every workspace: 1 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;

/// The default memory cap of one guest instance: 256 MiB.
pub const DEFAULT_MAX_GUEST_MEMORY: usize = 256 << 20;

/// The default time one call may run guest code: 10 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the engine's epoch advances; a call's deadline is counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much of its thread's CPU time a read that answers at once
/// ([`ChatStore::now`]) may use, in its ports too, before it gives up:
/// counted from the first epoch tick during the read and checked at the
/// next, so a read that overruns holds its thread for about two ticks.
const AT_ONCE_LIMIT: Duration = Duration::from_millis(1);

/// Core instances one component instance may create: the guest has a few
/// (its module plus the shims the component linker adds); a hostile one gets no more.
const MAX_CORE_INSTANCES: usize = 16;

/// Linear memories one component instance may have (the guest's own; a
/// hostile one gets no more), whether instances are pooled or not.
const MAX_MEMORIES: usize = 2;

/// Tables one component instance may have, and elements in each.
const MAX_TABLES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Bytes of each pooled instance's memory and tables kept mapped between
/// calls (zeroed, not unmapped): the pages a call touches anyway.
const KEEP_RESIDENT: usize = 128 << 10;

/// The most bytes the host lifts out of the guest in one crossing (a port
/// call's arguments or an export's results): strings and lists past it
/// trap the call instead of growing the host's memory.
const MAX_LIFTED_BYTES: usize = 16 << 20;

/// How much of a trapped guest's standard error is kept for the error message.
const GUEST_STDERR_BYTES: usize = 4096;

/// The metadata database's file name inside the data directory.
pub const DATABASE_FILE: &str = "chatstore.db";

/// Where metadata lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Metadata {
    /// SQLite at `<data-dir>/chatstore.db`: durable, shared by the
    /// processes of one machine.
    #[default]
    Sqlite,
    /// In memory: gone when the process ends.
    Memory,
    /// PostgreSQL at this URL (`postgres://user@host:port/db`): durable,
    /// shared by several hosts that mount the same data directory; its
    /// advisory locks replace the data directory's `flock`s.
    Postgres(String),
}

impl std::str::FromStr for Metadata {
    type Err = String;

    /// `sqlite`, `memory`, or a `postgres://` (`postgresql://`) URL.
    fn from_str(s: &str) -> Result<Metadata, String> {
        match s {
            "sqlite" => Ok(Metadata::Sqlite),
            "memory" => Ok(Metadata::Memory),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Metadata::Postgres(url.to_owned()))
            }
            _ => Err("expected sqlite, memory or a postgres:// URL".to_owned()),
        }
    }
}

/// The wall clock the guest reads; tests pin it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: SystemTime) -> Clock {
        Clock(Arc::new(move || at))
    }

    /// A clock that reads `now()` every time the guest asks.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// What time it is by this clock.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The guest's view of a [`Clock`]: WASI's wall clock.
struct WallClock(Clock);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        // WASI's wall clock cannot go before the epoch.
        self.0.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// Configures and builds a [`ChatStore`].
#[derive(Debug, Clone)]
pub struct ChatStoreBuilder {
    data_dir: PathBuf,
    metadata: Metadata,
    quota_bytes: u64,
    clock: Clock,
    component: Option<Vec<u8>>,
    max_guest_memory: usize,
    pooled_instances: Option<u32>,
    call_timeout: Duration,
    compile_cache: Option<PathBuf>,
}

impl Default for ChatStoreBuilder {
    fn default() -> Self {
        ChatStoreBuilder {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            metadata: Metadata::default(),
            quota_bytes: DEFAULT_QUOTA_BYTES,
            clock: Clock::system(),
            component: None,
            max_guest_memory: DEFAULT_MAX_GUEST_MEMORY,
            pooled_instances: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            compile_cache: None,
        }
    }
}

impl ChatStoreBuilder {
    /// The data directory (default `./chatstore-data`).
    pub fn data_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.data_dir = path.as_ref().to_path_buf();
        self
    }

    /// Where metadata lives (default SQLite in the data directory).
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The quota of every workspace, in bytes (default 1 GiB).
    pub fn quota_bytes(mut self, bytes: u64) -> Self {
        self.quota_bytes = bytes;
        self
    }

    /// The wall clock the guest reads (default the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs this component instead of the built-in one; it must target the
    /// `storage-service` world.
    pub fn component(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.component = Some(bytes.into());
        self
    }

    /// The most linear memory one guest instance may use (default 256 MiB).
    pub fn max_guest_memory(mut self, bytes: usize) -> Self {
        self.max_guest_memory = bytes;
        self
    }

    /// The longest one call may run guest code (default 10 s); past it the
    /// guest is interrupted and the call is `storage_unavailable`. Time spent
    /// in the host's ports (disk, database) does not count, so a slow disk
    /// or a loaded machine's port calls never use up a policy's time.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Allocates guest instances from a pool of `instances` slots set up
    /// once (wasmtime's pooling allocator): cheaper instantiation for a
    /// server. At most `instances` calls run at once; more fail with
    /// `storage_unavailable`, so callers should bound their concurrency.
    pub fn pooled_instances(mut self, instances: u32) -> Self {
        self.pooled_instances = Some(instances);
        self
    }

    /// Keeps the compiled component in `dir` (created `0700` if missing) and
    /// loads it from there next time instead of compiling it: a process
    /// then starts in milliseconds. Entries are keyed by the component and
    /// the engine's configuration; one that is damaged, foreign to this
    /// engine, or in a directory others can write is compiled again. Off by
    /// default.
    pub fn compile_cache(mut self, dir: impl AsRef<Path>) -> Self {
        self.compile_cache = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Opens the data directory and the metadata (recovering from any
    /// crash) without loading the component: what `fsck` works on.
    pub fn open_backend(&self) -> Result<Arc<DataDirBackend>, SetupError> {
        let data_dir_error = |source| SetupError::DataDir {
            path: self.data_dir.clone(),
            source,
        };
        let data = DataDir::open(&self.data_dir).map_err(data_dir_error)?;
        let metadata: Arc<dyn MetadataStore> = match &self.metadata {
            Metadata::Memory => Arc::new(MemoryMetadata::default()),
            Metadata::Sqlite => Arc::new(
                SqliteMetadata::open(self.data_dir.join(DATABASE_FILE))
                    .map_err(|e| data_dir_error(std::io::Error::other(e.message)))?,
            ),
            Metadata::Postgres(url) => {
                Arc::new(PostgresMetadata::open(url).map_err(|e| SetupError::Database(e.message))?)
            }
        };
        let backend = DataDirBackend::open(data, metadata, self.quota_bytes)
            .map_err(|e| data_dir_error(std::io::Error::other(e.message)))?;
        Ok(Arc::new(backend))
    }

    /// Opens the data directory (recovering from any crash) and builds the
    /// store with the configured adapters.
    pub fn build(self) -> Result<ChatStore, SetupError> {
        let backend = self.open_backend()?;
        self.build_with_backend(backend)
    }

    /// Builds the store on the given adapters instead (fakes, your own
    /// backends), without transactions, staging content in `staging`; the
    /// data-directory, metadata and quota settings are not used.
    pub fn build_with_ports(
        self,
        ports: Ports,
        records: Arc<dyn HostRecords>,
        staging: Arc<Staging>,
    ) -> Result<ChatStore, SetupError> {
        self.build_with_backend(Arc::new(FixedPorts {
            ports,
            records,
            staging,
        }))
    }

    /// Builds the store on a backend that gives each call its ports and
    /// decides its fate.
    pub fn build_with_backend(self, backend: Arc<dyn Backend>) -> Result<ChatStore, SetupError> {
        // One line, whatever wasmtime's message looks like.
        let one_line = |e: &wasmtime::Error| {
            format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let component_error = |e: wasmtime::Error| SetupError::Component(one_line(&e));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        if let Some(instances) = self.pooled_instances {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES as u32))
                .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
                .total_memories(instances.saturating_mul(MAX_MEMORIES as u32))
                .total_tables(instances.saturating_mul(MAX_TABLES as u32))
                .max_memories_per_component(MAX_MEMORIES as u32)
                .max_tables_per_component(MAX_TABLES as u32)
                .table_elements(MAX_TABLE_ELEMENTS)
                .max_memory_size(self.max_guest_memory)
                // What a call touches stays mapped and is zeroed for the
                // next instance, instead of being faulted in again.
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(component_error)?;
        let bytes = self.component.as_deref().unwrap_or(STORAGE_COMPONENT);
        let (component, source) = compiled::load(&engine, bytes, self.compile_cache.as_deref())
            .map_err(component_error)?;
        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker).map_err(component_error)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(component_error)?;
        let pre = StorageServicePre::new(pre).map_err(|e| {
            SetupError::Component(format!(
                "it does not export `chatstore:storage/storage@0.4.0` as the storage-service world \
                 requires ({})",
                one_line(&e)
            ))
        })?;
        Ok(ChatStore {
            inner: Arc::new(Inner {
                _ticker: EpochTicker::start(&engine),
                engine,
                pre,
                backend,
                clock: self.clock,
                max_guest_memory: self.max_guest_memory,
                call_timeout: self.call_timeout,
                source,
                // In a pool, kept instances leave half its slots to calls.
                kept: KeptInstances::new(
                    self.pooled_instances
                        .map_or(MAX_KEPT, |n| (n as usize / 2).min(MAX_KEPT)),
                ),
                slow_readers: SlowReaders::default(),
            }),
        })
    }
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped, so that
/// guest code past its deadline is interrupted.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (engine, stopped) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("chatstore-epoch".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Inner {
    _ticker: EpochTicker,
    engine: Engine,
    pre: StorageServicePre<CallState>,
    backend: Arc<dyn Backend>,
    clock: Clock,
    max_guest_memory: usize,
    call_timeout: Duration,
    source: ComponentSource,
    kept: KeptInstances,
    slow_readers: SlowReaders,
}

/// The users whose read at once ran out of time: their reads are not tried
/// at once again in this process, so a slow policy holds a thread that
/// must not block once per user, not on every read.
#[derive(Default)]
struct SlowReaders(std::sync::Mutex<std::collections::HashSet<Uuid>>);

/// The most users remembered as slow readers; past it, all are forgotten
/// (each may cost one more read that runs out of time).
const MAX_SLOW_READERS: usize = 4096;

impl SlowReaders {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn contains(&self, user: Uuid) -> bool {
        self.lock().contains(&user)
    }

    fn insert(&self, user: Uuid) {
        let mut users = self.lock();
        if users.len() >= MAX_SLOW_READERS {
            users.clear();
        }
        users.insert(user);
    }
}

/// An instance that answered its last call, kept for its user's next one:
/// a user's calls may share an instance, different users' never do.
struct Kept {
    user: Uuid,
    store: Store<CallState>,
    service: StorageService,
    stderr: MemoryOutputPipe,
}

/// The instances kept between calls, at most [`MAX_KEPT`], oldest dropped first.
struct KeptInstances {
    kept: std::sync::Mutex<std::collections::VecDeque<Kept>>,
    max: usize,
}

/// Instances kept between calls (in a pool, at most half its slots).
const MAX_KEPT: usize = 32;

/// The most linear memory an instance may hold and still be kept.
const MAX_KEPT_MEMORY: usize = 8 << 20;

impl KeptInstances {
    fn new(max: usize) -> KeptInstances {
        KeptInstances {
            kept: std::sync::Mutex::default(),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Kept>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The user's kept instance, if there is one.
    fn take(&self, user: Uuid) -> Option<Kept> {
        let mut kept = self.lock();
        let at = kept.iter().rposition(|k| k.user == user)?;
        kept.remove(at)
    }

    fn put(&self, instance: Kept) {
        let dropped = {
            let mut kept = self.lock();
            kept.push_back(instance);
            (kept.len() > self.max).then(|| kept.pop_front())
        };
        drop(dropped);
    }

    /// Drops every kept instance; whether there was one.
    fn clear(&self) -> bool {
        let dropped = std::mem::take(&mut *self.lock());
        !dropped.is_empty()
    }
}

/// The epoch ticks that cover `time` (at least one).
fn ticks(time: Duration) -> u64 {
    u64::try_from(time.as_nanos().div_ceil(EPOCH_TICK.as_nanos()))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How a call's unit of work begins.
enum Begin {
    Locked(Access),
    Unlocked,
}

/// Whether a call may wait (for a lock, a database across the network, a
/// new instance) or must answer on the calling thread at once: then only
/// unlocked, in a unit from [`Backend::begin_at_once`] and the user's kept
/// instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Allowed,
    Not,
}

/// How one run of a call went: its answer, that it must run again under
/// its locks, or that it would have had to wait (nothing was done).
enum Attempt<U> {
    Done(Result<U, Error>),
    NeedsLock,
    WouldWait,
}

/// Whether the guest was interrupted at its call's limit.
fn ran_out_of_time(trap: &wasmtime::Error) -> bool {
    trap.downcast_ref() == Some(&wasmtime::Trap::Interrupt)
}

/// The answer of a call that was allowed to wait.
fn waited<U>(answer: Option<Result<U, Error>>) -> Result<U, Error> {
    answer.unwrap_or_else(|| {
        Err(Error::unavailable(
            "transaction",
            "a call that may wait gave up waiting",
        ))
    })
}

/// One use-case call, as the log names it.
struct UseCase {
    /// The export's WIT name.
    name: &'static str,
    access: Access,
    /// Whether the built-in policy reads metadata alone for it: it runs in
    /// a unit that waits for no lock ([`Backend::begin_unlocked`]), and
    /// again under the locks if the component touched more.
    metadata_only: bool,
    user: Uuid,
    chat: Option<Uuid>,
    file: Option<Uuid>,
}

impl UseCase {
    fn read(name: &'static str, user: Uuid) -> UseCase {
        UseCase {
            name,
            access: Access::Read,
            metadata_only: false,
            user,
            chat: None,
            file: None,
        }
    }

    fn metadata(name: &'static str, user: Uuid) -> UseCase {
        UseCase {
            metadata_only: true,
            ..UseCase::read(name, user)
        }
    }

    fn write(name: &'static str, user: Uuid) -> UseCase {
        UseCase {
            access: Access::Write,
            ..UseCase::read(name, user)
        }
    }

    fn chat(self, chat: Uuid) -> UseCase {
        UseCase {
            chat: Some(chat),
            ..self
        }
    }

    fn file(self, file: Uuid) -> UseCase {
        UseCase {
            file: Some(file),
            ..self
        }
    }

    /// The use case's span: user, chat and file now, outcome code and
    /// duration when it ends.
    fn span(&self) -> tracing::Span {
        let span = tracing::debug_span!(
            "use_case",
            name = self.name,
            user = %self.user,
            chat = tracing::field::Empty,
            file = tracing::field::Empty,
        );
        if let Some(chat) = self.chat {
            span.record("chat", tracing::field::display(chat));
        }
        if let Some(file) = self.file {
            span.record("file", tracing::field::display(file));
        }
        span
    }
}

/// The storage API: each method runs one use case of the storage component
/// in a fresh guest instance. Cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct ChatStore {
    inner: Arc<Inner>,
}

type GuestResult<T> = wasmtime::Result<Result<T, wit::StorageError>>;

/// The reads of metadata that answer at once or not at all
/// ([`ChatStore::now`]): each is its [`ChatStore`] namesake's answer, or
/// `None`.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    store: &'a ChatStore,
}

impl Now<'_> {
    /// [`ChatStore::get_workspace`], at once or not at all.
    pub fn get_workspace(&self, user_id: Uuid) -> Option<Result<Workspace, Error>> {
        self.store.get_workspace_as(Wait::Not, user_id)
    }

    /// [`ChatStore::get_usage`], at once or not at all.
    pub fn get_usage(&self, user_id: Uuid) -> Option<Result<WorkspaceUsage, Error>> {
        self.store.get_usage_as(Wait::Not, user_id)
    }

    /// [`ChatStore::get_chat`], at once or not at all.
    pub fn get_chat(&self, user_id: Uuid, chat_id: Uuid) -> Option<Result<Chat, Error>> {
        self.store.get_chat_as(Wait::Not, user_id, chat_id)
    }

    /// [`ChatStore::get_attachment`], at once or not at all.
    pub fn get_attachment(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    ) -> Option<Result<ChatFile, Error>> {
        self.store
            .get_attachment_as(Wait::Not, user_id, chat_id, file_id)
    }
}

/// What a write replaces, for [`ChatStore::room`].
#[derive(Clone, Copy, Debug)]
pub enum Replacing<'a> {
    /// Nothing: the write adds (a new attachment, an append).
    Nothing,
    /// The chat's history.
    History,
    /// The attachment of this name, if there is one.
    Attachment(&'a str),
}

impl ChatStore {
    /// A builder with the defaults: `./chatstore-data`, SQLite metadata,
    /// 1 GiB quota, the system clock, the built-in component.
    pub fn builder() -> ChatStoreBuilder {
        ChatStoreBuilder::default()
    }

    /// Whether the component was compiled at start or loaded from the
    /// compile cache.
    pub fn component_source(&self) -> ComponentSource {
        self.inner.source
    }

    /// The reads of metadata for a caller that must not block, such as an
    /// async runtime's worker: each answers on the calling thread at once,
    /// or gives `None` having done nothing, and the caller then makes the
    /// same read where it may wait.
    ///
    /// A read answers at once when the user's instance from an earlier call
    /// is kept, the metadata is on this host and no writer holds it back
    /// (SQLite, memory; never PostgreSQL, a network round trip away), and
    /// the policy reads metadata alone. A read that uses more than 1 ms of
    /// its thread's CPU gives up within about two ticks of the engine's
    /// epoch (10 ms each), and that user's reads are not tried at once
    /// again.
    ///
    /// ```no_run
    /// # fn read(store: &chatstore_host::ChatStore, user: uuid::Uuid, chat: uuid::Uuid)
    /// # -> Result<chatstore_host::Chat, chatstore_host::Error> {
    /// let chat = match store.now().get_chat(user, chat) {
    ///     Some(answer) => answer?,
    ///     // In an async server: tokio::task::spawn_blocking.
    ///     None => store.get_chat(user, chat)?,
    /// };
    /// # Ok(chat) }
    /// ```
    pub fn now(&self) -> Now<'_> {
        Now { store: self }
    }

    /// Runs `f` on the ports and records of one unit of work on `scope`,
    /// outside the component (for the host's own calls and for
    /// inspection); commits if `f` succeeds.
    pub fn with_ports<T>(
        &self,
        access: Access,
        scope: Scope,
        f: impl FnOnce(&Ports, &dyn HostRecords) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.with_unit(access, scope, |unit| f(&unit.ports(), &*unit.records()))
    }

    /// Runs `f` on the ports and records of one unit of work that reads
    /// `scope`'s metadata alone and waits for no lock, as the built-in
    /// policy's reads of metadata run ([`Backend::begin_unlocked`]): its
    /// chat storage serves nothing.
    pub fn with_metadata_ports<T>(
        &self,
        scope: Scope,
        f: impl FnOnce(&Ports, &dyn HostRecords) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let unit = self.begin(Begin::Unlocked, scope)?;
        let result = f(&unit.ports(), &*unit.records());
        settle(unit, result)
    }

    pub(crate) fn with_unit<T>(
        &self,
        access: Access,
        scope: Scope,
        f: impl FnOnce(&dyn UnitOfWork) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let unit = self.begin(Begin::Locked(access), scope)?;
        let result = f(&*unit);
        settle(unit, result)
    }

    /// A unit of work on `scope`, begun as `begin` says.
    fn begin(&self, begin: Begin, scope: Scope) -> Result<Box<dyn UnitOfWork>, Error> {
        let backend = &self.inner.backend;
        match begin {
            Begin::Locked(access) => backend.begin(access, scope),
            Begin::Unlocked => backend.begin_unlocked(scope),
        }
        .map_err(unavailable("transaction"))
    }

    /// Counts the user's workspace on disk into the usage ledger and gives
    /// its usage: what sandboxes wrote since the last count included.
    pub fn recount_usage(&self, user_id: Uuid) -> Result<WorkspaceUsage, Error> {
        self.change_workspace(user_id, |unit, workspace| {
            unit.recount(workspace.workspace_id, None).map(drop)
        })
    }

    /// Gives the user's workspace a quota of its own, or with `None` the
    /// configured one again, and answers its usage against it. A quota
    /// below what the workspace holds refuses its growing writes until it
    /// is back under (shrinking ones pass); nothing is removed.
    pub fn set_quota(
        &self,
        user_id: Uuid,
        quota_bytes: Option<u64>,
    ) -> Result<WorkspaceUsage, Error> {
        self.change_workspace(user_id, |unit, workspace| {
            unit.set_quota(workspace.workspace_id, quota_bytes)
        })
    }

    /// Makes the host's own `change` to the user's workspace's usage in one
    /// unit of work, and answers its usage after.
    fn change_workspace(
        &self,
        user_id: Uuid,
        change: impl FnOnce(&dyn UnitOfWork, &Workspace) -> PortResult<()>,
    ) -> Result<WorkspaceUsage, Error> {
        self.with_unit(Access::Write, Scope::User(user_id), |unit| {
            let ports = unit.ports();
            let workspace = users_workspace(&ports, user_id)?;
            change(unit, &workspace).map_err(unavailable("storage-usage"))?;
            ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))
        })
    }

    /// The staging area: content is written there, in bounded memory, before
    /// the call that stores it (`upload_staged` and the like).
    pub fn staging(&self) -> Arc<Staging> {
        self.inner.backend.staging()
    }

    /// The most bytes a write into the user's chat may bring now: the
    /// quota, less what the workspace uses, plus what the write replaces on
    /// disk. Content past it cannot fit, so it can be refused while it
    /// streams in; the call itself checks again, exactly, as it writes.
    pub fn room(&self, user_id: Uuid, chat_id: Uuid, replacing: Replacing) -> Result<u64, Error> {
        self.with_ports(Access::Read, Scope::User(user_id), |ports, _| {
            let workspace = users_workspace(ports, user_id)?;
            let chat = ports
                .chats
                .get(chat_id)
                .map_err(unavailable("chat-repository"))?
                .filter(|c| c.workspace_id == workspace.workspace_id)
                .ok_or(Error::ChatNotFound(chat_id))?;
            let storage = unavailable("chat-storage");
            let replaced = match replacing {
                Replacing::Nothing => 0,
                Replacing::History => ports.storage.history_size(&chat).map_err(storage)?,
                Replacing::Attachment(name) => match AttachmentName::normalized(name) {
                    Ok(name) => (ports.storage.attachment_size(&chat, &name))
                        .map_err(storage)?
                        .unwrap_or(0),
                    Err(_) => 0,
                },
            };
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            let others = usage.used_bytes.saturating_sub(replaced);
            // A write no larger than what it replaces always fits, even over quota.
            Ok(usage.quota_bytes.saturating_sub(others).max(replaced))
        })
    }

    /// Stages `content` for a write into the user's chat, refusing it once
    /// it passes the room the write has.
    fn stage_for(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        replacing: Replacing,
        kind: ContentKind,
        content: impl Read,
    ) -> Result<StagedContent, Error> {
        let limit = self.room(user_id, chat_id, replacing)?;
        self.staging()
            .stage(content, kind, limit)
            .map_err(|e| self.staging_failed(user_id, e))
    }

    /// The error of content that could not be staged for the user.
    pub fn staging_failed(&self, user_id: Uuid, e: StageError) -> Error {
        match e {
            StageError::TooLarge { .. } => match self.get_workspace(user_id) {
                Ok(workspace) => Error::WorkspaceQuotaExceeded(workspace.workspace_id),
                Err(e) => e,
            },
            StageError::NotText => Error::InvalidHistory,
            StageError::Read(e) => {
                Error::unavailable("content", format!("reading the content: {e}"))
            }
            StageError::Write(e) => Error::unavailable("staging", e.to_string()),
        }
    }

    /// Runs one export in the user's instance, in a `use_case` span, with
    /// `staged` content offered to it. A trap is this call's
    /// `storage_unavailable`, with what the guest printed to stderr.
    fn call<T, U>(
        &self,
        use_case: UseCase,
        staged: Option<StagedContent>,
        export: impl Fn(&Guest, &mut Store<CallState>, Option<&wit::StagedContent>) -> GuestResult<T>,
        convert: impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Result<U, Error> {
        waited(self.call_as(Wait::Allowed, use_case, staged, export, convert))
    }

    /// [`call`](Self::call), or with [`Wait::Not`] the call's answer at once
    /// on this thread, or `None` having done nothing.
    fn call_as<T, U>(
        &self,
        wait: Wait,
        use_case: UseCase,
        staged: Option<StagedContent>,
        export: impl Fn(&Guest, &mut Store<CallState>, Option<&wit::StagedContent>) -> GuestResult<T>,
        convert: impl Fn(T, Option<Content>) -> Result<U, Error>,
    ) -> Option<Result<U, Error>> {
        let span = use_case.span();
        let _entered = span.enter();
        let started = Instant::now();
        let (user, access) = (use_case.user, use_case.access);
        let first = match (use_case.metadata_only, wait) {
            (true, wait) => self.run_export(wait, Begin::Unlocked, user, None, &export, &convert),
            (false, Wait::Allowed) => Attempt::NeedsLock,
            (false, Wait::Not) => Attempt::WouldWait,
        };
        let result = match first {
            Attempt::Done(result) => result,
            Attempt::WouldWait => {
                let duration_us = started.elapsed().as_micros() as u64;
                tracing::debug!(duration_us, "use case would wait: not answered at once");
                return None;
            }
            Attempt::NeedsLock => {
                let locked = Begin::Locked(access);
                match self.run_export(Wait::Allowed, locked, user, staged, &export, &convert) {
                    Attempt::Done(result) => result,
                    Attempt::NeedsLock | Attempt::WouldWait => Err(Error::unavailable(
                        "transaction",
                        "a unit of work under its locks asked for its locks",
                    )),
                }
            }
        };
        let duration_us = started.elapsed().as_micros() as u64;
        match &result {
            Ok(_) => tracing::debug!(code = "ok", duration_us, "use case"),
            Err(Error::StorageUnavailable { port, message }) => tracing::warn!(
                code = "storage_unavailable",
                port,
                message,
                duration_us,
                "use case"
            ),
            Err(e) => tracing::debug!(code = e.code(), duration_us, "use case"),
        }
        Some(result)
    }

    /// A new store for `caller`'s calls: WASI with the store's clock and a
    /// captured stderr, the guest limits, the hostcall bound and the
    /// guest-time deadline.
    fn new_store(
        &self,
        ports: Ports,
        caller: Uuid,
        limit: Limit,
    ) -> (Store<CallState>, MemoryOutputPipe) {
        let inner = &*self.inner;
        let stderr = MemoryOutputPipe::new(GUEST_STDERR_BYTES);
        let wasi = WasiCtxBuilder::new()
            .wall_clock(WallClock(inner.clock.clone()))
            .stderr(stderr.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(inner.max_guest_memory)
            .instances(MAX_CORE_INSTANCES)
            .memories(MAX_MEMORIES)
            .tables(MAX_TABLES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .build();
        let state = CallState::new(wasi, limits, ports, caller, limit);
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(MAX_LIFTED_BYTES);
        // When the epoch reaches the deadline, the call's limit is checked:
        // a deadline counts guest time, so the time spent in ports since the
        // call began is given back.
        store.epoch_deadline_callback(|mut store| {
            Ok(match store.data_mut().time_left() {
                Some(left) => UpdateDeadline::Continue(ticks(left)),
                None => UpdateDeadline::Interrupt,
            })
        });
        (store, stderr)
    }

    /// Runs `export` once in a unit begun as `begin` says; with
    /// [`Wait::Not`], only if that can start at once.
    fn run_export<T, U>(
        &self,
        wait: Wait,
        begin: Begin,
        caller: Uuid,
        staged: Option<StagedContent>,
        export: impl FnOnce(
            &Guest,
            &mut Store<CallState>,
            Option<&wit::StagedContent>,
        ) -> GuestResult<T>,
        convert: impl FnOnce(T, Option<Content>) -> Result<U, Error>,
    ) -> Attempt<U> {
        let inner = &*self.inner;
        let staging = inner.backend.staging();
        let at_once = wait == Wait::Not;
        let (unit, kept, limit) = if at_once {
            // Only unlocked, in an instance already kept, and in a unit
            // that begins at once.
            if matches!(begin, Begin::Locked(_)) || inner.slow_readers.contains(caller) {
                return Attempt::WouldWait;
            }
            let Some(kept) = inner.kept.take(caller) else {
                return Attempt::WouldWait;
            };
            match inner.backend.begin_at_once(Scope::User(caller)) {
                Some(Ok(unit)) => (unit, Some(kept), Limit::CpuTime(AT_ONCE_LIMIT)),
                answer => {
                    inner.kept.put(kept);
                    return match answer {
                        Some(Err(e)) => Attempt::Done(Err(unavailable("transaction")(e))),
                        _ => Attempt::WouldWait,
                    };
                }
            }
        } else {
            let unit = match self.begin(begin, Scope::User(caller)) {
                Ok(unit) => unit,
                Err(e) => {
                    if let Some(content) = &staged {
                        staging.discard(content);
                    }
                    return Attempt::Done(Err(e));
                }
            };
            // The same user's last instance if one is kept, else a new one.
            let kept = inner.kept.take(caller);
            (unit, kept, Limit::GuestTime(inner.call_timeout))
        };
        let (mut store, service, stderr) = match kept {
            Some(Kept {
                mut store,
                service,
                stderr,
                ..
            }) => {
                store.data_mut().begin_call(unit.ports(), limit);
                (store, Ok(service), stderr)
            }
            None => {
                let (mut store, stderr) = self.new_store(unit.ports(), caller, limit);
                let mut service = inner.pre.instantiate(&mut store);
                if service.is_err() && inner.kept.clear() {
                    // The pool's slots may all be held by kept instances.
                    service = inner.pre.instantiate(&mut store);
                }
                (store, service, stderr)
            }
        };
        let offered = staged.map(|content| store.data_mut().offer(content));
        store.set_epoch_deadline(ticks(limit.duration()));
        let (outcome, service) = match service {
            Ok(service) => (
                export(
                    service.chatstore_storage_storage(),
                    &mut store,
                    offered.as_ref(),
                ),
                Some(service),
            ),
            Err(e) => (Err(e), None),
        };
        let leftovers = store.data_mut().leftovers();
        // Nothing of the unit of work outlives the call in the instance.
        store.data_mut().end_call();
        // An instance that trapped or printed is not used again; one that
        // answered is kept for this user's next call (never another user's).
        match service {
            Some(service)
                if outcome.is_ok()
                    && stderr.contents().is_empty()
                    && store.data().limits.memory_bytes <= MAX_KEPT_MEMORY =>
            {
                inner.kept.put(Kept {
                    user: caller,
                    store,
                    service,
                    stderr: stderr.clone(),
                });
            }
            _ => drop(store),
        }
        for content in &leftovers.unstored {
            staging.discard(content);
        }
        if unit.needs_lock() {
            // Its answer is void: the call runs again under its locks.
            unit.rollback();
            return match at_once {
                true => Attempt::WouldWait,
                false => Attempt::NeedsLock,
            };
        }
        if let (true, Err(trap)) = (at_once, &outcome) {
            // Out of time, or a trap that the call, run again where it may
            // wait, reports if it traps there too.
            if ran_out_of_time(trap) {
                inner.slow_readers.insert(caller);
            }
            unit.rollback();
            return Attempt::WouldWait;
        }
        let result = match outcome {
            Ok(Ok(value)) => convert(value, leftovers.opened),
            // The guest sees a port error; the caller learns what it was.
            Ok(Err(_)) if leftovers.changed_file.is_some() => Err(Error::ChatFileChanged(
                leftovers.changed_file.unwrap_or_default(),
            )),
            Ok(Err(e)) => Err(FromGuest::error(e)),
            Err(trap) => {
                let printed = String::from_utf8_lossy(&stderr.contents())
                    .trim()
                    .to_owned();
                let mut message = if ran_out_of_time(&trap) {
                    format!(
                        "the component ran past its deadline of {} ms of guest time ({trap:#})",
                        limit.duration().as_millis()
                    )
                } else {
                    format!("the component trapped: {trap:#}")
                };
                if !printed.is_empty() {
                    message.push_str(&format!(" ({printed})"));
                }
                Err(Error::unavailable("guest", message))
            }
        };
        Attempt::Done(settle(unit, result))
    }

    /// The user's workspace, created on the first call.
    pub fn ensure_workspace(&self, user_id: Uuid) -> Result<Workspace, Error> {
        let user = canonical(user_id);
        self.call(
            UseCase::write("ensure-workspace", user_id),
            None,
            |g, s, _| g.call_ensure_workspace(s, &user),
            |w, _| FromGuest::workspace(w),
        )
    }

    /// The user's workspace.
    pub fn get_workspace(&self, user_id: Uuid) -> Result<Workspace, Error> {
        waited(self.get_workspace_as(Wait::Allowed, user_id))
    }

    fn get_workspace_as(&self, wait: Wait, user_id: Uuid) -> Option<Result<Workspace, Error>> {
        let user = canonical(user_id);
        self.call_as(
            wait,
            UseCase::metadata("get-workspace", user_id),
            None,
            |g, s, _| g.call_get_workspace(s, &user),
            |w, _| FromGuest::workspace(w),
        )
    }

    /// The bytes the user's workspace stores and its quota.
    pub fn get_usage(&self, user_id: Uuid) -> Result<WorkspaceUsage, Error> {
        waited(self.get_usage_as(Wait::Allowed, user_id))
    }

    fn get_usage_as(&self, wait: Wait, user_id: Uuid) -> Option<Result<WorkspaceUsage, Error>> {
        let user = canonical(user_id);
        self.call_as(
            wait,
            UseCase::metadata("get-usage", user_id),
            None,
            |g, s, _| g.call_get_usage(s, &user),
            |u, _| FromGuest::usage(u),
        )
    }

    /// A new chat with its directory and an empty `history.md`.
    pub fn create_chat(&self, user_id: Uuid) -> Result<Chat, Error> {
        let user = canonical(user_id);
        self.call(
            UseCase::write("create-chat", user_id),
            None,
            |g, s, _| g.call_create_chat(s, &user),
            |c, _| FromGuest::chat(c),
        )
    }

    /// The user's chats, ordered by `(created_at, chat_id)`.
    pub fn list_chats(&self, user_id: Uuid) -> Result<Vec<Chat>, Error> {
        let user = canonical(user_id);
        self.call(
            UseCase::metadata("list-chats", user_id),
            None,
            |g, s, _| g.call_list_chats(s, &user),
            |cs, _| FromGuest::chats(cs),
        )
    }

    /// A page of the user's chats, in the order of [`list_chats`](Self::list_chats).
    pub fn list_chats_page(&self, user_id: Uuid, page: &PageRequest) -> Result<Page<Chat>, Error> {
        page.cut(self.list_chats(user_id)?, |chat| chat.chat_id)
    }

    /// One of the user's chats.
    pub fn get_chat(&self, user_id: Uuid, chat_id: Uuid) -> Result<Chat, Error> {
        waited(self.get_chat_as(Wait::Allowed, user_id, chat_id))
    }

    fn get_chat_as(&self, wait: Wait, user_id: Uuid, chat_id: Uuid) -> Option<Result<Chat, Error>> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call_as(
            wait,
            UseCase::metadata("get-chat", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_get_chat(s, &user, &chat),
            |c, _| FromGuest::chat(c),
        )
    }

    /// Removes a chat, its files and its directory; refused while a sandbox is active on it.
    pub fn delete_chat(&self, user_id: Uuid, chat_id: Uuid) -> Result<(), Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::write("delete-chat", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_delete_chat(s, &user, &chat),
            |(), _| Ok(()),
        )
    }

    /// The chat's history, open to read: its bytes are never copied into
    /// the guest nor held in memory.
    pub fn read_history(&self, user_id: Uuid, chat_id: Uuid) -> Result<Content, Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::read("read-history", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_read_history(s, &user, &chat),
            |(), opened| opened.ok_or_else(FromGuest::opened_nothing),
        )
    }

    /// Replaces the chat's history with the UTF-8 text `content` gives,
    /// streamed to staging first.
    pub fn write_history(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        content: impl Read,
    ) -> Result<(), Error> {
        let staged = self.stage_for(
            user_id,
            chat_id,
            Replacing::History,
            ContentKind::Text,
            content,
        )?;
        self.write_staged_history(user_id, chat_id, staged)
    }

    /// Replaces the chat's history with staged text.
    pub fn write_staged_history(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        content: StagedContent,
    ) -> Result<(), Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::write("write-history", user_id).chat(chat_id),
            Some(content),
            |g, s, staged| g.call_write_history(s, &user, &chat, offered(staged)?),
            |(), _| Ok(()),
        )
    }

    /// Appends the UTF-8 text `content` gives to the chat's history: in
    /// place, costing the message, not the history.
    pub fn append_history(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        content: impl Read,
    ) -> Result<(), Error> {
        let staged = self.stage_for(
            user_id,
            chat_id,
            Replacing::Nothing,
            ContentKind::Text,
            content,
        )?;
        self.append_staged_history(user_id, chat_id, staged)
    }

    /// Appends staged text to the chat's history.
    pub fn append_staged_history(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        content: StagedContent,
    ) -> Result<(), Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::write("append-history", user_id).chat(chat_id),
            Some(content),
            |g, s, staged| g.call_append_history(s, &user, &chat, offered(staged)?),
            |(), _| Ok(()),
        )
    }

    /// Stores an attachment from what `content` gives, streamed to staging
    /// first (bounded memory, SHA-256 on the way); an attachment of that
    /// name is replaced by a new file id.
    pub fn upload_attachment(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        name: &str,
        content_type: Option<&str>,
        content: impl Read,
    ) -> Result<ChatFile, Error> {
        let replacing = Replacing::Attachment(name);
        let staged = self.stage_for(user_id, chat_id, replacing, ContentKind::Bytes, content)?;
        self.upload_staged(user_id, chat_id, name, content_type, staged)
    }

    /// Stores staged content as an attachment.
    pub fn upload_staged(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        name: &str,
        content_type: Option<&str>,
        content: StagedContent,
    ) -> Result<ChatFile, Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::write("upload-attachment", user_id).chat(chat_id),
            Some(content),
            |g, s, staged| {
                g.call_upload_attachment(s, &user, &chat, name, content_type, offered(staged)?)
            },
            |f, _| FromGuest::chat_file(f),
        )
    }

    /// The chat's attachments, ordered by `(created_at, file_id)`.
    pub fn list_attachments(&self, user_id: Uuid, chat_id: Uuid) -> Result<Vec<ChatFile>, Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::metadata("list-attachments", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_list_attachments(s, &user, &chat),
            |fs, _| FromGuest::chat_files(fs),
        )
    }

    /// A page of the chat's attachments, in the order of
    /// [`list_attachments`](Self::list_attachments).
    pub fn list_attachments_page(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<ChatFile>, Error> {
        page.cut(self.list_attachments(user_id, chat_id)?, |file| {
            file.file_id
        })
    }

    /// One attachment's metadata.
    pub fn get_attachment(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    ) -> Result<ChatFile, Error> {
        waited(self.get_attachment_as(Wait::Allowed, user_id, chat_id, file_id))
    }

    fn get_attachment_as(
        &self,
        wait: Wait,
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    ) -> Option<Result<ChatFile, Error>> {
        let (user, chat, file) = (canonical(user_id), canonical(chat_id), canonical(file_id));
        self.call_as(
            wait,
            UseCase::metadata("get-attachment", user_id)
                .chat(chat_id)
                .file(file_id),
            None,
            |g, s, _| g.call_get_attachment(s, &user, &chat, &file),
            |f, _| FromGuest::chat_file(f),
        )
    }

    /// One attachment's metadata and its content, open to read.
    pub fn read_attachment(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    ) -> Result<(ChatFile, Content), Error> {
        let (user, chat, file) = (canonical(user_id), canonical(chat_id), canonical(file_id));
        self.call(
            UseCase::read("read-attachment", user_id)
                .chat(chat_id)
                .file(file_id),
            None,
            |g, s, _| g.call_read_attachment(s, &user, &chat, &file),
            |f, opened| {
                Ok((
                    FromGuest::chat_file(f)?,
                    opened.ok_or_else(FromGuest::opened_nothing)?,
                ))
            },
        )
    }

    /// Removes one attachment.
    pub fn delete_attachment(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    ) -> Result<(), Error> {
        let (user, chat, file) = (canonical(user_id), canonical(chat_id), canonical(file_id));
        self.call(
            UseCase::write("delete-attachment", user_id)
                .chat(chat_id)
                .file(file_id),
            None,
            |g, s, _| g.call_delete_attachment(s, &user, &chat, &file),
            |(), _| Ok(()),
        )
    }

    /// Removes every attachment of the chat, keeping its history; refused
    /// while a sandbox is active on it.
    pub fn clear_attachments(&self, user_id: Uuid, chat_id: Uuid) -> Result<(), Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        self.call(
            UseCase::write("clear-attachments", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_clear_attachments(s, &user, &chat),
            |(), _| Ok(()),
        )
    }

    /// Asks the policy to record files a sandbox session left in the chat's
    /// directory as its attachments (what [`end_sandbox`](Self::end_sandbox)
    /// does with what it finds there): one outcome per output, in order.
    pub fn register_sandbox_outputs(
        &self,
        user_id: Uuid,
        chat_id: Uuid,
        outputs: &[SandboxOutput],
    ) -> Result<Vec<Result<ChatFile, Error>>, Error> {
        let (user, chat) = (canonical(user_id), canonical(chat_id));
        let wit_outputs: Vec<wit::SandboxOutput> = outputs
            .iter()
            .map(|o| wit::SandboxOutput {
                name: o.name.clone(),
                content_type: o.content_type.clone(),
                size_bytes: o.size_bytes,
                sha256: o.sha256.clone(),
            })
            .collect();
        self.call(
            UseCase::write("register-sandbox-outputs", user_id).chat(chat_id),
            None,
            |g, s, _| g.call_register_sandbox_outputs(s, &user, &chat, &wit_outputs),
            |outcomes, _| FromGuest::outcomes(outcomes, outputs.len()),
        )
    }

    /// Marks a sandbox session active on the chat, as the sandbox subsystem
    /// does when it starts one; `delete_chat` and `clear_attachments` are
    /// refused until it ends. Answers where the chat's working directory
    /// is on this host and how much the workspace may still grow by.
    pub fn start_sandbox(&self, chat_id: Uuid) -> Result<SandboxStart, Error> {
        let owner = self.owner_of(chat_id)?;
        self.with_ports(Access::Write, owner, |ports, records| {
            let (chat, workspace) = chat_and_workspace(ports, chat_id)?;
            let usage = ports
                .usage
                .get_workspace_usage(&workspace)
                .map_err(unavailable("storage-usage"))?;
            let working_dir = match self.inner.backend.chat_dir(chat.workspace_id, chat_id) {
                Some(path) => Some(path.into_os_string().into_string().map_err(|path| {
                    Error::StorageUnavailable {
                        port: "chat-storage".into(),
                        message: format!("the chat directory's path is not UTF-8: {path:?}"),
                    }
                })?),
                None => None,
            };
            let session = SandboxSession {
                session_id: ports.ids.new_id().map_err(unavailable("id-generator"))?,
                chat_id,
            };
            records
                .start_sandbox(&session)
                .map_err(unavailable("sandbox-session-repository"))?;
            Ok(SandboxStart {
                session_id: session.session_id,
                chat_id,
                working_dir,
                room_bytes: usage.quota_bytes.saturating_sub(usage.used_bytes),
            })
        })
    }

    /// Ends the chat's active sandbox session and counts what it wrote in
    /// the chat into the workspace's usage; returns the session, or `None`
    /// if there was none.
    pub fn end_sandbox(&self, chat_id: Uuid) -> Result<Option<SandboxEnd>, Error> {
        let owner = match self.owner_of(chat_id) {
            Ok(owner) => owner,
            // A deleted chat may still have had a session to end.
            Err(Error::ChatNotFound(_)) => Scope::All,
            Err(e) => return Err(e),
        };
        let (ended, chat) = self.with_unit(Access::Write, owner, |unit| {
            let ended = unit
                .records()
                .end_sandbox(chat_id)
                .map_err(unavailable("sandbox-session-repository"))?;
            // What the sandbox wrote in the chat joins the usage ledger. A
            // chat directory that cannot be counted (a tree past the walk's
            // bounds, say) keeps its last count: the session still ends.
            let chat = (unit.ports().chats.get(chat_id)).map_err(unavailable("chat-repository"))?;
            if let Some(chat) = &chat
                && let Err(e) = unit.recount(chat.workspace_id, Some(chat_id))
            {
                tracing::warn!(%chat_id, error = %e.message, "the sandbox's chat directory could not be counted");
            }
            Ok((ended, chat))
        })?;
        let Some(session) = ended else {
            return Ok(None);
        };
        let mut end = SandboxEnd {
            session_id: session.session_id,
            chat_id,
            registered: Vec::new(),
            unregistered: Vec::new(),
        };
        let (Some(chat), Scope::User(user_id)) = (chat, owner) else {
            return Ok(Some(end));
        };
        // What the session left, offered to the policy; the session has
        // ended either way, so trouble here is logged and reported, not
        // the call's failure.
        match self.register_outputs(user_id, &chat) {
            Ok((registered, unregistered)) => {
                end.registered = registered;
                end.unregistered = unregistered;
            }
            Err(e) => {
                tracing::warn!(%chat_id, error = %e, "the sandbox's outputs could not be registered");
                end.unregistered.push(Unregistered {
                    name: String::new(),
                    reason: e.code().to_owned(),
                    message: e.to_string(),
                });
            }
        }
        Ok(Some(end))
    }

    /// Finds what a session left in the chat's directory and has the
    /// policy register it.
    fn register_outputs(
        &self,
        user_id: Uuid,
        chat: &Chat,
    ) -> Result<(Vec<ChatFile>, Vec<Unregistered>), Error> {
        let recorded = self.with_ports(Access::Read, Scope::User(user_id), |ports, _| {
            (ports.files.list_by_chat_id(chat.chat_id)).map_err(unavailable("chat-file-repository"))
        })?;
        let outputs = (self.inner.backend)
            .sandbox_outputs(chat.workspace_id, chat.chat_id, &recorded)
            .map_err(unavailable("chat-storage"))?;
        let mut unregistered = outputs.unregistered;
        let mut registered = Vec::new();
        if outputs.found.is_empty() {
            return Ok((registered, unregistered));
        }
        let outcomes = self.register_sandbox_outputs(user_id, chat.chat_id, &outputs.found)?;
        for (output, outcome) in outputs.found.into_iter().zip(outcomes) {
            match outcome {
                Ok(file) => registered.push(file),
                Err(e) => unregistered.push(Unregistered {
                    name: output.name,
                    reason: e.code().to_owned(),
                    message: e.to_string(),
                }),
            }
        }
        Ok((registered, unregistered))
    }

    /// The scope of the user whose workspace holds the chat: a chat never
    /// changes workspace, nor a workspace its user, so it can be looked up
    /// before that user's lock is taken.
    fn owner_of(&self, chat_id: Uuid) -> Result<Scope, Error> {
        self.with_ports(Access::Read, Scope::All, |ports, _| {
            let (_, workspace) = chat_and_workspace(ports, chat_id)?;
            Ok(Scope::User(workspace.user_id))
        })
    }
}

/// The content offered to a call that was given some.
fn offered(staged: Option<&wit::StagedContent>) -> wasmtime::Result<&wit::StagedContent> {
    staged.ok_or_else(|| wasmtime::Error::msg("no content was staged for this call"))
}

/// Ends a unit of work by the call's outcome: commit on `Ok`, roll back on `Err`.
fn settle<T>(unit: Box<dyn UnitOfWork>, result: Result<T, Error>) -> Result<T, Error> {
    match result {
        Ok(value) => {
            unit.commit().map_err(unavailable("transaction"))?;
            Ok(value)
        }
        Err(e) => {
            unit.rollback();
            Err(e)
        }
    }
}

/// The user's workspace, for the host's own calls on it.
fn users_workspace(ports: &Ports, user_id: Uuid) -> Result<Workspace, Error> {
    ports
        .workspaces
        .get_by_user_id(user_id)
        .map_err(unavailable("workspace-repository"))?
        .ok_or(Error::WorkspaceNotFound(user_id))
}

/// The chat and its workspace, for the host's own calls on a chat by id
/// alone (a chat without its workspace is as missing as one without a row).
fn chat_and_workspace(ports: &Ports, chat_id: Uuid) -> Result<(Chat, Workspace), Error> {
    let chat = ports
        .chats
        .get(chat_id)
        .map_err(unavailable("chat-repository"))?
        .ok_or(Error::ChatNotFound(chat_id))?;
    let workspace = ports
        .workspaces
        .get(chat.workspace_id)
        .map_err(unavailable("workspace-repository"))?
        .ok_or(Error::ChatNotFound(chat_id))?;
    Ok((chat, workspace))
}

/// Maps a port's failure to `storage_unavailable` for calls the host makes itself.
pub(crate) fn unavailable(port: &'static str) -> impl Fn(PortError) -> Error {
    move |e| Error::unavailable(port, e.message)
}
