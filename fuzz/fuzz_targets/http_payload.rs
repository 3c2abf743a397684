//! Fuzzes the server's request parsing through `app()`: input byte 0 picks the route (native
//! classify, embeddings, the Hugging Face payload at `/`), byte 1 the content type (JSON,
//! multipart with a fixed boundary, raw image bytes, none), the rest is the body. The model is
//! the tiny random-weight fixture of the repository, so a request that parses also runs. Nothing
//! may panic and no answer may be a 5xx other than 503 (shed load) or 504 (timeout).
#![no_main]

use axum::body::Body;
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tower::ServiceExt;
use zeroclip_server::{app, AppState, LoadedModel, ServerConfig};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/model/hf_real_vocab"
);

struct Harness {
    runtime: tokio::runtime::Runtime,
    state: AppState,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let model = LoadedModel::load(MODEL).expect("fixture model loads");
        let config = ServerConfig {
            model_name: "tiny".into(),
            ..ServerConfig::default()
        };
        let state = runtime.block_on(async { AppState::start(model, config) });
        Harness { runtime, state }
    })
}

fuzz_target!(|data: &[u8]| {
    let [route, kind, body @ ..] = data else {
        return;
    };
    let path = match route % 3 {
        0 => "/v1/classify",
        1 => "/v1/embeddings",
        _ => "/",
    };
    let content_type = match kind % 4 {
        0 => Some("application/json"),
        1 => Some("multipart/form-data; boundary=XyZ"),
        2 => Some("image/png"),
        _ => None,
    };
    let mut req = Request::post(path);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req.body(Body::from(body.to_vec())).expect("request");
    let h = harness();
    let status = h.runtime.block_on(async {
        let response = app(h.state.clone()).oneshot(req).await.expect("infallible");
        let status = response.status();
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        status
    });
    assert!(
        !status.is_server_error() || matches!(status.as_u16(), 503 | 504),
        "{path}: {status}"
    );
});
