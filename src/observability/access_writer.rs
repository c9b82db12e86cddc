//! The access log's one writer: a thread that owns the output (stdout or a
//! file). Workers append finished lines to a shared buffer of bounded size
//! and go on; they never write, flush or wait for the output. The writer
//! takes the whole buffer every `FLUSH_EVERY` (sooner when it is half full)
//! and writes it in one call. When the writer falls behind and the buffer
//! is full, lines are dropped and counted (`access_log_dropped_total`)
//! rather than a worker blocking or the buffer growing.
//!
//! A buffer, not a queue of lines: a line costs a worker one short lock and
//! a copy, with no allocation and no wake-up of the writer per line (a
//! per-line channel cost more CPU in the writer's wake-ups than the lines
//! themselves on a busy core).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::observability::metrics::metrics;

/// Longest a line waits in the buffer before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where the lines go and how much may wait, set once at start.
struct Settings {
    path: Option<PathBuf>,
    buffer_bytes: usize,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Shared {
    /// Lines waiting for the writer.
    pending: Mutex<Pending>,
    /// Wakes the writer early, when the buffer is half full or at a flush.
    wake: Condvar,
    /// Tells a flusher that the writer wrote out a generation.
    written: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Bumped each time the writer takes the buffer.
    taken: u64,
    /// Bumped each time the writer has finished writing what it took.
    done: u64,
    /// The writer was asked to wake early and has not yet.
    woken: bool,
}

/// The buffer and its writer, which starts with the first line: after
/// Pingora has daemonized (`-d` forks, and a thread started before the fork
/// would not be in the child).
static SHARED: OnceLock<Shared> = OnceLock::new();
static WRITER: Once = Once::new();

/// Sets where the lines go: appended to `path` (created if missing), or
/// stdout. At most `buffer_bytes` of lines wait for the writer. Fails now,
/// at start, when the file cannot be opened for appending.
pub fn configure(path: Option<&Path>, buffer_bytes: usize) -> io::Result<()> {
    if let Some(path) = path {
        open(path)?;
    }
    SETTINGS
        .set(Settings {
            path: path.map(Path::to_path_buf),
            buffer_bytes,
        })
        .map_err(|_| io::Error::other("the access log is already configured"))
}

fn open(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn shared() -> Option<&'static Shared> {
    let settings = SETTINGS.get()?;
    let shared = SHARED.get_or_init(|| Shared {
        pending: Mutex::new(Pending {
            lines: Vec::with_capacity(settings.buffer_bytes.min(1 << 20)),
            ..Pending::default()
        }),
        wake: Condvar::new(),
        written: Condvar::new(),
        capacity: settings.buffer_bytes,
    });
    WRITER.call_once(|| {
        let path = settings.path.clone();
        let started = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let output: io::Result<Box<dyn Write + Send>> = match &path {
                    Some(path) => open(path).map(|f| Box::new(f) as Box<dyn Write + Send>),
                    None => Ok(Box::new(io::stdout())),
                };
                match output {
                    Ok(output) => write_lines(shared, output),
                    Err(e) => log::error!("access log: cannot open {path:?}: {e}"),
                }
            });
        if let Err(e) = started {
            log::error!("access log: cannot start its writer: {e}");
        }
    });
    Some(shared)
}

fn lock(shared: &Shared) -> MutexGuard<'_, Pending> {
    shared.pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds one line (ending in a newline) for the writer.
pub fn send(line: &[u8]) {
    let Some(shared) = shared() else {
        // Not configured (a tool or a unit test): write it here.
        let _ = io::stdout().write_all(line);
        return;
    };
    let mut pending = lock(shared);
    if pending.lines.len() + line.len() > shared.capacity {
        drop(pending);
        metrics().access_log_dropped.inc();
        return;
    }
    pending.lines.extend_from_slice(line);
    if pending.lines.len() > shared.capacity / 2 && !pending.woken {
        pending.woken = true;
        drop(pending);
        shared.wake.notify_one();
    }
}

/// Waits until every line added so far is written (at shutdown), for at
/// most `timeout`. Returns whether they were.
pub fn flush(timeout: Duration) -> bool {
    let Some(shared) = SHARED.get() else {
        // Nothing was ever added.
        return io::stdout().flush().is_ok();
    };
    let deadline = Instant::now() + timeout;
    let mut pending = lock(shared);
    // What is in the buffer now goes with the next take; what was taken
    // before is being written. Both are done once `done` passes the next take.
    let target = pending.taken + 1;
    pending.woken = true;
    shared.wake.notify_one();
    while pending.done < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        pending = shared
            .written
            .wait_timeout(pending, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    true
}

fn write_lines(shared: &Shared, mut output: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(shared.capacity.min(1 << 20));
    let mut failing = false;
    loop {
        {
            let mut pending = lock(shared);
            if !pending.woken {
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            pending.woken = false;
            std::mem::swap(&mut pending.lines, &mut batch);
            pending.taken += 1;
        }
        if !batch.is_empty() {
            match output.write_all(&batch).and_then(|()| output.flush()) {
                Ok(()) => failing = false,
                Err(e) => {
                    let lines = batch.iter().filter(|&&b| b == b'\n').count();
                    metrics().access_log_dropped.inc_by(lines as u64);
                    if !failing {
                        failing = true;
                        log::error!("access log: cannot write: {e}; lines are dropped and counted in access_log_dropped_total");
                    }
                }
            }
            batch.clear();
        }
        let mut pending = lock(shared);
        pending.done = pending.taken;
        drop(pending);
        shared.written.notify_all();
    }
}
