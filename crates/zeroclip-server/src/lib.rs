//! The zeroclip HTTP server: zero-shot classification for programs (JSON, multipart, the Hugging
//! Face Inference API payload) and for people (a web page at `/`), with dynamic batching.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a listener until a
//! shutdown signal, then finishes the requests in flight.

#![forbid(unsafe_code)]

// The modules are private: the public surface is what is re-exported below.
mod adapter;
mod api;
mod batcher;
mod cache;
mod config;
mod error;
mod input;
mod labels;
mod listen;
mod metrics;
mod model;
mod page;
mod state;

pub use batcher::Worker;
pub use config::{BatchConfig, Limits, ServerConfig};
pub use error::{ApiError, ErrorBody};
pub use metrics::Metrics;
pub use model::{display_name, Encoder, LoadedModel, ModelInfo};
pub use state::AppState;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::time::Instant;

/// The router: every endpoint, the body limit, the request timeout and the metrics.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits().max_body_bytes;
    Router::new()
        .route("/", get(page::index).post(api::hf_root))
        .route("/assets/{file}", get(page::asset))
        .route("/v1/classify", post(api::classify))
        .route("/v1/embeddings", post(api::embeddings))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(page::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

/// Refuses a body whose declared length is over the limit before reading any of it (so a client
/// that sent `Expect: 100-continue` gets its 413 instead of `100 Continue`, and holds no slot),
/// admits POST requests up to the in-flight limit (probes and pages always pass; a refused one
/// closes its connection, so shed clients do not hold connection slots), and gives up
/// on a request after the request timeout. Dropping the handler also withdraws its queued work:
/// the batcher skips jobs nobody waits for.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.limits().max_body_bytes;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // The body stays unread: the connection cannot be reused.
        return closing(ApiError::PayloadTooLarge { limit });
    }
    let _permit = if req.method() == axum::http::Method::POST {
        match state.admit() {
            Ok(permit) => Some(permit),
            // A shed client gives its connection back at once instead of idling on it.
            Err(e) => return closing(e),
        }
    } else {
        None
    };
    let limit = state.limits().request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            timeout_ms: limit.as_millis() as u64,
        }
        .into_response(),
    }
}

/// The error's response, closing the connection after it.
fn closing(e: ApiError) -> Response {
    let mut response = e.into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Counts every request by route and status, and times it.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics()
        .observe_request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Serves `state` on `listener` until `shutdown` completes, then stops accepting connections
/// and waits for the requests in flight to finish. Connections must send their headers within
/// the header timeout (also their idle limit) and at most `max_connections` are open at once
/// (see [`Limits`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits().clone();
    let open = state.metrics().connections_open.clone();
    listen::run(listener, app(state), &limits, open, shutdown).await
}

/// Completes on Ctrl-C or (on Unix) SIGTERM: the usual `shutdown` for [`serve`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
