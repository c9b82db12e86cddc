//! A client stream with a deadline for a request's headers and one between
//! keep-alive requests. The proxy marks it: the first hook of a request
//! marks it serving (reads pass straight through; bodies have their own
//! timeout), `logging` marks it idle. A request Pingora refuses before any
//! hook runs is answered here, in the shape of every other answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::Stream;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::{ApiError, ErrorCode};
use crate::lifecycle::drain;
use crate::memory;
use crate::observability::metrics::metrics;
use crate::observability::request_id;

/// Client connection deadlines, from `request.header_timeout` and
/// `request.idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// From a request's first byte to the end of its headers.
    pub header: std::time::Duration,
    /// Between keep-alive requests.
    pub idle: std::time::Duration,
}

/// One open client connection, counted until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    /// Connections open, this one included, when it was accepted.
    pub count: usize,
}

impl OpenConnection {
    /// Counts a connection just accepted.
    pub fn opened() -> Self {
        let count = drain().connection_opened();
        memory::connection_opened();
        Self { count }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        drain().connection_closed();
        memory::connection_closed();
    }
}

/// Marks the request's connection as serving: its headers are in.
pub fn request_started(session: &Session) {
    if let Some(stream) = guarded(session) {
        stream.mark.store(SERVING, Ordering::Release);
    }
}

/// Marks the request's connection as idle: the response is done.
pub fn request_finished(session: &Session) {
    if let Some(stream) = guarded(session) {
        stream.mark.store(FINISHED, Ordering::Release);
    }
}

fn guarded(session: &Session) -> Option<&GuardedStream> {
    let stream: &Stream = session.as_downstream().stream()?;
    (**stream).as_any().downcast_ref::<GuardedStream>()
}

/// What a connection that is not serving a request is waiting for.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// The first byte of the next request, since the instant given.
    Request(Instant),
    /// The rest of a request's headers, whose first byte came at the instant.
    Headers(Instant),
    /// Timed out: every further read ends the stream.
    Expired,
}

/// Marks the proxy leaves on a stream. The stream may see no read at all
/// between the start and the end of a request (a GET answered at once), so
/// the end is a mark of its own rather than the start taken back.
const WAITING: u8 = 0;
const SERVING: u8 = 1;
const FINISHED: u8 = 2;

/// A client stream with header and idle deadlines.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    timeouts: ClientTimeouts,
    mark: AtomicU8,
    waiting: Waiting,
    /// Armed only when a read would wait: most requests arrive whole in one read.
    timer: Option<(Pin<Box<Sleep>>, Instant)>,
    /// Our answer in place of one Pingora writes itself, and how much of it
    /// has been written.
    replacement: Option<(Vec<u8>, usize)>,
    /// An HTTP/2 connection: only the wait for its first bytes is bounded.
    http2: bool,
    /// The protocol shown to Pingora in place of the inner stream's ALPN.
    alpn: Option<ALPN>,
    _open: OpenConnection,
}

impl GuardedStream {
    pub fn new(inner: Stream, timeouts: ClientTimeouts, open: OpenConnection) -> Self {
        Self {
            inner,
            timeouts,
            mark: AtomicU8::new(WAITING),
            waiting: Waiting::Request(Instant::now()),
            timer: None,
            replacement: None,
            http2: false,
            alpn: None,
            _open: open,
        }
    }

    /// For an HTTP/2 connection: the idle timeout until its first bytes,
    /// nothing after (its requests share the stream).
    pub fn for_http2(
        inner: Stream,
        timeouts: ClientTimeouts,
        open: OpenConnection,
        alpn: Option<ALPN>,
    ) -> Self {
        Self {
            http2: true,
            alpn,
            ..Self::new(inner, timeouts, open)
        }
    }

    /// Polls the deadline for `waiting`; `Ready` when it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.waiting {
            Waiting::Request(since) => since + self.timeouts.idle,
            Waiting::Headers(since) => since + self.timeouts.header,
            Waiting::Expired => return Poll::Ready(()),
        };
        let (timer, armed_for) = match &mut self.timer {
            Some((timer, armed_for)) => {
                // Deadlines move later with every request: a timer armed
                // for an earlier one is left to fire and is moved on then,
                // once per idle period instead of once per request.
                if *armed_for > deadline {
                    timer.as_mut().reset(deadline);
                    *armed_for = deadline;
                }
                (timer, armed_for)
            }
            None => {
                let timer = Box::pin(tokio::time::sleep_until(deadline));
                let (timer, armed_for) = self.timer.insert((timer, deadline));
                (timer, armed_for)
            }
        };
        while timer.as_mut().poll(cx).is_ready() {
            if *armed_for >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier deadline: on to this one.
            timer.as_mut().reset(deadline);
            *armed_for = deadline;
        }
        Poll::Pending
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.mark.load(Ordering::Acquire) {
            SERVING => return Pin::new(&mut this.inner).poll_read(cx, buf),
            FINISHED => {
                // The connection is idle from here until the next request.
                this.mark.store(WAITING, Ordering::Release);
                this.waiting = Waiting::Request(Instant::now());
            }
            _ => {}
        }
        if let Waiting::Expired = this.waiting {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if this.http2 {
                        // Serving from here on: reads pass straight through.
                        this.mark.store(SERVING, Ordering::Release);
                        this.timer = None;
                    } else if let Waiting::Request(_) = this.waiting {
                        this.waiting = Waiting::Headers(Instant::now());
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if this.poll_deadline(cx).is_pending() {
            return Poll::Pending;
        }
        let waiting = std::mem::replace(&mut this.waiting, Waiting::Expired);
        match waiting {
            // An idle connection ends as if the client closed it.
            Waiting::Request(_) => {
                metrics().client_timeouts.with_label_values(&["idle"]).inc();
                Poll::Ready(Ok(()))
            }
            Waiting::Headers(_) => {
                metrics()
                    .client_timeouts
                    .with_label_values(&["header"])
                    .inc();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "request headers not complete within {:?}",
                        this.timeouts.header
                    ),
                )))
            }
            Waiting::Expired => Poll::Ready(Ok(())),
        }
    }
}

impl GuardedStream {
    /// A write while no request has started is Pingora answering a request
    /// it refused before any hook ran (headers it cannot parse, CONNECT):
    /// its answer is replaced by the gateway's, with the error shape every
    /// other answer has. Returns `None` to write `buf` as it is.
    fn poll_replaced(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        len: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        if self.replacement.is_none() {
            if self.mark.load(Ordering::Acquire) != WAITING {
                return None;
            }
            let status = pingora_status(buf)?;
            self.replacement = Some((refused_before_hooks(status), 0));
        }
        let (bytes, written) = self.replacement.as_mut()?;
        while *written < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Some(Poll::Ready(Ok(0))),
                Poll::Ready(Ok(n)) => *written += n,
                other => return Some(other),
            }
        }
        // Pingora's own bytes are taken and dropped.
        Some(Poll::Ready(Ok(len)))
    }
}

/// The status of a response head Pingora is writing: `HTTP/1.x NNN ...`.
fn pingora_status(buf: &[u8]) -> Option<u16> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(poll) = this.poll_replaced(cx, buf, buf.len()) {
            return poll;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if let Some(poll) = this.poll_replaced(cx, first, total) {
            return poll;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// The rest of Pingora's stream traits: all the inner stream's.

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.alpn
            .clone()
            .or_else(|| self.inner.selected_alpn_proto())
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The whole answer (head and body) to a request Pingora refused before
/// any of the gateway's hooks ran, in the shape of every other answer, with
/// a new request id; the connection closes after it.
fn refused_before_hooks(status: u16) -> Vec<u8> {
    metrics().malformed_requests.inc();
    let error = match status {
        405 => ApiError::new(
            ErrorCode::MethodNotAllowed,
            "This method is not served (CONNECT is not proxied).",
        ),
        _ => ApiError::new(
            ErrorCode::MalformedRequest,
            "The request's head is not valid HTTP/1.1.",
        ),
    };
    let body = error.body();
    let reason = http::StatusCode::from_u16(error.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n",
        error.status,
        body.len(),
        request_id::new_id()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
