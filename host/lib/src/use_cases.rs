//! The use cases, declared once. Each entry of the list at the end of this
//! file gives [`ChatStore`] its typed method (and, for a write of content,
//! the method that streams the content from any reader first), gives
//! [`Call`] its variant, its WIT name and parameters, and gives
//! [`ChatStore::run`] its arm. A new use case is its function in
//! `wit/storage.wit`, its use case in the guest, one entry here, and the
//! HTTP route and CLI command that expose it.

use crate::bindings::wit;
use crate::call::{Kind, UseCase};
use crate::calls::{FromWitJson, Output};
use crate::content::Content;
use crate::error::Error;
use crate::ids::parse_id;
use crate::model::{Chat, ChatFile, SandboxOutput, Workspace, WorkspaceUsage};
use crate::staging::{ContentKind, StagedContent};
use crate::store::{ChatStore, Replacing};
use crate::values::FromGuest;
use serde_json::{Map, Value};
use std::io::Read;
use uuid::Uuid;

/// An argument of a use case beside its ids, as the guest's export takes
/// it: `hold` converts it once per call, `lend` lends it to each run.
trait ToGuest {
    type Held;
    fn hold(self) -> Self::Held;
}

/// How a held argument is lent to the export.
trait Lend {
    type Lent<'a>
    where
        Self: 'a;
    fn lend(&self) -> Self::Lent<'_>;
}

impl<'s> ToGuest for &'s str {
    type Held = &'s str;
    fn hold(self) -> &'s str {
        self
    }
}

impl Lend for &str {
    type Lent<'a>
        = &'a str
    where
        Self: 'a;
    fn lend(&self) -> &str {
        self
    }
}

impl<'s> ToGuest for Option<&'s str> {
    type Held = Option<&'s str>;
    fn hold(self) -> Option<&'s str> {
        self
    }
}

impl Lend for Option<&str> {
    type Lent<'a>
        = Option<&'a str>
    where
        Self: 'a;
    fn lend(&self) -> Option<&str> {
        *self
    }
}

impl ToGuest for &[SandboxOutput] {
    type Held = Vec<wit::SandboxOutput>;
    fn hold(self) -> Vec<wit::SandboxOutput> {
        self.iter().map(wit::SandboxOutput::from).collect()
    }
}

impl Lend for Vec<wit::SandboxOutput> {
    type Lent<'a> = &'a [wit::SandboxOutput];
    fn lend(&self) -> &[wit::SandboxOutput] {
        self
    }
}

/// A [`Call`]'s field as the typed method takes it.
trait AsArgument {
    type Argument<'a>
    where
        Self: 'a;
    fn as_argument(&self) -> Self::Argument<'_>;
}

impl AsArgument for String {
    type Argument<'a> = &'a str;
    fn as_argument(&self) -> &str {
        self
    }
}

impl AsArgument for Option<String> {
    type Argument<'a> = Option<&'a str>;
    fn as_argument(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl AsArgument for Vec<SandboxOutput> {
    type Argument<'a> = &'a [SandboxOutput];
    fn as_argument(&self) -> &[SandboxOutput] {
        self
    }
}

/// A parameter's name in the WIT.
macro_rules! wit_name {
    (user_id) => {
        "user-id"
    };
    (chat_id) => {
        "chat-id"
    };
    (file_id) => {
        "file-id"
    };
    (content_type) => {
        "content-type"
    };
    ($other:ident) => {
        stringify!($other)
    };
}

/// The use cases: see the module's doc. An entry reads
///
/// ```text
/// /// Its doc.
/// Variant "wit-name" kind fn method(ids; other: &Type as Owned)
///     [staged content: Owned, by reading_method(ContentKind, what it replaces)]
///     -> Answer = guest_export [, checked by |answer| …];
/// ```
///
/// `kind` is `metadata` (the built-in policy reads metadata alone: the
/// call runs first without the user's lock, docs/017), `read` or `write`.
/// The ids come first, in the WIT's order, then the other parameters, and
/// last the staged content, which a `Call` holds as `Owned` and hands to
/// the reading method. `checked by` checks the answer further before the
/// call commits.
macro_rules! use_cases {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $wit:literal $kind:ident
        fn $method:ident($($id:ident),+ $(; $($arg:ident: $ty:ty as $owned:ty),+)?)
        $(staged $content:ident: $content_owned:ty, by $reading:ident($content_kind:ident, $replacing:expr))?
        -> $out:ty = $export:ident $(, checked by $check:expr)?;
    )*) => {
        impl ChatStore {
            $(
                $(#[doc = $doc])*
                pub fn $method(
                    &self,
                    $($id: Uuid,)+
                    $($($arg: $ty,)+)?
                    $($content: StagedContent,)?
                ) -> Result<$out, Error> {
                    let use_case = UseCase::new($wit, kind!($kind), &[$($id),+]);
                    $(let $id = $id.to_string();)+
                    $($(let $arg = ToGuest::hold($arg);)+)?
                    self.call(
                        use_case,
                        use_cases!(@some $($content)?),
                        |guest, store, _offered| {
                            guest.$export(
                                store,
                                $(&$id,)+
                                $($(Lend::lend(&$arg),)+)?
                                $(offered(stringify!($content), _offered)?,)?
                            )
                        },
                        |answer, opened| {
                            let answer: $out = FromGuest::from_guest(answer, opened)?;
                            $(($check)(&answer)?;)?
                            Ok(answer)
                        },
                    )
                }

                use_cases!(@reading $method ($($id),+) ($($($arg: $ty),+)?)
                    ($($content $content_kind $reading $replacing)?) $out);
            )*

            /// Runs a call chosen at run time: the same as the typed method
            /// of the same name (a write of content stages it first).
            pub fn run(&self, call: Call) -> Result<Output, Error> {
                match call {
                    $(
                        Call::$variant { $($id,)+ $($($arg,)+)? $($content,)? } => {
                            use_cases!(@run self, $method, $($reading)?,
                                ($($id),+), ($($($arg),+)?), ($(AsRef::<[u8]>::as_ref(&$content))?))
                            .map(Output::from)
                        }
                    )*
                }
            }
        }

        /// One call of the `storage` interface with its arguments.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)] // The fields are the WIT parameters of the same names.
        pub enum Call {
            $(
                $variant {
                    $($id: Uuid,)+
                    $($($arg: $owned,)+)?
                    $($content: $content_owned,)?
                },
            )*
        }

        impl Call {
            /// Every call's WIT name and WIT parameters, in the order of the
            /// `storage` interface (a test holds this to `wit/storage.wit`).
            pub const SIGNATURES: &[(&str, &[&str])] = &[
                $(($wit, &[
                    $(wit_name!($id),)+
                    $($(wit_name!($arg),)+)?
                    $(wit_name!($content),)?
                ]),)*
            ];

            /// The call's WIT name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Call::$variant { .. } => $wit,)*
                }
            }

            /// Builds the call named `name` from arguments keyed by WIT
            /// parameter name (see [`FromWitJson`] for their shapes). An
            /// argument that is not a UUID where one belongs is the call's
            /// `invalid_id` (the inner error), as the host refuses it; a
            /// missing or mistyped argument is the outer one.
            pub fn from_wit_json(
                name: &str,
                args: &Map<String, Value>,
            ) -> Result<Result<Call, Error>, String> {
                let params = Self::params(name).ok_or_else(|| format!("no such call {name:?}"))?;
                if let Some(unknown) = args.keys().find(|k| !params.contains(&k.as_str())) {
                    return Err(format!("{name} takes no {unknown:?}"));
                }
                match name {
                    $(
                        $wit => {
                            // Ids first, in order: the first malformed one is the refusal.
                            $(
                                let text: String = argument(args, name, wit_name!($id))?;
                                let $id = match parse_id(&text) {
                                    Ok(id) => id,
                                    Err(refused) => return Ok(Err(refused)),
                                };
                            )+
                            Ok(Ok(Call::$variant {
                                $($id,)+
                                $($($arg: argument(args, name, wit_name!($arg))?,)+)?
                                $($content: argument(args, name, wit_name!($content))?,)?
                            }))
                        }
                    )*
                    other => Err(format!("{other} has no Call")),
                }
            }
        }
    };
    (@some) => { None };
    (@some $content:ident) => { Some($content) };
    // The method that stages content from a reader first, for a write of content.
    (@reading $method:ident ($($id:ident),+) ($($arg:ident: $ty:ty),*)
        ($content:ident $content_kind:ident $reading:ident $replacing:expr) $out:ty) => {
        #[doc = concat!(
            "[`", stringify!($method), "`](Self::", stringify!($method), "), with the ",
            "content read from `content`: streamed to staging first (bounded memory, ",
            "SHA-256 on the way) and refused once it passes the room the write has."
        )]
        pub fn $reading(
            &self,
            $($id: Uuid,)+
            $($arg: $ty,)*
            content: impl Read,
        ) -> Result<$out, Error> {
            let [user_id, chat_id, ..] = [$($id),+];
            let $content = self.stage_for(
                user_id,
                chat_id,
                $replacing,
                ContentKind::$content_kind,
                content,
            )?;
            self.$method($($id,)+ $($arg,)* $content)
        }
    };
    (@reading $method:ident ($($id:ident),+) ($($arg:ident: $ty:ty),*) () $out:ty) => {};
    // `run`'s arm: the reading method for a write of content, else the method.
    (@run $store:ident, $method:ident, $reading:ident, ($($id:ident),+), ($($arg:ident),*), ($content:expr)) => {
        $store.$reading($($id,)+ $(AsArgument::as_argument(&$arg),)* $content)
    };
    (@run $store:ident, $method:ident, , ($($id:ident),+), ($($arg:ident),*), ()) => {
        $store.$method($($id,)+ $(AsArgument::as_argument(&$arg),)*)
    };
}

/// The [`Kind`] an entry names.
macro_rules! kind {
    (metadata) => {
        Kind::Metadata
    };
    (read) => {
        Kind::Read
    };
    (write) => {
        Kind::Write
    };
}

/// The argument `key` of the call `name`, from the WIT's JSON.
fn argument<T: FromWitJson>(args: &Map<String, Value>, name: &str, key: &str) -> Result<T, String> {
    T::from_wit_json(args.get(key), name, key)
}

/// Refuses an answer of `answered` outcomes to `asked` sandbox outputs.
fn one_per_output(answered: usize, asked: usize) -> Result<(), Error> {
    match answered == asked {
        true => Ok(()),
        false => Err(Error::unavailable(
            "guest",
            "the component returned a malformed list of outcomes (not one per output)",
        )),
    }
}

/// The content offered to a call that was given some.
fn offered<'a>(
    what: &str,
    offered: Option<&'a wit::StagedContent>,
) -> wasmtime::Result<&'a wit::StagedContent> {
    offered.ok_or_else(|| wasmtime::Error::msg(format!("no {what} was staged for this call")))
}

use_cases! {
    /// The user's workspace, created on the first call.
    EnsureWorkspace "ensure-workspace" write
    fn ensure_workspace(user_id) -> Workspace = call_ensure_workspace;

    /// The user's workspace.
    GetWorkspace "get-workspace" metadata
    fn get_workspace(user_id) -> Workspace = call_get_workspace;

    /// The bytes the user's workspace stores and its quota.
    GetUsage "get-usage" metadata
    fn get_usage(user_id) -> WorkspaceUsage = call_get_usage;

    /// A new chat with its directory and an empty `history.md`.
    CreateChat "create-chat" write
    fn create_chat(user_id) -> Chat = call_create_chat;

    /// The user's chats, ordered by `(created_at, chat_id)`.
    ListChats "list-chats" metadata
    fn list_chats(user_id) -> Vec<Chat> = call_list_chats;

    /// One of the user's chats.
    GetChat "get-chat" metadata
    fn get_chat(user_id, chat_id) -> Chat = call_get_chat;

    /// Removes a chat, its files and its directory; refused while a sandbox
    /// is active on it.
    DeleteChat "delete-chat" write
    fn delete_chat(user_id, chat_id) -> () = call_delete_chat;

    /// The chat's history, open to read: its bytes are never copied into
    /// the guest nor held in memory.
    ReadHistory "read-history" read
    fn read_history(user_id, chat_id) -> Content = call_read_history;

    /// Replaces the chat's history with staged UTF-8 text.
    WriteHistory "write-history" write
    fn write_staged_history(user_id, chat_id)
    staged content: String, by write_history(Text, Replacing::History)
    -> () = call_write_history;

    /// Appends staged UTF-8 text to the chat's history: in place, costing
    /// the message, not the history.
    AppendHistory "append-history" write
    fn append_staged_history(user_id, chat_id)
    staged content: String, by append_history(Text, Replacing::Nothing)
    -> () = call_append_history;

    /// Stores staged content as an attachment; an attachment of that name
    /// is replaced by a new file id.
    UploadAttachment "upload-attachment" write
    fn upload_staged(user_id, chat_id; name: &str as String, content_type: Option<&str> as Option<String>)
    staged content: Vec<u8>, by upload_attachment(Bytes, Replacing::Attachment(name))
    -> ChatFile = call_upload_attachment;

    /// The chat's attachments, ordered by `(created_at, file_id)`.
    ListAttachments "list-attachments" metadata
    fn list_attachments(user_id, chat_id) -> Vec<ChatFile> = call_list_attachments;

    /// One attachment's metadata.
    GetAttachment "get-attachment" metadata
    fn get_attachment(user_id, chat_id, file_id) -> ChatFile = call_get_attachment;

    /// One attachment's metadata and its content, open to read.
    ReadAttachment "read-attachment" read
    fn read_attachment(user_id, chat_id, file_id) -> (ChatFile, Content) = call_read_attachment;

    /// Removes one attachment.
    DeleteAttachment "delete-attachment" write
    fn delete_attachment(user_id, chat_id, file_id) -> () = call_delete_attachment;

    /// Removes every attachment of the chat, keeping its history; refused
    /// while a sandbox is active on it.
    ClearAttachments "clear-attachments" write
    fn clear_attachments(user_id, chat_id) -> () = call_clear_attachments;

    /// Asks the policy to record files a sandbox session left in the chat's
    /// directory as its attachments (what [`end_sandbox`](Self::end_sandbox)
    /// does with what it finds there): one outcome per output, in order.
    RegisterSandboxOutputs "register-sandbox-outputs" write
    fn register_sandbox_outputs(user_id, chat_id; outputs: &[SandboxOutput] as Vec<SandboxOutput>)
    -> Vec<Result<ChatFile, Error>> = call_register_sandbox_outputs,
    checked by |outcomes: &Vec<_>| one_per_output(outcomes.len(), outputs.len());
}
