//! The server over real TCP on 127.0.0.1: what a client can do to its connections. An oversized
//! declared body is refused before it is read; idle connections are closed and capped, so they
//! cannot make `/healthz` unreachable; SIGTERM-style shutdown under load answers every accepted
//! request. Every wait is bounded by `BOUND`, a hang detector, not a timing assertion.

mod common;

use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroclip_server::{AppState, Limits, ServerConfig};

/// Longest any step may take before the test calls it a hang.
const BOUND: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {BOUND:?}"))
}

/// A running server on a free loopback port: its address, its state, the sender that stops it,
/// and its task.
type Running = (
    SocketAddr,
    AppState,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

async fn start(config: ServerConfig) -> Running {
    serve_state(started(config)).await
}

async fn serve_state(state: AppState) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zeroclip_server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    (addr, state, stop, server)
}

/// Reads until the end of the response head (or the connection's end).
async fn read_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(_) => got.push(byte[0]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declared_body_is_413_before_reading_and_without_100_continue() {
    let (addr, _state, _stop, _server) = start(config()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    // No byte of the body is ever sent: the answer must not wait for it.
    let response = bounded("the 413", read_head(&mut s)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_capped_so_healthz_stays_reachable() {
    let cap = 3;
    let config = ServerConfig {
        limits: Limits {
            header_timeout: Duration::from_secs(1),
            max_connections: cap,
            ..Limits::default()
        },
        ..config()
    };
    let (addr, state, _stop, _server) = start(config).await;
    let open = || {
        state
            .metrics()
            .connections_open
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    // Twice the cap of clients that connect and never send a byte.
    let mut idle = Vec::new();
    for _ in 0..2 * cap {
        idle.push(TcpStream::connect(addr).await.unwrap());
        assert!(open() <= cap, "{} connections open, cap {cap}", open());
    }
    // The server closes each of them (the ones beyond the cap once they get a slot).
    for (i, s) in idle.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let n = bounded(&format!("idle connection {i} closed"), s.read(&mut byte)).await;
        assert!(matches!(n, Ok(0) | Err(_)), "connection {i}: {n:?}");
        assert!(open() <= cap, "{} connections open, cap {cap}", open());
    }
    // A probe gets through.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = bounded("the probe", read_head(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
}

/// One `POST /v1/embeddings` of one text over its own connection; the whole response.
async fn embed_once(addr: SocketAddr, text: String) -> String {
    let body = serde_json::to_vec(&json!({ "texts": [text] })).unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_answers_every_accepted_request() {
    let clients = 48;
    let (state, worker) = unstarted(config());
    let (addr, state, stop, server) = serve_state(state).await;
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(embed_once(addr, format!("a photo of dog number {i}"))))
        .collect();
    // Every request is accepted and queued for the model when shutdown begins.
    bounded("all requests queued", async {
        while state.queue_depth() < clients {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    stop.send(()).unwrap();
    worker.spawn();
    for (i, task) in tasks.into_iter().enumerate() {
        let response = bounded("a response", task).await.unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "client {i}: {response}"
        );
        assert!(response.contains("\"embedding\""), "client {i}: {response}");
    }
    bounded("the server's end", server).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_the_model_queue_and_the_in_flight_limit_are_full() {
    let in_flight = 4;
    let config = ServerConfig {
        limits: Limits {
            max_in_flight: in_flight,
            ..Limits::default()
        },
        ..config()
    };
    // The worker never starts: every model job waits for good, as behind a stuck batch.
    let (state, _worker) = unstarted(config);
    let (addr, state, _stop, _server) = serve_state(state).await;
    let queued: Vec<_> = (0..in_flight)
        .map(|i| tokio::spawn(embed_once(addr, format!("a photo of dog number {i}"))))
        .collect();
    bounded("the backlog", async {
        while state.queue_depth() < in_flight {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // One more POST is over the in-flight limit; the probe is not held behind any of them.
    let over = bounded("the 503", embed_once(addr, "one more".into())).await;
    assert!(over.starts_with("HTTP/1.1 503"), "{over}");
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let head = bounded("the probe", read_head(&mut s)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    }
    assert!(queued.iter().all(|t| !t.is_finished()), "the backlog stays");
    queued.iter().for_each(|t| t.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stuck_behind_the_model_never_hold_every_connection() {
    // The connection cap no higher than the in-flight limit, as an open-file limit makes it.
    let cap = 4;
    let config = ServerConfig {
        limits: Limits {
            max_connections: cap,
            max_in_flight: cap,
            // Longer than the hang detector: no request ends by timing out.
            request_timeout: Duration::from_secs(600),
            ..Limits::default()
        },
        ..config()
    };
    let (state, _worker) = unstarted(config);
    let (addr, state, _stop, _server) = serve_state(state).await;
    let posts: Vec<_> = (0..cap)
        .map(|i| tokio::spawn(embed_once(addr, format!("a photo of dog number {i}"))))
        .collect();
    bounded("the backlog", async {
        while state.queue_depth() < cap - 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // However the last POST fares, a probe gets a connection and its answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let head = bounded("the probe", read_head(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    // One POST was shed with a 503 that closed its connection; the others wait for the model.
    bounded("the shed request's end", async {
        while !posts.iter().any(|p| p.is_finished()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let mut shed = Vec::new();
    for p in posts {
        if p.is_finished() {
            shed.push(p.await.unwrap());
        } else {
            p.abort();
        }
    }
    assert_eq!(shed.len(), 1, "{shed:?}");
    assert!(shed[0].starts_with("HTTP/1.1 503"), "{shed:?}");
    let head = shed[0].to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{shed:?}");
    assert_eq!(state.queue_depth(), cap - 1);
}
