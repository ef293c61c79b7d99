//! The routes: which handler serves which path and method, the OpenAPI
//! document generated from their annotations, and the layers every request
//! goes through (request ids, the request span, error bodies).

use crate::app::{App, ServerConfig};
use crate::failure::{self, ErrorBody, Failure};
use crate::handlers as h;
use crate::{REQUEST_ID_HEADER, USER_HEADER};
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::Response;
use chatstore_host::{ChatStore, echo};
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes and their OpenAPI description, before state and layers.
fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(h::healthz))
        .routes(routes!(h::openapi_json))
        .routes(routes!(h::ensure_workspace, h::get_workspace))
        .routes(routes!(h::get_usage))
        .routes(routes!(h::export_workspace))
        .routes(routes!(h::create_chat, h::list_chats))
        .routes(routes!(h::get_chat, h::delete_chat))
        .routes(routes!(
            h::read_history,
            h::write_history,
            h::append_history
        ))
        .routes(routes!(h::list_files, h::upload_file, h::clear_files))
        .routes(routes!(h::get_file, h::delete_file))
        .routes(routes!(h::read_file))
        .routes(routes!(h::start_sandbox, h::stop_sandbox))
}

/// The OpenAPI 3.1 document of every route, as `GET /openapi.json` serves it.
pub fn openapi() -> OpenApi {
    let (_, api) = routes().split_for_parts();
    describe(api)
}

/// The routes, ready to serve.
pub fn router(store: ChatStore, config: ServerConfig) -> Router {
    let (router, _) = routes().split_for_parts();
    finish(router, store, config)
}

/// The administration routes, for a listen address of their own that only
/// operators reach (`chatstore serve --admin-addr`), never the public one:
///
/// - `PUT /admin/v1/workspaces/{user_id}/quota` with `{"quota_bytes": N}`
///   gives the user's workspace a quota of its own (`null`: the configured
///   one again) and answers its usage;
/// - `GET /healthz`, and `GET /openapi.json` ([`admin_openapi`]).
pub fn admin_router(store: ChatStore, config: ServerConfig) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    finish(router, store, config)
}

/// The administration routes and their description.
fn admin_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(h::healthz))
        .routes(routes!(h::admin_openapi_json))
        .routes(routes!(h::set_quota))
}

/// The OpenAPI 3.1 document of the administration routes, as `GET
/// /openapi.json` on the administration address serves it.
pub fn admin_openapi() -> OpenApi {
    let (_, api) = admin_routes().split_for_parts();
    let mut api = describe(api);
    api.info.title = "chatstore administration".into();
    api
}

/// Gives routes their state, their fallbacks, their errors' rendering,
/// their log and their request ids.
fn finish(router: Router<Arc<App>>, store: ChatStore, config: ServerConfig) -> Router {
    let app = Arc::new(App::new(store, config));
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .fallback(|| async { Failure::plain(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Failure::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not take this method",
            )
        })
        .with_state(app)
        .layer(middleware::from_fn(failure::render))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The span of one request: method, route, request id and user.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), |p| p.as_str());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(echo)
            .unwrap_or_default()
    };
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %echo(route),
        request_id = %header(REQUEST_ID_HEADER),
        user = %header(USER_HEADER),
    )
}

/// One log line per request, when its response is ready.
fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    tracing::info!(
        status = response.status().as_u16(),
        duration_ms = %format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
        "request"
    );
}

/// Completes the generated document with what every route shares: the
/// error responses, the `x-request-id` header, and the links that lead
/// from a created resource to the routes that use it.
fn describe(mut api: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, ResponseBuilder, Type};
    api.info.title = "chatstore".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.contact = None;
    api.info.license = Some(
        utoipa::openapi::LicenseBuilder::new()
            .name(env!("CARGO_PKG_LICENSE"))
            .identifier(Some(env!("CARGO_PKG_LICENSE")))
            .build(),
    );
    api.info.description = Some(
        "The storage use cases of chatstore: per-user workspaces of chats, each with a \
         history.md and attachments. The trusted caller names the user in X-User-Id."
            .into(),
    );
    let error_schema = utoipa::openapi::Ref::from_schema_name("ErrorBody");
    let components = api.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        "ErrorBody".into(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    let request_id = HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .description(Some(
            "The request's id: the one the caller sent, or a new one",
        ))
        .build();
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(error_schema.clone()))
                    .build(),
            )
            .header(REQUEST_ID_HEADER, request_id.clone())
            .build()
    };
    for (path, item) in api.paths.paths.iter_mut() {
        let storage_route = path.starts_with("/v1/");
        for operation in operations(item) {
            if let Some(RefOr::T(body)) = &mut operation.request_body {
                // Any text or bytes: a body is described by its media type
                // alone, and may be empty (an empty history, an empty file).
                body.required = Some(utoipa::openapi::Required::False);
                for content in body.content.values_mut() {
                    if let RefOr::T(content) = content {
                        content.schema = None;
                    }
                }
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(REQUEST_ID_HEADER.into(), RefOr::T(request_id.clone()));
                    if let Some(RefOr::T(bytes)) =
                        response.content.get_mut("application/octet-stream")
                    {
                        bytes.schema = None;
                    }
                }
            }
            if storage_route {
                for (status, description) in failure::described() {
                    operation
                        .responses
                        .responses
                        .insert(status, RefOr::T(error(&description)));
                }
            }
        }
    }
    link_created_resources(&mut api);
    api
}

/// The operations of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Links from an ensured workspace to chat creation, from a new chat to
/// every chat route, and from a new file to every file route, carrying the
/// user and the new ids: how a client (or a stateful API test) finds its way.
fn link_created_resources(api: &mut OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    let user = ("X-User-Id", "$request.header.X-User-Id");
    let chat_from_body = ("chat_id", "$response.body#/chat_id");
    let chat_from_path = ("chat_id", "$request.path.chat_id");
    let file_from_body = ("file_id", "$response.body#/file_id");
    /// From an operation's response, to these operations, with these parameters.
    type Links<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let links: [Links; 3] = [
        (
            "ensure_workspace",
            "200",
            &["create_chat", "get_usage"],
            &[user],
        ),
        (
            "create_chat",
            "201",
            &[
                "get_chat",
                "delete_chat",
                "read_history",
                "write_history",
                "append_history",
                "list_files",
                "upload_file",
                "clear_files",
                "start_sandbox",
                "stop_sandbox",
            ],
            &[user, chat_from_body],
        ),
        (
            "upload_file",
            "201",
            &["get_file", "read_file", "delete_file"],
            &[user, chat_from_path, file_from_body],
        ),
    ];
    for (from, status, targets, parameters) in links {
        for item in api.paths.paths.values_mut() {
            for operation in operations(item) {
                if operation.operation_id.as_deref() != Some(from) {
                    continue;
                }
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
                    continue;
                };
                for target in targets {
                    let mut link = LinkBuilder::new().operation_id(*target);
                    for (name, value) in parameters {
                        link = link.parameter(*name, *value);
                    }
                    response
                        .links
                        .insert((*target).to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}
