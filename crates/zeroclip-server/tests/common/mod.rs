//! Shared helpers of the server's integration tests: the tiny fixture model (random weights,
//! the real 49408-token vocabulary), requests through `oneshot`, and hand-built bodies.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use base64::Engine;
use serde_json::Value;
use tower::ServiceExt;
use zeroclip_server::{app, AppState, LoadedModel, ServerConfig, Worker};

/// The tiny checkpoint with the real vocabulary, so real labels tokenize as CLIP's do.
pub const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/model/hf_real_vocab"
);
/// A small RGB PNG.
pub const IMAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/model/tiny.png"
);

pub fn image_bytes() -> Vec<u8> {
    std::fs::read(IMAGE).expect("fixture image")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn model() -> LoadedModel {
    LoadedModel::load(MODEL).expect("fixture model loads")
}

pub fn config() -> ServerConfig {
    ServerConfig {
        model_name: "tiny".into(),
        ..ServerConfig::default()
    }
}

/// State with its worker running.
pub fn started(config: ServerConfig) -> AppState {
    AppState::start(model(), config)
}

/// Waits until the worker serves (`/readyz` is 503 before).
pub async fn until_ready(state: &AppState) {
    while !state.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// State whose worker the test starts (or not): requests queue up meanwhile.
pub fn unstarted(config: ServerConfig) -> (AppState, Worker) {
    AppState::new(model(), config)
}

/// Sends one request through the router.
pub async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body.to_vec())
}

pub fn json_request(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// POSTs JSON and parses the JSON answer.
pub async fn post_json(state: &AppState, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, _, bytes) = send(state, json_request(path, body)).await;
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

/// POSTs `body` as `content_type` (for bodies `post_json` cannot make) and parses the JSON answer.
pub async fn post_raw(
    state: &AppState,
    path: &str,
    content_type: &str,
    body: &'static str,
) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let (status, _, bytes) = send(state, req).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

pub async fn get(state: &AppState, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    send(state, Request::get(path).body(Body::empty()).unwrap()).await
}

/// One multipart part: field name, optional file name, content.
pub struct Part<'a>(pub &'a str, pub Option<&'a str>, pub &'a [u8]);

pub fn multipart_request(path: &str, parts: &[Part]) -> Request<Body> {
    let boundary = "zeroclip-test-boundary-7f3a";
    let mut body = Vec::new();
    for Part(name, file, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::post(path)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

/// Asserts an error response: status, the JSON `{error, type}` body, and that the message
/// mentions `names`.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode, kind: &str, names: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    let message = body["error"].as_str().expect("error message");
    assert!(message.contains(names), "{message:?} should name {names:?}");
}

/// Checks predictions are sorted by score, sum to 1 and cover exactly `labels`.
pub fn assert_predictions(predictions: &Value, labels: &[&str]) {
    let p = predictions.as_array().expect("predictions array");
    assert_eq!(p.len(), labels.len(), "{predictions}");
    let scores: Vec<f64> = p.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {scores:?}"
    );
    let sum: f64 = scores.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
    let mut got: Vec<&str> = p.iter().map(|x| x["label"].as_str().unwrap()).collect();
    let mut want = labels.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
