//! What the sandbox costs: every use case run twice in one process, over
//! the same data directory, adapters and units of work — once with the
//! guest crate linked natively into the host, once through the component
//! (a fresh instance per call, the canonical ABI, the host's checks of
//! everything the guest passes).
//!
//! `cargo bench -p chatstore-host --bench native` prints, per use case, the
//! native and the component time per call, the difference and the ratio,
//! measured in alternating rounds so that drift hits both alike.
//! `-- --only NAME --mode native|component --calls N` runs one side of one
//! use case N times and nothing else, for instruction counts under
//! callgrind (`scripts/bench-native-callgrind.sh`).

use chatstore_guest::domain as guest;
use chatstore_guest::usecase::{Ports as GuestPorts, Storage, ports as gp};
use chatstore_host::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace};
use chatstore_host::ports::{HostRecords, Ports};
use chatstore_host::unit::{Access, Scope};
use chatstore_host::{
    AttachmentName, ChatStore, Content, ContentKind, Error, PortError, StagedContent, Uuid,
};
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The host's adapters behind the guest's port traits: what the component's
/// imports do, without a sandbox between them.
struct Native<'a> {
    ports: &'a Ports,
    staged: Vec<(String, StagedContent)>,
    opened: RefCell<Option<Content>>,
}

fn id(uuid: Uuid) -> guest::Id {
    guest::Id::from_bytes(*uuid.as_bytes())
}

fn uuid(id: &guest::Id) -> Uuid {
    Uuid::from_bytes(id.to_bytes())
}

fn at(t: Timestamp) -> guest::Timestamp {
    guest::Timestamp {
        seconds: t.timestamp(),
        nanoseconds: t.timestamp_subsec_nanos(),
    }
}

fn from_at(t: guest::Timestamp) -> Timestamp {
    Timestamp::from_timestamp(t.seconds, t.nanoseconds).unwrap_or_default()
}

fn failed(port: &str) -> impl Fn(PortError) -> guest::PortError + '_ {
    move |e| guest::PortError {
        port: port.to_owned(),
        message: e.message,
    }
}

fn workspace(w: Workspace) -> guest::Workspace {
    guest::Workspace {
        workspace_id: id(w.workspace_id),
        user_id: id(w.user_id),
        created_at: at(w.created_at),
    }
}

fn chat(c: Chat) -> guest::Chat {
    guest::Chat {
        chat_id: id(c.chat_id),
        workspace_id: id(c.workspace_id),
        created_at: at(c.created_at),
    }
}

fn host_chat(c: &guest::Chat) -> Chat {
    Chat {
        chat_id: uuid(&c.chat_id),
        workspace_id: uuid(&c.workspace_id),
        created_at: from_at(c.created_at),
    }
}

fn name(n: &guest::AttachmentName) -> gp::PortResult<AttachmentName> {
    AttachmentName::new(n.as_str()).map_err(|e| guest::PortError {
        port: "chat-storage".into(),
        message: e.to_string(),
    })
}

fn file(f: ChatFile) -> guest::ChatFile {
    guest::ChatFile {
        file_id: id(f.file_id),
        chat_id: id(f.chat_id),
        name: guest::AttachmentName::try_from(f.name.as_str()).expect("a stored name is valid"),
        content_type: f.content_type,
        size_bytes: f.size_bytes,
        sha256: f.sha256,
        created_at: at(f.created_at),
    }
}

impl Native<'_> {
    fn staged(&self, token: &str) -> gp::PortResult<&StagedContent> {
        (self.staged.iter().find(|(t, _)| t == token).map(|(_, c)| c)).ok_or(guest::PortError {
            port: "chat-storage".into(),
            message: "no such token".into(),
        })
    }

    fn keep(&self, opened: Result<Content, PortError>) -> gp::PortResult<()> {
        *self.opened.borrow_mut() = Some(opened.map_err(failed("chat-storage"))?);
        Ok(())
    }

    fn guest_ports(&self) -> GuestPorts<'_> {
        GuestPorts::all(self)
    }
}

impl gp::WorkspaceRepository for Native<'_> {
    fn get(&self, workspace_id: &guest::Id) -> gp::PortResult<Option<guest::Workspace>> {
        let found = self.ports.workspaces.get(uuid(workspace_id));
        Ok(found
            .map_err(failed("workspace-repository"))?
            .map(workspace))
    }
    fn get_by_user_id(&self, user_id: &guest::Id) -> gp::PortResult<Option<guest::Workspace>> {
        let found = self.ports.workspaces.get_by_user_id(uuid(user_id));
        Ok(found
            .map_err(failed("workspace-repository"))?
            .map(workspace))
    }
    fn save(&self, w: &guest::Workspace) -> gp::PortResult<()> {
        let w = Workspace {
            workspace_id: uuid(&w.workspace_id),
            user_id: uuid(&w.user_id),
            created_at: from_at(w.created_at),
        };
        (self.ports.workspaces.save(&w)).map_err(failed("workspace-repository"))
    }
}

impl gp::ChatRepository for Native<'_> {
    fn get(&self, chat_id: &guest::Id) -> gp::PortResult<Option<guest::Chat>> {
        let found = self.ports.chats.get(uuid(chat_id));
        Ok(found.map_err(failed("chat-repository"))?.map(chat))
    }
    fn list_by_workspace_id(&self, workspace_id: &guest::Id) -> gp::PortResult<Vec<guest::Chat>> {
        let chats = self.ports.chats.list_by_workspace_id(uuid(workspace_id));
        Ok(chats
            .map_err(failed("chat-repository"))?
            .into_iter()
            .map(chat)
            .collect())
    }
    fn save(&self, c: &guest::Chat) -> gp::PortResult<()> {
        (self.ports.chats.save(&host_chat(c))).map_err(failed("chat-repository"))
    }
    fn delete(&self, chat_id: &guest::Id) -> gp::PortResult<()> {
        (self.ports.chats.delete(uuid(chat_id))).map_err(failed("chat-repository"))
    }
}

impl gp::ChatFileRepository for Native<'_> {
    fn get(&self, file_id: &guest::Id) -> gp::PortResult<Option<guest::ChatFile>> {
        let found = self.ports.files.get(uuid(file_id));
        Ok(found.map_err(failed("chat-file-repository"))?.map(file))
    }
    fn get_by_chat_id_and_name(
        &self,
        chat_id: &guest::Id,
        n: &guest::AttachmentName,
    ) -> gp::PortResult<Option<guest::ChatFile>> {
        let found = self
            .ports
            .files
            .get_by_chat_id_and_name(uuid(chat_id), &name(n)?);
        Ok(found.map_err(failed("chat-file-repository"))?.map(file))
    }
    fn list_by_chat_id(&self, chat_id: &guest::Id) -> gp::PortResult<Vec<guest::ChatFile>> {
        let files = self.ports.files.list_by_chat_id(uuid(chat_id));
        Ok(files
            .map_err(failed("chat-file-repository"))?
            .into_iter()
            .map(file)
            .collect())
    }
    fn save(&self, f: &guest::ChatFile) -> gp::PortResult<()> {
        let f = ChatFile {
            file_id: uuid(&f.file_id),
            chat_id: uuid(&f.chat_id),
            name: name(&f.name)?,
            content_type: f.content_type.clone(),
            size_bytes: f.size_bytes,
            sha256: f.sha256.clone(),
            created_at: from_at(f.created_at),
        };
        (self.ports.files.save(&f)).map_err(failed("chat-file-repository"))
    }
    fn delete(&self, file_id: &guest::Id) -> gp::PortResult<()> {
        (self.ports.files.delete(uuid(file_id))).map_err(failed("chat-file-repository"))
    }
    fn delete_by_chat_id(&self, chat_id: &guest::Id) -> gp::PortResult<()> {
        (self.ports.files.delete_by_chat_id(uuid(chat_id))).map_err(failed("chat-file-repository"))
    }
}

impl gp::SandboxSessionRepository for Native<'_> {
    fn get_active_by_chat_id(
        &self,
        chat_id: &guest::Id,
    ) -> gp::PortResult<Option<guest::SandboxSession>> {
        let found = self.ports.sandboxes.get_active_by_chat_id(uuid(chat_id));
        Ok(found
            .map_err(failed("sandbox-session-repository"))?
            .map(|s: SandboxSession| guest::SandboxSession {
                session_id: id(s.session_id),
                chat_id: id(s.chat_id),
            }))
    }
}

impl gp::ChatStorage for Native<'_> {
    fn ensure_chat(&self, c: &guest::Chat) -> gp::PortResult<()> {
        (self.ports.storage.ensure_chat(&host_chat(c))).map_err(failed("chat-storage"))
    }
    fn history_size(&self, c: &guest::Chat) -> gp::PortResult<u64> {
        (self.ports.storage.history_size(&host_chat(c))).map_err(failed("chat-storage"))
    }
    fn open_history(&self, c: &guest::Chat) -> gp::PortResult<()> {
        self.keep(self.ports.storage.open_history(&host_chat(c)))
    }
    fn write_history(&self, c: &guest::Chat, content: &guest::StagedContent) -> gp::PortResult<()> {
        let staged = self.staged(&content.token)?;
        (self.ports.storage.write_history(&host_chat(c), staged)).map_err(failed("chat-storage"))
    }
    fn append_history(
        &self,
        c: &guest::Chat,
        content: &guest::StagedContent,
    ) -> gp::PortResult<()> {
        let staged = self.staged(&content.token)?;
        (self.ports.storage.append_history(&host_chat(c), staged)).map_err(failed("chat-storage"))
    }
    fn delete_chat(&self, c: &guest::Chat) -> gp::PortResult<()> {
        (self.ports.storage.delete_chat(&host_chat(c))).map_err(failed("chat-storage"))
    }
    fn attachment_size(
        &self,
        c: &guest::Chat,
        n: &guest::AttachmentName,
    ) -> gp::PortResult<Option<u64>> {
        (self.ports.storage.attachment_size(&host_chat(c), &name(n)?))
            .map_err(failed("chat-storage"))
    }
    fn write_attachment(
        &self,
        c: &guest::Chat,
        n: &guest::AttachmentName,
        content: &guest::StagedContent,
    ) -> gp::PortResult<()> {
        let staged = self.staged(&content.token)?;
        (self
            .ports
            .storage
            .write_attachment(&host_chat(c), &name(n)?, staged))
        .map_err(failed("chat-storage"))
    }
    fn open_attachment(&self, c: &guest::Chat, n: &guest::AttachmentName) -> gp::PortResult<()> {
        self.keep(self.ports.storage.open_attachment(&host_chat(c), &name(n)?))
    }
    fn delete_attachment(&self, c: &guest::Chat, n: &guest::AttachmentName) -> gp::PortResult<()> {
        (self
            .ports
            .storage
            .delete_attachment(&host_chat(c), &name(n)?))
        .map_err(failed("chat-storage"))
    }
    fn clear_attachments(&self, c: &guest::Chat) -> gp::PortResult<()> {
        (self.ports.storage.clear_attachments(&host_chat(c))).map_err(failed("chat-storage"))
    }
}

impl gp::StorageUsage for Native<'_> {
    fn get_workspace_usage(&self, w: &guest::Workspace) -> gp::PortResult<guest::WorkspaceUsage> {
        let w = Workspace {
            workspace_id: uuid(&w.workspace_id),
            user_id: uuid(&w.user_id),
            created_at: from_at(w.created_at),
        };
        let usage = self.ports.usage.get_workspace_usage(&w);
        let usage = usage.map_err(failed("storage-usage"))?;
        Ok(guest::WorkspaceUsage {
            workspace_id: id(usage.workspace_id),
            used_bytes: usage.used_bytes,
            quota_bytes: usage.quota_bytes,
        })
    }
}

impl gp::IdGenerator for Native<'_> {
    fn new_id(&self) -> gp::PortResult<guest::Id> {
        Ok(id(self
            .ports
            .ids
            .new_id()
            .map_err(failed("id-generator"))?))
    }
}

impl gp::Clock for Native<'_> {
    fn now(&self) -> guest::Timestamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        guest::Timestamp {
            seconds: now.as_secs() as i64,
            nanoseconds: now.subsec_nanos(),
        }
    }
}

/// Runs a use case natively in one unit of work, as `ChatStore` runs it
/// through the component; `staged` is offered to it as `staged-1`.
fn native<T>(
    store: &ChatStore,
    unit: Unit,
    staged: Option<StagedContent>,
    use_case: impl FnOnce(&Storage<'_>, Option<&guest::StagedContent>) -> Result<T, guest::StorageError>,
) -> (T, Option<Content>) {
    let run = |ports: &Ports, _: &dyn HostRecords| {
        let offered = staged.as_ref().map(|c| guest::StagedContent {
            token: "staged-1".into(),
            size_bytes: c.size_bytes(),
            sha256: c.sha256().to_owned(),
        });
        let native = Native {
            ports,
            staged: staged
                .into_iter()
                .map(|c| ("staged-1".to_owned(), c))
                .collect(),
            opened: RefCell::new(None),
        };
        let result = use_case(&Storage::new(native.guest_ports()), offered.as_ref());
        let value = result.map_err(|e| Error::StorageUnavailable {
            port: "native".into(),
            message: e.to_string(),
        })?;
        Ok((value, native.opened.into_inner()))
    };
    match unit {
        Unit::Locked(access, scope) => store.with_ports(access, scope, run),
        Unit::Metadata(scope) => store.with_metadata_ports(scope, run),
    }
    .expect("native use case")
}

/// The unit of work a use case runs in, as `ChatStore` begins it.
#[derive(Clone, Copy)]
enum Unit {
    Locked(Access, Scope),
    /// A read of metadata alone, without locks.
    Metadata(Scope),
}

/// One use case, both ways.
struct Case<'a> {
    name: &'static str,
    native: Box<dyn FnMut() + 'a>,
    component: Box<dyn FnMut() + 'a>,
}

fn per_call(calls: u32, f: &mut dyn FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    started.elapsed() / calls
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let cache = std::env::temp_dir().join("chatstore-bench-compile-cache");
    let store = ChatStore::builder()
        .data_dir(dir.path())
        .compile_cache(&cache)
        .build()
        .expect("store");
    let user = Uuid::now_v7();
    let u = user.to_string();
    store.ensure_workspace(user).expect("workspace");
    let chats: Vec<_> = (0..10)
        .map(|_| store.create_chat(user).expect("chat"))
        .collect();
    let chat = chats[0].chat_id;
    let c = chat.to_string();
    store
        .write_history(user, chat, "line of history\n".repeat(64).as_bytes())
        .expect("history");
    let kib = vec![7u8; 1024];
    let file = store
        .upload_attachment(user, chat, "one-kib", None, &kib[..])
        .expect("upload");
    let f = file.file_id.to_string();
    let stage = || {
        store
            .staging()
            .stage(&kib[..], ContentKind::Bytes, u64::MAX)
            .expect("staged")
    };
    let stage_text = || {
        store
            .staging()
            .stage(&b"a message\n"[..], ContentKind::Text, u64::MAX)
            .expect("staged")
    };

    // The units the component's calls run in: reads of metadata alone
    // without locks, other calls under the user's.
    let metadata = Unit::Metadata(Scope::User(user));
    let read = Unit::Locked(Access::Read, Scope::User(user));
    let write = Unit::Locked(Access::Write, Scope::User(user));
    let mut cases: Vec<Case> = vec![
        Case {
            name: "get-workspace",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| s.get_workspace(&u)));
            }),
            component: Box::new(|| {
                black_box(store.get_workspace(user).expect("get-workspace"));
            }),
        },
        Case {
            name: "get-chat",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| s.get_chat(&u, &c)));
            }),
            component: Box::new(|| {
                black_box(store.get_chat(user, chat).expect("get-chat"));
            }),
        },
        Case {
            name: "list-chats (10)",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| s.list_chats(&u)));
            }),
            component: Box::new(|| {
                black_box(store.list_chats(user).expect("list-chats"));
            }),
        },
        Case {
            name: "get-attachment",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| {
                    s.get_attachment(&u, &c, &f)
                }));
            }),
            component: Box::new(|| {
                black_box(store.get_attachment(user, chat, file.file_id).expect("get"));
            }),
        },
        Case {
            name: "list-attachments (1)",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| {
                    s.list_attachments(&u, &c)
                }));
            }),
            component: Box::new(|| {
                black_box(store.list_attachments(user, chat).expect("list"));
            }),
        },
        Case {
            name: "read-history (1 KiB, opened)",
            native: Box::new(|| {
                black_box(native(&store, read, None, |s, _| s.read_history(&u, &c)));
            }),
            component: Box::new(|| {
                black_box(store.read_history(user, chat).expect("read-history"));
            }),
        },
        Case {
            name: "read-attachment (opened)",
            native: Box::new(|| {
                black_box(native(&store, read, None, |s, _| {
                    s.read_attachment(&u, &c, &f)
                }));
            }),
            component: Box::new(|| {
                black_box(
                    store
                        .read_attachment(user, chat, file.file_id)
                        .expect("read"),
                );
            }),
        },
        Case {
            name: "get-usage (from the ledger)",
            native: Box::new(|| {
                black_box(native(&store, metadata, None, |s, _| s.get_usage(&u)));
            }),
            component: Box::new(|| {
                black_box(store.get_usage(user).expect("usage"));
            }),
        },
        Case {
            name: "upload 1 KiB (staged, replaces)",
            native: Box::new(|| {
                let staged = stage();
                black_box(native(&store, write, Some(staged), |s, offered| {
                    s.upload_attachment(&u, &c, "replaced", None, offered.expect("offered"))
                }));
            }),
            component: Box::new(|| {
                let staged = stage();
                black_box(
                    store
                        .upload_staged(user, chat, "replaced", None, staged)
                        .expect("upload"),
                );
            }),
        },
        Case {
            name: "append-history (staged)",
            native: Box::new(|| {
                let staged = stage_text();
                black_box(native(&store, write, Some(staged), |s, offered| {
                    s.append_history(&u, &c, offered.expect("offered"))
                }));
            }),
            component: Box::new(|| {
                let staged = stage_text();
                store
                    .append_staged_history(user, chat, staged)
                    .expect("append");
            }),
        },
    ];

    // One side of one case, for callgrind.
    if let Some(only) = flag("--only") {
        let calls: u32 = flag("--calls").and_then(|n| n.parse().ok()).unwrap_or(100);
        let case = cases
            .iter_mut()
            .find(|c| c.name.starts_with(&only))
            .expect("no such case");
        let side = match flag("--mode").as_deref() {
            Some("native") => &mut case.native,
            _ => &mut case.component,
        };
        for _ in 0..calls {
            side();
        }
        return;
    }

    println!("native vs component, µs per call (median of 5 alternating rounds)");
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>7}",
        "use case", "native", "component", "+", "x"
    );
    for case in &mut cases {
        let calls = if case.name.starts_with("upload") || case.name.starts_with("append") {
            200
        } else {
            1000
        };
        // Warm both up, then alternate rounds.
        per_call(calls / 10, &mut case.native);
        per_call(calls / 10, &mut case.component);
        let (mut n, mut k) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            n.push(per_call(calls, &mut case.native));
            k.push(per_call(calls, &mut case.component));
        }
        n.sort();
        k.sort();
        let (n, k) = (micros(n[2]), micros(k[2]));
        println!(
            "{:<32} {:>10.1} {:>10.1} {:>10.1} {:>7.2}",
            case.name,
            n,
            k,
            k - n,
            k / n
        );
    }
}
