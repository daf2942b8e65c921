//! The receiver's accept loop: hyper's HTTP/1.1 connection with a header timeout, an idle
//! timeout, a cap on open connections kept below the process's open-file limit, and a
//! shutdown with a deadline.
//!
//! `axum::serve` offers none of these: it accepts until `accept` fails with "too many open
//! files" (then a real delivery waits in the backlog behind silent connections, forever), and
//! its graceful shutdown waits for every connection, also one a client keeps open.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service as _;

/// The client's address, put into every request's extensions (for refusal logs).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Connection-level limits of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest time from the moment a connection waits for a request to the end of its
    /// headers (hyper's `header_read_timeout`; it also runs while a kept-alive connection waits
    /// for its next request).
    pub header_timeout: Duration,
    /// A connection on which no byte moved for this long, and no request is being answered,
    /// is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; past it the listener stops accepting (the kernel keeps
    /// the rest in its backlog) until one closes.
    pub max_connections: usize,
    /// On shutdown, how long requests being answered may take before their connections are
    /// dropped.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// hyper's read buffer per connection (default ~400 KiB).
pub const MAX_BUF_BYTES: usize = 64 * 1024;
/// Largest request head (start line and headers; 431 past it). GitLab's are well under 4 KiB;
/// without a bound, 512 slow connections without a token could hold 200 MiB of header bytes
/// before the header timeout.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// File descriptors kept free for everything but client connections: the queue's database,
/// WAL and shared-memory files for three connections, GitLab's connection pool, the listener,
/// the log, the runtime's own.
pub const RESERVED_FDS: u64 = 64;

/// The open-file limit of this process (soft `RLIMIT_NOFILE`), when it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// `wanted` connections, lowered so that they leave [`RESERVED_FDS`] of `nofile` free.
/// `Err` when the limit leaves no room for connections at all.
pub fn connection_cap(wanted: usize, nofile: Option<u64>) -> Result<usize, u64> {
    match nofile {
        None => Ok(wanted.max(1)),
        Some(n) if n <= RESERVED_FDS + 8 => Err(n),
        Some(n) => {
            let room = usize::try_from(n - RESERVED_FDS).unwrap_or(usize::MAX);
            Ok(wanted.clamp(1, room))
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, closes idle
/// connections at once, lets requests being answered finish for
/// [`ConnLimits::shutdown_grace`], and drops whatever is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_failing = false;
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                accept_failing = false;
                metrics::gauge!("cocreate_http_connections").increment(1.0);
                let (app, closing) = (app.clone(), closing.clone());
                connections.spawn(async move {
                    serve_connection(stream, peer, app, limits, closing).await;
                    metrics::gauge!("cocreate_http_connections").decrement(1.0);
                    drop(slot);
                });
            }
            Err(error) => {
                // EMFILE/ENFILE and the like: the connection stays in the backlog. Say so once
                // per episode, and do not spin.
                if !accept_failing {
                    tracing::error!(%error, "cannot accept connections; retrying");
                    accept_failing = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            "receiver stopping: idle connections closed, requests in progress may finish"
        );
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "receiver stopping: dropping connections still open after the grace period"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// One connection: hyper with a header timeout, closed after `idle_timeout` without traffic
/// (unless a request is being answered), and told to finish when `closing` turns true.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let busy = Arc::new(AtomicUsize::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service_busy = busy.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        let mut app = app.clone();
        let guard = BusyGuard::new(service_busy.clone());
        async move {
            let response = app.call(req).await;
            drop(guard);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut told_to_close = false;
    let tick = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, client = %peer, "connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|c| *c), if !told_to_close => {
                told_to_close = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if busy.load(Ordering::Relaxed) == 0 && activity.idle() >= limits.idle_timeout {
                    tracing::debug!(client = %peer, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// Counts a request being answered on a connection while it lives.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a byte last moved on a connection.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// A socket that records when bytes move through it.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_stay_below_the_open_file_limit() {
        assert_eq!(connection_cap(512, None), Ok(512));
        assert_eq!(connection_cap(512, Some(1024)), Ok(512));
        assert_eq!(
            connection_cap(5000, Some(1024)),
            Ok(1024 - RESERVED_FDS as usize)
        );
        assert_eq!(connection_cap(0, Some(1024)), Ok(1));
        assert_eq!(connection_cap(512, Some(64)), Err(64));
    }
}
