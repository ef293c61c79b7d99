//! Error responses: `{"error": "<code>", "message": …, "id": …,
//! "request_id": …}` with a status per code.
//!
//! A handler's [`Failure`] becomes a response that carries it as an
//! extension; [`render`], which sees the request id, writes the body. So
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

    /// The status a storage error answers with.
    pub fn status_of(e: &Error) -> StatusCode {
        match e {
            Error::WorkspaceNotFound(_)
            | Error::ChatNotFound(_)
            | Error::ChatFileNotFound(_)
            | Error::AfterNotFound(_) => StatusCode::NOT_FOUND,
            Error::ChatHasActiveSandbox(_)
            | Error::ChatFileChanged(_)
            | Error::WorkspaceNotEmpty(_) => StatusCode::CONFLICT,
            Error::WorkspaceQuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InvalidAttachmentName(_)
            | Error::ReservedAttachmentName(_)
            | Error::InvalidId(_)
            | Error::InvalidHistory
            | Error::InvalidLimit(_)
            | Error::InvalidArchive(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::StorageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
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
