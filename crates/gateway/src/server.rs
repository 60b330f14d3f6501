//! The HTTP/1.1 server: our own accept loop over hyper, so that no client can
//! starve the others of connections or descriptors.
//!
//! - At most `max_connections` connections are open. When a new one arrives at
//!   the cap, the oldest *idle* connection (no request in flight: it never
//!   spoke, is between keep-alive requests, or is still sending its headers) is
//!   closed to make room. Connections with a request in flight are never
//!   evicted; when every connection is busy, accepting waits for one to end (the
//!   kernel's backlog holds the newcomers). So a flood of idle or half-sent
//!   connections costs the flood its oldest members, and `/healthz` and the API
//!   keep answering.
//! - A connection that started a request must finish its headers within the
//!   header timeout, counted from their first byte; one with no request in
//!   flight is closed after the idle timeout. One reaper task checks every
//!   connection's deadline a few times per timeout, so a connection's own task
//!   does nothing per request but serve it.
//! - A request body must keep moving: the wait for its next piece is bounded
//!   (never the whole body, so a large upload on a slow link that keeps
//!   progressing is not cut off).
//! - Handlers see the peer through `peer()` (a task-local of the connection's
//!   task, so a request costs nothing to carry it).
//! - On shutdown no new connection is accepted, idle ones are closed, and the
//!   requests in flight finish (for at most `DRAIN_LIMIT`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a shutdown waits for the requests in flight.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The server's limits (from the `max_connections` and `http_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
}

/// What the server has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Idle connections closed to make room for new ones.
    pub evicted: AtomicU64,
    /// Connections closed by the header or idle timeout.
    pub timed_out: AtomicU64,
    /// Requests in flight (headers read, response not yet sent in full).
    pub in_flight: AtomicUsize,
}

tokio::task_local! {
    /// The peer of the connection whose task this is (hyper runs a
    /// connection's requests on its task).
    static PEER: SocketAddr;
}

/// The TCP peer of the request being handled, when it came through `serve`.
pub fn peer() -> Option<SocketAddr> {
    PEER.try_with(|p| *p).ok()
}

/// Milliseconds since the first call (a monotonic clock that fits an atomic).
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What the accept loop and a connection's task share about it.
struct ConnState {
    /// Requests in flight (from the end of their headers to the end of their response).
    busy: AtomicUsize,
    /// When it last became idle (accepted, or its last response ended), ms.
    idle_since: AtomicU64,
    /// When the first byte of the next request's headers came while idle; 0: none yet.
    head_started: AtomicU64,
    /// Fired to close it: by the reaper, by eviction, or (as a child of the
    /// server's token) by shutdown; `reason` says which.
    close: CancellationToken,
    reason: AtomicU8,
}

/// Why a connection's `close` fired (none set: shutdown).
const TIMED_OUT: u8 = 1;
const EVICTED: u8 = 2;

impl ConnState {
    fn new(shutdown: &CancellationToken) -> Self {
        Self {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(clock_ms()),
            head_started: AtomicU64::new(0),
            close: shutdown.child_token(),
            reason: AtomicU8::new(0),
        }
    }

    fn close_for(&self, reason: u8) {
        let _ = self.reason.compare_exchange(0, reason, Ordering::SeqCst, Ordering::SeqCst);
        self.close.cancel();
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Idle with no request begun: closing it loses nothing (at shutdown, a
    /// request whose headers are arriving is still served).
    fn is_quiet(&self) -> bool {
        self.is_idle() && self.head_started.load(Ordering::SeqCst) == 0
    }

    /// When an idle connection is to be closed (ms), or `None` while busy.
    fn deadline(&self, limits: &Limits) -> Option<u64> {
        if !self.is_idle() {
            return None;
        }
        match self.head_started.load(Ordering::SeqCst) {
            0 => Some(self.idle_since.load(Ordering::SeqCst) + limits.idle_timeout.as_millis() as u64),
            started => Some(started + limits.header_timeout.as_millis() as u64),
        }
    }

    /// Past its deadline at `now` (ms). Strictly past: both are whole
    /// milliseconds cut down from the clock, so at the deadline's own
    /// millisecond up to 1 ms of the timeout may still be left.
    fn overdue(&self, limits: &Limits, now: u64) -> bool {
        self.deadline(limits).is_some_and(|at| at < now)
    }
}

/// Marks a request in flight on its connection until dropped (with the
/// response body, so a download in progress keeps the connection busy).
struct Busy(Arc<ConnState>, Arc<Stats>);

impl Busy {
    fn new(conn: &Arc<ConnState>, stats: &Arc<Stats>) -> Self {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        conn.head_started.store(0, Ordering::SeqCst);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(conn.clone(), stats.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(clock_ms(), Ordering::SeqCst);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        self.1.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its connection's `Busy` mark until it is done.
struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when the first byte of a request's headers arrives on an
/// idle connection (the header timeout counts from there).
struct Watched {
    stream: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.is_idle() && self.conn.head_started.load(Ordering::SeqCst) == 0 {
            let _ = self.conn.head_started.compare_exchange(0, clock_ms(), Ordering::SeqCst, Ordering::SeqCst);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn add(&self, conn: Arc<ConnState>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, conn);
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Closes the oldest idle connection; false when every one is busy.
    fn evict_oldest_idle(&self, stats: &Stats) -> bool {
        let Ok(mut open) = self.open.lock() else { return false };
        let Some(id) = open.iter().find(|(_, c)| c.is_idle()).map(|(id, _)| *id) else { return false };
        if let Some(conn) = open.remove(&id) {
            conn.close_for(EVICTED);
            stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Closes every connection past its deadline (`ConnState::deadline`).
    fn close_overdue(&self, limits: &Limits) {
        let now = clock_ms();
        let Ok(open) = self.open.lock() else { return };
        for conn in open.values() {
            if conn.overdue(limits, now) {
                conn.close_for(TIMED_OUT);
            }
        }
    }
}

/// How often the reaper looks: a quarter of the shorter timeout, so a
/// connection is closed at most a quarter late (and at least every second).
fn reap_every(limits: &Limits) -> Duration {
    (limits.header_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

async fn reap(registry: Arc<Registry>, limits: Limits, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(reap_every(&limits));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => registry.close_overdue(&limits),
        }
    }
}

/// Raises this process's open-file limit to its hard limit, so the connection
/// cap (not the descriptor table) is what bounds the clients; answers the limit
/// in force, or `None` when it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = getrlimit(Resource::Nofile);
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap actually used: the configured one, lowered to leave
/// descriptors for the database, stored files and upstream calls when the
/// process may not open that many.
pub fn effective_max_connections(configured: usize, fd_limit: Option<u64>) -> usize {
    const RESERVED: u64 = 256;
    match fd_limit {
        Some(limit) if (configured as u64).saturating_add(RESERVED) > limit => {
            usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(configured).clamp(16, configured)
        }
        _ => configured,
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then drains.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stats: Arc<Stats>, shutdown: CancellationToken) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let registry = Arc::new(Registry::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header timeout is ours (`ConnState::deadline`): hyper's would also
    // count the idle wait between keep-alive requests.
    builder.header_read_timeout(None).keep_alive(true);
    tokio::spawn(reap(registry.clone(), limits, shutdown.clone()));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (or a connection reset before we took it):
                // make room and try again shortly rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                registry.evict_oldest_idle(&stats);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !registry.evict_oldest_idle(&stats) {
                    tracing::warn!(max, "every connection is busy; new clients wait");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState::new(&shutdown));
        let id = registry.add(conn.clone());
        let io = TokioIo::new(Watched { stream, conn: conn.clone() });
        let service = {
            let (app, conn, stats) = (app.clone(), conn.clone(), stats.clone());
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = Busy::new(&conn, &stats);
                let (parts, body) = req.into_parts();
                // A request without a body (most are GETs) needs no timer and no box.
                let body = if body.is_end_stream() {
                    axum::body::Body::empty()
                } else {
                    axum::body::Body::new(tower_http::timeout::TimeoutBody::new(limits.body_timeout, body))
                };
                let req = axum::extract::Request::from_parts(parts, body);
                let app = app.clone();
                async move {
                    let resp = app.oneshot(req).await.unwrap_or_else(|never: Infallible| match never {});
                    Ok::<_, Infallible>(resp.map(|body| BusyBody { body, _busy: busy }))
                }
            })
        };
        let connection = builder.serve_connection(io, service);
        let (registry, stats) = (registry.clone(), stats.clone());
        tokio::spawn(PEER.scope(peer, async move {
            if drive(connection, &conn, &limits).await == End::TimedOut {
                stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            registry.remove(id);
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        }));
    }
    // Each connection's task closes it now if idle, after its response if not.
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_LIMIT, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("requests still in flight after {DRAIN_LIMIT:?}; closing their connections");
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    TimedOut,
    Other,
}

/// Runs one connection to its end: closed by the client, by a timeout, by
/// eviction, or (gracefully, after the request in flight) by shutdown.
async fn drive<S>(
    connection: hyper::server::conn::http1::Connection<TokioIo<Watched>, S>,
    conn: &ConnState,
    limits: &Limits,
) -> End
where
    S: hyper::service::HttpService<Incoming, ResBody = BusyBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let ended = tokio::select! {
        biased;
        done = connection.as_mut() => Some(done),
        () = conn.close.cancelled() => None,
    };
    let done = match ended {
        Some(done) => done,
        None => {
            match conn.reason.load(Ordering::SeqCst) {
                // Still overdue (a request that began since the reaper looked
                // is served first, below, then the connection closes).
                TIMED_OUT if conn.overdue(limits, clock_ms()) => return End::TimedOut,
                EVICTED if conn.is_idle() => return End::Other,
                _ if conn.is_quiet() => return End::Other,
                // Evicted, shut down or timed out mid-request: its response first.
                _ => {}
            }
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    End::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_process() {
        assert_eq!(effective_max_connections(4096, Some(1_048_576)), 4096);
        assert_eq!(effective_max_connections(4096, None), 4096);
        assert_eq!(effective_max_connections(4096, Some(1024)), 768);
        assert_eq!(effective_max_connections(4096, Some(100)), 16);
    }

    #[test]
    fn an_idle_connection_is_timed_by_its_idle_wait_and_a_started_request_by_its_headers() {
        let limits = Limits {
            max_connections: 10,
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(5000),
            body_timeout: Duration::from_secs(1),
        };
        let conn = Arc::new(ConnState::new(&CancellationToken::new()));
        let since = conn.idle_since.load(Ordering::SeqCst);
        assert_eq!(conn.deadline(&limits), Some(since + 5000));
        conn.head_started.store(since + 10, Ordering::SeqCst);
        assert_eq!(conn.deadline(&limits), Some(since + 510));
        let stats = Arc::new(Stats::default());
        let busy = Busy::new(&conn, &stats);
        assert_eq!(conn.deadline(&limits), None, "a request in flight is never timed out here");
        assert_eq!(stats.in_flight.load(Ordering::SeqCst), 1);
        drop(busy);
        assert!(conn.deadline(&limits).is_some_and(|d| d >= since + 5000));
    }

    #[test]
    fn a_connection_is_overdue_only_after_its_deadline_millisecond() {
        let limits = Limits {
            max_connections: 10,
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(1500),
            body_timeout: Duration::from_secs(1),
        };
        let conn = ConnState::new(&CancellationToken::new());
        let since = conn.idle_since.load(Ordering::SeqCst);
        assert!(!conn.overdue(&limits, since + 1499));
        assert!(!conn.overdue(&limits, since + 1500), "up to 1 ms of the timeout may be left in that millisecond");
        assert!(conn.overdue(&limits, since + 1501));
    }
}
