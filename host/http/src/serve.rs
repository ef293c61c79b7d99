//! The accept loop: connections up to their limit, each served by hyper
//! with the header timeout, until shutdown lets in-flight requests finish.

use crate::app::ServerConfig;
use crate::routes::{admin_router, router};
use axum::Router;
use chatstore_host::ChatStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
///
/// At most `max_connections` connections are open at once; a client has
/// `header_timeout` to send each request's headers (an idle keep-alive
/// connection is closed after as long), and a body that stalls for
/// `body_timeout` is answered 408.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: ChatStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) = (config.header_timeout, config.max_connections);
    let routes = router(store, config);
    serve_router(listener, routes, header_timeout, max_connections, shutdown).await
}

/// Serves the administration routes ([`admin_router`]) on `listener` until
/// `shutdown` resolves, like [`serve`].
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    store: ChatStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) = (config.header_timeout, config.max_connections);
    let routes = admin_router(store, config);
    serve_router(listener, routes, header_timeout, max_connections, shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    routes: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let connections = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = builder.http1_only();
    let service = TowerToHyperService::new(routes);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A connection slot first: past the limit, clients wait in the backlog.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written as they are ready (headers, then the body
        // as it is read): without TCP_NODELAY the body of a small response
        // would wait for the client's delayed acknowledgement of the headers.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: finishing in-flight requests"),
        _ = terminate => tracing::info!("SIGTERM: finishing in-flight requests"),
    }
}
