//! `chatstore`: the storage component and its host, from a shell.
//!
//! Output is JSON on stdout (history and attachment content raw). A refused
//! call prints `{"error": "<code>", "message": …, "id": …}` on stderr and
//! exits 2; any other failure prints one line on stderr and exits 1.

mod demo;

use chatstore_host::fsck::{Progress, fsck};
use chatstore_host::{
    ArchiveSummary, Call, ChatStore, ChatStoreBuilder, Content, ContentKind, DEFAULT_CALL_TIMEOUT,
    DEFAULT_DATA_DIR, DEFAULT_MAX_GUEST_MEMORY, DEFAULT_QUOTA_BYTES, Error, Metadata, Output,
    PageRequest, Replacing, StageError, StagedContent, parse_id,
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;

/// Reads an id flag: a malformed one is the `invalid_id` refusal (exit 2),
/// like any id the store refuses, before anything is opened.
fn uuid_arg(s: &str) -> Result<Uuid, Error> {
    parse_id(s)
}

/// chatstore: per-user workspaces of chats, each with a working directory
/// holding `history.md` and its attachments. The storage policy runs as a
/// WebAssembly component; this program hosts it.
#[derive(Parser)]
#[command(name = "chatstore", version, propagate_version = true)]
struct Cli {
    /// The data directory.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Where metadata lives: `sqlite` (in the data directory), `memory`
    /// (gone when the command ends), or a PostgreSQL URL
    /// (`postgres://user@host:port/db`) for several hosts sharing one data
    /// directory.
    #[arg(
        long,
        global = true,
        value_name = "STORE",
        default_value = "sqlite",
        env = "CHATSTORE_DATABASE_URL",
        hide_env_values = true
    )]
    metadata: Metadata,
    /// The quota of every workspace, in bytes.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_QUOTA_BYTES)]
    quota_bytes: u64,
    /// Run this storage-policy component (any component of the
    /// `storage-service` world) instead of the built-in one.
    #[arg(long, global = true, value_name = "PATH")]
    component: Option<PathBuf>,
    /// The longest one call may run guest code, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = DEFAULT_CALL_TIMEOUT.as_millis() as u64)]
    call_timeout_ms: u64,
    /// The most linear memory one guest instance may use, in bytes.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_MAX_GUEST_MEMORY)]
    max_guest_memory: usize,
    /// Where the compiled component is kept between runs, so that a
    /// command starts without compiling it [default: $XDG_CACHE_HOME/chatstore,
    /// else ~/.cache/chatstore].
    #[arg(long, global = true, value_name = "DIR")]
    compile_cache: Option<PathBuf>,
    /// Compile the component at start and keep nothing.
    #[arg(long, global = true, conflicts_with = "compile_cache")]
    no_compile_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A user's workspace.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// A user's chats.
    #[command(subcommand)]
    Chat(ChatCommand),
    /// A chat's history.md.
    #[command(subcommand)]
    History(HistoryCommand),
    /// A chat's attachments.
    #[command(subcommand)]
    File(FileCommand),
    /// Marks a sandbox session active or ended on a chat (stands in for the sandbox subsystem).
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Compares metadata with the chat directories and prints a JSON report.
    Fsck {
        /// Also fix what can be fixed without losing acknowledged data.
        #[arg(long)]
        repair: bool,
    },
    /// Walks every storage flow against the data directory and prints each step.
    Demo,
    /// Writes the built-in storage component (the `.wasm` every host loads) to a file.
    Component {
        /// Where to write it.
        #[arg(long, value_name = "PATH")]
        output: PathBuf,
    },
    /// Plays the conformance scenarios against the component (the built-in
    /// one, or --component) and reports each step that differs.
    ///
    /// Each scenario runs on its own temporary data directory; --data-dir
    /// and --quota-bytes are not used. Exits 1 if any scenario fails.
    Conformance {
        /// Play the scenarios in this directory instead of the built-in ones.
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// Play only the scenarios with these names.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
    },
    /// Serves the HTTP API (logs to stderr; level from RUST_LOG, default info).
    Serve(ServeArgs),
    /// Runs a plugin: a command component of the `plugin` world, with the
    /// storage bound to one user. Its standard streams are this process's,
    /// it gets no files and no sockets, and the exit status is its own.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The plugin's `.wasm`.
    #[arg(value_name = "PLUGIN")]
    plugin: PathBuf,
    /// The user whose storage the plugin uses (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    user: Uuid,
    /// The most memory the plugin may grow to, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 512 << 20)]
    plugin_memory: usize,
    /// The seconds after which the plugin is stopped.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    plugin_timeout: u64,
    /// The plugin's arguments (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Also serve the administration routes (`PUT
    /// /admin/v1/workspaces/{user_id}/quota`) on this address, which only
    /// operators should reach; they are never on `--addr`.
    #[arg(long, value_name = "ADDR")]
    admin_addr: Option<String>,
    /// The largest upload accepted, in bytes (default: the quota).
    #[arg(long, value_name = "N")]
    max_upload_bytes: Option<u64>,
    /// The most requests running a use case or sending a body at once
    /// (guest instances in the pool).
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_concurrent: u32,
    /// The most of those one user's requests hold at once; the user's
    /// further requests wait their turn without holding one, so that one
    /// user's burst leaves the other users the rest.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_concurrent_per_user: u32,
    /// The most connections open at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers; an idle
    /// keep-alive connection is closed after as long.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    header_timeout: u64,
    /// Seconds a request body may go without sending a byte (408).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    body_timeout: u64,
}

#[derive(Args)]
struct User {
    /// The user's id (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    user: Uuid,
}

#[derive(Args)]
struct UserChat {
    /// The user's id (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    user: Uuid,
    /// The chat's id (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    chat: Uuid,
}

#[derive(Args)]
struct UserChatFile {
    #[command(flatten)]
    at: UserChat,
    /// The file's id (a UUID).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    file_id: Uuid,
}

#[derive(Args)]
struct Input {
    /// Read the content from this file instead of standard input.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Creates the user's workspace if it is missing; prints it.
    Ensure(User),
    /// Prints the user's workspace.
    Get(User),
    /// Prints the bytes the workspace stores and its quota.
    Usage {
        #[command(flatten)]
        user: User,
        /// Count the workspace's directory on disk first (what sandboxes
        /// wrote since their sessions ended included) and keep that count.
        #[arg(long)]
        recount: bool,
    },
    /// Writes the workspace (metadata, histories, attachments) as a tar
    /// archive to standard output or --output.
    Export {
        #[command(flatten)]
        user: User,
        /// Write the archive to this file (made whole or not at all) and
        /// print what it holds.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Restores an archive that `workspace export` wrote into the user's
    /// new or empty workspace; prints what it restored.
    Import {
        #[command(flatten)]
        user: User,
        /// Read the archive from this file instead of standard input.
        #[arg(long, value_name = "PATH")]
        input: Option<PathBuf>,
    },
    /// Gives the workspace a quota of its own (or the configured one
    /// again); prints its usage against it.
    SetQuota {
        #[command(flatten)]
        user: User,
        /// The quota in bytes.
        #[arg(long, value_name = "N", required_unless_present = "default")]
        bytes: Option<u64>,
        /// Back to the configured quota (`--quota-bytes`).
        #[arg(long, conflicts_with = "bytes")]
        default: bool,
    },
}

#[derive(Subcommand)]
enum ChatCommand {
    /// Creates a chat with its directory and an empty history.md.
    Create(User),
    /// Prints a page of the user's chats, oldest first:
    /// `{"data": [...], "has_more": …, "last_id": …}`.
    List {
        #[command(flatten)]
        user: User,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Prints one chat.
    Get(UserChat),
    /// Deletes a chat, its files and its directory.
    Delete(UserChat),
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Prints history.md as it is.
    Read(UserChat),
    /// Replaces history.md with the content of --file or standard input.
    Write {
        #[command(flatten)]
        at: UserChat,
        #[command(flatten)]
        input: Input,
    },
    /// Appends the content of --file or standard input to history.md.
    Append {
        #[command(flatten)]
        at: UserChat,
        #[command(flatten)]
        input: Input,
    },
}

#[derive(Subcommand)]
enum FileCommand {
    /// Uploads an attachment from --file or standard input (replacing one of the same name).
    Put {
        #[command(flatten)]
        at: UserChat,
        /// The attachment's name.
        #[arg(long)]
        name: String,
        /// The attachment's media type.
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
        #[command(flatten)]
        input: Input,
    },
    /// Prints a page of the chat's attachments, oldest first:
    /// `{"data": [...], "has_more": …, "last_id": …}`.
    List {
        #[command(flatten)]
        at: UserChat,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Writes an attachment's bytes to standard output or --output.
    Get {
        #[command(flatten)]
        at: UserChatFile,
        /// Write the bytes to this file instead of standard output.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Prints an attachment's metadata.
    Info(UserChatFile),
    /// Deletes one attachment.
    Delete(UserChatFile),
    /// Deletes every attachment of the chat, keeping history.md.
    Clear(UserChat),
}

/// Which page of a list.
#[derive(Args)]
struct PageArgs {
    /// How many items, 1 to 1000.
    #[arg(long, value_name = "N", default_value_t = chatstore_host::page::DEFAULT_LIMIT)]
    limit: u64,
    /// Start after this item (the previous page's `last_id`).
    #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
    after: Option<Uuid>,
}

impl PageArgs {
    fn request(&self) -> Result<PageRequest, Error> {
        PageRequest::new(Some(self.limit), self.after)
    }
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Marks a sandbox session active on the chat.
    Start {
        /// The chat's id (a UUID).
        #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
        chat: Uuid,
    },
    /// Ends the chat's active sandbox session.
    Stop {
        /// The chat's id (a UUID).
        #[arg(long, value_name = "UUID", value_parser = uuid_arg)]
        chat: Uuid,
    },
}

/// Why a command failed: a refused call (exit 2) or anything else (exit 1).
enum Failure {
    Refused(Error),
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Refused(e)
    }
}

type Outcome = Result<(), Failure>;

fn other(message: impl std::fmt::Display) -> Failure {
    Failure::Other(message.to_string())
}

/// Serves blocks of up to 1 MiB from glibc's heap and trims it only past
/// 8 MiB free. The HTTP server reads a body into a new buffer of a few
/// hundred KiB while the last ones are still being staged; with glibc's
/// defaults those were mapped, or trimmed from the heap, and faulted in
/// again: 56,000–117,000 page faults and a tenth of the server's CPU per
/// GiB uploaded, against 6,400 (docs/benchmarks.md, "Large content").
fn keep_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two of the allocator's parameters, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

fn main() -> ExitCode {
    keep_buffers_in_the_heap();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // A malformed id is the store's refusal, whichever flag carried it.
            if let Some(refused) =
                std::error::Error::source(&e).and_then(|source| source.downcast_ref::<Error>())
            {
                eprintln!("{}", refused.to_json());
                return ExitCode::from(2);
            }
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "chatstore: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::FAILURE;
        }
    };
    if let Command::Run(args) = &cli.command {
        return match run_plugin(&cli, args) {
            Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(message) => {
                eprintln!("chatstore: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("{}", e.to_json());
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("chatstore: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `chatstore run`: the plugin's exit status, or why it did not end by itself.
fn run_plugin(cli: &Cli, args: &RunArgs) -> Result<i32, String> {
    use chatstore_host::plugin::{PluginLimits, UserStorage, run_command};
    let wasm = std::fs::read(&args.plugin)
        .map_err(|e| format!("cannot read {}: {e}", args.plugin.display()))?;
    let store = builder(cli)
        .map_err(|e| match e {
            Failure::Refused(e) => e.to_string(),
            Failure::Other(message) => message,
        })?
        .build()
        .map_err(|e| e.to_string())?;
    let name = args
        .plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let argv: Vec<String> = name.into_iter().chain(args.args.iter().cloned()).collect();
    let limits = PluginLimits {
        memory_bytes: args.plugin_memory,
        timeout: std::time::Duration::from_secs(args.plugin_timeout),
    };
    let cache = compile_cache(cli);
    run_command(
        UserStorage::new(store, args.user),
        &wasm,
        &argv,
        limits,
        cache.as_deref(),
    )
    .map_err(|e| e.to_string())
}

/// The bytes of `--component`, if given.
fn component(cli: &Cli) -> Result<Option<Vec<u8>>, Failure> {
    cli.component
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|e| other(format!("cannot read {}: {e}", path.display())))
        })
        .transpose()
}

fn builder(cli: &Cli) -> Result<ChatStoreBuilder, Failure> {
    let mut builder = ChatStore::builder();
    if let Some(bytes) = component(cli)? {
        builder = builder.component(bytes);
    }
    if let Some(dir) = compile_cache(cli) {
        builder = builder.compile_cache(dir);
    }
    Ok(builder
        .data_dir(&cli.data_dir)
        .metadata(cli.metadata.clone())
        .quota_bytes(cli.quota_bytes)
        .max_guest_memory(cli.max_guest_memory)
        .call_timeout(std::time::Duration::from_millis(cli.call_timeout_ms)))
}

/// The compile cache: the one asked for, else the user's cache directory.
fn compile_cache(cli: &Cli) -> Option<PathBuf> {
    if cli.no_compile_cache {
        return None;
    }
    let nonempty = |var| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    cli.compile_cache.clone().or_else(|| {
        nonempty("XDG_CACHE_HOME")
            .or_else(|| nonempty("HOME").map(|home| home.join(".cache")))
            .map(|cache| cache.join("chatstore"))
    })
}

fn run(cli: Cli) -> Outcome {
    match &cli.command {
        Command::Demo => return demo::run(&cli.data_dir, builder(&cli)?).map_err(other),
        Command::Fsck { repair } => return run_fsck(&cli, *repair),
        Command::Component { output } => {
            return std::fs::write(output, chatstore_host::STORAGE_COMPONENT)
                .map_err(|e| other(format!("cannot write {}: {e}", output.display())));
        }
        Command::Conformance { scenarios, only } => {
            return run_conformance(&cli, scenarios.as_deref(), only);
        }
        Command::Serve(args) => return serve(&cli, args),
        _ => {}
    }
    // Read every input before anything is opened, so bad input changes nothing.
    let command = StorageCommand::from(&cli.command)?;
    let store = builder(&cli)?.build().map_err(other)?;
    command.run(&store)
}

fn run_fsck(cli: &Cli, repair: bool) -> Outcome {
    if cli.metadata == Metadata::Memory {
        return Err(other(
            "fsck compares durable metadata with the files: use --metadata sqlite or a PostgreSQL URL",
        ));
    }
    let backend = builder(cli)?.open_backend().map_err(other)?;
    let mut last_shown = std::time::Instant::now();
    let report = fsck(&backend, repair, |Progress { done, total }| {
        if total >= 1000 && (done == total || last_shown.elapsed().as_secs() >= 1) {
            eprintln!("fsck: checked {done} of {total} chats");
            last_shown = std::time::Instant::now();
        }
    })
    .map_err(other)?;
    print_json(&report)
}

fn run_conformance(cli: &Cli, dir: Option<&std::path::Path>, only: &[String]) -> Outcome {
    use chatstore_testkit::conformance::{self, Runner, Verdict};
    let mut scenarios = match dir {
        Some(dir) => conformance::load_dir(dir),
        None => conformance::built_in(),
    }
    .map_err(other)?;
    if let Some(unknown) = only
        .iter()
        .find(|name| !scenarios.iter().any(|s| s.name() == name.as_str()))
    {
        return Err(other(format!("no scenario named {unknown:?}")));
    }
    if !only.is_empty() {
        scenarios.retain(|s| only.iter().any(|name| name == s.name()));
    }
    let mut runner = Runner::new().metadata(cli.metadata.clone());
    if let Some(bytes) = component(cli)? {
        // Load it once up front, so a component of another world fails with one line.
        let tmp = tempfile::tempdir().map_err(other)?;
        ChatStore::builder()
            .metadata(Metadata::Memory)
            .data_dir(tmp.path())
            .component(bytes.clone())
            .build()
            .map_err(other)?;
        runner = runner.component(bytes);
    }
    let width = scenarios.iter().map(|s| s.name().len()).max().unwrap_or(0);
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for scenario in &scenarios {
        let line = match runner.run(scenario).map_err(other)? {
            Verdict::Passed { steps } => format!("ok    {:width$}  {steps} steps", scenario.name()),
            Verdict::Failed(failure) => {
                failed += 1;
                format!(
                    "FAIL  {:width$}  {failure}\n      {:width$}  rule: {}",
                    scenario.name(),
                    "",
                    scenario.rule()
                )
            }
        };
        writeln!(out, "{line}").map_err(other)?;
    }
    writeln!(
        out,
        "{} scenarios: {} passed, {failed} failed",
        scenarios.len(),
        scenarios.len() - failed
    )
    .map_err(other)?;
    if failed > 0 {
        return Err(other(format!(
            "{failed} of {} scenarios failed",
            scenarios.len()
        )));
    }
    Ok(())
}

fn serve(cli: &Cli, args: &ServeArgs) -> Outcome {
    let addr = args.addr.as_str();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let started = std::time::Instant::now();
    let store = builder(cli)?
        .pooled_instances(args.max_concurrent)
        .build()
        .map_err(other)?;
    let runtime = tokio::runtime::Runtime::new().map_err(other)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| other(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(other)?;
        tracing::info!(
            addr = %local,
            data_dir = %cli.data_dir.display(),
            startup_ms = started.elapsed().as_millis() as u64,
            "listening"
        );
        let config = chatstore_http::ServerConfig {
            max_upload_bytes: args.max_upload_bytes.unwrap_or(cli.quota_bytes),
            max_concurrent: args.max_concurrent as usize,
            max_concurrent_per_user: args.max_concurrent_per_user as usize,
            max_connections: args.max_connections,
            header_timeout: std::time::Duration::from_secs(args.header_timeout),
            body_timeout: std::time::Duration::from_secs(args.body_timeout),
        };
        // One signal stops both listeners.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            chatstore_http::shutdown_signal().await;
            let _ = stop.send(true);
        });
        let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|&stop| stop).await;
        };
        let admin = match &args.admin_addr {
            Some(admin_addr) => {
                let admin = tokio::net::TcpListener::bind(admin_addr)
                    .await
                    .map_err(|e| other(format!("cannot listen on {admin_addr}: {e}")))?;
                tracing::info!(addr = %admin.local_addr().map_err(other)?, "administration listening");
                Some(tokio::spawn(chatstore_http::serve_admin(
                    admin,
                    store.clone(),
                    config.clone(),
                    stopped(stopping.clone()),
                )))
            }
            None => None,
        };
        chatstore_http::serve(listener, store, config, stopped(stopping))
            .await
            .map_err(other)?;
        if let Some(admin) = admin {
            admin.await.map_err(other)?.map_err(other)?;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Where content comes from: a file opened before anything else is, or
/// standard input. Either is streamed, never read whole into memory.
enum Source {
    File(PathBuf, std::fs::File),
    Stdin,
}

impl Source {
    fn open(input: &Input) -> Result<Source, Failure> {
        match &input.file {
            Some(path) => std::fs::File::open(path)
                .map(|file| Source::File(path.clone(), file))
                .map_err(|e| other(format!("cannot read {}: {e}", path.display()))),
            None => Ok(Source::Stdin),
        }
    }

    /// Stages the content for a write into the user's chat, refused once it
    /// passes the room the write has.
    fn stage(
        self,
        store: &ChatStore,
        user: Uuid,
        chat: Uuid,
        replacing: Replacing,
        kind: ContentKind,
    ) -> Result<StagedContent, Failure> {
        let limit = store.room(user, chat, replacing)?;
        let (what, staged) = match self {
            Source::File(path, file) => (
                path.display().to_string(),
                store.staging().stage(file, kind, limit),
            ),
            Source::Stdin => (
                "standard input".to_owned(),
                store.staging().stage(std::io::stdin().lock(), kind, limit),
            ),
        };
        staged.map_err(|e| match e {
            StageError::Read(e) => other(format!("cannot read {what}: {e}")),
            e => Failure::Refused(store.staging_failed(user, e)),
        })
    }
}

/// Streams content to standard output or to a new file.
fn copy_out(content: Content, output: Option<&std::path::Path>) -> Outcome {
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            content
                .copy_to(&mut out)
                .and_then(|_| out.flush())
                .map_err(|e| other(format!("cannot write standard output: {e}")))?;
        }
        Some(path) => {
            let written = std::fs::File::create(path).and_then(|mut file| {
                content.copy_to(&mut file)?;
                // A regular file is synced; a device (`/dev/null`) cannot be.
                match file.metadata()?.is_file() {
                    true => file.sync_all(),
                    false => Ok(()),
                }
            });
            written.map_err(|e| other(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// Exports into `<path>.partial`, synced, then renamed to `path`: a
/// failed export leaves no file that looks whole.
fn export_to(
    store: &ChatStore,
    user: Uuid,
    path: &std::path::Path,
) -> Result<ArchiveSummary, Failure> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let cannot = |e: std::io::Error| other(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(&partial).map_err(cannot)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let exported = store
        .export_workspace(user, &mut out)
        .map_err(Failure::from)
        .and_then(|summary| {
            let file = out.into_inner().map_err(|e| cannot(e.into_error()))?;
            file.sync_all().map_err(cannot)?;
            std::fs::rename(&partial, path).map_err(cannot)?;
            Ok(summary)
        });
    if exported.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    exported
}

fn print_json(value: &impl Serialize) -> Outcome {
    let text = serde_json::to_string_pretty(value).map_err(other)?;
    write_stdout(format!("{text}\n").as_bytes())
}

fn write_stdout(bytes: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| other(format!("cannot write standard output: {e}")))
}

/// A command that makes storage calls, with its input opened.
enum StorageCommand {
    /// One use case; its output printed as JSON.
    Call(Call),
    /// Content streamed into a history or an attachment.
    Write {
        user: Uuid,
        chat: Uuid,
        target: Target,
        input: Source,
    },
    /// The history streamed out.
    ReadHistory {
        user: Uuid,
        chat: Uuid,
    },
    /// An attachment streamed out; with a file to write, its metadata printed after.
    ReadFile {
        user: Uuid,
        chat: Uuid,
        file: Uuid,
        output: Option<PathBuf>,
    },
    StartSandbox(Uuid),
    StopSandbox(Uuid),
    /// The workspace counted on disk into the usage ledger.
    Recount(Uuid),
    /// The workspace's own quota set (`None`: the configured one).
    SetQuota(Uuid, Option<u64>),
    /// The workspace written as an archive.
    Export(Uuid, Option<PathBuf>),
    /// An archive restored (from standard input without a file).
    Import(Uuid, Option<std::fs::File>),
    /// A page of the user's chats.
    ListChats(Uuid, PageRequest),
    /// A page of a chat's attachments.
    ListFiles(Uuid, Uuid, PageRequest),
}

/// What a write goes to.
enum Target {
    History {
        append: bool,
    },
    Attachment {
        name: String,
        content_type: Option<String>,
    },
}

impl StorageCommand {
    fn from(command: &Command) -> Result<StorageCommand, Failure> {
        use Call as C;
        let call = match command {
            Command::Workspace(WorkspaceCommand::Ensure(u)) => {
                C::EnsureWorkspace { user_id: u.user }
            }
            Command::Workspace(WorkspaceCommand::Get(u)) => C::GetWorkspace { user_id: u.user },
            Command::Workspace(WorkspaceCommand::Usage {
                user,
                recount: true,
            }) => {
                return Ok(StorageCommand::Recount(user.user));
            }
            Command::Workspace(WorkspaceCommand::Usage { user, .. }) => {
                C::GetUsage { user_id: user.user }
            }
            Command::Workspace(WorkspaceCommand::Export { user, output }) => {
                return Ok(StorageCommand::Export(user.user, output.clone()));
            }
            Command::Workspace(WorkspaceCommand::Import { user, input }) => {
                let input = match input {
                    Some(path) => Some(
                        std::fs::File::open(path)
                            .map_err(|e| other(format!("cannot read {}: {e}", path.display())))?,
                    ),
                    None => None,
                };
                return Ok(StorageCommand::Import(user.user, input));
            }
            Command::Workspace(WorkspaceCommand::SetQuota { user, bytes, .. }) => {
                return Ok(StorageCommand::SetQuota(user.user, *bytes));
            }
            Command::Chat(ChatCommand::Create(u)) => C::CreateChat { user_id: u.user },
            Command::Chat(ChatCommand::List { user, page }) => {
                return Ok(StorageCommand::ListChats(user.user, page.request()?));
            }
            Command::Chat(ChatCommand::Get(at)) => C::GetChat {
                user_id: at.user,
                chat_id: at.chat,
            },
            Command::Chat(ChatCommand::Delete(at)) => C::DeleteChat {
                user_id: at.user,
                chat_id: at.chat,
            },
            Command::History(HistoryCommand::Read(at)) => {
                return Ok(StorageCommand::ReadHistory {
                    user: at.user,
                    chat: at.chat,
                });
            }
            Command::History(HistoryCommand::Write { at, input })
            | Command::History(HistoryCommand::Append { at, input }) => {
                let append = matches!(command, Command::History(HistoryCommand::Append { .. }));
                return Ok(StorageCommand::Write {
                    user: at.user,
                    chat: at.chat,
                    target: Target::History { append },
                    input: Source::open(input)?,
                });
            }
            Command::File(FileCommand::Put {
                at,
                name,
                content_type,
                input,
            }) => {
                return Ok(StorageCommand::Write {
                    user: at.user,
                    chat: at.chat,
                    target: Target::Attachment {
                        name: name.clone(),
                        content_type: content_type.clone(),
                    },
                    input: Source::open(input)?,
                });
            }
            Command::File(FileCommand::List { at, page }) => {
                return Ok(StorageCommand::ListFiles(at.user, at.chat, page.request()?));
            }
            Command::File(FileCommand::Get { at, output }) => {
                return Ok(StorageCommand::ReadFile {
                    user: at.at.user,
                    chat: at.at.chat,
                    file: at.file_id,
                    output: output.clone(),
                });
            }
            Command::File(FileCommand::Info(at)) => C::GetAttachment {
                user_id: at.at.user,
                chat_id: at.at.chat,
                file_id: at.file_id,
            },
            Command::File(FileCommand::Delete(at)) => C::DeleteAttachment {
                user_id: at.at.user,
                chat_id: at.at.chat,
                file_id: at.file_id,
            },
            Command::File(FileCommand::Clear(at)) => C::ClearAttachments {
                user_id: at.user,
                chat_id: at.chat,
            },
            Command::Sandbox(SandboxCommand::Start { chat }) => {
                return Ok(StorageCommand::StartSandbox(*chat));
            }
            Command::Sandbox(SandboxCommand::Stop { chat }) => {
                return Ok(StorageCommand::StopSandbox(*chat));
            }
            Command::Fsck { .. }
            | Command::Demo
            | Command::Conformance { .. }
            | Command::Component { .. }
            | Command::Serve { .. }
            | Command::Run(_) => {
                return Err(other("this command makes no single storage call"));
            }
        };
        Ok(StorageCommand::Call(call))
    }

    fn run(self, store: &ChatStore) -> Outcome {
        match self {
            StorageCommand::Call(call) => match store.run(call)? {
                Output::Workspace(w) => print_json(&w),
                Output::Usage(u) => print_json(&u),
                Output::Chat(c) => print_json(&c),
                Output::Chats(cs) => print_json(&cs),
                Output::File(f) => print_json(&f),
                Output::Files(fs) => print_json(&fs),
                Output::History(content) | Output::Attachment(_, content) => {
                    copy_out(content, None)
                }
                Output::Done => print_json(&serde_json::json!({ "ok": true })),
                // No CLI command runs it: the host registers outputs when a
                // session ends (`sandbox stop`).
                outcomes @ Output::Outcomes(_) => {
                    print_json(&outcomes.into_wit_json().map_err(other)?)
                }
            },
            StorageCommand::Write {
                user,
                chat,
                target: Target::History { append },
                input,
            } => {
                let replacing = if append {
                    Replacing::Nothing
                } else {
                    Replacing::History
                };
                let staged = input.stage(store, user, chat, replacing, ContentKind::Text)?;
                if append {
                    store.append_staged_history(user, chat, staged)?;
                } else {
                    store.write_staged_history(user, chat, staged)?;
                }
                print_json(&serde_json::json!({ "ok": true }))
            }
            StorageCommand::Write {
                user,
                chat,
                target: Target::Attachment { name, content_type },
                input,
            } => {
                let replacing = Replacing::Attachment(&name);
                let staged = input.stage(store, user, chat, replacing, ContentKind::Bytes)?;
                let file =
                    store.upload_staged(user, chat, &name, content_type.as_deref(), staged)?;
                print_json(&file)
            }
            StorageCommand::ReadHistory { user, chat } => {
                copy_out(store.read_history(user, chat)?, None)
            }
            StorageCommand::ReadFile {
                user,
                chat,
                file,
                output,
            } => {
                let (meta, content) = store.read_attachment(user, chat, file)?;
                copy_out(content, output.as_deref())?;
                match output {
                    Some(_) => print_json(&meta),
                    None => Ok(()),
                }
            }
            StorageCommand::StartSandbox(chat) => print_json(&store.start_sandbox(chat)?),
            StorageCommand::Recount(user) => print_json(&store.recount_usage(user)?),
            StorageCommand::SetQuota(user, bytes) => print_json(&store.set_quota(user, bytes)?),
            StorageCommand::Export(user, None) => {
                let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                store.export_workspace(user, out)?;
                Ok(())
            }
            StorageCommand::Export(user, Some(path)) => print_json(&export_to(store, user, &path)?),
            StorageCommand::Import(user, input) => {
                let summary = match input {
                    Some(file) => store.import_workspace(user, std::io::BufReader::new(file))?,
                    None => store.import_workspace(user, std::io::stdin().lock())?,
                };
                print_json(&summary)
            }
            StorageCommand::ListChats(user, page) => {
                print_json(&store.list_chats_page(user, &page)?)
            }
            StorageCommand::ListFiles(user, chat, page) => {
                print_json(&store.list_attachments_page(user, chat, &page)?)
            }
            StorageCommand::StopSandbox(chat) => match store.end_sandbox(chat)? {
                Some(end) => print_json(&end),
                None => print_json(&serde_json::json!({ "ok": true, "was_active": false })),
            },
        }
    }
}
