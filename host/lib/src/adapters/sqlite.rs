//! Metadata in SQLite (bundled, WAL, every commit synced before it
//! returns): the default, at `<data-dir>/chatstore.db`.
//!
//! Each call gets its own connection and transaction; the journal of file
//! effects is written in the same transaction, so metadata and the files it
//! describes commit together.
//!
//! SQLite has one writer at a time, so a write call takes the database's
//! write lock (`BEGIN IMMEDIATE`) only at its first write and holds it to
//! its commit: the built-in policy writes last, so other users' writers
//! wait for a commit at most, never for a whole call. Its reads before that
//! share one read transaction, ended at that first write (one snapshot,
//! and one lock of SQLite's shared memory instead of one per statement);
//! the user's lock keeps that user's records still meanwhile, and a call
//! sees no other user's records. Writers of one
//! process queue for that lock on a condition variable, woken as soon as
//! it is free, rather than in SQLite's busy handler, which sleeps and
//! polls; commits share their `fsync` (see `GroupSync`).

use crate::error::{PortError, PortResult};
use crate::group_sync::GroupSync;
use crate::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, SandboxSessionRepository, WorkspaceRepository,
};
use crate::unit::{
    Access, Count, Effect, MetadataStore, MetadataTransaction, Scope, StoredName, UsageChange,
    UsageLedger, ledger_step, signed_bytes,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use uuid::Uuid;

/// The schema, one migration per version; `PRAGMA user_version` says how
/// many have run. Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the four repositories and the journal of file effects.
    "CREATE TABLE workspaces (
        workspace_id TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL UNIQUE,
        created_s    INTEGER NOT NULL,
        created_ns   INTEGER NOT NULL
    );
    CREATE TABLE chats (
        chat_id      TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        created_s    INTEGER NOT NULL,
        created_ns   INTEGER NOT NULL
    );
    CREATE INDEX chats_by_workspace ON chats (workspace_id);
    CREATE TABLE chat_files (
        file_id      TEXT PRIMARY KEY,
        chat_id      TEXT NOT NULL,
        name         TEXT NOT NULL,
        content_type TEXT,
        size_bytes   INTEGER NOT NULL,
        created_s    INTEGER NOT NULL,
        created_ns   INTEGER NOT NULL,
        UNIQUE (chat_id, name)
    );
    CREATE TABLE sandbox_sessions (
        chat_id    TEXT PRIMARY KEY,
        session_id TEXT NOT NULL
    );
    CREATE TABLE pending_effects (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        effect TEXT NOT NULL
    );",
    // 2: each file's SHA-256 (NULL for files stored before digests were kept).
    "ALTER TABLE chat_files ADD COLUMN sha256 TEXT;",
    // 3: each journal entry's owner (the user whose writer committed it;
    // NULL for the host's own maintenance), so that one user's writer
    // recovers only that user's journal; and the usage ledger: each counted
    // workspace's bytes and each of its chats' share (a workspace without
    // a row is counted when next asked).
    "ALTER TABLE pending_effects ADD COLUMN owner TEXT;
    CREATE INDEX pending_effects_by_owner ON pending_effects (owner);
    CREATE TABLE workspace_usage (
        workspace_id TEXT PRIMARY KEY,
        used_bytes   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE chat_usage (
        chat_id      TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        used_bytes   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX chat_usage_by_workspace ON chat_usage (workspace_id);",
    // 4: workspaces' own quotas (one without a row has the configured quota).
    "CREATE TABLE workspace_quotas (
        workspace_id TEXT PRIMARY KEY,
        quota_bytes  INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

fn db_error(e: rusqlite::Error) -> PortError {
    PortError::new(format!("database: {e}"))
}

/// SQLite metadata, with a pool of connections.
#[derive(Debug, Clone)]
pub struct SqliteMetadata {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// Group commit. Commits do not sync the write-ahead log themselves
    /// (`synchronous = NORMAL`); each then waits until one `fsync` of the
    /// log that began after it returns. Concurrent commits of different
    /// users share that `fsync` instead of queueing one each behind
    /// SQLite's write lock, and a commit still returns only once durable.
    log_sync: Arc<GroupSync>,
    /// This process's turn at SQLite's write lock.
    writers: Arc<WriteGate>,
}

/// One writer at a time, in this process, for SQLite's write lock.
#[derive(Debug, Default)]
struct WriteGate {
    taken: Mutex<bool>,
    free: std::sync::Condvar,
}

/// A writer's turn; the next writer's starts when it is dropped.
#[derive(Debug)]
struct Turn(Arc<WriteGate>);

impl WriteGate {
    fn enter(self: &Arc<Self>) -> Turn {
        let mut taken = lock(&self.taken);
        while *taken {
            taken = (self.free.wait(taken)).unwrap_or_else(|p| p.into_inner());
        }
        *taken = true;
        Turn(self.clone())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *lock(&self.0.taken) = false;
        self.0.free.notify_one();
    }
}

/// Connections kept open between calls: as many as calls may run at once.
const MAX_IDLE_CONNECTIONS: usize = 64;

impl SqliteMetadata {
    /// Opens (creating if needed) the database at `path` and runs any
    /// migrations it has not seen.
    pub fn open(path: impl AsRef<Path>) -> PortResult<SqliteMetadata> {
        let metadata = SqliteMetadata {
            path: path.as_ref().to_path_buf(),
            idle: Arc::default(),
            log_sync: Arc::default(),
            writers: Arc::default(),
        };
        let mut conn = metadata.connect()?;
        let migrated = migrate(&mut conn)?;
        metadata.release(conn);
        if migrated {
            metadata.durable()?;
        }
        Ok(metadata)
    }

    /// Returns once everything committed before the call is durable.
    fn durable(&self) -> PortResult<()> {
        self.log_sync
            .sync(|| self.sync_log())
            .map_err(|e| PortError::new(format!("database: syncing the log: {e}")))
    }

    /// Syncs the write-ahead log (and so every commit in it). A log that
    /// is not there was checkpointed into the database, which SQLite
    /// synced first.
    fn sync_log(&self) -> std::io::Result<()> {
        let mut log = self.path.clone().into_os_string();
        log.push("-wal");
        match std::fs::File::open(&log) {
            Ok(file) => file.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn connect(&self) -> PortResult<Connection> {
        let conn = Connection::open(&self.path).map_err(db_error)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(db_error)?;
        // Commits are made durable by `durable`, shared between writers.
        // No memory map of the database: a transaction that finds another
        // connection's commit drops its connection's map, so with many
        // writers every transaction paid a `munmap` (and the other cores'
        // TLB flush) and a `mmap`; 16 workspaces uploaded 6 % faster without.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(db_error)?;
        // Every statement the adapter runs stays prepared on its connection.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn acquire(&self) -> PortResult<Connection> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn release(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the migrations the database has not seen; says whether any ran.
fn migrate(conn: &mut Connection) -> PortResult<bool> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_error)?;
    let version: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_error)?
        .try_into()
        .map_err(|_| PortError::new("database: negative schema version"))?;
    if version > MIGRATIONS.len() {
        return Err(PortError::new(format!(
            "database schema version {version} is newer than this chatstore knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(db_error)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_error)?;
    }
    tx.commit().map_err(db_error)?;
    Ok(version < MIGRATIONS.len())
}

impl MetadataStore for SqliteMetadata {
    fn begin(&self, access: Access, scope: Scope) -> PortResult<Arc<dyn MetadataTransaction>> {
        let conn = self.acquire()?;
        Ok(Arc::new(SqliteTransaction {
            metadata: self.clone(),
            conn: Mutex::new(Some(Open {
                conn,
                began: Began::Nothing,
            })),
            access,
            owner: owner(scope),
        }))
    }

    fn pending_effects(&self, scope: Scope) -> PortResult<Vec<Effect>> {
        let conn = self.acquire()?;
        let effects = (|| {
            let mut stmt = conn.prepare_cached(
                "SELECT effect FROM pending_effects WHERE ?1 IS NULL OR owner = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([owner(scope)], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()
        })()
        .map_err(db_error)?;
        self.release(conn);
        effects
            .iter()
            .map(|e| serde_json::from_str(e).map_err(|e| PortError::new(format!("journal: {e}"))))
            .collect()
    }

    fn forget_effects(&self, scope: Scope) -> PortResult<()> {
        let conn = self.acquire()?;
        let _turn = self.writers.enter();
        // Not made durable by itself (no writer waits for it): a later
        // commit's sync does, and until then, replaying it is harmless.
        conn.prepare_cached("DELETE FROM pending_effects WHERE ?1 IS NULL OR owner = ?1")
            .and_then(|mut stmt| stmt.execute([owner(scope)]))
            .map_err(db_error)?;
        self.release(conn);
        Ok(())
    }

    fn stored_names(&self) -> PortResult<Vec<StoredName>> {
        let conn = self.acquire()?;
        let names = (|| {
            let mut stmt = conn.prepare(
                "SELECT f.file_id, c.workspace_id, f.chat_id, f.name \
                 FROM chat_files f JOIN chats c ON c.chat_id = f.chat_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredName {
                    file_id: uuid_at(r, 0)?,
                    workspace_id: uuid_at(r, 1)?,
                    chat_id: uuid_at(r, 2)?,
                    name: r.get(3)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })()
        .map_err(db_error)?;
        self.release(conn);
        Ok(names)
    }

    fn rename_file(&self, file_id: Uuid, name: &AttachmentName) -> PortResult<()> {
        let conn = self.acquire()?;
        conn.execute(
            "UPDATE chat_files SET name = ?2 WHERE file_id = ?1",
            params![text(file_id), name.as_str()],
        )
        .map_err(db_error)?;
        self.release(conn);
        self.durable()
    }
}

/// One call's transaction on its own connection.
#[derive(Debug)]
pub struct SqliteTransaction {
    metadata: SqliteMetadata,
    conn: Mutex<Option<Open>>,
    access: Access,
    /// The journal's owner column for this transaction's effects.
    owner: Option<String>,
}

/// The journal's owner column for `scope`: the user's id, or NULL.
fn owner(scope: Scope) -> Option<String> {
    match scope {
        Scope::User(user_id) => Some(user_id.to_string()),
        Scope::All => None,
    }
}

/// A transaction's connection, and which transaction it has begun.
#[derive(Debug)]
struct Open {
    conn: Connection,
    began: Began,
}

/// What a call's connection has begun: nothing yet, a read transaction at
/// its first read (`BEGIN DEFERRED`: the snapshot is taken there), or the
/// write at its first write (`BEGIN IMMEDIATE`), which holds the writer's
/// turn to its end.
#[derive(Debug)]
enum Began {
    Nothing,
    Reading,
    Writing(Turn),
}

impl SqliteTransaction {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> PortResult<T> {
        let mut open = lock(&self.conn);
        let open = open
            .as_mut()
            .ok_or_else(|| PortError::new("the transaction has ended"))?;
        if let Began::Nothing = open.began {
            control(&open.conn, "BEGIN DEFERRED")?;
            open.began = Began::Reading;
        }
        f(&open.conn).map_err(db_error)
    }

    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> PortResult<T> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        let mut open = lock(&self.conn);
        let open = open
            .as_mut()
            .ok_or_else(|| PortError::new("the transaction has ended"))?;
        if !matches!(open.began, Began::Writing(_)) {
            if let Began::Reading = open.began {
                // A read transaction cannot become the write: it ends here
                // (it wrote nothing), and the write begins on the latest commit.
                control(&open.conn, "COMMIT")?;
                open.began = Began::Nothing;
            }
            let turn = self.metadata.writers.enter();
            control(&open.conn, "BEGIN IMMEDIATE")?;
            open.began = Began::Writing(turn);
        }
        f(&open.conn).map_err(db_error)
    }

    /// Ends the write with `sql` (a read transaction with `COMMIT`: it
    /// wrote nothing) and gives the connection back; says whether a write
    /// ended.
    fn finish(&self, sql: &str) -> PortResult<bool> {
        let Some(Open { conn, began }) = lock(&self.conn).take() else {
            return Ok(false);
        };
        let wrote = match began {
            Began::Nothing => false,
            Began::Reading => {
                control(&conn, "COMMIT")?;
                false
            }
            // The turn ends once the write has.
            Began::Writing(_turn) => {
                control(&conn, sql)?;
                true
            }
        };
        self.metadata.release(conn);
        Ok(wrote)
    }
}

/// Runs a statement that begins or ends a transaction, prepared once per
/// connection rather than parsed on every call.
fn control(conn: &Connection, sql: &str) -> PortResult<()> {
    (conn
        .prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([])))
    .map(drop)
    .map_err(db_error)
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        let _ = self.finish("ROLLBACK");
    }
}

impl MetadataTransaction for SqliteTransaction {
    fn commit(&self, effects: &[Effect]) -> PortResult<()> {
        for effect in effects {
            let json = serde_json::to_string(effect)
                .map_err(|e| PortError::new(format!("journal: {e}")))?;
            self.write(|c| {
                c.prepare_cached("INSERT INTO pending_effects (effect, owner) VALUES (?1, ?2)")?
                    .execute(params![json, self.owner])
            })?;
        }
        if self.finish("COMMIT")? {
            self.metadata.durable()?;
        }
        Ok(())
    }

    fn rollback(&self) {
        let _ = self.finish("ROLLBACK");
    }
}

/// An id as the text its column holds: its canonical form.
fn text(id: Uuid) -> String {
    id.to_string()
}

fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let text = row.get_ref(i)?.as_str()?;
    crate::ids::parse_canonical(text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("{text:?} is not a canonical UUID").into(),
        )
    })
}

fn timestamp_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let (seconds, nanoseconds) = (row.get(i)?, row.get(i + 1)?);
    crate::model::timestamp(seconds, nanoseconds).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Integer,
            format!("{seconds} s {nanoseconds} ns is not a time").into(),
        )
    })
}

fn workspace_row(row: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        workspace_id: uuid_at(row, 0)?,
        user_id: uuid_at(row, 1)?,
        created_at: timestamp_at(row, 2)?,
    })
}

fn chat_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        chat_id: uuid_at(row, 0)?,
        workspace_id: uuid_at(row, 1)?,
        created_at: timestamp_at(row, 2)?,
    })
}

fn file_row(row: &Row<'_>) -> rusqlite::Result<ChatFile> {
    let name: String = row.get(2)?;
    Ok(ChatFile {
        file_id: uuid_at(row, 0)?,
        chat_id: uuid_at(row, 1)?,
        name: AttachmentName::new(name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        content_type: row.get(3)?,
        size_bytes: row.get::<_, i64>(4)? as u64,
        sha256: row.get(5)?,
        created_at: timestamp_at(row, 6)?,
    })
}

/// A query of whole rows: `select!(workspaces, "WHERE …")`, one string made
/// at compile time (a statement is looked up by its text on every call).
macro_rules! select {
    (workspaces, $filter:literal) => {
        concat!(
            "SELECT workspace_id, user_id, created_s, created_ns FROM workspaces ",
            $filter
        )
    };
    (chats, $filter:literal) => {
        concat!(
            "SELECT chat_id, workspace_id, created_s, created_ns FROM chats ",
            $filter
        )
    };
    (chat_files, $filter:literal) => {
        concat!(
            "SELECT file_id, chat_id, name, content_type, size_bytes, sha256, created_s, \
             created_ns FROM chat_files ",
            $filter
        )
    };
}

impl WorkspaceRepository for SqliteTransaction {
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>> {
        self.with(|c| {
            c.prepare_cached(select!(workspaces, "WHERE workspace_id = ?1"))?
                .query_row([text(workspace_id)], workspace_row)
                .optional()
        })
    }

    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>> {
        self.with(|c| {
            c.prepare_cached(select!(workspaces, "WHERE user_id = ?1"))?
                .query_row([text(user_id)], workspace_row)
                .optional()
        })
    }

    fn save(&self, w: &Workspace) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM workspaces WHERE user_id = ?1 AND workspace_id <> ?2")?.execute(params![text(w.user_id), text(w.workspace_id)],
            )?;
            c.prepare_cached("INSERT OR REPLACE INTO workspaces (workspace_id, user_id, created_s, created_ns) VALUES (?1, ?2, ?3, ?4)")?.execute(params![text(w.workspace_id), text(w.user_id), w.created_at.timestamp(), w.created_at.timestamp_subsec_nanos()],
            )?;
            Ok(())
        })
    }
}

impl ChatRepository for SqliteTransaction {
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>> {
        self.with(|c| {
            c.prepare_cached(select!(chats, "WHERE chat_id = ?1"))?
                .query_row([text(chat_id)], chat_row)
                .optional()
        })
    }

    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(select!(chats, "WHERE workspace_id = ?1"))?;
            let rows = stmt.query_map([text(workspace_id)], chat_row)?;
            rows.collect()
        })
    }

    fn save(&self, chat: &Chat) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO chats (chat_id, workspace_id, created_s, created_ns) VALUES (?1, ?2, ?3, ?4)")?.execute(params![text(chat.chat_id), text(chat.workspace_id), chat.created_at.timestamp(), chat.created_at.timestamp_subsec_nanos()],
            )?;
            Ok(())
        })
    }

    fn delete(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM chats WHERE chat_id = ?1")?
                .execute([text(chat_id)])
                .map(drop)
        })
    }
}

impl ChatFileRepository for SqliteTransaction {
    fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>> {
        self.with(|c| {
            c.prepare_cached(select!(chat_files, "WHERE file_id = ?1"))?
                .query_row([text(file_id)], file_row)
                .optional()
        })
    }

    fn get_by_chat_id_and_name(
        &self,
        chat_id: Uuid,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        self.with(|c| {
            c.prepare_cached(select!(chat_files, "WHERE chat_id = ?1 AND name = ?2"))?
                .query_row(params![text(chat_id), name.as_str()], file_row)
                .optional()
        })
    }

    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(select!(chat_files, "WHERE chat_id = ?1"))?;
            let rows = stmt.query_map([text(chat_id)], file_row)?;
            rows.collect()
        })
    }

    fn save(&self, f: &ChatFile) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM chat_files WHERE chat_id = ?1 AND name = ?2 AND file_id <> ?3")?.execute(params![text(f.chat_id), f.name.as_str(), text(f.file_id)],
            )?;
            c.prepare_cached("INSERT OR REPLACE INTO chat_files (file_id, chat_id, name, content_type, size_bytes, sha256, created_s, created_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?.execute(params![
                    text(f.file_id),
                    text(f.chat_id),
                    f.name.as_str(),
                    f.content_type,
                    i64::try_from(f.size_bytes).unwrap_or(i64::MAX),
                    f.sha256,
                    f.created_at.timestamp(),
                    f.created_at.timestamp_subsec_nanos()
                ],
            )?;
            Ok(())
        })
    }

    fn delete(&self, file_id: Uuid) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM chat_files WHERE file_id = ?1")?
                .execute([text(file_id)])
                .map(drop)
        })
    }

    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM chat_files WHERE chat_id = ?1")?
                .execute([text(chat_id)])
                .map(drop)
        })
    }
}

impl SandboxSessionRepository for SqliteTransaction {
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        self.with(|c| {
            c.prepare_cached("SELECT session_id, chat_id FROM sandbox_sessions WHERE chat_id = ?1")?
                .query_row([text(chat_id)], |r| {
                    Ok(SandboxSession {
                        session_id: uuid_at(r, 0)?,
                        chat_id: uuid_at(r, 1)?,
                    })
                })
                .optional()
        })
    }
}

impl HostRecords for SqliteTransaction {
    fn start_sandbox(&self, s: &SandboxSession) -> PortResult<()> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO sandbox_sessions (chat_id, session_id) VALUES (?1, ?2)",
            )?
            .execute(params![text(s.chat_id), text(s.session_id)])
            .map(drop)
        })
    }

    fn end_sandbox(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        let active = self.get_active_by_chat_id(chat_id)?;
        self.write(|c| {
            c.prepare_cached("DELETE FROM sandbox_sessions WHERE chat_id = ?1")?
                .execute([text(chat_id)])
                .map(drop)
        })?;
        Ok(active)
    }

    fn all_chats(&self) -> PortResult<Vec<Chat>> {
        self.with(|c| {
            let mut stmt = c.prepare(select!(chats, ""))?;
            let rows = stmt.query_map([], chat_row)?;
            rows.collect()
        })
    }

    fn all_files(&self) -> PortResult<Vec<ChatFile>> {
        self.with(|c| {
            let mut stmt = c.prepare(select!(chat_files, ""))?;
            let rows = stmt.query_map([], file_row)?;
            rows.collect()
        })
    }
}

/// Sets a chat's bytes in the ledger: chat id, workspace id, bytes.
const SET_CHAT_BYTES: &str =
    "INSERT OR REPLACE INTO chat_usage (chat_id, workspace_id, used_bytes) VALUES (?1, ?2, ?3)";

impl SqliteTransaction {
    /// The `used_bytes` that `select` finds for `id`, if it finds a row.
    fn ledger_bytes(&self, select: &str, id: Uuid) -> PortResult<Option<u64>> {
        self.with(|c| {
            c.prepare_cached(select)?
                .query_row([text(id)], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|bytes| bytes.map(|b| b.max(0) as u64))
    }
}

impl UsageLedger for SqliteTransaction {
    fn used_bytes(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        self.ledger_bytes(
            "SELECT used_bytes FROM workspace_usage WHERE workspace_id = ?1",
            workspace_id,
        )
    }

    fn chat_bytes(&self, chat_id: Uuid) -> PortResult<Option<u64>> {
        self.ledger_bytes(
            "SELECT used_bytes FROM chat_usage WHERE chat_id = ?1",
            chat_id,
        )
    }

    fn change_usage(&self, changes: &[UsageChange]) -> PortResult<()> {
        for change in changes {
            let Some((row, delta)) = ledger_step(self, change)? else {
                continue;
            };
            let (workspace_id, chat_id) = change.chat();
            let (workspace_id, chat_id) = (text(workspace_id), text(chat_id));
            self.write(|c| {
                match row {
                    None => c
                        .prepare_cached("DELETE FROM chat_usage WHERE chat_id = ?1")?
                        .execute([&chat_id])?,
                    Some(bytes) => c.prepare_cached(SET_CHAT_BYTES)?.execute(params![
                        chat_id,
                        workspace_id,
                        signed_bytes(bytes)
                    ])?,
                };
                c.prepare_cached(
                    "UPDATE workspace_usage SET used_bytes = MAX(0, used_bytes + ?2) \
                     WHERE workspace_id = ?1",
                )?
                .execute(params![workspace_id, delta])
                .map(drop)
            })?;
        }
        Ok(())
    }

    fn set_count(&self, workspace_id: Uuid, count: &Count) -> PortResult<()> {
        let workspace_id = text(workspace_id);
        self.write(|c| {
            c.prepare_cached("DELETE FROM chat_usage WHERE workspace_id = ?1")?
                .execute([&workspace_id])?;
            for (chat_id, bytes) in &count.chats {
                c.prepare_cached(SET_CHAT_BYTES)?.execute(params![
                    text(*chat_id),
                    workspace_id,
                    signed_bytes(*bytes)
                ])?;
            }
            c.prepare_cached(
                "INSERT OR REPLACE INTO workspace_usage (workspace_id, used_bytes) VALUES (?1, ?2)",
            )?
            .execute(params![workspace_id, signed_bytes(count.total)])
            .map(drop)
        })
    }

    fn quota(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        self.with(|c| {
            c.prepare_cached("SELECT quota_bytes FROM workspace_quotas WHERE workspace_id = ?1")?
                .query_row([text(workspace_id)], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|bytes| bytes.map(|b| b.max(0) as u64))
    }

    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()> {
        let workspace_id = text(workspace_id);
        self.write(|c| match quota_bytes {
            Some(bytes) => c
                .prepare_cached(
                    "INSERT OR REPLACE INTO workspace_quotas (workspace_id, quota_bytes) \
                     VALUES (?1, ?2)",
                )?
                .execute(params![workspace_id, signed_bytes(bytes)])
                .map(drop),
            None => c
                .prepare_cached("DELETE FROM workspace_quotas WHERE workspace_id = ?1")?
                .execute([workspace_id])
                .map(drop),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteMetadata) {
        let dir = tempfile::tempdir().unwrap();
        let metadata = SqliteMetadata::open(dir.path().join("chatstore.db")).unwrap();
        (dir, metadata)
    }

    crate::adapters::suite::repository_suite!(open());

    fn workspace() -> Workspace {
        crate::adapters::suite::workspace(Uuid::now_v7())
    }

    #[test]
    fn a_writers_reads_before_its_first_write_share_one_snapshot() {
        let (_dir, metadata) = open();
        let (mine, theirs) = (workspace(), workspace());
        let writer = metadata
            .begin(Access::Write, Scope::User(mine.user_id))
            .unwrap();
        let read = |tx: &Arc<dyn MetadataTransaction>| {
            WorkspaceRepository::get_by_user_id(&**tx, theirs.user_id).unwrap()
        };
        assert_eq!(read(&writer), None);
        // Another user's writer commits meanwhile.
        let other = metadata
            .begin(Access::Write, Scope::User(theirs.user_id))
            .unwrap();
        WorkspaceRepository::save(&*other, &theirs).unwrap();
        other.commit(&[]).unwrap();
        assert_eq!(read(&writer), None);
        // The first write begins on the latest commit.
        WorkspaceRepository::save(&*writer, &mine).unwrap();
        assert_eq!(read(&writer), Some(theirs));
        writer.commit(&[]).unwrap();
    }

    #[test]
    fn a_writer_that_only_read_leaves_its_connection_ready_for_the_next() {
        let (_dir, metadata) = open();
        let w = workspace();
        for end in ["commit", "rollback", "commit"] {
            let tx = metadata.begin(Access::Write, Scope::All).unwrap();
            assert_eq!(
                WorkspaceRepository::get(&*tx, w.workspace_id).unwrap(),
                None
            );
            match end {
                "commit" => tx.commit(&[]).unwrap(),
                _ => tx.rollback(),
            }
            let reader = metadata.begin(Access::Read, Scope::All).unwrap();
            assert_eq!(
                WorkspaceRepository::get(&*reader, w.workspace_id).unwrap(),
                None
            );
            reader.rollback();
        }
        crate::adapters::suite::a_commit_is_seen_by_later_transactions(&metadata);
    }

    #[test]
    fn committed_metadata_survives_reopening() {
        let (dir, metadata) = open();
        let w = Workspace {
            workspace_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            created_at: Timestamp::default(),
        };
        let tx = metadata.begin(Access::Write, Scope::All).unwrap();
        WorkspaceRepository::save(&*tx, &w).unwrap();
        tx.commit(&[]).unwrap();
        drop(metadata);
        let reopened = SqliteMetadata::open(dir.path().join("chatstore.db")).unwrap();
        let tx = reopened.begin(Access::Read, Scope::All).unwrap();
        assert_eq!(
            WorkspaceRepository::get(&*tx, w.workspace_id).unwrap(),
            Some(w)
        );
    }

    #[test]
    fn the_journal_commits_with_the_metadata_and_is_forgotten_on_request() {
        let (_dir, metadata) = open();
        let effect = Effect::Remove {
            workspace_id: Uuid::now_v7(),
            chat_id: Uuid::now_v7(),
            name: "a.txt".into(),
        };
        let tx = metadata.begin(Access::Write, Scope::All).unwrap();
        tx.commit(std::slice::from_ref(&effect)).unwrap();
        assert_eq!(
            metadata.pending_effects(Scope::All).unwrap(),
            vec![effect.clone()]
        );
        let rolled_back = metadata.begin(Access::Write, Scope::All).unwrap();
        rolled_back.rollback();
        assert_eq!(metadata.pending_effects(Scope::All).unwrap(), vec![effect]);
        metadata.forget_effects(Scope::All).unwrap();
        assert!(metadata.pending_effects(Scope::All).unwrap().is_empty());
    }

    #[test]
    fn a_database_from_a_newer_chatstore_is_refused() {
        let (dir, metadata) = open();
        drop(metadata);
        let conn = Connection::open(dir.path().join("chatstore.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteMetadata::open(dir.path().join("chatstore.db")).unwrap_err();
        assert!(err.message.contains("newer"), "{err}");
    }
}
