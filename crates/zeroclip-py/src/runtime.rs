//! Where the library's work runs: one rayon pool of [`set_num_threads`] threads, entered with the
//! GIL released, so Python threads go on while a batch is encoded.
//!
//! A process that forks (multiprocessing, Ray's workers) copies the pool's bookkeeping but not its
//! threads, and a job handed to it would wait forever. The pool remembers the process it was built
//! in; a call from another process leaves the old pool untouched (its threads are not there to
//! stop) and builds a fresh one.

use pyo3::prelude::*;
use rayon::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct Pool {
    pid: u32,
    pool: Arc<ThreadPool>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
/// The requested thread count; 0 means one per available core.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The largest thread count accepted: far above any machine's cores, far below what would exhaust
/// the process's threads.
pub const MAX_THREADS: usize = 1024;

fn build(threads: usize) -> PyResult<Arc<ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("zeroclip-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start threads: {e}"))
        })
}

/// The pool for this process, built on first use.
pub fn pool() -> PyResult<Arc<ThreadPool>> {
    let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    match slot.take() {
        Some(p) if p.pid == pid => {
            let pool = p.pool.clone();
            *slot = Some(p);
            return Ok(pool);
        }
        // Built before a fork: its threads live in the parent only. Dropping it would signal
        // threads that do not exist; leak it instead.
        Some(stale) => std::mem::forget(stale),
        None => {}
    }
    let threads = match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let pool = build(threads)?;
    *slot = Some(Pool {
        pid,
        pool: pool.clone(),
    });
    Ok(pool)
}

/// Sets the number of threads for everything that follows; calls already running finish on the
/// pool they started in.
pub fn set_num_threads(n: usize) -> PyResult<()> {
    if n == 0 || n > MAX_THREADS {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "number of threads must be between 1 and {MAX_THREADS}, got {n}"
        )));
    }
    THREADS.store(n, Ordering::Relaxed);
    let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = slot.take() {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
    Ok(())
}

/// The number of threads the pool has (or will have when first used).
pub fn num_threads() -> PyResult<usize> {
    Ok(pool()?.current_num_threads())
}

/// Runs `f` in the pool with the GIL released.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| pool.install(f)))
}

/// Runs `f` on the calling thread with the GIL released, handing it the pool to run its work in
/// (for [`zeroclip::batch::run_batches`], which must wait outside the pool).
pub fn run_with_pool<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(&ThreadPool) -> T + Send,
) -> PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| f(&pool)))
}
