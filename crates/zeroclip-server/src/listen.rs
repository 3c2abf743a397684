//! The accept loop: HTTP/1.1 connections served with a header-read timeout and a connection cap,
//! and a graceful shutdown that answers every request already accepted.
//!
//! `axum::serve` sets neither a header timeout nor a cap, so idle or slow connections could pile
//! up until the process ran out of file descriptors and `/healthz` became unreachable. Here a
//! connection must send its request headers within [`Limits::header_timeout`] — which also bounds
//! how long it may sit idle before or between requests — and at most [`Limits::max_connections`]
//! are open: beyond that the loop stops accepting, so new clients wait in the kernel's listen
//! backlog until a slot frees (within one header timeout, since idle ones are closed by then).
//! The body and the handling are bounded by the request timeout of the router's guard.

use crate::config::Limits;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How long the loop pauses after a failed `accept` (e.g. out of file descriptors) before
/// trying again, so a persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets every
/// connection finish the request it is on (idle ones close at once), and returns when all have.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    open: Arc<AtomicUsize>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(cap));
    let (closing, closing_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: at the cap, new clients wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Per-connection failures (reset before accept) and running out of file
                    // descriptors are both transient for a server: pause and go on.
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot::take(slot, open.clone());
        tokio::spawn(connection(
            stream,
            router.clone(),
            builder.clone(),
            slot,
            closing_rx.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: having them all back means all have ended.
    let _ = slots.acquire_many(cap as u32).await;
    Ok(())
}

/// A connection's place under the cap, counted in the `zeroclip_connections_open` gauge; both
/// are given back when the connection's task ends, however it ends.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Slot {
    fn take(permit: OwnedSemaphorePermit, open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection, holding its slot until the connection ends.
async fn connection(
    stream: TcpStream,
    router: Router,
    builder: http1::Builder,
    _slot: Slot,
    mut closing: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            // Errors are the client's (reset, timeout, malformed request): the connection ends.
            _ = conn.as_mut() => break,
            changed = closing.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    // Finishes the request in progress, then closes; an idle one closes now.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
