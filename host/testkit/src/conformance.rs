//! The conformance suite: the storage policy's rules as scenario files, and a
//! runner that plays them against a component through this host.
//!
//! A scenario is a list of steps — calls of the `storage` interface and
//! actions of the host around it (the clock, sandbox sessions, files a
//! sandbox writes) — each with the result it must give. The format is
//! described in `conformance/README.md`; the same files run from JavaScript
//! and Python. The runner stops a scenario at its first step that differs
//! and reports that step, so pointing it at another component shows exactly
//! where that policy departs from the built-in one.
//!
//! ```no_run
//! use chatstore_testkit::conformance::{self, Runner, Verdict};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runner = Runner::new().component(std::fs::read("my-policy.wasm")?);
//! for scenario in conformance::built_in()? {
//!     if let Verdict::Failed(failure) = runner.run(&scenario)? {
//!         println!("{}: {failure}", scenario.name());
//!     }
//! }
//! # Ok(()) }
//! ```

use chatstore_host::calls::content_json;
use chatstore_host::{
    Call, ChatStore, Clock, Error, Metadata, SandboxSession, Timestamp, parse_id,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use uuid::Uuid;

/// The scenarios of `conformance/scenarios`, built into the binary.
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));

/// The quota of a scenario that names none.
const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;
/// The clock of a scenario that sets none: 2026-01-01T00:00:00Z.
const DEFAULT_CLOCK: i64 = 1_767_225_600;

/// The built-in scenarios, in name order.
pub fn built_in() -> Result<Vec<Scenario>, SuiteError> {
    BUILT_IN
        .iter()
        .map(|(name, text)| Scenario::parse(name, text))
        .collect()
}

/// Every `*.json` scenario in a directory, in name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, SuiteError> {
    let unreadable = |e: std::io::Error| SuiteError::new(dir.display().to_string(), e.to_string());
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(SuiteError::new(
            dir.display().to_string(),
            "holds no .json scenarios",
        ));
    }
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(path)
                .map_err(|e| SuiteError::new(path.display().to_string(), e.to_string()))?;
            Scenario::parse(&name, &text)
        })
        .collect()
}

/// A scenario is malformed, or could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scenario}: {message}")]
pub struct SuiteError {
    /// The scenario (or file) concerned.
    pub scenario: String,
    /// What is wrong, with the step number where there is one.
    pub message: String,
}

impl SuiteError {
    fn new(scenario: impl Into<String>, message: impl Into<String>) -> SuiteError {
        SuiteError {
            scenario: scenario.into(),
            message: message.into(),
        }
    }
}

/// A host action: its name, its arguments, and those that may be left out.
#[derive(Debug)]
struct HostAction {
    name: &'static str,
    params: &'static [&'static str],
    optional: &'static [&'static str],
}

/// What the host and the sandbox subsystem do around the component.
const HOST_ACTIONS: &[HostAction] = &[
    HostAction {
        name: "set-clock",
        params: &["seconds", "nanoseconds"],
        optional: &["nanoseconds"],
    },
    HostAction {
        name: "start-sandbox",
        params: &["chat"],
        optional: &[],
    },
    HostAction {
        name: "end-sandbox",
        params: &["chat"],
        optional: &[],
    },
    HostAction {
        name: "sandbox-write",
        params: &["chat", "path", "content"],
        optional: &[],
    },
    HostAction {
        name: "list-dir",
        params: &["chat"],
        optional: &[],
    },
];

/// What a step must give.
#[derive(Debug, Clone)]
enum Expect {
    /// Success; with a value, one that matches it.
    Ok(Option<Value>),
    /// Failure with this code, and this subject if given.
    Error {
        code: String,
        subject: Option<Value>,
    },
}

#[derive(Debug, Clone)]
struct Step {
    host: bool,
    /// The call's WIT name, or the host action's name.
    name: &'static str,
    args: Map<String, Value>,
    bind: Option<String>,
    expect: Expect,
    note: Option<String>,
}

/// One scenario: a rule of the policy and the steps that check it.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    rule: String,
    quota_bytes: u64,
    clock: i64,
    ids: Vec<String>,
    steps: Vec<Step>,
}

impl Scenario {
    /// Parses a scenario file's text; `name` is its file name without `.json`.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, SuiteError> {
        let fail = |message: String| SuiteError::new(name, message);
        let root: Value = serde_json::from_str(text).map_err(|e| fail(e.to_string()))?;
        let root = root
            .as_object()
            .ok_or_else(|| fail("is not a JSON object".into()))?;
        if let Some(key) = root
            .keys()
            .find(|k| !["rule", "quota-bytes", "clock", "ids", "steps"].contains(&k.as_str()))
        {
            return Err(fail(format!("unknown key {key:?}")));
        }
        let rule = match root.get("rule") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(fail("`rule` must be a string".into())),
        };
        let quota_bytes = match root.get("quota-bytes") {
            None => DEFAULT_QUOTA_BYTES,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| fail("`quota-bytes` must be a whole number".into()))?,
        };
        let clock = match root.get("clock") {
            None => DEFAULT_CLOCK,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| fail("`clock` must be whole seconds".into()))?,
        };
        let ids = match root.get("ids") {
            None => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| fail("`ids` must be a list of names".into()))?,
            Some(_) => return Err(fail("`ids` must be a list of names".into())),
        };
        let steps = match root.get("steps") {
            Some(Value::Array(steps)) if !steps.is_empty() => steps,
            _ => return Err(fail("`steps` must be a non-empty list".into())),
        };
        let steps = steps
            .iter()
            .enumerate()
            .map(|(i, step)| Step::parse(step).map_err(|m| fail(format!("step {}: {m}", i + 1))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scenario {
            name: name.to_owned(),
            rule,
            quota_bytes,
            clock,
            ids,
            steps,
        })
    }

    /// The scenario's name: its file name without `.json`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule it checks, in words.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// How many steps it has.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it has no steps (never, for a parsed scenario).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Step {
    fn parse(step: &Value) -> Result<Step, String> {
        let step = step.as_object().ok_or("is not a JSON object")?;
        let (host, name) = match (step.get("call"), step.get("host")) {
            (Some(Value::String(call)), None) => (false, call),
            (None, Some(Value::String(action))) => (true, action),
            _ => return Err("needs exactly one of `call` or `host`, naming what it does".into()),
        };
        let (name, params, optional): (&'static str, _, _) = if host {
            let action = HOST_ACTIONS
                .iter()
                .find(|a| a.name == name)
                .ok_or_else(|| format!("no such host action {name:?}"))?;
            (action.name, action.params, action.optional)
        } else {
            let (name, params) = Call::SIGNATURES
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| format!("no such call {name:?}"))?;
            (*name, *params, Call::OPTIONAL)
        };
        let mut args = Map::new();
        let mut bind = None;
        let mut expect = Expect::Ok(None);
        let mut note = None;
        for (key, value) in step {
            match key.as_str() {
                "call" | "host" => {}
                "as" => {
                    bind = Some(value.as_str().ok_or("`as` must be a name")?.to_owned());
                }
                "note" => note = Some(value.as_str().ok_or("`note` must be text")?.to_owned()),
                "expect" => expect = Expect::parse(value)?,
                param if params.contains(&param) => {
                    args.insert(key.clone(), value.clone());
                }
                other => return Err(format!("{name} takes no {other:?}")),
            }
        }
        if let Some(missing) = params
            .iter()
            .find(|p| !args.contains_key(**p) && !optional.contains(p))
        {
            return Err(format!("{name} needs {missing:?}"));
        }
        Ok(Step {
            host,
            name,
            args,
            bind,
            expect,
            note,
        })
    }

    fn describe(&self) -> String {
        format!("{} {}", if self.host { "host" } else { "call" }, self.name)
    }

    /// Whether the step's result is content, compared as bytes.
    fn returns_content(&self) -> bool {
        !self.host && Call::returns_content(self.name)
    }
}

impl Expect {
    fn parse(value: &Value) -> Result<Expect, String> {
        if value == "ok" {
            return Ok(Expect::Ok(None));
        }
        let bad = || "`expect` must be \"ok\", {\"ok\": value} or {\"error\": code}".to_owned();
        let map = value.as_object().ok_or_else(bad)?;
        match (map.get("ok"), map.get("error")) {
            (Some(v), None) if map.len() == 1 => Ok(Expect::Ok(Some(v.clone()))),
            (None, Some(Value::String(code)))
                if map.keys().all(|k| k == "error" || k == "subject") =>
            {
                Ok(Expect::Error {
                    code: code.clone(),
                    subject: map.get("subject").cloned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every step gave what it should.
    Passed {
        /// The steps run.
        steps: usize,
    },
    /// A step did not; the scenario stopped there.
    Failed(Failure),
}

/// The first step of a scenario that did not give what it should.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its number, counted from 1.
    pub step: usize,
    /// What it did, for example `call upload-attachment`.
    pub action: String,
    /// Why the step is there, if the scenario says.
    pub note: Option<String>,
    /// What it should have given.
    pub expected: String,
    /// What it gave.
    pub actual: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}): expected {}, got {}",
            self.step, self.action, self.expected, self.actual
        )?;
        if let Some(note) = &self.note {
            write!(f, " [{note}]")?;
        }
        Ok(())
    }
}

/// Runs scenarios against a component, each on a fresh data directory.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    component: Option<Arc<[u8]>>,
    metadata: Metadata,
}

impl Runner {
    /// A runner for the built-in component with SQLite metadata.
    pub fn new() -> Runner {
        Runner::default()
    }

    /// Runs this component instead of the built-in one.
    pub fn component(mut self, bytes: impl Into<Vec<u8>>) -> Runner {
        self.component = Some(bytes.into().into());
        self
    }

    /// Where the stores keep metadata (default SQLite).
    pub fn metadata(mut self, metadata: Metadata) -> Runner {
        self.metadata = metadata;
        self
    }

    /// Plays one scenario on a fresh, empty store.
    pub fn run(&self, scenario: &Scenario) -> Result<Verdict, SuiteError> {
        let fail = |message: String| SuiteError::new(&scenario.name, message);
        let tmp = tempfile::tempdir().map_err(|e| fail(format!("temporary directory: {e}")))?;
        let start = Timestamp::from_timestamp(scenario.clock, 0)
            .ok_or_else(|| fail(format!("the clock {} s is not a time", scenario.clock)))?;
        let now = Arc::new(Mutex::new(start));
        let clock_now = now.clone();
        let clock = Clock::from_fn(move || {
            clock_now
                .lock()
                .map(|t| SystemTime::from(*t))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        let mut builder = ChatStore::builder()
            .data_dir(tmp.path())
            .metadata(self.metadata.clone())
            .quota_bytes(scenario.quota_bytes)
            .clock(clock);
        if let Some(bytes) = &self.component {
            builder = builder.component(bytes.to_vec());
        }
        let store = builder.build().map_err(|e| fail(e.to_string()))?;
        let mut run = Run {
            store,
            data_dir: tmp.path().to_path_buf(),
            now,
            vars: Bindings(
                scenario
                    .ids
                    .iter()
                    .map(|name| (name.clone(), json!(Uuid::now_v7().to_string())))
                    .collect(),
            ),
        };
        for (i, step) in scenario.steps.iter().enumerate() {
            let at = |message: String| fail(format!("step {}: {message}", i + 1));
            let outcome = if step.host {
                run.host(step)
            } else {
                run.call(step)
            }
            .map_err(at)?;
            if let Some(failure) = run.vars.check(i + 1, step, &outcome).map_err(at)? {
                return Ok(Verdict::Failed(failure));
            }
            if let (Some(name), Ok(value)) = (&step.bind, outcome) {
                run.vars.0.insert(name.clone(), value);
            }
        }
        Ok(Verdict::Passed {
            steps: scenario.steps.len(),
        })
    }
}

/// What a step gave: a value in the WIT's JSON shape, or a refusal.
type Outcome = Result<Value, Error>;

/// One scenario being played.
struct Run {
    store: ChatStore,
    data_dir: PathBuf,
    now: Arc<Mutex<Timestamp>>,
    vars: Bindings,
}

/// The values bound so far: the scenario's ids and the results named by `as`.
struct Bindings(HashMap<String, Value>);

impl Bindings {
    /// The value a `$name.field…` reference names.
    fn lookup(&self, reference: &str) -> Result<Value, String> {
        let mut path = reference[1..].split('.');
        let name = path.next().unwrap_or_default();
        let mut value = self
            .0
            .get(name)
            .ok_or_else(|| format!("{reference}: nothing is bound to {name:?}"))?;
        for field in path {
            value = value
                .get(field)
                .ok_or_else(|| format!("{reference}: no field {field:?}"))?;
        }
        Ok(value.clone())
    }

    /// Content: a string, `{"text"}`, `{"repeat", "count"}` or `{"hex"}`, or
    /// a `$` reference to a string.
    fn content(&self, spec: &Value) -> Result<Vec<u8>, String> {
        match spec {
            Value::String(s) if s.starts_with('$') => match self.lookup(s)? {
                Value::String(s) => Ok(s.into_bytes()),
                other => Err(format!("{s} is {other}, not text")),
            },
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Object(map) => {
                let text = |key: &str| map.get(key).and_then(Value::as_str);
                if let (Some(s), 1) = (text("text"), map.len()) {
                    Ok(s.as_bytes().to_vec())
                } else if let (Some(s), Some(n), 2) = (
                    text("repeat"),
                    map.get("count").and_then(Value::as_u64),
                    map.len(),
                ) {
                    Ok(s.repeat(usize::try_from(n).map_err(|e| e.to_string())?)
                        .into_bytes())
                } else if let (Some(hex), 1) = (text("hex"), map.len()) {
                    decode_hex(hex)
                } else {
                    Err(format!("{spec} is not content"))
                }
            }
            other => Err(format!("{other} is not content")),
        }
    }

    fn text(&self, spec: &Value) -> Result<String, String> {
        String::from_utf8(self.content(spec)?).map_err(|_| format!("{spec} is not UTF-8 text"))
    }
}

impl Run {
    fn arg<'s>(step: &'s Step, name: &str) -> &'s Value {
        step.args.get(name).unwrap_or(&Value::Null)
    }

    /// Calls one export through the host API. Ids are parsed by the host
    /// first, as every caller of the Rust host has them parsed.
    fn call(&self, step: &Step) -> Result<Outcome, String> {
        let mut args = Map::new();
        for (param, spec) in &step.args {
            let value = match (param.as_str(), spec) {
                ("content-type", Value::Null) => Value::Null,
                ("outputs", spec) => self.vars.resolve(spec)?,
                ("content", spec) => match String::from_utf8(self.vars.content(spec)?) {
                    Ok(text) => json!(text),
                    Err(bytes) => json!(bytes.into_bytes()),
                },
                (_, spec) => json!(self.vars.text(spec)?),
            };
            args.insert(param.clone(), value);
        }
        Ok(match Call::from_wit_json(step.name, &args)? {
            Ok(call) => match self.store.run(call) {
                Ok(output) => Ok(output
                    .into_wit_json()
                    .map_err(|e| format!("reading what the call served: {e}"))?),
                Err(refused) => Err(refused),
            },
            Err(refused) => Err(refused),
        })
    }

    /// The chat record a host action names, and its directory by the
    /// documented layout.
    fn chat_dir(&self, step: &Step) -> Result<(Uuid, PathBuf), String> {
        let chat = match Self::arg(step, "chat") {
            Value::String(s) if s.starts_with('$') => self.vars.lookup(s)?,
            other => other.clone(),
        };
        let id = |field: &str| {
            chat.get(field)
                .and_then(Value::as_str)
                .and_then(|s| parse_id(s).ok())
                .ok_or_else(|| format!("`chat` must be a chat record, not {chat}"))
        };
        let (workspace_id, chat_id) = (id("workspace-id")?, id("chat-id")?);
        let dir = self
            .data_dir
            .join("workspaces")
            .join(workspace_id.to_string())
            .join("chats")
            .join(chat_id.to_string());
        Ok((chat_id, dir))
    }

    fn host(&self, step: &Step) -> Result<Outcome, String> {
        let io = |e: std::io::Error| e.to_string();
        Ok(match step.name {
            "set-clock" => {
                let seconds = Self::arg(step, "seconds")
                    .as_i64()
                    .ok_or("`seconds` must be a whole number")?;
                let nanoseconds = match Self::arg(step, "nanoseconds") {
                    Value::Null => 0,
                    n => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n < 1_000_000_000)
                        .ok_or("`nanoseconds` must be below 1000000000")?,
                };
                let at = Timestamp::from_timestamp(seconds, nanoseconds)
                    .ok_or("`seconds` must be a time chrono can hold")?;
                *self.now.lock().map_err(|e| e.to_string())? = at;
                Ok(Value::Null)
            }
            "start-sandbox" => {
                let (chat_id, _) = self.chat_dir(step)?;
                self.store
                    .start_sandbox(chat_id)
                    .map(|s| session(&s.session()))
            }
            "end-sandbox" => {
                let (chat_id, _) = self.chat_dir(step)?;
                self.store.end_sandbox(chat_id).map(|s| {
                    s.as_ref()
                        .map_or(Value::Null, |end| session(&end.session()))
                })
            }
            "sandbox-write" => {
                let (chat_id, dir) = self.chat_dir(step)?;
                // A session around the write: its end counts what it wrote.
                if let Err(e) = self.store.start_sandbox(chat_id) {
                    return Err(format!("starting the writing sandbox: {e}"));
                }
                let path = self.vars.text(Self::arg(step, "path"))?;
                let parts: Vec<&str> = path.split('/').collect();
                if parts
                    .iter()
                    .any(|p| p.is_empty() || *p == "." || *p == "..")
                {
                    return Err(format!("{path:?} is not a relative path inside the chat"));
                }
                let file = parts.iter().fold(dir, |dir, part| dir.join(part));
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&file, self.vars.content(Self::arg(step, "content"))?)
                    .map_err(io)?;
                self.store.end_sandbox(chat_id).map(|_| Value::Null)
            }
            "list-dir" => {
                let (_, dir) = self.chat_dir(step)?;
                Ok(match list_files(&dir).map_err(io)? {
                    Some(files) => json!(files),
                    None => Value::Null,
                })
            }
            name => return Err(format!("{name} has no runner")),
        })
    }
}

impl Bindings {
    /// Compares step number `number`'s outcome with what it expects.
    fn check(
        &self,
        number: usize,
        step: &Step,
        outcome: &Outcome,
    ) -> Result<Option<Failure>, String> {
        let passed = match (&step.expect, outcome) {
            (Expect::Ok(None), Ok(_)) => true,
            (Expect::Ok(Some(expected)), Ok(actual)) => {
                if step.returns_content() {
                    content_json(&self.content(expected)?) == *actual
                } else {
                    self.matches(expected, actual)?
                }
            }
            (Expect::Error { code, subject }, Err(e)) => {
                code == e.code()
                    && match subject {
                        None => true,
                        Some(subject) => e.subject() == Some(self.text(subject)?),
                    }
            }
            _ => false,
        };
        if passed {
            return Ok(None);
        }
        Ok(Some(Failure {
            step: number,
            action: step.describe(),
            note: step.note.clone(),
            expected: self.describe_expected(step),
            actual: match outcome {
                Ok(value) => format!("ok {value}"),
                Err(e) => match e.subject() {
                    Some(subject) => format!("error {} ({subject})", e.code()),
                    None => format!("error {e}"),
                },
            },
        }))
    }

    /// Whether `actual` has every field `expected` names, with its value.
    fn matches(&self, expected: &Value, actual: &Value) -> Result<bool, String> {
        Ok(included(&self.resolve(expected)?, actual))
    }

    /// The expectation with its references filled in, for a report.
    fn describe_expected(&self, step: &Step) -> String {
        match &step.expect {
            Expect::Ok(None) => "ok".to_owned(),
            Expect::Ok(Some(v)) if step.returns_content() => match self.content(v) {
                Ok(bytes) => format!("ok {}", content_json(&bytes)),
                Err(_) => format!("ok {v}"),
            },
            Expect::Ok(Some(v)) => {
                format!("ok {}", self.resolve(v).unwrap_or_else(|_| v.clone()))
            }
            Expect::Error {
                code,
                subject: None,
            } => format!("error {code}"),
            Expect::Error {
                code,
                subject: Some(s),
            } => format!(
                "error {code} ({})",
                self.text(s).unwrap_or_else(|_| s.to_string())
            ),
        }
    }

    /// `v` with every `$` reference replaced by the value it names (which
    /// is taken as it is, not resolved again).
    fn resolve(&self, v: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) if s.starts_with('$') => self.lookup(s)?,
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// Partial match: every field of `expected` is in `actual`, with its value.
fn included(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|field| included(v, field))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| included(e, a))
        }
        (e, a) => e == a,
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("{hex:?} is not hex");
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// The sorted `/`-separated paths of the files under `dir`, or `None` if
/// it does not exist.
fn list_files(dir: &Path) -> std::io::Result<Option<Vec<String>>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                pending.push((entry.path(), format!("{name}/")));
            } else {
                files.push(name);
            }
        }
    }
    files.sort();
    Ok(Some(files))
}

fn session(s: &SandboxSession) -> Value {
    json!({
        "session-id": s.session_id.to_string(),
        "chat-id": s.chat_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_scenarios_parse() {
        let scenarios = built_in().expect("built-in scenarios");
        assert!(scenarios.len() >= 10, "{} scenarios", scenarios.len());
        assert!(
            scenarios
                .iter()
                .all(|s| !s.is_empty() && !s.rule().is_empty())
        );
    }

    #[test]
    fn malformed_scenarios_are_refused_with_the_step() {
        let refused = |text: &str| Scenario::parse("x", text).expect_err(text).message;
        assert_eq!(refused("[]"), "is not a JSON object");
        assert_eq!(
            refused(r#"{"rule": "r", "steps": [{"call": "nope"}]}"#),
            "step 1: no such call \"nope\""
        );
        assert_eq!(
            refused(r#"{"rule": "r", "steps": [{"call": "get-chat", "user-id": "x"}]}"#),
            "step 1: get-chat needs \"chat-id\""
        );
        assert_eq!(
            refused(
                r#"{"rule": "r", "steps": [{"call": "get-usage", "user-id": "x", "chat-id": "y"}]}"#
            ),
            "step 1: get-usage takes no \"chat-id\""
        );
        assert_eq!(
            refused(
                r#"{"rule": "r", "steps": [{"host": "set-clock", "seconds": 1, "expect": {"ok": 1, "error": "x"}}]}"#
            ),
            "step 1: `expect` must be \"ok\", {\"ok\": value} or {\"error\": code}"
        );
        assert_eq!(
            refused(r#"{"rule": "r", "steps": []}"#),
            "`steps` must be a non-empty list"
        );
        assert_eq!(
            refused(
                r#"{"rule": "r", "steps": [{"call": "list-chats", "user-id": "x"}], "extra": 1}"#
            ),
            "unknown key \"extra\""
        );
    }

    #[test]
    fn content_specs_decode() {
        let run = Bindings(HashMap::from([("x".to_owned(), json!({"name": "n"}))]));
        assert_eq!(run.content(&json!("ab")).unwrap(), b"ab");
        assert_eq!(run.content(&json!({"text": "$x"})).unwrap(), b"$x");
        assert_eq!(
            run.content(&json!({"repeat": "ab", "count": 3})).unwrap(),
            b"ababab"
        );
        assert_eq!(run.content(&json!({"hex": "00ff"})).unwrap(), [0, 255]);
        assert_eq!(run.content(&json!("$x.name")).unwrap(), b"n");
        assert!(run.content(&json!({"hex": "0"})).is_err());
        assert!(run.content(&json!({"repeat": "a"})).is_err());
        assert!(run.content(&json!("$y")).is_err());
        assert_eq!(content_json(&[0xff]), json!({"hex": "ff"}));
        assert!(
            run.matches(&json!({"name": "n"}), &json!({"name": "n", "size": 1}))
                .unwrap()
        );
        assert!(
            !run.matches(&json!({"name": "m"}), &json!({"name": "n"}))
                .unwrap()
        );
        assert!(!run.matches(&json!([{}]), &json!([{}, {}])).unwrap());
        assert!(run.matches(&json!("$x"), &json!({"name": "n"})).unwrap());
    }
}
