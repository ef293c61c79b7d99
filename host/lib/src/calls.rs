//! The use cases by name, for callers that choose the use case at run time
//! (the CLI, the conformance runner, a bridge from another protocol): a
//! [`Call`] (declared with the use cases, `use_cases.rs`) read from the
//! WIT's JSON shape, and its [`Output`] written back in it.

use crate::content::Content;
use crate::error::Error;
use crate::model::{Chat, ChatFile, SandboxOutput, Timestamp, Workspace, WorkspaceUsage};
pub use crate::use_cases::Call;
use serde_json::{Value, json};

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

/// Each use case's answer, as an output.
macro_rules! outputs {
    ($($answer:ty => $output:pat => $make:expr;)*) => {
        $(impl From<$answer> for Output {
            fn from(answer: $answer) -> Output {
                let $output = answer;
                $make
            }
        })*
    };
}

outputs! {
    Workspace => w => Output::Workspace(w);
    WorkspaceUsage => u => Output::Usage(u);
    Chat => c => Output::Chat(c);
    Vec<Chat> => cs => Output::Chats(cs);
    ChatFile => f => Output::File(f);
    Vec<ChatFile> => fs => Output::Files(fs);
    Content => c => Output::History(c);
    (ChatFile, Content) => (f, c) => Output::Attachment(f, c);
    Vec<Result<ChatFile, Error>> => outcomes => Output::Outcomes(outcomes);
    () => () => Output::Done;
}

impl Call {
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
}

/// An argument read from the WIT's JSON shape: ids, names and a history's
/// content as strings; an attachment's content as a string or an array of
/// bytes; `content-type` as a string, null or left out; `outputs` as an
/// array of `{name, content-type, size-bytes, sha256}`.
pub trait FromWitJson: Sized {
    /// The argument `key` of the call `call`, from `value` (`None`: not given).
    fn from_wit_json(value: Option<&Value>, call: &str, key: &str) -> Result<Self, String>;
}

impl FromWitJson for String {
    fn from_wit_json(value: Option<&Value>, call: &str, key: &str) -> Result<Self, String> {
        match value {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("{key} must be text, not {other}")),
            None => Err(format!("{call} needs {key:?}")),
        }
    }
}

impl FromWitJson for Option<String> {
    fn from_wit_json(value: Option<&Value>, call: &str, key: &str) -> Result<Self, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            value => String::from_wit_json(value, call, key).map(Some),
        }
    }
}

impl FromWitJson for Vec<u8> {
    fn from_wit_json(value: Option<&Value>, call: &str, key: &str) -> Result<Self, String> {
        match value {
            Some(Value::String(s)) => Ok(s.clone().into_bytes()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("{key} must be text or an array of bytes")),
            _ => Err(format!("{call} needs {key:?} as text or an array of bytes")),
        }
    }
}

impl FromWitJson for Vec<SandboxOutput> {
    fn from_wit_json(value: Option<&Value>, _call: &str, _key: &str) -> Result<Self, String> {
        sandbox_outputs(value)
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
    json!({ "seconds": t.timestamp(), "nanoseconds": t.timestamp_subsec_nanos() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use uuid::Uuid;

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
