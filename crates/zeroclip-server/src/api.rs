//! The JSON API handlers: classification (native JSON, multipart, and the Hugging Face
//! zero-shot image classification payload), embeddings, health and readiness.

use crate::error::ApiError;
use crate::input::{self, Body};
use crate::labels::{self, LabelsField, TemplatesField};
use crate::state::{AppState, ImageInput, ItemResult};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;
use zeroclip::Prediction;

/// Native JSON classification request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    /// Base64 images (a `data:` URL prefix is allowed).
    #[serde(default)]
    pub images: Vec<String>,
    /// One base64 image, the same as a one-element `images`.
    pub image: Option<String>,
    /// Candidate labels: a list, or one string of lines or comma-separated names.
    pub labels: Option<LabelsField>,
    /// One custom template with `{}`.
    pub template: Option<String>,
    /// A preset (`default`, `imagenet7`, `imagenet80`) or a list of templates.
    pub templates: Option<TemplatesField>,
    /// Keep only the best `top_k` predictions.
    pub top_k: Option<usize>,
}

/// The Hugging Face Inference API zero-shot image classification request.
#[derive(Debug, Deserialize)]
pub struct HfRequest {
    /// One base64 image.
    pub inputs: String,
    /// Labels and template.
    #[serde(default)]
    pub parameters: HfParameters,
}

/// `parameters` of [`HfRequest`]. Unknown keys are an error, as in the native API: a typo such as
/// `candidate_label` never passes silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfParameters {
    /// The candidate labels.
    pub candidate_labels: Option<LabelsField>,
    /// Template with `{}`; Hugging Face's default when absent.
    pub hypothesis_template: Option<String>,
}

/// One image's predictions or error, as `zeroclip classify --format json` prints them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ItemJson<T: Serialize> {
    /// Success.
    Ok {
        /// The image's name.
        input: String,
        /// Its result.
        #[serde(flatten)]
        value: T,
    },
    /// Failure.
    Err {
        /// The image's name.
        input: String,
        /// Message naming the problem.
        error: String,
        /// The error kind.
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

#[derive(Serialize)]
struct Predictions {
    predictions: Vec<Prediction>,
}

#[derive(Serialize)]
struct Embedding {
    embedding: Vec<f32>,
}

/// A batch answers 200 with per-item results when at least one item succeeded; when every
/// item failed there is nothing to return but the problem, so the first error is the answer.
fn items_or_error<T, U: Serialize>(
    items: Vec<ItemResult<T>>,
    wrap: impl Fn(T) -> U,
) -> Result<Vec<ItemJson<U>>, ApiError> {
    if let Some(first) = items.iter().find_map(|it| it.result.as_ref().err()) {
        if items.iter().all(|it| it.result.is_err()) {
            return Err(first.clone());
        }
    }
    Ok(items
        .into_iter()
        .map(|it| match it.result {
            Ok(v) => ItemJson::Ok {
                input: it.input,
                value: wrap(v),
            },
            Err(e) => ItemJson::Err {
                input: it.input,
                error: e.to_string(),
                kind: e.kind(),
            },
        })
        .collect())
}

/// `POST /v1/classify`: multipart form, native JSON, or the Hugging Face payload.
pub async fn classify(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    let limit = state.limits().max_body_bytes;
    let (images, labels, templates, top_k) = match input::read_body(req, limit).await? {
        Body::Json(v) if v.get("inputs").is_some() => {
            return hf_classify(&state, input::from_json(v)?).await;
        }
        Body::Json(v) => {
            let r: ClassifyRequest = input::from_json(v)?;
            if r.image.is_some() && !r.images.is_empty() {
                return Err(ApiError::InvalidRequest {
                    reason: "give either `image` or `images`, not both".into(),
                });
            }
            let mut images: Vec<ImageInput> = r
                .images
                .iter()
                .enumerate()
                .map(|(i, b)| input::decode_base64(&format!("images[{i}]"), b))
                .collect();
            if let Some(one) = r.image {
                images.push(input::decode_base64("image", &one));
            }
            let labels = r.labels.map(LabelsField::into_labels).unwrap_or_default();
            (images, labels, (r.template, r.templates), r.top_k)
        }
        Body::Multipart(form) => {
            let f = input::read_form(form, limit).await?;
            (f.images, f.labels, (f.template, f.templates), f.top_k)
        }
    };
    if top_k == Some(0) {
        return Err(ApiError::InvalidRequest {
            reason: "top_k must be at least 1".into(),
        });
    }
    let (items, n_templates) = classify_with(
        &state,
        images,
        &labels,
        templates,
        labels::DEFAULT_TEMPLATE,
        top_k,
    )
    .await?;
    let results = items_or_error(items, |predictions| Predictions { predictions })?;
    let mut body = json!({
        "model": state.info().name,
        "templates": n_templates,
        "results": results,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    });
    if let Some(served) = state.adapter() {
        body["adapter"] = served.adapter.method.name().into();
    }
    Ok(Json(body).into_response())
}

/// Classifies as the server is configured: with an adapter, against its classes (the request's
/// labels and templates, if any, checked against it); else zero-shot against the request's
/// labels with its `template` / `templates`, or `fallback` when it gives neither. Also returns
/// how many templates were used.
async fn classify_with(
    state: &AppState,
    images: Vec<ImageInput>,
    labels: &[String],
    (template, templates): (Option<String>, Option<TemplatesField>),
    fallback: &str,
    top_k: Option<usize>,
) -> Result<(Vec<ItemResult<Vec<Prediction>>>, usize), ApiError> {
    if let Some(served) = state.adapter() {
        served.check_request(labels, template, templates, state.limits())?;
        let n = served.templates.templates.len();
        return Ok((state.classify_adapted(images, top_k).await?, n));
    }
    let templates = labels::resolve_templates(template, templates, fallback, state.limits())?;
    let items = state.classify(images, labels, &templates, top_k).await?;
    Ok((items, templates.templates.len()))
}

/// `POST /`: the Hugging Face Inference API zero-shot image classification payload.
pub async fn hf_root(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let request: HfRequest = input::read_json(req, state.limits().max_body_bytes).await?;
    hf_classify(&state, request).await
}

async fn hf_classify(state: &AppState, request: HfRequest) -> Result<Response, ApiError> {
    let labels = request
        .parameters
        .candidate_labels
        .map(LabelsField::into_labels)
        .unwrap_or_default();
    let image = input::decode_base64("inputs", &request.inputs);
    let template = (request.parameters.hypothesis_template, None);
    let (mut items, _) = classify_with(
        state,
        vec![image],
        &labels,
        template,
        labels::HF_DEFAULT_TEMPLATE,
        None,
    )
    .await?;
    let predictions = items.remove(0).result?;
    Ok(Json(predictions).into_response())
}

/// `POST /v1/embeddings` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// Base64 images.
    #[serde(default)]
    pub images: Vec<String>,
    /// Texts, embedded as given (no template).
    #[serde(default)]
    pub texts: Vec<String>,
    /// L2-normalize the embeddings (default true).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Cut texts longer than the context instead of failing.
    #[serde(default)]
    pub truncate: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/embeddings`: image and text embeddings.
pub async fn embeddings(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: EmbeddingsRequest = input::read_json(req, state.limits().max_body_bytes).await?;
    state.check_inputs("image or text", r.images.len() + r.texts.len())?;
    let images: Vec<ImageInput> = r
        .images
        .iter()
        .enumerate()
        .map(|(i, b)| input::decode_base64(&format!("images[{i}]"), b))
        .collect();
    let texts = &r.texts;
    let text_rows = async {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let max = state.limits().max_label_chars;
        if let Some(t) = texts.iter().find(|t| t.chars().count() > max) {
            return Err(ApiError::InvalidText {
                text: t.clone(),
                reason: format!("is longer than {max} characters"),
            });
        }
        state.embed_texts(texts, r.truncate, r.normalize).await
    };
    let image_rows = async {
        if images.is_empty() {
            Ok(Vec::new())
        } else {
            state.embed_images(images, r.normalize).await
        }
    };
    let (text_rows, image_rows) = tokio::join!(text_rows, image_rows);
    let text_rows = text_rows?;
    let image_rows = image_rows?;
    let image_json = if image_rows.is_empty() {
        Vec::new()
    } else {
        items_or_error(image_rows, |embedding| Embedding { embedding })?
    };
    let text_json: Vec<_> = texts
        .iter()
        .zip(text_rows)
        .map(|(t, embedding)| json!({"input": t, "embedding": embedding}))
        .collect();
    Ok(Json(json!({
        "model": state.info().name,
        "dim": state.info().embed_dim,
        "normalized": r.normalize,
        "images": image_json,
        "texts": text_json,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    }))
    .into_response())
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the model worker serves, 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.is_ready() {
        // Started by `AppState::start`; started here for a state that was not.
        state.warm_adapter();
        let reason = if state.worker_running() {
            "the adapter's class embeddings are being computed"
        } else {
            "the model worker is not running"
        };
        return Err(ApiError::NotReady {
            reason: reason.into(),
        });
    }
    let info = state.info();
    Ok(Json(json!({
        "status": "ready",
        "model": info.name,
        "checksum": info.checksum,
        "embed_dim": info.embed_dim,
        "image_resolution": info.image_resolution,
        "context_length": info.context_length,
        "adapter": state.adapter().map(|a| a.describe()),
        "queue_depth": state.queue_depth(),
    })))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}
