//! How the process ends without cutting a request: drain, then exit.
//!
//! Pingora's own shutdown is a pair of timers: after the signal (and, for
//! SIGQUIT, a fixed 5 s hand-over of the listening sockets) it sleeps its
//! grace period, then shuts its runtimes down, dropping every task still
//! running, streams included. The gateway takes the end into its own hands:
//!
//! 1. [`DrainSignals`] receives SIGTERM or SIGQUIT, marks the process
//!    draining, and passes the signal on to Pingora. From then on every
//!    answer carries `Connection: close`, and after SIGTERM `/ready` answers
//!    503 (after SIGQUIT the new process answers on the same admin socket).
//! 2. Pingora stops accepting: at once after SIGTERM, at the end of its
//!    hand-over after SIGQUIT. Idle connections are closed [`SETTLE`] after
//!    that (`ConnectionGuard::cleanup`), so a request already on its way is
//!    still answered.
//! 3. The supervisor waits until no client connection is open, or until
//!    `server.drain_timeout` has passed since the signal, stops the
//!    background work, hands unspent limit leases back to Redis, flushes the
//!    logs and ends the process ([`exit`]). Pingora's grace period is set
//!    above the drain timeout, so its timers never cut a stream.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::observability::metrics::metrics;
use crate::observability::{access_writer, traces};

/// How long a keep-alive connection idle at the signal stays open: a request
/// the client sent just before it still arrives and is answered (with
/// `Connection: close`). After it, an idle connection is closed; a client
/// that sends on it at that very moment races the FIN, a window of one trip
/// over the network.
pub const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCause {
    /// SIGTERM: the process is going away; take it out of load balancing.
    Terminate,
    /// SIGQUIT: a new process (`-u`) has taken the listening sockets over.
    Upgrade,
}

impl DrainCause {
    fn signal(self) -> &'static str {
        match self {
            DrainCause::Terminate => "SIGTERM",
            DrainCause::Upgrade => "SIGQUIT",
        }
    }
}

/// The process' drain state and what is still in flight.
pub struct Drain {
    draining: AtomicBool,
    terminating: AtomicBool,
    started: OnceLock<Instant>,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Woken whenever a count reaches zero while draining.
    quiet: Notify,
}

/// The process-wide drain state: a process drains once.
pub fn drain() -> &'static Drain {
    static DRAIN: OnceLock<Drain> = OnceLock::new();
    DRAIN.get_or_init(|| Drain {
        draining: AtomicBool::new(false),
        terminating: AtomicBool::new(false),
        started: OnceLock::new(),
        connections: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
        quiet: Notify::new(),
    })
}

impl Drain {
    /// Answers carry `Connection: close` and idle connections are closing.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// SIGTERM arrived: `/ready` answers 503.
    pub fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Relaxed)
    }

    pub fn begin(&self, cause: DrainCause) {
        if cause == DrainCause::Terminate {
            self.terminating.store(true, Ordering::Relaxed);
        }
        if self.started.set(Instant::now()).is_err() {
            return;
        }
        self.draining.store(true, Ordering::Relaxed);
        metrics().draining.set(1);
        log::warn!(
            "{}: draining; {} requests in flight on {} client connections",
            cause.signal(),
            self.requests.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        );
    }

    /// When the drain began (now, if nothing began it: a shutdown that did
    /// not come through [`DrainSignals`]).
    pub fn started(&self) -> Instant {
        *self.started.get_or_init(Instant::now)
    }

    /// Called when the listeners have stopped: resolves once idle connections
    /// may be closed, [`SETTLE`] later. Counted from the listeners' stop, not
    /// from the signal: after SIGQUIT they accept for 5 s more, and a
    /// connection accepted at the last moment needs the time to send.
    pub async fn settle(&self) {
        tokio::time::sleep(SETTLE).await;
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Counts a client connection until [`Drain::connection_closed`];
    /// returns the number open, this one included.
    pub fn connection_opened(&self) -> usize {
        metrics().client_connections.inc();
        self.connections.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub fn connection_closed(&self) {
        metrics().client_connections.dec();
        if self.connections.fetch_sub(1, Ordering::AcqRel) == 1 && self.is_draining() {
            self.quiet.notify_waiters();
        }
    }

    /// Counts a request in flight while the guard lives.
    pub fn request_started(&'static self) -> RequestInFlight {
        metrics().inflight_requests.inc();
        self.requests.fetch_add(1, Ordering::AcqRel);
        RequestInFlight(self)
    }

    /// Waits until no client connection is open and no request is in flight,
    /// or until `deadline`. Returns whether the process went quiet.
    pub async fn quiet_by(&self, deadline: Instant) -> bool {
        loop {
            // Created before the check: `notify_waiters` reaches a `Notified`
            // from its creation on, so a count reaching zero in between is
            // not missed.
            let notified = self.quiet.notified();
            if self.connections() == 0 && self.requests() == 0 {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self.connections() == 0 && self.requests() == 0;
                }
            }
        }
    }
}

/// One request in flight, counted until dropped.
pub struct RequestInFlight(&'static Drain);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        metrics().inflight_requests.dec();
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 && self.0.is_draining() {
            self.0.quiet.notify_waiters();
        }
    }
}

/// Pingora's shutdown signals, with the drain begun before Pingora hears of
/// them: SIGTERM terminates gracefully, SIGQUIT hands the sockets to a new
/// process, SIGINT exits at once.
pub struct DrainSignals;

#[async_trait]
impl ShutdownSignalWatch for DrainSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (mut quit, mut term, mut int) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(quit), Ok(term), Ok(int)) => (quit, term, int),
            _ => {
                log::error!("cannot listen for shutdown signals; exiting");
                return ShutdownSignal::FastShutdown;
            }
        };
        tokio::select! {
            _ = quit.recv() => {
                drain().begin(DrainCause::Upgrade);
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                drain().begin(DrainCause::Terminate);
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}

/// Where this process wrote its pid, to remove it on exit.
static PID_FILE: OnceLock<String> = OnceLock::new();

/// Writes the process id to `path` (`server.pid_file`), so operators can
/// signal the running process. Pingora writes it only when it daemonizes.
/// After a graceful upgrade the file names the new process.
pub fn write_pid_file(path: &str) {
    let pid = std::process::id().to_string();
    let temporary = format!("{path}.{pid}");
    let written = std::fs::write(&temporary, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&temporary, path));
    match written {
        Ok(()) => {
            let _ = PID_FILE.set(path.to_string());
        }
        Err(e) => log::warn!("cannot write the pid file {path}: {e}"),
    }
}

/// The longest the exit waits for the access log's last lines.
const ACCESS_LOG_FLUSH: Duration = Duration::from_secs(5);

/// Ends the process after a drain: logs are flushed first, because nothing
/// after this line runs (no destructor, no runtime shutdown). The pid file
/// goes too, unless a newer process has written its own.
pub fn exit(code: i32) -> ! {
    if let Some(path) = PID_FILE.get() {
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
    if !access_writer::flush(ACCESS_LOG_FLUSH) {
        log::warn!("the access log did not finish writing within {ACCESS_LOG_FLUSH:?}");
    }
    if !traces::flush(ACCESS_LOG_FLUSH) {
        log::warn!("trace spans were still being exported after {ACCESS_LOG_FLUSH:?}");
    }
    log::logger().flush();
    std::process::exit(code)
}
