//! Serving the API on a listener so that no client can pin the daemon: every connection must
//! send a complete request head within `header_timeout` of being accepted (or of its first
//! byte after a response), an idle keep-alive connection is closed after `idle_timeout`, a
//! request's body must arrive within `body_timeout` of its head, and each listener holds at
//! most `max_connections`. Near that cap (the last `reserve`
//! connections: on the Unix socket, kept for the CLI) each new connection closes the oldest
//! one that is not in the middle of a request, so idle and half-sent connections cannot crowd
//! out a CLI command, however many there are. docs/DEPLOY.md ("Connections") documents the
//! settings; [`HttpLimits`] holds them.

use super::access::Peer;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};

/// The connection limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time from accepting a connection (or from its first byte after a response) to a
    /// complete request head.
    pub header_timeout: Duration,
    /// Time an open connection may sit between requests.
    pub idle_timeout: Duration,
    /// Time from a complete request head to its complete body.
    pub body_timeout: Duration,
    /// Connections open at once on this listener.
    pub max_connections: usize,
    /// The last connections below the cap: once they are in use, every new connection
    /// closes the oldest one that is between requests (0: only at the cap itself).
    pub reserve: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            reserve: 0,
        }
    }
}

/// A listener that yields connections with the identity of their peer.
pub trait Accept: Send + 'static {
    /// The connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection.
    fn accept(
        &mut self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Io, Peer)>> + Send;
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Io, Peer)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        let peer = Peer::of_unix(&s);
        Ok((s, peer))
    }
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Io, Peer)> {
        let (s, addr) = tokio::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, Peer::Tcp(addr)))
    }
}

/// Milliseconds since `base`, for atomics.
fn ms(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64 + 1
}

/// What a connection is doing, shared by its I/O, its service and its supervisor.
struct Activity {
    /// The clock's zero.
    base: Instant,
    /// Requests being handled now.
    busy: AtomicUsize,
    /// When the head of the next request began (ms since `base`; 0: not begun).
    head_since: AtomicU64,
    /// The last response written, or the accept (ms since `base`).
    last_write: AtomicU64,
    /// Whether a request was ever handled (a fresh connection gets `header_timeout`).
    served: AtomicUsize,
}

/// The connection's stream, telling [`Activity`] when bytes move.
struct Tracked<T> {
    inner: T,
    act: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.act.busy.load(Ordering::Relaxed) == 0
            && self.act.head_since.load(Ordering::Relaxed) == 0
        {
            self.act
                .head_since
                .store(ms(self.act.base), Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.act
                .last_write
                .store(ms(self.act.base), Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as a hyper service for one connection: adds the peer and counts requests.
#[derive(Clone)]
struct Service {
    router: Router,
    peer: Peer,
    act: Arc<Activity>,
    body_timeout: Duration,
}

/// Ends a request's busy mark even when its future is dropped.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.last_write.store(ms(self.0.base), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        self.act.busy.fetch_add(1, Ordering::Relaxed);
        self.act.head_since.store(0, Ordering::Relaxed);
        self.act.served.store(1, Ordering::Relaxed);
        let guard = BusyGuard(self.act.clone());
        req.extensions_mut().insert(ConnectInfo(self.peer.clone()));
        let limit = self.body_timeout;
        let req = req.map(|inner| {
            axum::body::Body::new(TimedBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(limit)),
                limit,
            })
        });
        let mut router = self.router.clone();
        Box::pin(async move {
            let r = tower_service::Service::call(&mut router, req).await;
            drop(guard);
            r
        })
    }
}

/// A request body that must arrive whole within `limit` of its head: past `deadline` it ends
/// in an error (the handler answers 400 and hyper closes the connection, whose body is unread),
/// so a client that trickles a body cannot hold a connection and its memory for long.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl hyper::body::Body for TimedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the request body did not arrive within http.body_timeout ({}); send it \
                 faster, or raise body_timeout in the daemon config (docs/DEPLOY.md)",
                humantime::format_duration(self.limit)
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections of one listener, oldest first.
#[derive(Default)]
struct Registry {
    /// By connection number: its activity and the switch that closes it.
    open: BTreeMap<u64, (Arc<Activity>, Arc<Notify>)>,
    /// The next connection number.
    next: u64,
}

/// Serves `app` on `listener` within `limits` until `quit` turns true, then lets requests in
/// flight finish (up to 30 s) and returns. `what` names the listener in the log.
pub async fn serve<L: Accept>(
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    mut quit: watch::Receiver<bool>,
    what: &'static str,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let all_closed = Arc::new(Notify::new());
    let mut refused: u64 = 0;
    loop {
        let (io, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("{what}: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut quit) => break,
        };
        let (id, act, kill) = {
            let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
            let open = reg.open.len();
            if open >= limits.max_connections.saturating_sub(limits.reserve) {
                // Make room: close the oldest connection that is between requests.
                let victim = reg
                    .open
                    .iter()
                    .find(|(_, (a, _))| a.busy.load(Ordering::Relaxed) == 0)
                    .map(|(id, (_, k))| (*id, k.clone()));
                match victim {
                    Some((vid, k)) => {
                        k.notify_one();
                        reg.open.remove(&vid);
                    }
                    None if open >= limits.max_connections => {
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!("{what}: {} connections are busy, the most allowed (max_connections); refused {refused} so far", open);
                        }
                        drop(io);
                        continue;
                    }
                    None => {}
                }
            }
            let base = Instant::now();
            let act = Arc::new(Activity {
                base,
                busy: AtomicUsize::new(0),
                head_since: AtomicU64::new(0),
                last_write: AtomicU64::new(ms(base)),
                served: AtomicUsize::new(0),
            });
            let kill = Arc::new(Notify::new());
            let id = reg.next;
            reg.next += 1;
            reg.open.insert(id, (act.clone(), kill.clone()));
            (id, act, kill)
        };
        let svc = Service {
            router: app.clone(),
            peer,
            act: act.clone(),
            body_timeout: limits.body_timeout,
        };
        let io = Tracked {
            inner: io,
            act: act.clone(),
        };
        let registry = registry.clone();
        let all_closed = all_closed.clone();
        let mut quit = quit.clone();
        tokio::spawn(async move {
            // No hyper timer: the timeouts are this supervisor's (hyper's own header timeout,
            // 30 s from every keep-alive turn, would cut `idle_timeout` short).
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                let wait = match deadline(&act, &limits) {
                    Some(at) if at <= Instant::now() => break,
                    Some(at) => at,
                    // Busy: look again later.
                    None => Instant::now() + limits.header_timeout.min(limits.idle_timeout),
                };
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = kill.notified() => break,
                    _ = tokio::time::sleep_until(wait.into()) => {}
                    _ = stopped(&mut quit), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
            reg.open.remove(&id);
            if reg.open.is_empty() {
                all_closed.notify_waiters();
            }
        });
    }
    // Stop: idle connections close at once (graceful shutdown), busy ones finish first.
    let wait_all = async {
        loop {
            let notified = all_closed.notified();
            if registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .is_empty()
            {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), wait_all).await;
}

/// Resolves once `quit` is true (or its sender is gone).
async fn stopped(quit: &mut watch::Receiver<bool>) {
    let _ = quit.wait_for(|q| *q).await;
}

/// When the connection is to be closed, or `None` while it is handling a request.
fn deadline(act: &Activity, limits: &HttpLimits) -> Option<Instant> {
    if act.busy.load(Ordering::Relaxed) > 0 {
        return None;
    }
    let at = |since_ms: u64, d: Duration| act.base + Duration::from_millis(since_ms - 1) + d;
    let head = act.head_since.load(Ordering::Relaxed);
    if act.served.load(Ordering::Relaxed) == 0 {
        // A fresh connection: its first request head is due `header_timeout` after accept.
        return Some(act.base + limits.header_timeout);
    }
    if head != 0 {
        return Some(at(head, limits.header_timeout));
    }
    Some(at(
        act.last_write.load(Ordering::Relaxed),
        limits.idle_timeout,
    ))
}
