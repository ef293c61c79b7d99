//! What a guest instance's wasmtime store holds: [`InstanceState`], kept
//! with the instance for its user's next call, and [`CallState`], one
//! call's, made new for every call and dropped at its end, so that nothing
//! of one call's unit of work, lookups or content reaches the next.
//!
//! Every port call goes through [`InstanceState::port`], which scopes it to
//! the calling user, times it (the call's deadline counts guest time only),
//! and gives it a `port` span saying whether a failure was the guest's
//! (`refused`) or the host's (`failed`).

use crate::bindings::wit;
use crate::content::Content;
use crate::imports::{CHATS, USAGE, WORKSPACES};
use crate::model::{Chat, Workspace};
use crate::ports::Ports;
use crate::staging::StagedContent;
use crate::values::{Checked, Fault, refuse};
use std::time::{Duration, Instant};
use uuid::Uuid;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What an instance keeps between its user's calls.
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: GuestLimits,
    /// The user whose calls the instance runs, and no other's.
    caller: Uuid,
    /// The call in progress; none between calls.
    call: Option<CallState>,
}

/// One call's state.
pub(crate) struct CallState {
    ports: Ports,
    /// The user the call is for: every record the guest touches must be theirs.
    caller: Uuid,
    /// The caller's workspace, once looked up.
    caller_workspace: Option<Workspace>,
    /// The chat row last looked up, by id, until the guest saves or deletes
    /// a chat or a workspace: a call reads one snapshot, so it reads a row
    /// once however many checks ask for it.
    chat_row: Option<(Uuid, Option<Chat>)>,
    /// How much the call may still grow the workspace by, once looked up:
    /// the room under the quota when it began, less what it has grown.
    write_budget: Option<u64>,
    /// When the call started, and how much of that time was spent in ports.
    started: Instant,
    host_time: Duration,
    /// How long the guest may run in this call.
    timeout: Duration,
    /// The content offered to the call, by token.
    staged: Vec<Offered>,
    /// What the guest opened for the host to serve.
    opened: Option<Content>,
    /// The file an open found changed by a sandbox, if one did.
    changed_file: Option<String>,
}

/// Content offered to a call, and whether the guest stored it.
struct Offered {
    token: String,
    content: StagedContent,
    stored: bool,
}

/// What a call leaves for the host once its guest is done.
pub(crate) struct Leftovers {
    /// What the guest opened to serve, if anything.
    pub(crate) opened: Option<Content>,
    /// Staged content the guest did not store: the host removes it.
    pub(crate) unstored: Vec<StagedContent>,
    /// The file an open found changed by a sandbox: the call's failure is
    /// `chat_file_changed`, whatever the guest made of the port error.
    pub(crate) changed_file: Option<String>,
}

impl InstanceState {
    pub(crate) fn new(wasi: WasiCtx, limits: StoreLimits, caller: Uuid) -> Self {
        InstanceState {
            wasi,
            table: ResourceTable::new(),
            limits: GuestLimits {
                limits,
                memory_bytes: 0,
            },
            caller,
            call: None,
        }
    }

    /// Starts a call on `ports` whose guest may run for `timeout`.
    pub(crate) fn begin_call(&mut self, ports: Ports, timeout: Duration) {
        self.call = Some(CallState {
            ports,
            caller: self.caller,
            caller_workspace: None,
            chat_row: None,
            write_budget: None,
            started: Instant::now(),
            host_time: Duration::ZERO,
            timeout,
            staged: Vec::new(),
            opened: None,
            changed_file: None,
        });
    }

    /// Ends the call: nothing of it stays in the instance.
    pub(crate) fn end_call(&mut self) -> Leftovers {
        let Some(call) = self.call.take() else {
            return Leftovers {
                opened: None,
                unstored: Vec::new(),
                changed_file: None,
            };
        };
        Leftovers {
            opened: call.opened,
            changed_file: call.changed_file,
            unstored: (call.staged.into_iter())
                .filter(|offered| !offered.stored)
                .map(|offered| offered.content)
                .collect(),
        }
    }

    /// Hands staged content to the call in progress: the guest sees its
    /// token, size and digest.
    pub(crate) fn offer(&mut self, content: StagedContent) -> Option<wit::StagedContent> {
        let call = self.call.as_mut()?;
        let token = format!("staged-{}", call.staged.len() + 1);
        let offered = wit::StagedContent {
            token: token.clone(),
            size_bytes: content.size_bytes(),
            sha256: content.sha256().to_owned(),
        };
        call.staged.push(Offered {
            token,
            content,
            stored: false,
        });
        Some(offered)
    }

    /// What is left of the call's guest time, asked at an epoch tick; `None`
    /// once it is spent (or with no call in progress).
    pub(crate) fn time_left(&self) -> Option<Duration> {
        let call = self.call.as_ref()?;
        let spent = call.started.elapsed().saturating_sub(call.host_time);
        (call.timeout.checked_sub(spent)).filter(|left| !left.is_zero())
    }

    /// Runs one port call (`port`'s function `op`) in the call in progress:
    /// its checks, scoping and adapter call are timed as host time and
    /// traced in a `port` span.
    pub(crate) fn port<T>(
        &mut self,
        port: &'static str,
        op: &'static str,
        f: impl FnOnce(&mut CallState) -> Checked<T>,
    ) -> Result<T, wit::PortError> {
        let span = tracing::debug_span!("port", port, op);
        let _entered = span.enter();
        let Some(call) = self.call.as_mut() else {
            return Err(wit::PortError {
                port: port.to_owned(),
                message: "no call is in progress".to_owned(),
            });
        };
        let started = Instant::now();
        let result = f(call);
        let elapsed = started.elapsed();
        call.host_time += elapsed;
        let duration_us = elapsed.as_micros() as u64;
        match result {
            Ok(value) => {
                tracing::debug!(outcome = "ok", duration_us, "port call");
                Ok(value)
            }
            Err(fault) => {
                let (outcome, failed, message) = match fault {
                    Fault::Refused(m) => ("refused", port, m),
                    Fault::Failed {
                        port: at,
                        message,
                        changed,
                    } => {
                        // Whatever the guest makes of it, the caller learns it.
                        if changed.is_some() {
                            call.changed_file = changed;
                        }
                        ("failed", at.unwrap_or(port), message)
                    }
                };
                tracing::debug!(outcome, failed, duration_us, message, "port call");
                Err(wit::PortError {
                    port: failed.to_owned(),
                    message,
                })
            }
        }
    }
}

impl CallState {
    /// The ports of the call.
    pub(crate) fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The user the call is for.
    pub(crate) fn caller(&self) -> Uuid {
        self.caller
    }

    /// Stores the staged content a token names with `store`: each content
    /// once. Once `store` succeeds, the unit of work owns the staged file.
    pub(crate) fn store_staged(
        &mut self,
        token: &str,
        store: impl FnOnce(&mut Self, &StagedContent) -> Checked<()>,
    ) -> Checked<()> {
        let content = match self.staged.iter().find(|o| o.token == token) {
            None => return refuse("no content was staged for this call under that token"),
            Some(Offered { stored: true, .. }) => {
                return refuse("that staged content is already stored");
            }
            Some(offered) => offered.content.clone(),
        };
        store(self, &content)?;
        if let Some(offered) = self.staged.iter_mut().find(|o| o.token == token) {
            offered.stored = true;
        }
        Ok(())
    }

    /// Keeps what the guest opened for the host to serve: one file per call.
    pub(crate) fn keep_opened(&mut self, content: Content) -> Checked<()> {
        if self.opened.is_some() {
            return refuse("a call opens one file to serve");
        }
        self.opened = Some(content);
        Ok(())
    }
}

/// Scoping: a guest may only see and touch the calling user's records.
/// Another user's records read as missing; writing them is refused.
impl CallState {
    fn own_workspace(&mut self) -> Checked<Option<Uuid>> {
        if self.caller_workspace.is_none() {
            self.caller_workspace = (self.ports.workspaces.get_by_user_id(self.caller))
                .map_err(Fault::failed_at(WORKSPACES))?;
        }
        Ok(self.caller_workspace.as_ref().map(|w| w.workspace_id))
    }

    /// The caller's workspace as a port call just read it.
    pub(crate) fn knows_workspace(&mut self, workspace: Option<Workspace>) {
        if workspace.is_some() {
            self.caller_workspace = workspace;
        }
    }

    /// The workspace's usage as a port call just counted it, under the
    /// call's lock: the write budget starts from it rather than counting
    /// again. Only before the call has written anything.
    pub(crate) fn knows_usage(&mut self, usage: &crate::model::WorkspaceUsage) {
        if self.write_budget.is_none() {
            self.write_budget = Some(usage.quota_bytes.saturating_sub(usage.used_bytes));
        }
    }

    /// Forgets the caller's workspace, after the guest saved it.
    pub(crate) fn workspace_changed(&mut self) {
        self.caller_workspace = None;
        self.chat_row = None;
    }

    /// Forgets the chat row looked up, after the guest saved or deleted a chat.
    pub(crate) fn chats_changed(&mut self) {
        self.chat_row = None;
    }

    pub(crate) fn is_own_workspace(&mut self, workspace_id: Uuid) -> Checked<bool> {
        Ok(self.own_workspace()? == Some(workspace_id))
    }

    /// The chat's row, as this call reads it.
    pub(crate) fn chat_row(&mut self, chat_id: Uuid) -> Checked<Option<Chat>> {
        if let Some((id, row)) = &self.chat_row
            && *id == chat_id
        {
            return Ok(row.clone());
        }
        let row = (self.ports.chats.get(chat_id)).map_err(Fault::failed_at(CHATS))?;
        self.chat_row = Some((chat_id, row.clone()));
        Ok(row)
    }

    pub(crate) fn is_own_chat(&mut self, chat_id: Uuid) -> Checked<bool> {
        match self.chat_row(chat_id)? {
            Some(chat) => self.is_own_workspace(chat.workspace_id),
            None => Ok(false),
        }
    }

    /// Refuses a chat record that is not the caller's; with `must_exist`,
    /// also one that has no row (or a row in another workspace).
    pub(crate) fn check_chat(&mut self, chat: &Chat, must_exist: bool) -> Checked<()> {
        if !self.is_own_workspace(chat.workspace_id)? {
            return refuse("the chat is not in the calling user's workspace");
        }
        match self.chat_row(chat.chat_id)? {
            Some(row) if row.workspace_id != chat.workspace_id => {
                refuse("the chat is not in the calling user's workspace")
            }
            None if must_exist => refuse("no such chat"),
            _ => Ok(()),
        }
    }

    /// Refuses a chat id whose row is in another workspace; a missing chat passes.
    pub(crate) fn check_own_chat_id(&mut self, chat_id: Uuid) -> Checked<()> {
        match self.chat_row(chat_id)? {
            Some(chat) if !self.is_own_workspace(chat.workspace_id)? => {
                refuse("the chat is not in the calling user's workspace")
            }
            _ => Ok(()),
        }
    }

    /// Charges what a write grows the caller's workspace by against the
    /// call's budget: one call grows it by at most the room it had when the
    /// call began (the quota less the usage), so a policy that ignores the
    /// quota still cannot pass it. Called after `check_chat`, so the
    /// caller's workspace is known.
    pub(crate) fn spend(&mut self, grows_by: u64) -> Checked<()> {
        if grows_by == 0 {
            return Ok(());
        }
        if self.write_budget.is_none() {
            let Some(workspace) = &self.caller_workspace else {
                return refuse("the caller has no workspace");
            };
            let usage = (self.ports.usage.get_workspace_usage(workspace))
                .map_err(Fault::failed_at(USAGE))?;
            self.knows_usage(&usage);
        }
        let budget = self.write_budget.unwrap_or(0);
        if grows_by > budget {
            return refuse(format!(
                "refused to grow the workspace by {grows_by} bytes: one call may grow it by \
                 at most the room left under its quota, {budget} bytes"
            ));
        }
        self.write_budget = Some(budget - grows_by);
        Ok(())
    }
}

/// The guest's limits, and how much linear memory it holds now (the most a
/// memory of it has grown to).
pub(crate) struct GuestLimits {
    limits: StoreLimits,
    pub(crate) memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
