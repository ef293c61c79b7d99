//! The use cases by name: one [`Call`] value per call of the `storage`
//! interface, for callers that choose the use case at run time (the CLI,
//! the conformance runner, a bridge from another protocol). Adding a use
//! case to the WIT means adding it here once; those callers follow.

use crate::content::Content;
use crate::error::Error;
use crate::ids::parse_id;
use crate::model::{Chat, ChatFile, SandboxOutput, Timestamp, Workspace, WorkspaceUsage};
use crate::store::ChatStore;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One call of the `storage` interface with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // The fields are the WIT parameters of the same names.
pub enum Call {
    EnsureWorkspace {
        user_id: Uuid,
    },
    GetWorkspace {
        user_id: Uuid,
    },
    GetUsage {
        user_id: Uuid,
    },
    CreateChat {
        user_id: Uuid,
    },
    ListChats {
        user_id: Uuid,
    },
    GetChat {
        user_id: Uuid,
        chat_id: Uuid,
    },
    DeleteChat {
        user_id: Uuid,
        chat_id: Uuid,
    },
    ReadHistory {
        user_id: Uuid,
        chat_id: Uuid,
    },
    WriteHistory {
        user_id: Uuid,
        chat_id: Uuid,
        content: String,
    },
    AppendHistory {
        user_id: Uuid,
        chat_id: Uuid,
        content: String,
    },
    UploadAttachment {
        user_id: Uuid,
        chat_id: Uuid,
        name: String,
        content_type: Option<String>,
        content: Vec<u8>,
    },
    ListAttachments {
        user_id: Uuid,
        chat_id: Uuid,
    },
    GetAttachment {
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    },
    ReadAttachment {
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    },
    DeleteAttachment {
        user_id: Uuid,
        chat_id: Uuid,
        file_id: Uuid,
    },
    ClearAttachments {
        user_id: Uuid,
        chat_id: Uuid,
    },
    RegisterSandboxOutputs {
        user_id: Uuid,
        chat_id: Uuid,
        outputs: Vec<SandboxOutput>,
    },
}

/// What a call gives back.
#[derive(Debug)]
pub enum Output {
    /// A workspace.
    Workspace(Workspace),
    /// A workspace's usage.
    Usage(WorkspaceUsage),
    /// A chat.
    Chat(Chat),
    /// Chats, in order.
    Chats(Vec<Chat>),
    /// An attachment's metadata.
    File(ChatFile),
    /// Attachments' metadata, in order.
    Files(Vec<ChatFile>),
    /// A history, open to read.
    History(Content),
    /// An attachment's metadata and content, open to read.
    Attachment(ChatFile, Content),
    /// Each sandbox output registered as an attachment, or why not.
    Outcomes(Vec<Result<ChatFile, Error>>),
    /// Nothing: the call succeeded.
    Done,
}

const USER: &[&str] = &["user-id"];
const CHAT: &[&str] = &["user-id", "chat-id"];
const FILE: &[&str] = &["user-id", "chat-id", "file-id"];
const CONTENT: &[&str] = &["user-id", "chat-id", "content"];
const UPLOAD: &[&str] = &["user-id", "chat-id", "name", "content-type", "content"];
const OUTPUTS: &[&str] = &["user-id", "chat-id", "outputs"];

impl Call {
    /// Every call's WIT name and WIT parameters, in the order of the
    /// `storage` interface (a test holds this to `wit/storage.wit`).
    pub const SIGNATURES: &[(&str, &[&str])] = &[
        ("ensure-workspace", USER),
        ("get-workspace", USER),
        ("get-usage", USER),
        ("create-chat", USER),
        ("list-chats", USER),
        ("get-chat", CHAT),
        ("delete-chat", CHAT),
        ("read-history", CHAT),
        ("write-history", CONTENT),
        ("append-history", CONTENT),
        ("upload-attachment", UPLOAD),
        ("list-attachments", CHAT),
        ("get-attachment", FILE),
        ("read-attachment", FILE),
        ("delete-attachment", FILE),
        ("clear-attachments", CHAT),
        ("register-sandbox-outputs", OUTPUTS),
    ];

    /// The parameters that may be left out (`option<…>` in the WIT).
    pub const OPTIONAL: &[&str] = &["content-type"];

    /// Whether the call named `name` is a read whose content the host
    /// serves (a history or an attachment's bytes): the `read-…` exports.
    pub fn returns_content(name: &str) -> bool {
        name.starts_with("read-")
    }

    /// The WIT parameters of the call named `name`, if there is one.
    pub fn params(name: &str) -> Option<&'static [&'static str]> {
        Self::SIGNATURES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, params)| *params)
    }

    /// The call's WIT name.
    pub fn name(&self) -> &'static str {
        match self {
            Call::EnsureWorkspace { .. } => "ensure-workspace",
            Call::GetWorkspace { .. } => "get-workspace",
            Call::GetUsage { .. } => "get-usage",
            Call::CreateChat { .. } => "create-chat",
            Call::ListChats { .. } => "list-chats",
            Call::GetChat { .. } => "get-chat",
            Call::DeleteChat { .. } => "delete-chat",
            Call::ReadHistory { .. } => "read-history",
            Call::WriteHistory { .. } => "write-history",
            Call::AppendHistory { .. } => "append-history",
            Call::UploadAttachment { .. } => "upload-attachment",
            Call::ListAttachments { .. } => "list-attachments",
            Call::GetAttachment { .. } => "get-attachment",
            Call::ReadAttachment { .. } => "read-attachment",
            Call::DeleteAttachment { .. } => "delete-attachment",
            Call::ClearAttachments { .. } => "clear-attachments",
            Call::RegisterSandboxOutputs { .. } => "register-sandbox-outputs",
        }
    }

    /// Builds the call named `name` from arguments keyed by WIT parameter
    /// name: ids and names as strings, history content as a string, an
    /// attachment's content as a string or an array of bytes,
    /// `content-type` as a string or null. An argument that is not a UUID
    /// where one belongs is the call's `invalid_id` (the inner error), as
    /// the host refuses it; a missing or mistyped argument is the outer one.
    pub fn from_wit_json(
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<Result<Call, Error>, String> {
        let params = Self::params(name).ok_or_else(|| format!("no such call {name:?}"))?;
        if let Some(unknown) = args.keys().find(|k| !params.contains(&k.as_str())) {
            return Err(format!("{name} takes no {unknown:?}"));
        }
        let text = |key: &str| match args.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{key} must be text, not {other}")),
            None => Err(format!("{name} needs {key:?}")),
        };
        // Ids first, in order: the first malformed one is the refusal.
        let mut ids = Vec::new();
        for param in params.iter().filter(|p| p.ends_with("-id")) {
            match parse_id(&text(param)?) {
                Ok(id) => ids.push(id),
                Err(refused) => return Ok(Err(refused)),
            }
        }
        let bytes = |key: &str| match args.get(key) {
            Some(Value::String(s)) => Ok(s.clone().into_bytes()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("{key} must be text or an array of bytes")),
            _ => Err(format!("{name} needs {key:?} as text or an array of bytes")),
        };
        let (u, c, f) = (
            ids.first().copied(),
            ids.get(1).copied(),
            ids.get(2).copied(),
        );
        let need = |id: Option<Uuid>| id.ok_or_else(|| format!("{name} lacks an id"));
        let (user_id, chat_id, file_id) = (need(u)?, need(c), need(f));
        Ok(Ok(match name {
            "ensure-workspace" => Call::EnsureWorkspace { user_id },
            "get-workspace" => Call::GetWorkspace { user_id },
            "get-usage" => Call::GetUsage { user_id },
            "create-chat" => Call::CreateChat { user_id },
            "list-chats" => Call::ListChats { user_id },
            "get-chat" => Call::GetChat {
                user_id,
                chat_id: chat_id?,
            },
            "delete-chat" => Call::DeleteChat {
                user_id,
                chat_id: chat_id?,
            },
            "read-history" => Call::ReadHistory {
                user_id,
                chat_id: chat_id?,
            },
            "write-history" => Call::WriteHistory {
                user_id,
                chat_id: chat_id?,
                content: text("content")?,
            },
            "append-history" => Call::AppendHistory {
                user_id,
                chat_id: chat_id?,
                content: text("content")?,
            },
            "upload-attachment" => Call::UploadAttachment {
                user_id,
                chat_id: chat_id?,
                name: text("name")?,
                content_type: match args.get("content-type") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(text("content-type")?),
                },
                content: bytes("content")?,
            },
            "list-attachments" => Call::ListAttachments {
                user_id,
                chat_id: chat_id?,
            },
            "get-attachment" => Call::GetAttachment {
                user_id,
                chat_id: chat_id?,
                file_id: file_id?,
            },
            "read-attachment" => Call::ReadAttachment {
                user_id,
                chat_id: chat_id?,
                file_id: file_id?,
            },
            "delete-attachment" => Call::DeleteAttachment {
                user_id,
                chat_id: chat_id?,
                file_id: file_id?,
            },
            "clear-attachments" => Call::ClearAttachments {
                user_id,
                chat_id: chat_id?,
            },
            "register-sandbox-outputs" => Call::RegisterSandboxOutputs {
                user_id,
                chat_id: chat_id?,
                outputs: sandbox_outputs(args.get("outputs"))?,
            },
            other => return Err(format!("{other} has no Call")),
        }))
    }
}

/// `outputs` in the WIT's JSON shape: an array of `{name, content-type,
/// size-bytes, sha256}`.
fn sandbox_outputs(value: Option<&Value>) -> Result<Vec<SandboxOutput>, String> {
    let malformed =
        || "outputs must be an array of {name, content-type, size-bytes, sha256}".to_owned();
    let items = value.and_then(Value::as_array).ok_or_else(malformed)?;
    items
        .iter()
        .map(|item| {
            let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
            Ok(SandboxOutput {
                name: text("name").ok_or_else(malformed)?,
                content_type: text("content-type"),
                size_bytes: item
                    .get("size-bytes")
                    .and_then(Value::as_u64)
                    .ok_or_else(malformed)?,
                sha256: text("sha256").ok_or_else(malformed)?,
            })
        })
        .collect()
}

impl Output {
    /// Whether the output is content (a history or an attachment's bytes).
    pub fn is_content(&self) -> bool {
        matches!(self, Output::History(_) | Output::Attachment(..))
    }

    /// The value in the WIT's JSON shape: kebab-case keys, timestamps as
    /// `{seconds, nanoseconds}`, none as null; content (read into memory)
    /// as text, or as `{"hex": …}` if it is not UTF-8.
    pub fn into_wit_json(self) -> std::io::Result<Value> {
        Ok(match self {
            Output::History(content) | Output::Attachment(_, content) => {
                content_json(&content.into_bytes()?)
            }
            other => other.record_json(),
        })
    }

    fn record_json(&self) -> Value {
        match self {
            Output::Workspace(w) => workspace(w),
            Output::Usage(u) => json!({
                "workspace-id": u.workspace_id.to_string(),
                "used-bytes": u.used_bytes,
                "quota-bytes": u.quota_bytes,
            }),
            Output::Chat(c) => chat(c),
            Output::Chats(cs) => cs.iter().map(chat).collect(),
            Output::File(f) => chat_file(f),
            Output::Files(fs) => fs.iter().map(chat_file).collect(),
            Output::Outcomes(outcomes) => outcomes
                .iter()
                .map(|o| match o {
                    Ok(f) => json!({ "registered": chat_file(f) }),
                    Err(e) => json!({ "refused": { "error": e.code(), "subject": e.subject() } }),
                })
                .collect(),
            Output::History(_) | Output::Attachment(..) | Output::Done => Value::Null,
        }
    }
}

/// Bytes in the suite's JSON: text if they are UTF-8, else `{"hex": …}`.
pub fn content_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!({ "hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() }),
    }
}

fn timestamp(t: Timestamp) -> Value {
    json!({ "seconds": t.seconds, "nanoseconds": t.nanoseconds })
}

fn workspace(w: &Workspace) -> Value {
    json!({
        "workspace-id": w.workspace_id.to_string(),
        "user-id": w.user_id.to_string(),
        "created-at": timestamp(w.created_at),
    })
}

fn chat(c: &Chat) -> Value {
    json!({
        "chat-id": c.chat_id.to_string(),
        "workspace-id": c.workspace_id.to_string(),
        "created-at": timestamp(c.created_at),
    })
}

fn chat_file(f: &ChatFile) -> Value {
    json!({
        "file-id": f.file_id.to_string(),
        "chat-id": f.chat_id.to_string(),
        "name": f.name.as_str(),
        "content-type": f.content_type,
        "size-bytes": f.size_bytes,
        "sha256": f.sha256,
        "created-at": timestamp(f.created_at),
    })
}

impl ChatStore {
    /// Runs a call chosen at run time: the same as the typed method of the
    /// same name.
    pub fn run(&self, call: Call) -> Result<Output, Error> {
        use Call as C;
        let done = |()| Output::Done;
        match call {
            C::EnsureWorkspace { user_id } => self.ensure_workspace(user_id).map(Output::Workspace),
            C::GetWorkspace { user_id } => self.get_workspace(user_id).map(Output::Workspace),
            C::GetUsage { user_id } => self.get_usage(user_id).map(Output::Usage),
            C::CreateChat { user_id } => self.create_chat(user_id).map(Output::Chat),
            C::ListChats { user_id } => self.list_chats(user_id).map(Output::Chats),
            C::GetChat { user_id, chat_id } => self.get_chat(user_id, chat_id).map(Output::Chat),
            C::DeleteChat { user_id, chat_id } => self.delete_chat(user_id, chat_id).map(done),
            C::ReadHistory { user_id, chat_id } => {
                self.read_history(user_id, chat_id).map(Output::History)
            }
            C::WriteHistory {
                user_id,
                chat_id,
                content,
            } => self
                .write_history(user_id, chat_id, content.as_bytes())
                .map(done),
            C::AppendHistory {
                user_id,
                chat_id,
                content,
            } => self
                .append_history(user_id, chat_id, content.as_bytes())
                .map(done),
            C::UploadAttachment {
                user_id,
                chat_id,
                name,
                content_type,
                content,
            } => self
                .upload_attachment(
                    user_id,
                    chat_id,
                    &name,
                    content_type.as_deref(),
                    content.as_slice(),
                )
                .map(Output::File),
            C::ListAttachments { user_id, chat_id } => {
                self.list_attachments(user_id, chat_id).map(Output::Files)
            }
            C::GetAttachment {
                user_id,
                chat_id,
                file_id,
            } => self
                .get_attachment(user_id, chat_id, file_id)
                .map(Output::File),
            C::ReadAttachment {
                user_id,
                chat_id,
                file_id,
            } => self
                .read_attachment(user_id, chat_id, file_id)
                .map(|(file, content)| Output::Attachment(file, content)),
            C::DeleteAttachment {
                user_id,
                chat_id,
                file_id,
            } => self.delete_attachment(user_id, chat_id, file_id).map(done),
            C::ClearAttachments { user_id, chat_id } => {
                self.clear_attachments(user_id, chat_id).map(done)
            }
            C::RegisterSandboxOutputs {
                user_id,
                chat_id,
                outputs,
            } => self
                .register_sandbox_outputs(user_id, chat_id, &outputs)
                .map(Output::Outcomes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name: func(a: t, b: t) -> …;` lines of the `storage` interface:
    /// name, parameters, and whether the doc comment above says the host
    /// serves the bytes.
    fn wit_signatures() -> Vec<(String, Vec<String>, bool)> {
        let wit = include_str!("../../../wit/storage.wit");
        let interface = &wit[wit.find("interface storage").expect("interface")..];
        let interface = &interface[..interface.find("\n}").expect("its end")];
        let mut served = false;
        let mut signatures = Vec::new();
        for line in interface.lines().map(str::trim) {
            if line.starts_with("///") {
                served |= line.contains("the host serves");
                continue;
            }
            if let Some((name, rest)) = line.split_once(": func(") {
                let params = rest.split_once(')').map_or("", |(p, _)| p);
                let params = params
                    .split(',')
                    .filter_map(|p| Some(p.split_once(':')?.0.trim().to_owned()))
                    .collect();
                signatures.push((name.to_owned(), params, served));
            }
            served = false;
        }
        signatures
    }

    #[test]
    fn the_table_is_the_wit_storage_interface() {
        let table: Vec<(String, Vec<String>, bool)> = Call::SIGNATURES
            .iter()
            .map(|(n, ps)| {
                let params = ps.iter().map(|p| p.to_string()).collect();
                (n.to_string(), params, Call::returns_content(n))
            })
            .collect();
        assert_eq!(table, wit_signatures());
    }

    #[test]
    fn every_call_is_built_from_its_wit_arguments_and_named_back() {
        let id = Uuid::now_v7().to_string();
        for (name, params) in Call::SIGNATURES {
            let args: Map<String, Value> = params
                .iter()
                .map(|p| {
                    let value = if p.ends_with("-id") {
                        json!(id)
                    } else if *p == "outputs" {
                        json!([{"name": "x", "size-bytes": 1, "sha256": "x"}])
                    } else {
                        json!("x")
                    };
                    (p.to_string(), value)
                })
                .collect();
            let call = Call::from_wit_json(name, &args).unwrap().unwrap();
            assert_eq!(call.name(), *name);
        }
    }

    #[test]
    fn a_malformed_id_is_the_calls_refusal_and_a_bad_argument_is_not() {
        let args = |pairs: &[(&str, Value)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        assert_eq!(
            Call::from_wit_json("get-workspace", &args(&[("user-id", json!("nope"))])),
            Ok(Err(Error::InvalidId("nope".into())))
        );
        assert_eq!(
            Call::from_wit_json(
                "get-chat",
                &args(&[("user-id", json!(Uuid::nil().to_string()))])
            ),
            Err("get-chat needs \"chat-id\"".into())
        );
        assert!(Call::from_wit_json("nope", &Map::new()).is_err());
        let upload = Call::from_wit_json(
            "upload-attachment",
            &args(&[
                ("user-id", json!(Uuid::nil().to_string())),
                ("chat-id", json!(Uuid::nil().to_string())),
                ("name", json!("a")),
                ("content", json!([0, 255])),
            ]),
        );
        assert!(matches!(
            upload,
            Ok(Ok(Call::UploadAttachment { content, content_type: None, .. })) if content == [0, 255]
        ));
    }

    #[test]
    fn content_is_text_or_hex() {
        assert_eq!(content_json(&[0xff]), json!({"hex": "ff"}));
        assert_eq!(content_json("é".as_bytes()), json!("é"));
    }
}
