//! Metadata in PostgreSQL, for several hosts serving one store: every host
//! points at the same database and mounts the same data directory.
//!
//! Each call takes one session from a pool (r2d2), takes its locks there
//! and runs its transaction there, so its commit cannot outlive them; the
//! session gives its locks up when the call ends. A writer's transaction is
//! `REPEATABLE READ`, so it reads one snapshot, and the journal of file
//! effects is written in it with the metadata. Locks are PostgreSQL's own
//! (session advisory locks), so they hold across machines, where `flock` on
//! a network filesystem may not: a user's writer holds that user's lock
//! exclusively and the store's lock shared, a reader both shared, the
//! host's maintenance (recovery, `fsck`) the store's lock alone. A host
//! that dies loses its sessions, and with them its locks; the user's next
//! writer, on any host, replays the journal it left.
//!
//! A write that meets a serialisation failure or a deadlock (which the
//! per-user locks leave no room for, but another client of the database
//! might cause) is retried: the transaction starts again and its writes so
//! far are replayed, which is sound because the user's lock keeps the rows
//! they were computed from still.

use crate::error::{PortError, PortResult};
use crate::model::{Chat, ChatFile, SandboxSession, Timestamp, Workspace};
use crate::names::AttachmentName;
use crate::ports::{
    ChatFileRepository, ChatRepository, HostRecords, SandboxSessionRepository, WorkspaceRepository,
};
use crate::unit::{
    Access, Count, Effect, MetadataStore, MetadataTransaction, Scope, SharedStore, UsageChange,
    UsageLedger, signed_bytes,
};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use uuid::Uuid;

/// The schema, one migration per version; the table `chatstore_schema`
/// says how many have run. Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the four repositories, the journal of file effects (each entry's
    // owner is the user whose writer committed it, NULL for the host's
    // maintenance) and the usage ledger.
    "CREATE TABLE workspaces (
        workspace_id uuid PRIMARY KEY,
        user_id      uuid NOT NULL UNIQUE,
        created_s    bigint NOT NULL,
        created_ns   bigint NOT NULL
    );
    CREATE TABLE chats (
        chat_id      uuid PRIMARY KEY,
        workspace_id uuid NOT NULL,
        created_s    bigint NOT NULL,
        created_ns   bigint NOT NULL
    );
    CREATE INDEX chats_by_workspace ON chats (workspace_id);
    CREATE TABLE chat_files (
        file_id      uuid PRIMARY KEY,
        chat_id      uuid NOT NULL,
        name         text NOT NULL,
        content_type text,
        size_bytes   bigint NOT NULL,
        sha256       text,
        created_s    bigint NOT NULL,
        created_ns   bigint NOT NULL,
        UNIQUE (chat_id, name)
    );
    CREATE TABLE sandbox_sessions (
        chat_id    uuid PRIMARY KEY,
        session_id uuid NOT NULL
    );
    CREATE TABLE pending_effects (
        seq    bigserial PRIMARY KEY,
        owner  uuid,
        effect text NOT NULL
    );
    CREATE INDEX pending_effects_by_owner ON pending_effects (owner);
    CREATE TABLE workspace_usage (
        workspace_id uuid PRIMARY KEY,
        used_bytes   bigint NOT NULL
    );
    CREATE TABLE chat_usage (
        chat_id      uuid PRIMARY KEY,
        workspace_id uuid NOT NULL,
        used_bytes   bigint NOT NULL
    );
    CREATE INDEX chat_usage_by_workspace ON chat_usage (workspace_id);",
    // 2: workspaces' own quotas (one without a row has the configured quota).
    "CREATE TABLE workspace_quotas (
        workspace_id uuid PRIMARY KEY,
        quota_bytes  bigint NOT NULL
    );",
];

/// The first key of chatstore's two-key advisory locks (`"chat"`); users'
/// locks are one-key locks, a space of their own.
const LOCK_CLASS: i32 = 0x6368_6174;
/// Shared by every call, held alone by the host's maintenance.
const STORE_LOCK: i32 = 1;
/// Held shared by every open store; cleaning staging needs it alone.
const STAGING_LOCK: i32 = 2;
/// Held while migrating, so hosts starting together migrate once.
const MIGRATION_LOCK: i32 = 3;

/// Sessions each pool opens at most: one pool for calls (each holds its
/// call's locks and runs its transaction), one for the journal's and the
/// host's own short queries, so a host uses at most twice this plus one.
pub const POOL_SIZE: u32 = 32;

/// How long a call waits for a session when all of its pool's are in use.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a write is tried when PostgreSQL reports a serialisation
/// failure or a deadlock.
const WRITE_ATTEMPTS: usize = 4;

/// TCP keepalives on every connection, both ends: idle seconds before the
/// first probe, seconds between probes, and unanswered probes before the
/// peer counts as gone.
const KEEPALIVE: (u64, u64, u32) = (10, 5, 4);

/// `config`, with its sessions ending about 30 s after either end vanishes
/// (a machine powered off, a network cut) instead of the system's two
/// hours: a vanished host's advisory locks go with its sessions, and its
/// users' writers on other hosts wait for them until then. PostgreSQL's
/// side is set with the session's `options`; settings the URL gives itself
/// come after ours and win.
fn sessions_end_with_their_host(mut config: postgres::Config) -> postgres::Config {
    let (idle, interval, count) = KEEPALIVE;
    let ours = format!(
        "-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} \
         -c tcp_keepalives_count={count}"
    );
    let options = match config.get_options() {
        Some(theirs) => format!("{ours} {theirs}"),
        None => ours,
    };
    let quiet = std::time::Duration::from_secs(idle + interval * u64::from(count));
    config
        .options(&options)
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(idle))
        .keepalives_interval(std::time::Duration::from_secs(interval))
        .keepalives_retries(count)
        // Data sent and not acknowledged for as long also ends it.
        .tcp_user_timeout(quiet);
    config
}

fn db_error(e: postgres::Error) -> PortError {
    match e.as_db_error() {
        Some(db) => PortError::new(format!("database: {}: {}", db.code().code(), db.message())),
        None => PortError::new(format!("database: {e}")),
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A session, and the statements prepared on it.
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Whether its state is unknown (an unlock or a rollback failed): its
    /// pool then closes it, which releases whatever it held, instead of
    /// giving it to the next call.
    broken: bool,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }
}

/// Opens the sessions of a pool.
#[derive(Debug)]
pub struct Sessions(postgres::Config);

impl Sessions {
    fn connect(&self) -> PortResult<Conn> {
        r2d2::ManageConnection::connect(self).map_err(db_error)
    }
}

impl r2d2::ManageConnection for Sessions {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.0.connect(NoTls)?,
            statements: HashMap::new(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.batch_execute("")
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<Sessions>;
type Pooled = r2d2::PooledConnection<Sessions>;

/// A pool of at most [`POOL_SIZE`] sessions, opened as calls need them.
fn pool(config: postgres::Config) -> Pool {
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(0))
        // A session is checked by its use: a broken one fails its call.
        .test_on_check_out(false)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build_unchecked(Sessions(config))
}

fn checkout(pool: &Pool) -> PortResult<Pooled> {
    pool.get()
        .map_err(|e| PortError::new(format!("database: {e}")))
}

/// Drops what it holds on a thread of its own: closing a session blocks on
/// the client's own runtime, which must not happen on a thread that drives
/// async tasks (a server drops its store there when it stops).
struct DroppedElsewhere<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Drop for DroppedElsewhere<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            let _ = std::thread::spawn(move || drop(value)).join();
        }
    }
}

/// PostgreSQL metadata and locks, shared by every call of one host.
#[derive(Clone)]
pub struct PostgresMetadata(Arc<DroppedElsewhere<Shared>>);

struct Shared {
    /// Sessions for calls.
    calls: Pool,
    /// Sessions for the journal's and the host's own queries.
    queries: Pool,
    /// Where this host's calls of one user take turns to wait for its lock.
    turns: Arc<LockTurns>,
    /// Holds the staging lock shared while this store is open (see
    /// [`SharedStore::alone`]).
    keeper: Mutex<Conn>,
}

impl std::fmt::Debug for PostgresMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresMetadata").finish_non_exhaustive()
    }
}

impl PostgresMetadata {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// without TLS), and runs any migrations it has not seen.
    pub fn open(url: &str) -> PortResult<PostgresMetadata> {
        let config = postgres::Config::from_str(url)
            .map_err(|e| PortError::new(format!("database URL: {e}")))?;
        let config = sessions_end_with_their_host(config);
        let mut keeper = Sessions(config.clone()).connect()?;
        migrate(&mut keeper)?;
        keeper
            .client
            .batch_execute(&format!(
                "SELECT pg_advisory_lock_shared({LOCK_CLASS}, {STAGING_LOCK})"
            ))
            .map_err(db_error)?;
        Ok(PostgresMetadata(Arc::new(DroppedElsewhere(Some(Shared {
            calls: pool(config.clone()),
            queries: pool(config),
            turns: Arc::default(),
            keeper: Mutex::new(keeper),
        })))))
    }

    fn inner(&self) -> &Shared {
        (self.0.0.as_ref()).expect("a store's sessions are there until it is dropped")
    }
}

/// Runs the migrations the database has not seen, holding the migration
/// lock so that hosts starting together do it once.
fn migrate(conn: &mut Conn) -> PortResult<()> {
    let client = &mut conn.client;
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({LOCK_CLASS}, {MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS chatstore_schema (version integer NOT NULL);"
        ))
        .map_err(db_error)?;
    let result = (|| {
        let mut tx = client.transaction().map_err(db_error)?;
        let version = tx
            .query_opt("SELECT version FROM chatstore_schema", &[])
            .map_err(db_error)?
            .map(|row| row.get::<_, i32>(0));
        let done = usize::try_from(version.unwrap_or(0))
            .map_err(|_| PortError::new("database: negative schema version"))?;
        if done > MIGRATIONS.len() {
            return Err(PortError::new(format!(
                "database schema version {done} is newer than this chatstore knows ({})",
                MIGRATIONS.len()
            )));
        }
        for migration in &MIGRATIONS[done..] {
            tx.batch_execute(migration).map_err(db_error)?;
        }
        let now = MIGRATIONS.len() as i32;
        if version.is_none() {
            tx.execute(
                "INSERT INTO chatstore_schema (version) VALUES ($1)",
                &[&now],
            )
        } else {
            tx.execute("UPDATE chatstore_schema SET version = $1", &[&now])
        }
        .map_err(db_error)?;
        tx.commit().map_err(db_error)
    })();
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_unlock({LOCK_CLASS}, {MIGRATION_LOCK})"
        ))
        .map_err(db_error)?;
    result
}

/// A user's advisory lock key: the two halves of the id folded together
/// (two users sharing a key would only take turns).
fn user_key(user_id: Uuid) -> i64 {
    let (high, low) = user_id.as_u64_pair();
    (high ^ low) as i64
}

/// Where a user's calls on this host take turns before they take a lock
/// connection, and a writer keeps its turn until its locks are released: a
/// user's queued calls then hold at most one connection between them
/// (waiting for the user's advisory lock, which writers on other hosts may
/// hold), not every connection of the pool, which other users need. A reader
/// gives its turn up once it holds the lock, which other readers share.
#[derive(Default)]
struct LockTurns {
    users: Mutex<HashMap<Uuid, Arc<Turn>>>,
}

#[derive(Default)]
struct Turn {
    taken: Mutex<bool>,
    free: Condvar,
}

/// A user's turn on this host; the next call's when dropped.
struct LockTurn {
    turns: Arc<LockTurns>,
    user: Uuid,
    turn: Arc<Turn>,
}

impl LockTurns {
    /// Waits for `user`'s turn.
    fn take(self: &Arc<Self>, user: Uuid) -> LockTurn {
        let turn = lock(&self.users).entry(user).or_default().clone();
        let mut taken = lock(&turn.taken);
        if *taken {
            tracing::debug!(%user, "waiting for this host's call of the user");
        }
        while *taken {
            taken = turn.free.wait(taken).unwrap_or_else(|p| p.into_inner());
        }
        *taken = true;
        drop(taken);
        LockTurn {
            turns: self.clone(),
            user,
            turn,
        }
    }

    /// How many users have a call here that takes or holds a turn.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.users).len()
    }
}

impl Drop for LockTurn {
    fn drop(&mut self) {
        *lock(&self.turn.taken) = false;
        self.turn.free.notify_one();
        let mut users = lock(&self.turns.users);
        // The map's and this one: no other call of the user is here.
        if Arc::strong_count(&self.turn) == 2 {
            users.remove(&self.user);
        }
    }
}

const LOST: &str = "the database session that held this call's locks ended";

/// What a call of `access` on `scope` sends first: its locks (see the
/// module's doc), then, for a transaction, `BEGIN`, once they are held, so
/// that its snapshot is taken after any wait for them.
fn begin_sql(access: Access, scope: Scope) -> String {
    let exclusive = |key: &str| format!("SELECT pg_advisory_lock({key});");
    let shared = |key: &str| format!("SELECT pg_advisory_lock_shared({key});");
    let store = format!("{LOCK_CLASS}, {STORE_LOCK}");
    let locks = match (access, scope) {
        (Access::Read, Scope::All) => shared(&store),
        (Access::Write, Scope::All) => exclusive(&store),
        (Access::Read, Scope::User(user)) => shared(&store) + &shared(&user_key(user).to_string()),
        (Access::Write, Scope::User(user)) => {
            shared(&store) + &exclusive(&user_key(user).to_string())
        }
    };
    match (access, scope) {
        // A reader holding its user's locks needs no snapshot: no writer of
        // the user's rows runs beside it, on any host, and the rows it reads
        // are the user's (or, as a chat's workspace, never change).
        (Access::Read, Scope::User(_)) => locks,
        (Access::Read, Scope::All) => {
            format!("BEGIN; {locks} COMMIT; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        }
        (Access::Write, _) => {
            format!("BEGIN; {locks} COMMIT; BEGIN ISOLATION LEVEL REPEATABLE READ")
        }
    }
}

impl MetadataStore for PostgresMetadata {
    /// Takes a session, the scope's locks in it and, but for a user's
    /// reader, a transaction: one round trip once the locks are free.
    fn begin(&self, access: Access, scope: Scope) -> PortResult<Arc<dyn MetadataTransaction>> {
        let inner = self.inner();
        let turn = match scope {
            Scope::User(user) => Some(inner.turns.take(user)),
            Scope::All => None,
        };
        let mut session = checkout(&inner.calls)?;
        let sql = begin_sql(access, scope);
        if let Err(e) = session.client.batch_execute(&sql) {
            session.broken = true;
            return Err(db_error(e));
        }
        Ok(Arc::new(PostgresTransaction {
            open: Mutex::new(Some(Open {
                session,
                writes: Vec::new(),
                in_transaction: sql.contains("BEGIN"),
                // The user's next reader shares a reader's lock: it need not wait.
                _turn: turn.filter(|_| access == Access::Write),
            })),
            access,
            owner: scope_owner(scope),
        }))
    }

    fn pending_effects(&self, scope: Scope) -> PortResult<Vec<Effect>> {
        let mut session = checkout(&self.inner().queries)?;
        let rows = session
            .query(
                "SELECT effect FROM pending_effects \
                 WHERE $1::uuid IS NULL OR owner = $1 ORDER BY seq",
                &[&scope_owner(scope)],
            )
            .map_err(db_error)?;
        rows.iter().map(|row| effect(row.get(0))).collect()
    }

    fn forget_effects(&self, scope: Scope) -> PortResult<()> {
        let mut session = checkout(&self.inner().queries)?;
        session
            .execute(
                "DELETE FROM pending_effects WHERE $1::uuid IS NULL OR owner = $1",
                &[&scope_owner(scope)],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}

impl SharedStore for PostgresMetadata {
    fn alone(&self, clean: &mut dyn FnMut() -> std::io::Result<()>) -> PortResult<bool> {
        let mut keeper = lock(&self.inner().keeper);
        let key = format!("{LOCK_CLASS}, {STAGING_LOCK}");
        let rows = keeper
            .client
            .query(&format!("SELECT pg_try_advisory_lock({key})"), &[])
            .map_err(db_error)?;
        if !rows.first().is_some_and(|row| row.get::<_, bool>(0)) {
            return Ok(false);
        }
        let cleaned = clean();
        keeper
            .client
            .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
            .map_err(db_error)?;
        cleaned.map_err(|e| PortError::new(format!("cleaning staging: {e}")))?;
        Ok(true)
    }
}

/// A journal entry as stored.
fn effect(json: &str) -> PortResult<Effect> {
    serde_json::from_str(json).map_err(|e| PortError::new(format!("journal: {e}")))
}

fn scope_owner(scope: Scope) -> Option<Uuid> {
    match scope {
        Scope::User(user_id) => Some(user_id),
        Scope::All => None,
    }
}

/// A value a write was given, kept to replay the write on a retry.
#[derive(Clone, Debug)]
enum Value {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

impl Value {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Uuid(v) => v,
            Value::OptUuid(v) => v,
            Value::Text(v) => v,
            Value::OptText(v) => v,
            Value::Int(v) => v,
        }
    }
}

/// One call's session, with its locks and its transaction.
pub struct PostgresTransaction {
    open: Mutex<Option<Open>>,
    access: Access,
    /// The journal's owner for this transaction's effects.
    owner: Option<Uuid>,
}

struct Open {
    session: Pooled,
    /// Every write so far, to replay if the transaction must start again.
    writes: Vec<(&'static str, Vec<Value>)>,
    /// Whether a transaction is open in the session, to end.
    in_transaction: bool,
    /// Released after the session's locks are (fields drop in order).
    _turn: Option<LockTurn>,
}

impl Open {
    /// `e`, told as the locks' loss where the session that held them ended.
    fn error(&mut self, e: postgres::Error) -> PortError {
        let ended = e.is_closed()
            || e.as_db_error().is_some_and(|db| db.severity() == "FATAL")
            || self.session.client.is_closed();
        if ended {
            self.session.broken = true;
            PortError::new(format!("{LOST}: {e}"))
        } else {
            db_error(e)
        }
    }
}

/// Ends the transaction if one is open and releases the locks before the
/// session goes back to its pool; a session that cannot is closed instead,
/// which releases them too.
impl Drop for Open {
    fn drop(&mut self) {
        let sql = match self.in_transaction {
            true => "ROLLBACK; SELECT pg_advisory_unlock_all()",
            false => "SELECT pg_advisory_unlock_all()",
        };
        if self.session.client.batch_execute(sql).is_err() {
            self.session.broken = true;
        }
    }
}

impl PostgresTransaction {
    fn read<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>) -> PortResult<T> {
        let mut open = lock(&self.open);
        let open = open
            .as_mut()
            .ok_or_else(|| PortError::new("the transaction has ended"))?;
        match f(&mut open.session) {
            Ok(value) => Ok(value),
            Err(e) => Err(open.error(e)),
        }
    }

    fn write(&self, sql: &'static str, values: Vec<Value>) -> PortResult<()> {
        if self.access == Access::Read {
            return Err(PortError::new("this call may only read"));
        }
        let mut guard = lock(&self.open);
        let open = guard
            .as_mut()
            .ok_or_else(|| PortError::new("the transaction has ended"))?;
        open.writes.push((sql, values));
        let mut attempt = 1;
        loop {
            let (sql, values) = open.writes.last().expect("just pushed");
            let params: Vec<_> = values.iter().map(Value::as_sql).collect();
            match open.session.execute(sql, &params) {
                Ok(_) => return Ok(()),
                Err(e) if retryable(&e) && attempt < WRITE_ATTEMPTS => {
                    attempt += 1;
                    tracing::info!(error = %db_error(e), attempt, "retrying a transaction");
                    if let Err(e) = Self::restart(open) {
                        return Err(open.error(e));
                    }
                }
                Err(e) => {
                    open.writes.pop();
                    return Err(open.error(e));
                }
            }
        }
    }

    /// Starts the transaction again and replays its writes but the last.
    fn restart(open: &mut Open) -> Result<(), postgres::Error> {
        let session = &mut open.session;
        session
            .client
            .batch_execute("ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ")?;
        let replayed = open.writes.len() - 1;
        for (sql, values) in &open.writes[..replayed] {
            let params: Vec<_> = values.iter().map(Value::as_sql).collect();
            session.execute(sql, &params)?;
        }
        Ok(())
    }

    /// Ends the transaction with `sql`; the session keeps the call's locks
    /// until the transaction is dropped.
    fn end(&self, sql: &str) -> PortResult<()> {
        let mut guard = lock(&self.open);
        let Some(open) = guard.as_mut().filter(|open| open.in_transaction) else {
            return Ok(());
        };
        open.in_transaction = false;
        match open.session.client.batch_execute(sql) {
            Ok(()) => Ok(()),
            Err(e) => {
                open.session.broken = true;
                Err(open.error(e))
            }
        }
    }
}

impl MetadataTransaction for PostgresTransaction {
    /// The transaction runs in the session that holds the call's locks: it
    /// commits only if the session, and so the locks, lasted.
    fn commit(&self, effects: &[Effect]) -> PortResult<()> {
        for effect in effects {
            let json = serde_json::to_string(effect)
                .map_err(|e| PortError::new(format!("journal: {e}")))?;
            self.write(
                "INSERT INTO pending_effects (owner, effect) VALUES ($1, $2)",
                vec![Value::OptUuid(self.owner), Value::Text(json)],
            )?;
        }
        self.end("COMMIT")
    }

    fn rollback(&self) {
        let _ = self.end("ROLLBACK");
    }

    /// A session alive holds its advisory locks until it releases them.
    fn confirm_locks(&self) -> PortResult<()> {
        self.read(|session| session.client.batch_execute("SELECT 1"))
    }
}

fn timestamp_at(row: &Row, i: usize) -> Timestamp {
    let nanoseconds = row.get::<_, i64>(i + 1).clamp(0, 999_999_999) as u32;
    crate::model::timestamp(row.get(i), nanoseconds).unwrap_or_default()
}

fn workspace_row(row: &Row) -> Workspace {
    Workspace {
        workspace_id: row.get(0),
        user_id: row.get(1),
        created_at: timestamp_at(row, 2),
    }
}

fn chat_row(row: &Row) -> Chat {
    Chat {
        chat_id: row.get(0),
        workspace_id: row.get(1),
        created_at: timestamp_at(row, 2),
    }
}

fn file_row(row: &Row) -> PortResult<ChatFile> {
    let name: String = row.get(2);
    Ok(ChatFile {
        file_id: row.get(0),
        chat_id: row.get(1),
        name: AttachmentName::new(name.clone()).map_err(|e| {
            PortError::new(format!("database: stored name {name:?} is refused: {e}"))
        })?,
        content_type: row.get(3),
        size_bytes: row.get::<_, i64>(4).max(0) as u64,
        sha256: row.get(5),
        created_at: timestamp_at(row, 6),
    })
}

fn files(rows: Vec<Row>) -> PortResult<Vec<ChatFile>> {
    rows.iter().map(file_row).collect()
}

fn timestamp_values(t: Timestamp) -> [Value; 2] {
    [
        Value::Int(t.timestamp()),
        Value::Int(i64::from(t.timestamp_subsec_nanos())),
    ]
}

impl WorkspaceRepository for PostgresTransaction {
    fn get(&self, workspace_id: Uuid) -> PortResult<Option<Workspace>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT workspace_id, user_id, created_s, created_ns FROM workspaces \
                 WHERE workspace_id = $1",
                &[&workspace_id],
            )
        })?;
        Ok(rows.first().map(workspace_row))
    }

    fn get_by_user_id(&self, user_id: Uuid) -> PortResult<Option<Workspace>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT workspace_id, user_id, created_s, created_ns FROM workspaces \
                 WHERE user_id = $1",
                &[&user_id],
            )
        })?;
        Ok(rows.first().map(workspace_row))
    }

    fn save(&self, w: &Workspace) -> PortResult<()> {
        self.write(
            "DELETE FROM workspaces WHERE user_id = $1 AND workspace_id <> $2",
            vec![Value::Uuid(w.user_id), Value::Uuid(w.workspace_id)],
        )?;
        let [s, ns] = timestamp_values(w.created_at);
        self.write(
            "INSERT INTO workspaces (workspace_id, user_id, created_s, created_ns) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE SET \
             user_id = EXCLUDED.user_id, created_s = EXCLUDED.created_s, \
             created_ns = EXCLUDED.created_ns",
            vec![Value::Uuid(w.workspace_id), Value::Uuid(w.user_id), s, ns],
        )
    }
}

impl ChatRepository for PostgresTransaction {
    fn get(&self, chat_id: Uuid) -> PortResult<Option<Chat>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT chat_id, workspace_id, created_s, created_ns FROM chats WHERE chat_id = $1",
                &[&chat_id],
            )
        })?;
        Ok(rows.first().map(chat_row))
    }

    fn list_by_workspace_id(&self, workspace_id: Uuid) -> PortResult<Vec<Chat>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT chat_id, workspace_id, created_s, created_ns FROM chats \
                 WHERE workspace_id = $1",
                &[&workspace_id],
            )
        })?;
        Ok(rows.iter().map(chat_row).collect())
    }

    fn save(&self, chat: &Chat) -> PortResult<()> {
        let [s, ns] = timestamp_values(chat.created_at);
        self.write(
            "INSERT INTO chats (chat_id, workspace_id, created_s, created_ns) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (chat_id) DO UPDATE SET \
             workspace_id = EXCLUDED.workspace_id, created_s = EXCLUDED.created_s, \
             created_ns = EXCLUDED.created_ns",
            vec![
                Value::Uuid(chat.chat_id),
                Value::Uuid(chat.workspace_id),
                s,
                ns,
            ],
        )
    }

    fn delete(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(
            "DELETE FROM chats WHERE chat_id = $1",
            vec![Value::Uuid(chat_id)],
        )
    }
}

impl ChatFileRepository for PostgresTransaction {
    fn get(&self, file_id: Uuid) -> PortResult<Option<ChatFile>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT file_id, chat_id, name, content_type, size_bytes, sha256, created_s, \
                 created_ns FROM chat_files WHERE file_id = $1",
                &[&file_id],
            )
        })?;
        rows.first().map(file_row).transpose()
    }

    fn get_by_chat_id_and_name(
        &self,
        chat_id: Uuid,
        name: &AttachmentName,
    ) -> PortResult<Option<ChatFile>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT file_id, chat_id, name, content_type, size_bytes, sha256, created_s, \
                 created_ns FROM chat_files WHERE chat_id = $1 AND name = $2",
                &[&chat_id, &name.as_str()],
            )
        })?;
        rows.first().map(file_row).transpose()
    }

    fn list_by_chat_id(&self, chat_id: Uuid) -> PortResult<Vec<ChatFile>> {
        files(self.read(|c| {
            c.query(
                "SELECT file_id, chat_id, name, content_type, size_bytes, sha256, created_s, \
                 created_ns FROM chat_files WHERE chat_id = $1",
                &[&chat_id],
            )
        })?)
    }

    fn save(&self, f: &ChatFile) -> PortResult<()> {
        self.write(
            "DELETE FROM chat_files WHERE chat_id = $1 AND name = $2 AND file_id <> $3",
            vec![
                Value::Uuid(f.chat_id),
                Value::Text(f.name.to_string()),
                Value::Uuid(f.file_id),
            ],
        )?;
        let [s, ns] = timestamp_values(f.created_at);
        self.write(
            "INSERT INTO chat_files (file_id, chat_id, name, content_type, size_bytes, sha256, \
             created_s, created_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (file_id) DO UPDATE SET chat_id = EXCLUDED.chat_id, \
             name = EXCLUDED.name, content_type = EXCLUDED.content_type, \
             size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256, \
             created_s = EXCLUDED.created_s, created_ns = EXCLUDED.created_ns",
            vec![
                Value::Uuid(f.file_id),
                Value::Uuid(f.chat_id),
                Value::Text(f.name.to_string()),
                Value::OptText(f.content_type.clone()),
                Value::Int(signed_bytes(f.size_bytes)),
                Value::OptText(f.sha256.clone()),
                s,
                ns,
            ],
        )
    }

    fn delete(&self, file_id: Uuid) -> PortResult<()> {
        self.write(
            "DELETE FROM chat_files WHERE file_id = $1",
            vec![Value::Uuid(file_id)],
        )
    }

    fn delete_by_chat_id(&self, chat_id: Uuid) -> PortResult<()> {
        self.write(
            "DELETE FROM chat_files WHERE chat_id = $1",
            vec![Value::Uuid(chat_id)],
        )
    }
}

impl SandboxSessionRepository for PostgresTransaction {
    fn get_active_by_chat_id(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT session_id, chat_id FROM sandbox_sessions WHERE chat_id = $1",
                &[&chat_id],
            )
        })?;
        Ok(rows.first().map(|row| SandboxSession {
            session_id: row.get(0),
            chat_id: row.get(1),
        }))
    }
}

impl HostRecords for PostgresTransaction {
    fn start_sandbox(&self, s: &SandboxSession) -> PortResult<()> {
        self.write(
            "INSERT INTO sandbox_sessions (chat_id, session_id) VALUES ($1, $2) \
             ON CONFLICT (chat_id) DO UPDATE SET session_id = EXCLUDED.session_id",
            vec![Value::Uuid(s.chat_id), Value::Uuid(s.session_id)],
        )
    }

    fn end_sandbox(&self, chat_id: Uuid) -> PortResult<Option<SandboxSession>> {
        let active = self.get_active_by_chat_id(chat_id)?;
        self.write(
            "DELETE FROM sandbox_sessions WHERE chat_id = $1",
            vec![Value::Uuid(chat_id)],
        )?;
        Ok(active)
    }

    fn all_chats(&self) -> PortResult<Vec<Chat>> {
        let rows = self.read(|c| {
            c.query(
                "SELECT chat_id, workspace_id, created_s, created_ns FROM chats",
                &[],
            )
        })?;
        Ok(rows.iter().map(chat_row).collect())
    }

    fn all_files(&self) -> PortResult<Vec<ChatFile>> {
        files(self.read(|c| {
            c.query(
                "SELECT file_id, chat_id, name, content_type, size_bytes, sha256, created_s, \
                 created_ns FROM chat_files",
                &[],
            )
        })?)
    }
}

/// Sets a chat's bytes in the ledger: chat id, workspace id, bytes.
const SET_CHAT_BYTES: &str = "INSERT INTO chat_usage (chat_id, workspace_id, used_bytes) \
     VALUES ($1, $2, $3) ON CONFLICT (chat_id) DO UPDATE SET \
     workspace_id = EXCLUDED.workspace_id, used_bytes = EXCLUDED.used_bytes";

/// One change to the ledger: for workspace `$1`, if it was ever counted,
/// chat `$2`'s bytes before (`b`, never below zero) and `after` (`a`); the
/// chat's row changed by `chat`, and the workspace's bytes by `a - b`
/// (never below zero).
macro_rules! ledger_change {
    ($after:literal, $chat:expr) => {
        concat!(
            "WITH before AS (SELECT GREATEST(COALESCE((SELECT used_bytes FROM chat_usage \
               WHERE chat_id = $2::uuid), 0), 0) AS b \
               FROM workspace_usage WHERE workspace_id = $1::uuid), \
             next AS (SELECT b, ",
            $after,
            " AS a FROM before), chat AS (",
            $chat,
            ") UPDATE workspace_usage SET used_bytes = GREATEST(0, used_bytes + (SELECT a - b FROM next)) \
             WHERE workspace_id = $1::uuid AND EXISTS (SELECT 1 FROM next)"
        )
    };
}

/// Sets the chat's row to `a` bytes.
macro_rules! upsert_chat {
    () => {
        "INSERT INTO chat_usage (chat_id, workspace_id, used_bytes) \
         SELECT $2::uuid, $1::uuid, a FROM next ON CONFLICT (chat_id) DO UPDATE SET \
         workspace_id = EXCLUDED.workspace_id, used_bytes = EXCLUDED.used_bytes"
    };
}

/// The chat's bytes grow by `$3`, or shrink if it is negative.
const GROW_CHAT: &str = ledger_change!(
    "LEAST(GREATEST(b::numeric + $3::bigint, 0), 9223372036854775807)::bigint",
    upsert_chat!()
);

/// The chat now holds `$3` bytes.
const SET_CHAT: &str = ledger_change!("$3::bigint", upsert_chat!());

/// The chat is gone.
const DROP_CHAT: &str = ledger_change!(
    "0::bigint",
    "DELETE FROM chat_usage WHERE chat_id = $2::uuid AND EXISTS (SELECT 1 FROM next)"
);

impl PostgresTransaction {
    /// The `used_bytes` that `select` finds for `id`, if it finds a row.
    fn ledger_bytes(&self, select: &'static str, id: Uuid) -> PortResult<Option<u64>> {
        let rows = self.read(|c| c.query(select, &[&id]))?;
        Ok(rows.first().map(|row| row.get::<_, i64>(0).max(0) as u64))
    }
}

impl UsageLedger for PostgresTransaction {
    fn used_bytes(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        self.ledger_bytes(
            "SELECT used_bytes FROM workspace_usage WHERE workspace_id = $1",
            workspace_id,
        )
    }

    fn chat_bytes(&self, chat_id: Uuid) -> PortResult<Option<u64>> {
        self.ledger_bytes(
            "SELECT used_bytes FROM chat_usage WHERE chat_id = $1",
            chat_id,
        )
    }

    fn usage_and_quota(&self, workspace_id: Uuid) -> PortResult<(Option<u64>, Option<u64>)> {
        let rows = self.read(|c| {
            c.query(
                "SELECT (SELECT used_bytes FROM workspace_usage WHERE workspace_id = $1), \
                        (SELECT quota_bytes FROM workspace_quotas WHERE workspace_id = $1)",
                &[&workspace_id],
            )
        })?;
        let bytes = |i| {
            let value = rows.first().and_then(|row| row.get::<_, Option<i64>>(i));
            value.map(|b| b.max(0) as u64)
        };
        Ok((bytes(0), bytes(1)))
    }

    /// One statement, so one round trip, per change: the same steps as
    /// `ledger_step` (nothing for a workspace never counted; a chat's
    /// bytes never below zero), read and written where the rows are.
    fn change_usage(&self, changes: &[UsageChange]) -> PortResult<()> {
        for change in changes {
            let (workspace_id, chat_id) = change.chat();
            let mut values = vec![Value::Uuid(workspace_id), Value::Uuid(chat_id)];
            let sql = match *change {
                UsageChange::Grow { bytes, .. } => {
                    values.push(Value::Int(bytes));
                    GROW_CHAT
                }
                UsageChange::Set { bytes, .. } => {
                    values.push(Value::Int(signed_bytes(bytes)));
                    SET_CHAT
                }
                UsageChange::Drop { .. } => DROP_CHAT,
            };
            self.write(sql, values)?;
        }
        Ok(())
    }

    fn set_count(&self, workspace_id: Uuid, count: &Count) -> PortResult<()> {
        self.write(
            "DELETE FROM chat_usage WHERE workspace_id = $1",
            vec![Value::Uuid(workspace_id)],
        )?;
        for (chat_id, bytes) in &count.chats {
            self.write(
                SET_CHAT_BYTES,
                vec![
                    Value::Uuid(*chat_id),
                    Value::Uuid(workspace_id),
                    Value::Int(signed_bytes(*bytes)),
                ],
            )?;
        }
        self.write(
            "INSERT INTO workspace_usage (workspace_id, used_bytes) VALUES ($1, $2) \
             ON CONFLICT (workspace_id) DO UPDATE SET used_bytes = EXCLUDED.used_bytes",
            vec![
                Value::Uuid(workspace_id),
                Value::Int(signed_bytes(count.total)),
            ],
        )
    }

    fn quota(&self, workspace_id: Uuid) -> PortResult<Option<u64>> {
        self.ledger_bytes(
            "SELECT quota_bytes FROM workspace_quotas WHERE workspace_id = $1",
            workspace_id,
        )
    }

    fn set_quota(&self, workspace_id: Uuid, quota_bytes: Option<u64>) -> PortResult<()> {
        match quota_bytes {
            Some(bytes) => self.write(
                "INSERT INTO workspace_quotas (workspace_id, quota_bytes) VALUES ($1, $2) \
                 ON CONFLICT (workspace_id) DO UPDATE SET quota_bytes = EXCLUDED.quota_bytes",
                vec![Value::Uuid(workspace_id), Value::Int(signed_bytes(bytes))],
            ),
            None => self.write(
                "DELETE FROM workspace_quotas WHERE workspace_id = $1",
                vec![Value::Uuid(workspace_id)],
            ),
        }
    }
}

/// A database of its own for one test, created on a PostgreSQL server
/// (`CHATSTORE_TEST_POSTGRES`, a URL with the right to create databases)
/// and dropped with it. `scripts/with-postgres.sh` starts such a server.
pub struct ScratchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// The environment variable that names the server.
    pub const SERVER_VARIABLE: &'static str = "CHATSTORE_TEST_POSTGRES";

    /// A new empty database on the server that `CHATSTORE_TEST_POSTGRES`
    /// names; `None` if it names none and `CI` is not set (where it must).
    pub fn from_env() -> Option<ScratchDatabase> {
        match std::env::var(Self::SERVER_VARIABLE) {
            Ok(admin) => Some(
                ScratchDatabase::create(&admin)
                    .unwrap_or_else(|e| panic!("creating a test database on {admin}: {e}")),
            ),
            Err(_) if std::env::var_os("CI").is_some() => panic!(
                "{} is not set: CI runs the PostgreSQL tests (scripts/with-postgres.sh sets it)",
                Self::SERVER_VARIABLE
            ),
            Err(_) => {
                eprintln!(
                    "skipped: no PostgreSQL server ({} unset; scripts/with-postgres.sh sets it)",
                    Self::SERVER_VARIABLE
                );
                None
            }
        }
    }

    /// A new empty database on the server at `admin`.
    pub fn create(admin: &str) -> PortResult<ScratchDatabase> {
        let config = postgres::Config::from_str(admin)
            .map_err(|e| PortError::new(format!("database URL: {e}")))?;
        let name = format!("chatstore_test_{}", Uuid::now_v7().simple());
        let mut client = config.connect(NoTls).map_err(db_error)?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(db_error)?;
        let url = match admin.rfind('/') {
            Some(slash) if admin[..slash].contains("://") && !admin[slash..].contains('?') => {
                format!("{}/{name}", &admin[..slash])
            }
            _ => return Err(PortError::new("the server URL must end in /<database>")),
        };
        Ok(ScratchDatabase {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection of its own to the database, as any other client's.
    #[cfg(test)]
    pub(crate) fn client(&self) -> Client {
        postgres::Config::from_str(&self.url)
            .and_then(|config| config.connect(NoTls))
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }

    /// Returns once no session is connected to the database: a killed
    /// process's sessions, and their locks, end when PostgreSQL notices.
    pub fn until_unused(&self) -> PortResult<()> {
        let mut client = postgres::Config::from_str(&self.admin)
            .map_err(|e| PortError::new(format!("database URL: {e}")))?
            .connect(NoTls)
            .map_err(db_error)?;
        loop {
            let sessions: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&self.name],
                )
                .map_err(db_error)?
                .get(0);
            if sessions == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = postgres::Config::from_str(&self.admin)
            .map_err(|e| e.to_string())
            .and_then(|config| config.connect(NoTls).map_err(|e| e.to_string()))
            .and_then(|mut client| {
                client
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Option<(ScratchDatabase, PostgresMetadata)> {
        let db = ScratchDatabase::from_env()?;
        let metadata = PostgresMetadata::open(db.url()).unwrap();
        Some((db, metadata))
    }

    crate::adapters::suite::repository_suite!(optional open());

    /// Waits until some session waits for an advisory lock, as PostgreSQL
    /// itself reports it.
    fn until_someone_waits_for_a_lock(db: &ScratchDatabase) {
        until_someone_waits_for_a_lock_checking(db, || {});
    }

    /// The same, running `check` between looks.
    fn until_someone_waits_for_a_lock_checking(db: &ScratchDatabase, check: impl Fn()) {
        let mut client = db.client();
        while client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            check();
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_users_writer_on_one_host_waits_for_its_writer_on_another_and_no_one_else_does() {
        let Some((db, here)) = open() else { return };
        let there = PostgresMetadata::open(db.url()).unwrap();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let held = here.begin(Access::Write, Scope::User(alice)).unwrap();
        // Another user's writer and reader on the other host go ahead.
        drop(there.begin(Access::Write, Scope::User(bob)).unwrap());
        drop(there.begin(Access::Read, Scope::User(bob)).unwrap());
        let (done, finished) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let there = there.clone();
            move || {
                let lock = there.begin(Access::Write, Scope::User(alice)).unwrap();
                done.send(()).unwrap();
                lock
            }
        });
        until_someone_waits_for_a_lock(&db);
        assert!(finished.try_recv().is_err(), "alice's second writer got in");
        drop(held);
        finished.recv().unwrap();
        drop(waiter.join().unwrap());
    }

    #[test]
    fn a_users_calls_here_take_turns_and_other_users_do_not_wait_for_them() {
        let turns = Arc::new(LockTurns::default());
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let first = turns.take(alice);
        let (done, finished) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let turns = turns.clone();
            move || {
                let turn = turns.take(alice);
                done.send(()).unwrap();
                turn
            }
        });
        // Bob's call does not wait for Alice's.
        drop(turns.take(bob));
        assert!(finished.try_recv().is_err(), "alice's second call got in");
        drop(first);
        finished.recv().unwrap();
        drop(second.join().unwrap());
        assert_eq!(turns.len(), 0, "a user without calls keeps an entry");
    }

    #[test]
    fn a_users_queued_calls_hold_one_lock_connection_and_leave_the_rest_to_others() {
        let Some((db, here)) = open() else { return };
        let there = PostgresMetadata::open(db.url()).unwrap();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        // Alice writes on the other host; more of her readers than this host
        // has lock connections, and her writers, queue here.
        let held = there.begin(Access::Write, Scope::User(alice)).unwrap();
        let queued: Vec<_> = (0..POOL_SIZE as usize + 8)
            .map(|_| Access::Read)
            .chain((0..8).map(|_| Access::Write))
            .map(|access| {
                let here = here.clone();
                std::thread::spawn(move || drop(here.begin(access, Scope::User(alice))))
            })
            .collect();
        until_someone_waits_for_a_lock(&db);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn({
            let here = here.clone();
            move || done.send(here.begin(Access::Write, Scope::User(bob)).map(drop))
        });
        // Bob's writer gets a connection while Alice's calls wait (within a
        // minute: past that, it waited for one of theirs).
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("bob's writer waited for alice's calls")
            .unwrap();
        drop(held);
        for call in queued {
            call.join().unwrap();
        }
        assert_eq!(
            here.inner().turns.len(),
            0,
            "a user without calls keeps an entry"
        );
    }

    #[test]
    fn a_users_readers_here_share_the_lock_and_its_writer_waits_for_them() {
        let Some((db, here)) = open() else { return };
        let alice = Uuid::now_v7();
        let first = here.begin(Access::Read, Scope::User(alice)).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn({
            let here = here.clone();
            move || done.send(here.begin(Access::Read, Scope::User(alice)))
        });
        // Within a minute: past that, the second reader waited for the first.
        let second = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("alice's second reader waited for her first")
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let lock = here.begin(Access::Write, Scope::User(alice)).unwrap();
            done.send(()).unwrap();
            lock
        });
        until_someone_waits_for_a_lock_checking(&db, || {
            assert!(
                finished.try_recv().is_err(),
                "the writer went in beside readers"
            )
        });
        drop(first);
        assert!(
            finished.try_recv().is_err(),
            "the writer went in beside a reader"
        );
        drop(second);
        finished.recv().unwrap();
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_calls_transaction_runs_in_the_session_that_holds_its_locks() {
        let Some((db, metadata)) = open() else { return };
        let alice = Uuid::now_v7();
        let tx = metadata.begin(Access::Write, Scope::User(alice)).unwrap();
        assert_eq!(tx.used_bytes(Uuid::now_v7()).unwrap(), None);
        let mut admin = db.client();
        let mut pids = |sql: &str| -> Vec<i32> {
            admin
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect()
        };
        let locking = pids(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE d.datname = current_database() AND l.locktype = 'advisory' \
             AND l.mode = 'ExclusiveLock' AND l.granted",
        );
        let in_transaction = pids(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        );
        assert_eq!(locking.len(), 1);
        assert_eq!(locking, in_transaction);
        tx.commit(&[]).unwrap();
        // The session keeps the locks past the commit, and confirms them.
        tx.confirm_locks().unwrap();
    }

    #[test]
    fn a_reader_holding_its_users_locks_reads_in_their_session_without_a_transaction() {
        let Some((db, metadata)) = open() else { return };
        let alice = Uuid::now_v7();
        let mut admin = db.client();
        let mut in_transaction = || -> i64 {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .unwrap()
                .get(0)
        };
        let tx = metadata.begin(Access::Read, Scope::User(alice)).unwrap();
        assert_eq!(tx.used_bytes(Uuid::now_v7()).unwrap(), None);
        assert_eq!(in_transaction(), 0);
        // It cannot write.
        assert!(tx.set_quota(Uuid::now_v7(), Some(1)).is_err());
        drop(tx);
        // A reader of the whole store reads one snapshot.
        let everything = metadata.begin(Access::Read, Scope::All).unwrap();
        assert_eq!(everything.used_bytes(Uuid::now_v7()).unwrap(), None);
        assert_eq!(in_transaction(), 1);
    }

    #[test]
    fn a_writers_locks_outlive_its_commit_until_it_ends() {
        let Some((db, here)) = open() else { return };
        let there = PostgresMetadata::open(db.url()).unwrap();
        let alice = Uuid::now_v7();
        let tx = here.begin(Access::Write, Scope::User(alice)).unwrap();
        // Committed: its file effects are applied under the same locks.
        tx.commit(&[]).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            done.send(there.begin(Access::Write, Scope::User(alice)).map(drop))
        });
        // Until the other host's writer waits for the locks, or got them.
        until_someone_waits_for_a_lock_checking(&db, || {
            assert!(
                finished.try_recv().is_err(),
                "the locks went with the commit"
            )
        });
        drop(tx);
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the locks outlived their transaction")
            .unwrap();
    }

    /// A journal entry, committed as a writer of `user` would leave it.
    fn journal_entry(metadata: &PostgresMetadata, user: Uuid, name: &str) -> Effect {
        let effect = Effect::Remove {
            workspace_id: Uuid::now_v7(),
            chat_id: Uuid::now_v7(),
            name: name.into(),
        };
        let tx = metadata.begin(Access::Write, Scope::User(user)).unwrap();
        tx.commit(std::slice::from_ref(&effect)).unwrap();
        effect
    }

    #[test]
    fn a_writers_journal_is_its_users_alone() {
        let Some((_db, metadata)) = open() else {
            return;
        };
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let left = journal_entry(&metadata, alice, "left.txt");
        let bobs = journal_entry(&metadata, bob, "bobs.txt");
        let scope = Scope::User(alice);
        assert_eq!(metadata.pending_effects(scope).unwrap(), vec![left]);
        metadata.forget_effects(scope).unwrap();
        assert_eq!(metadata.pending_effects(scope).unwrap(), vec![]);
        assert_eq!(
            metadata.pending_effects(Scope::User(bob)).unwrap(),
            vec![bobs]
        );
    }

    #[test]
    fn a_writer_that_waited_for_its_locks_reads_the_journal_the_last_holder_left() {
        let Some(db) = ScratchDatabase::from_env() else {
            return;
        };
        // Even where sessions begin at a stricter isolation than PostgreSQL's
        // default, whose snapshot would be taken before the wait.
        db.client()
            .batch_execute(&format!(
                "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
                db.name
            ))
            .unwrap();
        let (here, there) = (
            PostgresMetadata::open(db.url()).unwrap(),
            PostgresMetadata::open(db.url()).unwrap(),
        );
        let scope = Scope::User(Uuid::now_v7());
        let held = here.begin(Access::Write, scope).unwrap();
        let waiter = std::thread::spawn(move || {
            let tx = there.begin(Access::Write, scope).unwrap();
            let pending = there.pending_effects(scope).unwrap();
            drop(tx);
            pending
        });
        until_someone_waits_for_a_lock(&db);
        // The holder commits a change whose effects it never applies.
        let left = Effect::Remove {
            workspace_id: Uuid::now_v7(),
            chat_id: Uuid::now_v7(),
            name: "left.txt".into(),
        };
        held.commit(std::slice::from_ref(&left)).unwrap();
        drop(held);
        assert_eq!(waiter.join().unwrap(), vec![left]);
    }

    #[test]
    fn maintenance_waits_for_every_users_call_on_every_host() {
        let Some((db, here)) = open() else { return };
        let there = PostgresMetadata::open(db.url()).unwrap();
        let reading = here
            .begin(Access::Read, Scope::User(Uuid::now_v7()))
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let maintenance = std::thread::spawn(move || {
            let lock = there.begin(Access::Write, Scope::All).unwrap();
            done.send(()).unwrap();
            lock
        });
        until_someone_waits_for_a_lock(&db);
        assert!(
            finished.try_recv().is_err(),
            "maintenance ran beside a call"
        );
        drop(reading);
        finished.recv().unwrap();
        drop(maintenance.join().unwrap());
    }

    #[test]
    fn staging_is_cleaned_only_by_the_one_open_store() {
        let Some((db, here)) = open() else { return };
        let cleaned = std::cell::Cell::new(0);
        let mut clean = || {
            cleaned.set(cleaned.get() + 1);
            Ok(())
        };
        assert!(here.alone(&mut clean).unwrap());
        let there = PostgresMetadata::open(db.url()).unwrap();
        assert!(!here.alone(&mut clean).unwrap());
        assert!(!there.alone(&mut clean).unwrap());
        assert_eq!(cleaned.get(), 1);
    }

    #[test]
    fn a_serialisation_failure_is_retried_with_the_writes_so_far() {
        let Some((db, metadata)) = open() else { return };
        let (w, c) = (Uuid::now_v7(), Uuid::now_v7());
        let tx = metadata.begin(Access::Write, Scope::All).unwrap();
        tx.set_count(
            w,
            &Count {
                total: 100,
                chats: vec![(c, 100)],
            },
        )
        .unwrap();
        tx.commit(&[]).unwrap();
        drop(tx);

        let tx = metadata.begin(Access::Write, Scope::All).unwrap();
        let chat = Chat {
            chat_id: Uuid::now_v7(),
            workspace_id: w,
            created_at: Timestamp::default(),
        };
        ChatRepository::save(&*tx, &chat).unwrap();
        assert_eq!(tx.used_bytes(w).unwrap(), Some(100));
        // Another client changes the row after the transaction's snapshot.
        db.client()
            .execute(
                "UPDATE workspace_usage SET used_bytes = used_bytes + 5 WHERE workspace_id = $1",
                &[&w],
            )
            .unwrap();
        tx.change_usage(&[UsageChange::Grow {
            workspace_id: w,
            chat_id: c,
            bytes: 10,
        }])
        .unwrap();
        tx.commit(&[]).unwrap();
        drop(tx);

        let later = metadata.begin(Access::Read, Scope::All).unwrap();
        assert_eq!(
            ChatRepository::get(&*later, chat.chat_id).unwrap(),
            Some(chat)
        );
        assert_eq!(later.used_bytes(w).unwrap(), Some(115));
    }

    fn setting(conn: &mut Conn, name: &str) -> String {
        conn.client
            .query_one("SELECT current_setting($1)", &[&name])
            .unwrap()
            .get(0)
    }

    #[test]
    fn every_session_ends_soon_after_its_host_vanishes() {
        let Some((_db, metadata)) = open() else {
            return;
        };
        let mut call = checkout(&metadata.inner().calls).unwrap();
        let mut query = checkout(&metadata.inner().queries).unwrap();
        for conn in [&mut *call, &mut *query] {
            assert_eq!(setting(conn, "tcp_keepalives_idle"), "10");
            assert_eq!(setting(conn, "tcp_keepalives_interval"), "5");
            assert_eq!(setting(conn, "tcp_keepalives_count"), "4");
        }
    }

    #[test]
    fn keepalives_the_url_sets_are_kept() {
        let Some(db) = ScratchDatabase::from_env() else {
            return;
        };
        let url = format!("{}?options=-c%20tcp_keepalives_idle%3D20", db.url());
        let metadata = PostgresMetadata::open(&url).unwrap();
        let mut call = checkout(&metadata.inner().calls).unwrap();
        assert_eq!(setting(&mut call, "tcp_keepalives_idle"), "20");
        assert_eq!(setting(&mut call, "tcp_keepalives_count"), "4");
    }

    #[test]
    fn a_database_from_a_newer_chatstore_is_refused() {
        let Some((db, metadata)) = open() else { return };
        drop(metadata);
        db.client()
            .execute("UPDATE chatstore_schema SET version = 99", &[])
            .unwrap();
        let err = PostgresMetadata::open(db.url()).unwrap_err();
        assert!(err.message.contains("newer"), "{err}");
    }

    #[test]
    fn hosts_starting_together_migrate_once() {
        let Some(db) = ScratchDatabase::from_env() else {
            return;
        };
        let url = db.url().to_owned();
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || PostgresMetadata::open(&url).map(drop))
            })
            .collect();
        for host in opened {
            host.join().unwrap().unwrap();
        }
        let versions = db
            .client()
            .query("SELECT version FROM chatstore_schema", &[])
            .unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].get::<_, i32>(0), MIGRATIONS.len() as i32);
    }
}
