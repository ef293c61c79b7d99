//! [`ChatStoreBuilder`]: where a [`ChatStore`] keeps its data and
//! metadata, what it runs, and the limits its guests run under.

use crate::adapters::DataDirBackend;
use crate::adapters::fs::DataDir;
use crate::adapters::memory::MemoryMetadata;
use crate::adapters::postgres::PostgresMetadata;
use crate::adapters::sqlite::SqliteMetadata;
use crate::engine::Runtime;
use crate::error::SetupError;
use crate::ports::{HostRecords, Ports};
use crate::staging::Staging;
use crate::store::ChatStore;
use crate::unit::{Backend, FixedPorts, MetadataStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The built-in storage component (the `component/` crate, on `guest/`).
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

/// Configures and builds a [`ChatStore`].
#[derive(Debug, Clone)]
pub struct ChatStoreBuilder {
    pub(crate) data_dir: PathBuf,
    pub(crate) metadata: Metadata,
    pub(crate) quota_bytes: u64,
    pub(crate) clock: Clock,
    pub(crate) component: Option<Vec<u8>>,
    pub(crate) max_guest_memory: usize,
    pub(crate) pooled_instances: Option<u32>,
    pub(crate) call_timeout: Duration,
    pub(crate) compile_cache: Option<PathBuf>,
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
        Ok(ChatStore::new(
            Runtime::new(&self)?,
            backend,
            self.pooled_instances,
        ))
    }
}
