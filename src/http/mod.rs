//! The worker's HTTP server (spec §9): `/healthz`, `/metrics` and `/events` on hyper 1,
//! plain or TLS, behind [`auth`]. The caller binds the listener (tests use port 0) and
//! owns the stop token; this module spawns the connection tasks and the collector.

pub mod auth;
pub mod collector;
pub mod events;
pub mod health;
pub mod jwt;
pub mod limiter;
pub mod metrics;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use http_body_util::combinators::BoxBody;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::events::EventBus;
use crate::metrics::Metrics;
use auth::Access;

/// How long open connections get to finish once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// A response body: a whole buffer or a stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Fatal problems in the HTTP settings (the messages are the Go worker's).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// An allow-list item with a `/` that is not a prefix.
    #[error("invalid metrics allowlist prefix \"{0}\"")]
    AllowPrefix(String),
    /// An allow-list item that is not an address.
    #[error("invalid metrics allowlist address \"{0}\"")]
    AllowAddress(String),
    /// A TLS setting without both certificate and key.
    #[error("metrics TLS requires both cert and key")]
    TlsIncomplete,
    /// The certificate or key could not be loaded.
    #[error("load metrics TLS cert/key: {0}")]
    TlsKeyPair(String),
    /// The client CA file could not be read.
    #[error("read metrics TLS client CA: {0}")]
    ClientCaRead(String),
    /// The client CA file holds no certificate.
    #[error("metrics TLS client CA has no valid certificates")]
    ClientCaEmpty,
    /// The client CA could not be used.
    #[error("metrics TLS client CA: {0}")]
    ClientCa(String),
}

/// What the handlers share.
pub struct HttpState {
    /// For `/healthz`: the worker gives it a one-connection pool of its own
    /// ([`crate::db::single_connection`]), so probes never take a task's connection.
    pub pool: PgPool,
    /// The worker's pool, whose host `pool` follows (after a failover the worker's pool
    /// is repointed at the new primary; each probe takes that over). `None`: `pool` is
    /// used as it is.
    pub follows: Option<PgPool>,
    /// For `/metrics`.
    pub metrics: Arc<Metrics>,
    /// For `/events`; `None` answers 404 `events not configured`.
    pub events: Option<Arc<EventBus>>,
    /// Who may call.
    pub access: Access,
    /// TLS, if configured.
    pub tls: Option<TlsAcceptor>,
    /// The worker's `stop` token: once cancelled, `/healthz` answers 503.
    pub draining: CancellationToken,
    /// Interval of the `/events` keep-alive comment: [`events::PING_INTERVAL`]; tests
    /// shorten it.
    pub events_ping: Duration,
}

/// Serves until `stop` fires, then lets open connections finish for up to
/// [`SHUTDOWN_GRACE`] (`/events` streams end at once).
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %error, "Metrics server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, state, stop, builder, watcher).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            error = "connections still open after the grace period",
            "Metrics server shutdown error"
        );
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<HttpState>,
    stop: CancellationToken,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = {
        let state = state.clone();
        hyper::service::service_fn(move |request| {
            let state = state.clone();
            let stop = stop.clone();
            async move { Ok::<_, Infallible>(route(&state, peer, &stop, request).await) }
        })
    };
    let served = match &state.tls {
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn.into_owned()).await
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(error = %error, remote_addr = %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(error) = served {
        tracing::debug!(error = %error, remote_addr = %peer, "HTTP connection ended with an error");
    }
}

async fn route(
    state: &HttpState,
    peer: SocketAddr,
    stop: &CancellationToken,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/metrics" | "/events") {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    if let Err(refusal) =
        state
            .access
            .check(peer, request.headers(), request.method().as_str(), path)
    {
        return text(refusal.status, refusal.body);
    }
    match path {
        "/healthz" => health::handle(state).await,
        "/metrics" => metrics::handle(state, request.headers()),
        _ => events::handle(state, &request, stop),
    }
}

/// A `text/plain; charset=utf-8` response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = status;
    response
}

/// Binds `addr` the way the Go worker does: `:9090` means every interface, IPv4 and
/// IPv6 (one dual-stack socket on `[::]`, IPv6-only mode switched off explicitly so the
/// host's `bindv6only` default does not matter); on a host without IPv6 it falls back
/// to `0.0.0.0`.
///
/// # Errors
/// The address cannot be resolved or bound.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let Some(port) = addr.strip_prefix(':') else {
        return TcpListener::bind(addr).await;
    };
    let port: u16 = port.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid port in {addr:?}"),
        )
    })?;
    match bind_dual_stack(port) {
        Ok(listener) => Ok(listener),
        Err(error) if ipv6_unavailable(&error) => TcpListener::bind(("0.0.0.0", port)).await,
        Err(error) => Err(error),
    }
}

fn bind_dual_stack(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    let any = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    socket.bind(&any.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn ipv6_unavailable(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == nix::libc::EAFNOSUPPORT || code == nix::libc::EADDRNOTAVAIL
    )
}

/// Whether `addr` names only this machine (`localhost` or a loopback IP).
pub fn is_loopback(addr: &str) -> bool {
    let Some((host, _port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty()
        && (host.eq_ignore_ascii_case("localhost")
            || host
                .split('%')
                .next()
                .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback()))
}

/// Starts [`serve`] in the background.
pub fn spawn(
    listener: TcpListener,
    state: Arc<HttpState>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve(listener, state, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for addr in [
            "localhost:9090",
            "LOCALHOST:1",
            "127.0.0.1:9090",
            "[::1]:9090",
        ] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in [":9090", "0.0.0.0:9090", "example.com:80", "9090"] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }

    #[tokio::test]
    async fn colon_port_listens_on_ipv4_and_ipv6() {
        let listener = bind(":0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            for _ in 0..2 {
                listener.accept().await.unwrap();
            }
        });
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            tokio::net::TcpStream::connect(("::1", port)).await.unwrap();
        } else {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
        }
        accept.await.unwrap();
    }

    #[tokio::test]
    async fn colon_with_a_bad_port_is_an_error() {
        assert!(bind(":http").await.is_err());
        assert!(bind(":70000").await.is_err());
    }
}
