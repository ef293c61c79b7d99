//! Helpers for the end-to-end tests: a store on a temporary data directory
//! with a clock the test sets, and ways to look at what is on disk.

pub mod script;
pub mod venv;

use chatstore_host::adapters::DataDirBackend;
use chatstore_host::{Chat, ChatStore, ChatStoreBuilder, Clock, Error};
use chatstore_testkit::faults::FaultInjector;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use uuid::Uuid;

/// The time every harness starts at: 2026-01-01T00:00:00Z.
pub const START: i64 = 1_767_225_600;

/// A builder on `data_dir` that loads the component compiled once for the
/// whole suite, not once per test.
fn suite_builder(data_dir: PathBuf) -> ChatStoreBuilder {
    ChatStore::builder()
        .data_dir(data_dir)
        .compile_cache(std::env::temp_dir().join("chatstore-tests-compile-cache"))
}

/// A store on a fresh data directory, with a pinned clock.
pub struct Harness {
    /// The temporary directory; the data directory is `data` inside it, so
    /// that tests can keep files *beside* the data directory too.
    pub tmp: TempDir,
    /// The store under test.
    pub store: ChatStore,
    seconds: Arc<AtomicI64>,
}

impl Harness {
    /// A harness with the default quota.
    pub fn new() -> Harness {
        Harness::with(|b| b)
    }

    /// A harness whose workspaces have this quota.
    pub fn with_quota(bytes: u64) -> Harness {
        Harness::with(|b| b.quota_bytes(bytes))
    }

    /// A harness whose every port call goes through a fault injector.
    pub fn with_faults() -> (Harness, Arc<FaultInjector>) {
        Harness::with_faults_and(|b| b)
    }

    /// A harness with extra builder settings whose every port call goes
    /// through a fault injector.
    pub fn with_faults_and(
        configure: impl FnOnce(ChatStoreBuilder) -> ChatStoreBuilder,
    ) -> (Harness, Arc<FaultInjector>) {
        let mut injector = None;
        let harness = Harness::build(|builder| {
            let builder = configure(builder);
            let faults = Arc::new(FaultInjector::new(builder.open_backend().expect("backend")));
            injector = Some(faults.clone());
            builder.build_with_backend(faults).expect("store")
        });
        (harness, injector.expect("built"))
    }

    /// A harness with extra builder settings.
    pub fn with(configure: impl FnOnce(ChatStoreBuilder) -> ChatStoreBuilder) -> Harness {
        Harness::build(|builder| configure(builder).build().expect("store"))
    }

    fn build(make: impl FnOnce(ChatStoreBuilder) -> ChatStore) -> Harness {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let seconds = Arc::new(AtomicI64::new(START));
        let clock_seconds = seconds.clone();
        let clock = Clock::from_fn(move || {
            UNIX_EPOCH + Duration::from_secs(clock_seconds.load(Ordering::SeqCst) as u64)
        });
        let builder = suite_builder(tmp.path().join("data")).clock(clock);
        let store = make(builder);
        Harness {
            tmp,
            store,
            seconds,
        }
    }

    /// A builder for another store on this harness's data directory: as
    /// another process would open it, with nothing kept from this one's calls.
    pub fn another_store(&self) -> ChatStoreBuilder {
        suite_builder(self.data_dir())
    }

    /// Sets the guest's wall clock to `START + offset` seconds.
    pub fn set_time(&self, offset: i64) {
        self.seconds.store(START + offset, Ordering::SeqCst);
    }

    /// The time the clock reads now.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.seconds.load(Ordering::SeqCst) as u64)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// A second backend on the same data directory, as `chatstore fsck`
    /// opens one.
    pub fn backend(&self) -> Arc<DataDirBackend> {
        ChatStore::builder()
            .data_dir(self.data_dir())
            .open_backend()
            .expect("backend")
    }

    /// Where a chat's directory is, by the documented layout.
    pub fn chat_dir(&self, chat: &Chat) -> PathBuf {
        self.data_dir()
            .join("workspaces")
            .join(chat.workspace_id.to_string())
            .join("chats")
            .join(chat.chat_id.to_string())
    }

    /// A user with a workspace and one chat.
    pub fn user_with_chat(&self) -> (Uuid, Chat) {
        let user = Uuid::now_v7();
        self.store.ensure_workspace(user).expect("workspace");
        let chat = self.store.create_chat(user).expect("chat");
        (user, chat)
    }

    /// Every file, directory and symlink of the chat directories and of
    /// the staging area, with contents, for comparing before and after
    /// (the metadata database is compared through the API instead).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut all = BTreeMap::new();
        for part in ["workspaces", "staging"] {
            let root = self.data_dir().join(part);
            all.extend(
                snapshot(&root)
                    .into_iter()
                    .map(|(p, c)| (Path::new(part).join(p), c)),
            );
        }
        all
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// A chat's history, read whole through the store.
pub fn history(store: &ChatStore, user: Uuid, chat: Uuid) -> Result<String, Error> {
    Ok(store
        .read_history(user, chat)?
        .into_string()
        .expect("a readable UTF-8 history"))
}

/// An attachment's bytes, read whole through the store.
pub fn attachment(store: &ChatStore, user: Uuid, chat: Uuid, file: Uuid) -> Result<Vec<u8>, Error> {
    let (_, content) = store.read_attachment(user, chat, file)?;
    Ok(content.into_bytes().expect("a readable attachment"))
}

/// The chat directories and the staging area of a data directory, as
/// [`snapshot`] sees them.
pub fn data_snapshot(data: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for part in ["workspaces", "staging"] {
        let root = data.join(part);
        all.extend(
            snapshot(&root)
                .into_iter()
                .map(|(p, c)| (Path::new(part).join(p), c)),
        );
    }
    all
}

/// Every file and symlink under `root`: path relative to it and content
/// (a directory maps to an empty marker, a symlink to `-> target`).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("beneath root").to_path_buf();
            let kind = entry.file_type().expect("file type");
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if kind.is_dir() {
                out.insert(rel.join(""), Vec::new());
                pending.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    out
}
