//! Fork safety: a process forked from one that has used the engine (Python's `multiprocessing`
//! with the "fork" start method, `os.fork()`) inherits its memory but none of its threads, so
//! libgomp's thread team (libtorch's intra-op threads) and rayon's pool are gone in the child and
//! the first parallel region there waits forever for them. The engine registers a
//! `pthread_atfork` child handler ([`install`], called by the C ABI on its first call) that only
//! sets a flag; in a forked child the engine then runs single-threaded: libtorch gets one thread
//! (no OpenMP region is entered) whatever number of threads is asked for, and the neighbour list
//! takes its serial path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static FORKED: AtomicBool = AtomicBool::new(false);
static APPLIED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" {
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> std::ffi::c_int;
}

/// The child handler: only an atomic store (the child of a multi-threaded process may call
/// async-signal-safe functions only until it execs or returns from fork).
extern "C" fn in_child() {
    FORKED.store(true, Ordering::SeqCst);
    APPLIED.store(false, Ordering::SeqCst);
}

/// Registers the fork handler (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that performs one atomic store. A failure (ENOMEM) leaves
        // the process as it was without the handler.
        unsafe {
            pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// True in a process forked (after [`install`]) from one that had loaded the engine.
pub fn in_forked_child() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// The number of libtorch threads to apply when `n` is asked for: `n`, or 1 in a forked child.
pub fn effective_threads(n: i32) -> i32 {
    if in_forked_child() {
        1
    } else {
        n
    }
}

/// Called at every entry into the engine from outside (the C ABI): installs the handler, and in
/// a forked child (once after each fork) sets libtorch's intra-op threads to one before anything
/// can enter an OpenMP region whose threads died with the fork.
pub fn on_entry() {
    install();
    if in_forked_child() && !APPLIED.swap(true, Ordering::SeqCst) {
        tch::set_num_threads(1);
    }
}
