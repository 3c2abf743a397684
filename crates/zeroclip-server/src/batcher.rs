//! Dynamic batching: one worker thread owns the model and groups the work of concurrent requests
//! into shared forward passes.
//!
//! Requests put a [`Job`] on a bounded queue (`try_send`: a full queue is a 503, never unbounded
//! memory) and await a oneshot reply. The worker takes the first job, waits up to `max_wait` for
//! more (up to `max_batch` items), then runs one `encode_image` pass over all the images and one
//! `encode_text` pass over all the texts, and hands each job its rows. The model is synchronous
//! (candle), so the worker is a plain thread, off the async runtime.

use crate::config::BatchConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::Encoder;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub use crate::model::Embeddings;

/// What a request asks the model for.
pub enum Work {
    /// Preprocessed images, each CHW `[3, r, r]`.
    Images(Vec<Vec<f32>>),
    /// Token ids, row-major `[n, context_length]`.
    Texts { ids: Vec<u32>, n: usize },
}

impl Work {
    fn items(&self) -> usize {
        match self {
            Work::Images(v) => v.len(),
            Work::Texts { n, .. } => *n,
        }
    }
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Embeddings, ApiError>>,
}

/// The requests' side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct BatcherHandle {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    ready: Arc<AtomicBool>,
}

/// The model's side of the queue; [`Worker::run`] it on its own thread.
pub struct Worker {
    rx: Receiver<Job>,
    encoder: Encoder,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// Creates the queue; nothing runs until the worker is started.
pub fn channel(
    encoder: Encoder,
    config: BatchConfig,
    metrics: Arc<Metrics>,
) -> (BatcherHandle, Worker) {
    let capacity = config.queue_capacity.max(1);
    let (tx, rx) = mpsc::sync_channel(capacity);
    let ready = Arc::new(AtomicBool::new(false));
    let handle = BatcherHandle {
        tx,
        depth: metrics.queue_depth.clone(),
        capacity,
        ready: ready.clone(),
    };
    let worker = Worker {
        rx,
        encoder,
        config,
        metrics,
        ready,
    };
    (handle, worker)
}

impl BatcherHandle {
    /// Queues `work` and waits for its embeddings. Fails fast with `Overloaded` when the queue is
    /// full, so memory stays bounded by the queue capacity times the largest request.
    pub async fn run(&self, work: Work) -> Result<Embeddings, ApiError> {
        let (reply, answer) = oneshot::channel();
        // Counted before sending so the worker's decrement can never run first.
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(Job { work, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                return Err(ApiError::Overloaded {
                    what: "the model queue",
                    capacity: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                return Err(ApiError::NotReady {
                    reason: "the model worker has stopped".into(),
                });
            }
        }
        answer.await.map_err(|_| ApiError::Internal {
            reason: "the model worker dropped the request".into(),
        })?
    }

    /// Whether the worker is running.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

impl Worker {
    /// Starts the worker on a new thread. The server is ready when this returns: a job sent
    /// before the thread first runs waits in the queue, so `/readyz` need not race the
    /// thread's start.
    pub fn spawn(self) -> std::thread::JoinHandle<()> {
        self.ready.store(true, Ordering::SeqCst);
        std::thread::Builder::new()
            .name("zeroclip-model".into())
            .spawn(move || self.run())
            .expect("cannot spawn the model thread")
    }

    /// Serves jobs until every handle to the queue (the [`crate::AppState`]s) is dropped.
    pub fn run(self) {
        self.ready.store(true, Ordering::SeqCst);
        let max_items = self.config.max_batch.max(1);
        while let Ok(first) = self.rx.recv() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
            let deadline = Instant::now() + self.config.max_wait;
            let mut items = first.work.items();
            let mut jobs = vec![first];
            while items < max_items {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.rx.recv_timeout(left) {
                    Ok(job) => {
                        self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
                        items += job.work.items();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.process(jobs);
        }
        self.ready.store(false, Ordering::SeqCst);
    }

    fn process(&self, jobs: Vec<Job>) {
        // A request that timed out or whose client left has dropped its receiver: skip its work.
        let mut images = Vec::new();
        let mut texts = Vec::new();
        for job in jobs.into_iter().filter(|j| !j.reply.is_closed()) {
            match job.work {
                Work::Images(v) => images.push((v, job.reply)),
                Work::Texts { ids, n } => texts.push(((ids, n), job.reply)),
            }
        }
        if !images.is_empty() {
            let counts: Vec<usize> = images.iter().map(|(v, _)| v.len()).collect();
            let (all, replies): (Vec<Vec<Vec<f32>>>, Vec<_>) = images.into_iter().unzip();
            let all: Vec<Vec<f32>> = all.into_iter().flatten().collect();
            let chunk = self.config.max_batch.max(1);
            let result = run_chunks(&counts, chunk, &replies, |range| {
                self.metrics.observe_image_batch(range.len());
                guarded("encode_image", || self.encoder.encode_images(&all[range]))
            });
            distribute(result, &counts, replies);
        }
        if !texts.is_empty() {
            let counts: Vec<usize> = texts.iter().map(|((_, n), _)| *n).collect();
            let (all, replies): (Vec<(Vec<u32>, usize)>, Vec<_>) = texts.into_iter().unzip();
            let ctx = all
                .iter()
                .find(|(_, n)| *n > 0)
                .map_or(1, |(ids, n)| ids.len() / n);
            let ids: Vec<u32> = all.into_iter().flat_map(|(ids, _)| ids).collect();
            let chunk = self.config.max_text_batch.max(1);
            let result = run_chunks(&counts, chunk, &replies, |range| {
                self.metrics.observe_text_batch(range.len());
                let n = range.len();
                guarded("encode_text", || {
                    self.encoder
                        .encode_tokens(&ids[range.start * ctx..range.end * ctx], n)
                })
            });
            distribute(result, &counts, replies);
        }
    }
}

/// Runs `encode` over the items of jobs of `counts` items each, in consecutive chunks of at most
/// `chunk` items, and returns one row per item. Before each chunk it checks who still waits: a
/// chunk whose every job has gone (request timed out, client left) is not computed — its rows
/// stay empty, as nobody will read them — so a large request stops costing model time at the
/// next chunk boundary after its client leaves, not when all its texts are done.
fn run_chunks(
    counts: &[usize],
    chunk: usize,
    replies: &[oneshot::Sender<Result<Embeddings, ApiError>>],
    mut encode: impl FnMut(std::ops::Range<usize>) -> Result<Embeddings, ApiError>,
) -> Result<Embeddings, ApiError> {
    // Job j owns items starts[j]..starts[j + 1].
    let mut starts = vec![0usize];
    for c in counts {
        starts.push(starts.last().copied().unwrap_or(0) + c);
    }
    let total = *starts.last().unwrap_or(&0);
    let mut out: Embeddings = Vec::with_capacity(total);
    let mut begin = 0;
    while begin < total {
        let end = (begin + chunk).min(total);
        let waiting = (0..counts.len())
            .filter(|&j| starts[j] < end && starts[j + 1] > begin)
            .any(|j| !replies[j].is_closed());
        if waiting {
            // A wrong row count here makes the total wrong, which `distribute` reports to all.
            out.extend(encode(begin..end)?);
        } else {
            out.extend(std::iter::repeat_with(Vec::new).take(end - begin));
        }
        begin = end;
    }
    Ok(out)
}

/// Runs a model call, turning a panic into an `Internal` error so one bad batch never takes
/// the worker (and with it the server) down.
fn guarded(
    what: &str,
    f: impl FnOnce() -> Result<Embeddings, ApiError>,
) -> Result<Embeddings, ApiError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ApiError::Internal {
            reason: format!("{what} panicked"),
        })
    })
}

/// Hands each job its consecutive rows of `result` (or a copy of the error). A result with
/// another number of rows than the jobs' items is an internal error for all of them, so every
/// caller gets exactly one row per item it queued.
fn distribute(
    result: Result<Embeddings, ApiError>,
    counts: &[usize],
    replies: Vec<oneshot::Sender<Result<Embeddings, ApiError>>>,
) {
    let expected: usize = counts.iter().sum();
    let result = result.and_then(|rows| {
        if rows.len() == expected {
            Ok(rows)
        } else {
            Err(ApiError::Internal {
                reason: format!("the model gave {} rows for {expected} items", rows.len()),
            })
        }
    });
    match result {
        Ok(rows) => {
            let mut rows = rows.into_iter();
            for (n, reply) in counts.iter().zip(replies) {
                let mine: Embeddings = rows.by_ref().take(*n).collect();
                // The receiver may have gone away meanwhile (timeout); nothing to do then.
                let _ = reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reply = Result<Embeddings, ApiError>;

    fn replies(n: usize) -> (Vec<oneshot::Sender<Reply>>, Vec<oneshot::Receiver<Reply>>) {
        (0..n).map(|_| oneshot::channel()).unzip()
    }

    #[test]
    fn each_job_gets_its_own_rows() {
        let (tx, rx) = replies(2);
        let rows = vec![vec![1.0], vec![2.0], vec![3.0]];
        distribute(Ok(rows), &[2, 1], tx);
        let got: Vec<Embeddings> = rx
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        assert_eq!(got, vec![vec![vec![1.0], vec![2.0]], vec![vec![3.0]]]);
    }

    #[test]
    fn chunks_stop_when_every_job_in_them_has_gone() {
        let (tx, rx) = replies(2);
        let receivers = std::cell::RefCell::new(rx);
        let mut calls = Vec::new();
        let rows = run_chunks(&[3, 3], 2, &tx, |range| {
            calls.push((range.start, range.end));
            // Both clients leave while the first chunk runs.
            receivers.borrow_mut().clear();
            Ok(range.map(|i| vec![i as f32]).collect())
        })
        .unwrap();
        assert_eq!(calls, vec![(0, 2)], "no chunk after the clients left");
        assert_eq!(rows.len(), 6, "one (empty) row per item for distribute");
    }

    #[test]
    fn a_chunk_runs_while_any_of_its_jobs_waits() {
        let (tx, mut rx) = replies(3);
        // The first job's client has gone before the batch starts; the others wait.
        drop(rx.remove(0));
        let mut calls = Vec::new();
        let rows = run_chunks(&[2, 1, 2], 2, &tx, |range| {
            calls.push((range.start, range.end));
            Ok(range.map(|i| vec![i as f32]).collect())
        })
        .unwrap();
        assert_eq!(calls, [(2, 4), (4, 5)]);
        assert_eq!(rows[2..], [vec![2.0], vec![3.0], vec![4.0]]);
    }

    #[test]
    fn a_wrong_row_count_is_an_error_for_every_job() {
        let (tx, rx) = replies(2);
        distribute(Ok(vec![vec![1.0], vec![2.0]]), &[2, 1], tx);
        for r in rx {
            let err = r.blocking_recv().unwrap().unwrap_err();
            assert!(matches!(err, ApiError::Internal { .. }), "{err:?}");
        }
    }
}
