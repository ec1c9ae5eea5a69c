//! Listeners and the HTTP server: TCP and a unix socket serve the same API.
//!
//! Listeners are bound by the caller and passed in (STYLE "pass dependencies in"), so `main`
//! binds what the config says, tests bind port 0, and READY is only sent once both are bound.
//! Connections are served by hyper-util's auto builder (HTTP/1.1 and h2c), with a header read
//! timeout so an idle client cannot hold a connection open forever, and are tracked for a
//! graceful shutdown: on `SIGTERM` the accept loops stop, in-flight requests finish, idle
//! keep-alive connections are closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::error::Response;
use crate::config::ServerConfig;
use crate::telemetry::metrics as m;

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    /// The socket and its path (removed again on shutdown).
    pub unix: Option<(UnixListener, PathBuf)>,
}

impl Listeners {
    /// Binds what the config names. A stale socket file left by a crashed run is replaced; a
    /// path that is something other than a socket is an error, never deleted.
    pub fn bind(cfg: &ServerConfig) -> io::Result<Listeners> {
        let tcp = match cfg.listen {
            Some(addr) => {
                let std = std::net::TcpListener::bind(addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?;
                std.set_nonblocking(true)?;
                Some(TcpListener::from_std(std)?)
            }
            None => None,
        };
        let unix = match &cfg.unix_socket {
            Some(path) => Some((bind_unix(path, cfg.unix_socket_mode)?, path.clone())),
            None => None,
        };
        Ok(Listeners { tcp, unix })
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(_, p)| p.as_path())
    }
}

fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let std = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    std.set_nonblocking(true)?;
    UnixListener::from_std(std)
}

/// Handles one request. Implemented by the API's top-level router.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = Response> + Send + 'static;
}

/// Serves `handler` on every listener until `shutdown` resolves, then stops accepting and
/// waits up to `grace` for open requests to finish. At most `max_connections` connections
/// (both listeners together) are served at once: a loop takes a slot before it accepts, so
/// clients beyond wait in the kernel's backlog and no descriptor is taken for them
/// (`crate::fds`).
pub async fn serve<H: Handler>(
    listeners: Listeners,
    handler: Arc<H>,
    header_read_timeout: Duration,
    max_connections: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(max_connections));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    let Listeners { tcp, unix } = listeners;
    if let Some(l) = tcp {
        let (b, h, g, s, mut stop) = (
            builder.clone(),
            handler.clone(),
            graceful.clone(),
            slots.clone(),
            stop_rx.clone(),
        );
        loops.spawn(async move {
            loop {
                let Some(slot) = take_slot(&s, &mut stop).await else {
                    return;
                };
                tokio::select! {
                    accepted = l.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            spawn_conn(&b, &h, &g, TokioIo::new(stream), slot);
                        }
                        Err(e) => accept_error(e).await,
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let mut socket_path = None;
    if let Some((l, path)) = unix {
        socket_path = Some(path);
        let (b, h, g, s, mut stop) = (
            builder.clone(),
            handler.clone(),
            graceful.clone(),
            slots.clone(),
            stop_rx.clone(),
        );
        loops.spawn(async move {
            loop {
                let Some(slot) = take_slot(&s, &mut stop).await else {
                    return;
                };
                tokio::select! {
                    accepted = l.accept() => match accepted {
                        Ok((stream, _)) => spawn_conn(&b, &h, &g, TokioIo::new(stream), slot),
                        Err(e) => accept_error(e).await,
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }

    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "open HTTP connections did not finish in time; closing them"
        );
    }
}

/// A connection slot, waited for; `None` once the server stops. A loop that has to wait
/// counts it in `herald_server_connection_waits_total`.
async fn take_slot(
    slots: &Arc<Semaphore>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    metrics::counter!(m::SERVER_CONNECTION_WAITS).increment(1);
    tokio::select! {
        slot = slots.clone().acquire_owned() => slot.ok(),
        _ = stop.changed() => None,
    }
}

async fn accept_error(e: io::Error) {
    // Running out of file descriptors must not spin the loop; back off briefly.
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn spawn_conn<H, I>(
    builder: &Arc<auto::Builder<TokioExecutor>>,
    handler: &Arc<H>,
    graceful: &GracefulShutdown,
    io: I,
    slot: OwnedSemaphorePermit,
) where
    H: Handler,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler = handler.clone();
    let service = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h.handle(req).await) }
    });
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        // The connection borrows the builder, which this task owns a handle to: no per-connection
        // copy of the builder.
        let conn = watcher.watch(builder.serve_connection(io, service));
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        // The connection and its descriptor are gone: the next client may be accepted.
        drop(slot);
    });
}
