//! Error responses: `{"error": "<code>", "message": …, "id": …,
//! "request_id": …}` with a status per code.
//!
//! Which status each code answers with is one table, [`ERRORS`]: the
//! responses take their status from it and the OpenAPI document its error
//! responses. A handler's [`Failure`] becomes a response that carries it as
//! an extension; [`render`], which sees the request id, writes the body. So
//! every error body names its request, whoever produced it.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chatstore_host::Error;
use serde::Serialize;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The stable code: `chat_not_found`, `workspace_quota_exceeded`, …
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The id or name the error is about, if any.
    pub id: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
}

/// A request that failed: its status and body (the request id is added by [`render`]).
#[derive(Clone, Debug)]
pub struct Failure {
    status: StatusCode,
    body: ErrorBody,
}

impl Failure {
    /// A failure with a code of the HTTP layer's own (not a storage error).
    pub fn plain(status: StatusCode, code: &str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            body: ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                id: None,
                request_id: None,
            },
        }
    }

    /// A storage error answered with another status than its usual one.
    pub fn with_status(e: Error, status: StatusCode) -> Failure {
        Failure {
            status,
            ..Failure::from(e)
        }
    }

    /// The status a storage error answers with: the last row of
    /// [`ERRORS`] that lists its code (an id in a path is 422; a malformed
    /// `X-User-Id` is answered 400 with [`with_status`](Self::with_status)).
    pub fn status_of(e: &Error) -> StatusCode {
        (ERRORS.iter().rev())
            .find(|(_, _, codes)| codes.contains(&e.code()))
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |(status, _, _)| *status)
    }
}

/// Each status a storage route's error answers with, what it means, and
/// the codes that answer with it.
pub(crate) const ERRORS: &[(StatusCode, &str, &[&str])] = &[
    (
        StatusCode::BAD_REQUEST,
        "X-User-Id is missing, repeated or not a UUID, or the request is malformed",
        &["invalid_id", "invalid_request"],
    ),
    (
        StatusCode::NOT_FOUND,
        "No such workspace, chat or file for this user, or a page's `after` not in the list",
        &[
            "workspace_not_found",
            "chat_not_found",
            "chat_file_not_found",
            "after_not_found",
        ],
    ),
    (
        StatusCode::REQUEST_TIMEOUT,
        "The request body sent nothing for the body timeout",
        &["request_timeout"],
    ),
    (
        StatusCode::CONFLICT,
        "A sandbox session is active on the chat, a file in the chat directory is not the one \
         recorded, or an import's workspace already holds chats",
        &[
            "chat_has_active_sandbox",
            "chat_file_changed",
            "workspace_not_empty",
        ],
    ),
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "The write would exceed the workspace's quota, or the body the upload limit",
        &["workspace_quota_exceeded", "upload_too_large"],
    ),
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        "An id in the path is not a UUID, the attachment name breaks the rules, a history is \
         not UTF-8, a page's limit is out of range, or an archive is not one",
        &[
            "invalid_id",
            "invalid_attachment_name",
            "reserved_attachment_name",
            "invalid_history",
            "invalid_limit",
            "invalid_archive",
        ],
    ),
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "Storage failed; nothing of the request was kept",
        &["storage_unavailable"],
    ),
];

/// The error responses every storage route documents, from [`ERRORS`]:
/// each status with what it means and its codes.
pub(crate) fn described() -> impl Iterator<Item = (String, String)> {
    ERRORS.iter().map(|(status, what, codes)| {
        let codes: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        (
            status.as_str().to_owned(),
            format!("{what} ({})", codes.join(", ")),
        )
    })
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = match &e {
            // What failed inside is in the log; a client learns only that it did.
            Error::StorageUnavailable { port, .. } => {
                format!("storage_unavailable: {port} failed; nothing of the request was kept")
            }
            other => other.to_string(),
        };
        Failure {
            status: Failure::status_of(&e),
            body: ErrorBody {
                error: e.code().to_owned(),
                message,
                id: e.subject(),
                request_id: None,
            },
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Writes the body of a [`Failure`] response, with the request's id.
pub async fn render(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    let Some(failure) = response.extensions_mut().remove::<Failure>() else {
        return response;
    };
    let body = ErrorBody {
        request_id,
        ..failure.body
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, json.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn every_storage_error_has_its_status_in_the_table() {
        let id = Uuid::nil();
        let text = || "x".to_owned();
        let errors = [
            Error::WorkspaceNotFound(id),
            Error::WorkspaceQuotaExceeded(id),
            Error::ChatNotFound(id),
            Error::ChatHasActiveSandbox(id),
            Error::ChatFileNotFound(id),
            Error::InvalidAttachmentName(text()),
            Error::ReservedAttachmentName(text()),
            Error::ChatFileChanged(text()),
            Error::InvalidId(text()),
            Error::InvalidHistory,
            Error::InvalidLimit(0),
            Error::InvalidArchive(text()),
            Error::WorkspaceNotEmpty(id),
            Error::AfterNotFound(id),
            Error::StorageUnavailable {
                port: text(),
                message: text(),
            },
        ];
        for e in errors {
            // A variant missing above fails to compile here.
            match &e {
                Error::WorkspaceNotFound(_)
                | Error::WorkspaceQuotaExceeded(_)
                | Error::ChatNotFound(_)
                | Error::ChatHasActiveSandbox(_)
                | Error::ChatFileNotFound(_)
                | Error::InvalidAttachmentName(_)
                | Error::ReservedAttachmentName(_)
                | Error::ChatFileChanged(_)
                | Error::InvalidId(_)
                | Error::InvalidHistory
                | Error::InvalidLimit(_)
                | Error::InvalidArchive(_)
                | Error::WorkspaceNotEmpty(_)
                | Error::AfterNotFound(_)
                | Error::StorageUnavailable { .. } => {}
            }
            let status = Failure::status_of(&e);
            assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}", e.code());
            let row = ERRORS.iter().find(|(s, _, _)| *s == status).unwrap();
            assert!(row.2.contains(&e.code()));
        }
        assert_eq!(
            Failure::status_of(&Error::InvalidId(text())),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
