//! Giving memory back after a surge of connections. mimalloc keeps the pages
//! a thread freed for that thread's next allocations and returns them to the
//! OS only as the thread keeps allocating, so after a flood of connections a
//! quiet worker would hold its peak footprint for good. Each worker counts
//! its own connections and, after a surge, collects its heap each time the
//! count halves: a dozen collections for thousands of connections, cheap next
//! to the surge itself, and none at all in steady traffic.
//!
//! Transparent huge pages are off for the process: a connection's buffers
//! are mostly untouched capacity, and a huge page is resident whole once one
//! byte of it is, which doubled the memory per open stream.

use std::cell::Cell;

/// Below this many connections on one worker, a drop is no surge.
const SURGE: usize = 256;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// Most connections open since the last collection.
    static PEAK: Cell<usize> = const { Cell::new(0) };
    /// A surge is draining: collect at every halving down to zero, so the
    /// last connections' pages go back too.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// A connection opened on this worker thread.
pub fn connection_opened() {
    let live = LIVE.get() + 1;
    LIVE.set(live);
    PEAK.set(PEAK.get().max(live));
}

/// A connection closed on this worker thread: the thread that opened it,
/// because the server runs Pingora's runtimes without work stealing
/// (`Server::to_pingora`), so a connection's task never moves.
pub fn connection_closed() {
    let live = LIVE.get().saturating_sub(1);
    LIVE.set(live);
    let peak = PEAK.get();
    if peak >= SURGE {
        DRAINING.set(true);
    }
    if DRAINING.get() && live <= peak / 2 {
        PEAK.set(live);
        DRAINING.set(live > 0);
        collect();
        if live == 0 {
            // Other workers may still free blocks of this thread's pages
            // (a connection accepted here and served there); collect once
            // more when they have.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async {
                    tokio::time::sleep(LATE_FREES).await;
                    collect();
                });
            }
        }
    }
}

/// How long after a surge drained other threads' frees are waited for.
const LATE_FREES: std::time::Duration = std::time::Duration::from_secs(1);

fn collect() {
    // SAFETY: mi_collect takes no pointers; it frees and purges the calling
    // thread's empty pages and may be called at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Keeps the kernel from backing this process with transparent huge pages.
/// mimalloc is built without its own THP advice (`no_thp`); this covers
/// hosts whose THP mode is `always` rather than `madvise`. Call it first
/// thing: it applies to every mapping the process faults in afterwards.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integers only and changes nothing
    // but this process's paging policy.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        log::debug!(
            "transparent huge pages stay as the kernel sets them: {}",
            std::io::Error::last_os_error()
        );
    }
}
