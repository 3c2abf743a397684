//! The batcher and its limits: concurrent requests share one forward pass, a full queue is a
//! 503, a slow request a 504, repeated labels skip the text tower, the metrics count it all, and
//! shutdown finishes the requests in flight. Ordering is arranged with an unstarted worker, never
//! with sleeps.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroclip_server::{BatchConfig, Limits, ServerConfig};

async fn until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_forward_pass() {
    let config = ServerConfig {
        batch: BatchConfig {
            max_batch: 4,
            max_wait: Duration::from_secs(30), // the batch is full before this matters
            ..BatchConfig::default()
        },
        ..config()
    };
    let (state, worker) = unstarted(config);
    let image = b64(&image_bytes());
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let state = state.clone();
            let body = json!({"images": [image.clone()], "normalize": false});
            tokio::spawn(async move { post_json(&state, "/v1/embeddings", &body).await })
        })
        .collect();
    until(|| state.queue_depth() == 4).await;
    worker.spawn();
    let mut rows = Vec::new();
    for r in requests {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        rows.push(body["images"][0]["embedding"].clone());
    }
    assert_eq!(
        state.metrics().image_batches(),
        (1, 4),
        "one pass of four images"
    );
    // Batched rows are each image's own embedding: the same image gives the same row.
    assert!(rows.windows(2).all(|w| w[0] == w[1]));
    let alone = started(ServerConfig::default());
    let (_, body) = post_json(
        &alone,
        "/v1/embeddings",
        &json!({"images": [image], "normalize": false}),
    )
    .await;
    let alone: Vec<f32> = serde_json::from_value(body["images"][0]["embedding"].clone()).unwrap();
    let batched: Vec<f32> = serde_json::from_value(rows[0].clone()).unwrap();
    for (a, b) in alone.iter().zip(&batched) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[tokio::test]
async fn full_queue_is_503_and_slow_request_is_504() {
    let config = ServerConfig {
        limits: Limits {
            request_timeout: Duration::from_millis(100),
            ..Limits::default()
        },
        batch: BatchConfig {
            queue_capacity: 1,
            ..BatchConfig::default()
        },
        ..config()
    };
    let (state, worker) = unstarted(config);
    let texts = json!({"texts": ["a dog"]});
    // Nobody serves the queue yet: the first request waits its whole timeout, still queued.
    let (status, body) = post_json(&state, "/v1/embeddings", &texts).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["type"], "timeout");
    assert_eq!(state.queue_depth(), 1);
    let (status, headers, body) = send(&state, json_request("/v1/embeddings", &texts)).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "model queue",
    );
    assert_eq!(headers["retry-after"], "1");
    let (status, _, _) = get(&state, "/readyz").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before the worker runs"
    );
    // Once the model serves, the abandoned job is skipped and new requests succeed.
    worker.spawn();
    until(|| state.queue_depth() == 0).await;
    let (status, body) = post_json(&state, "/v1/embeddings", &texts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_started_server_is_ready_before_its_worker_thread_first_runs() {
    // `serve` prints its address right after starting the state; a probe that follows at once
    // must not see the thread's start-up as "not running".
    let (state, worker) = unstarted(config());
    let thread = worker.spawn();
    assert!(
        state.is_ready(),
        "not ready right after the worker was spawned"
    );
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    drop(state);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_are_503_but_probes_pass() {
    let config = ServerConfig {
        limits: Limits {
            max_in_flight: 1,
            ..Limits::default()
        },
        ..config()
    };
    let (state, worker) = unstarted(config);
    let texts = json!({"texts": ["a dog"]});
    let first = {
        let (state, texts) = (state.clone(), texts.clone());
        tokio::spawn(async move { post_json(&state, "/v1/embeddings", &texts).await })
    };
    until(|| state.queue_depth() == 1).await;
    let (status, body) = post_json(&state, "/v1/embeddings", &texts).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "in-flight",
    );
    let (status, _, _) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    worker.spawn();
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post_json(&state, "/v1/embeddings", &texts).await;
    assert_eq!(status, StatusCode::OK, "the permit is returned: {body}");
}

#[tokio::test]
async fn repeated_labels_come_from_the_cache_and_metrics_say_so() {
    let state = started(config());
    let body = json!({"image": b64(&image_bytes()), "labels": ["a dog", "a cat"], "templates": "imagenet7"});
    let (status, first) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(state.metrics().label_cache_hits(), 0);
    assert_eq!(state.label_cache_len(), 2);
    let (status, second) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state.metrics().label_cache_hits(), 2);
    assert_eq!(
        first["results"], second["results"],
        "cached embeddings give the same scores"
    );
    // Another template set is another key.
    let other = json!({"image": b64(&image_bytes()), "labels": ["a dog", "a cat"]});
    post_json(&state, "/v1/classify", &other).await;
    assert_eq!(state.label_cache_len(), 4);

    let (status, headers, text) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(text).unwrap();
    for line in [
        "zeroclip_http_requests_total{route=\"/v1/classify\",status=\"200\"} 3",
        "zeroclip_http_request_duration_seconds_count{route=\"/v1/classify\"} 3",
        "zeroclip_label_cache_hits_total 2",
        "zeroclip_label_cache_misses_total 4",
        "zeroclip_image_batch_size_count 3",
        "zeroclip_queue_depth 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let (state, worker) = unstarted(config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zeroclip_server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let body = serde_json::to_vec(&json!({"texts": ["a dog"]})).unwrap();
    let client = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        let mut response = Vec::new();
        s.read_to_end(&mut response).await.unwrap();
        String::from_utf8_lossy(&response).into_owned()
    });
    // The request is in flight (queued for the model) when shutdown begins.
    until(|| state.queue_depth() == 1).await;
    stop.send(()).unwrap();
    worker.spawn();
    let response = client.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"embedding\""));
    server.await.unwrap().unwrap();
    // After shutdown, no new connections are accepted.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
