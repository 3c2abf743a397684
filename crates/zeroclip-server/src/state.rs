//! The shared state of every handler and the classification pipeline: preprocess images in
//! parallel on blocking threads, fetch label embeddings (cache first, text tower for the rest),
//! batch the images through the image tower, score.

use crate::adapter::ServedAdapter;
use crate::batcher::{self, BatcherHandle, Work, Worker};
use crate::cache::Lru;
use crate::config::{Limits, ServerConfig};
use crate::error::ApiError;
use crate::labels::{self, TemplateSet};
use crate::metrics::Metrics;
use crate::model::{self, LoadedModel, ModelInfo};
use std::sync::Arc;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use zeroclip::image::Preprocess;
use zeroclip::zeroshot::scoring;
use zeroclip::Prediction;

/// Label-cache key: (template set key, label).
type LabelKey = (Arc<str>, String);

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    batcher: BatcherHandle,
    preprocess: Arc<Preprocess>,
    info: ModelInfo,
    limits: Limits,
    cache: Lru<LabelKey, Arc<[f32]>>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    decodes: Arc<Semaphore>,
    adapter: Option<ServedAdapter>,
    /// The adapter's class embeddings (flat `[labels, dim]`, unit rows), computed once, at
    /// start-up or by the first request or probe that needs them.
    adapter_classes: OnceCell<Arc<[f32]>>,
    /// The OpenAPI document as this server's configuration makes it true.
    openapi: String,
}

/// An image as it arrived: its name for messages, and its bytes (or why there are none, e.g.
/// bad base64).
pub(crate) struct ImageInput {
    /// `images[0]` or the uploaded file name.
    pub name: String,
    /// The encoded file.
    pub bytes: Result<Vec<u8>, ApiError>,
}

/// One image's outcome.
pub(crate) struct ItemResult<T> {
    /// The image's name.
    pub input: String,
    /// Its result or its error.
    pub result: Result<T, ApiError>,
}

impl AppState {
    /// Builds the state and the batcher's worker, which the caller starts
    /// ([`Worker::spawn`]); until then requests queue up.
    pub fn new(model: LoadedModel, config: ServerConfig) -> (AppState, Worker) {
        let LoadedModel {
            encoder,
            mut preprocess,
            mut info,
            adapter,
        } = model;
        preprocess.max_pixels = config.limits.max_image_pixels;
        info.name = model::display_name(&config.model_name);
        let metrics = Arc::new(Metrics::default());
        let in_flight = Arc::new(Semaphore::new(config.limits.in_flight_capacity()));
        let decodes = Arc::new(Semaphore::new(config.limits.max_concurrent_decodes.max(1)));
        let (batcher, worker) = batcher::channel(encoder, config.batch, metrics.clone());
        let state = AppState {
            inner: Arc::new(Shared {
                batcher,
                preprocess: Arc::new(preprocess),
                info,
                limits: config.limits,
                cache: Lru::new(config.label_cache_capacity),
                metrics,
                in_flight,
                decodes,
                openapi: crate::page::openapi_document(adapter.as_ref()),
                adapter: adapter.map(ServedAdapter::new),
                adapter_classes: OnceCell::new(),
            }),
        };
        (state, worker)
    }

    /// Builds the state and starts the worker thread; with an adapter, and inside a tokio
    /// runtime, also starts computing the adapter's class embeddings.
    pub fn start(model: LoadedModel, config: ServerConfig) -> AppState {
        let (state, worker) = Self::new(model, config);
        worker.spawn();
        state.warm_adapter();
        state
    }

    /// Starts computing the adapter's class embeddings in the background, unless there is no
    /// adapter, they are done, or no tokio runtime runs here (the first request computes them).
    pub(crate) fn warm_adapter(&self) {
        if self.inner.adapter.is_none() || self.inner.adapter_classes.initialized() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let state = self.clone();
            runtime.spawn(async move {
                // A failure is the next request's to report.
                let _ = state.adapter_classes().await;
            });
        }
    }

    /// Whether the model worker runs.
    pub(crate) fn worker_running(&self) -> bool {
        self.inner.batcher.is_ready()
    }

    /// Whether the adapter (if any) can score: its class embeddings are computed.
    pub(crate) fn adapter_ready(&self) -> bool {
        self.inner.adapter.is_none() || self.inner.adapter_classes.initialized()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The model's facts.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The adapter the server classifies with, if it was started with one.
    pub(crate) fn adapter(&self) -> Option<&ServedAdapter> {
        self.inner.adapter.as_ref()
    }

    /// The OpenAPI document served at `/openapi.json`.
    pub(crate) fn openapi(&self) -> &str {
        &self.inner.openapi
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether the server can answer classifications: the model worker runs and, with an
    /// adapter, the adapter's class embeddings are computed.
    pub fn is_ready(&self) -> bool {
        self.worker_running() && self.adapter_ready()
    }

    /// Requests waiting for the model.
    pub fn queue_depth(&self) -> usize {
        self.inner.batcher.queue_depth()
    }

    /// Entries in the label cache.
    pub fn label_cache_len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Admits one more request, or says the server is overloaded. The permit is held until the
    /// response is ready.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.inner
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                what: "the in-flight request limit",
                capacity: self.inner.limits.in_flight_capacity(),
            })
    }

    /// Checks the number of inputs of one request.
    pub(crate) fn check_inputs(&self, what: &'static str, count: usize) -> Result<(), ApiError> {
        let max = self.inner.limits.max_inputs;
        match count {
            0 => Err(ApiError::NoInputs { what }),
            n if n > max => Err(ApiError::TooManyInputs {
                what,
                count: n,
                max,
            }),
            _ => Ok(()),
        }
    }

    /// Normalized, template-ensembled embeddings of `labels`, from the cache where possible;
    /// the misses go through the text tower in one job.
    pub(crate) async fn label_embeddings(
        &self,
        labels: &[String],
        templates: &TemplateSet,
    ) -> Result<Vec<Arc<[f32]>>, ApiError> {
        let s = &self.inner;
        let mut found: Vec<Option<Arc<[f32]>>> = labels
            .iter()
            .map(|l| s.cache.get(&(templates.key.clone(), l.clone())))
            .collect();
        let missing: Vec<usize> = (0..labels.len()).filter(|&i| found[i].is_none()).collect();
        s.metrics
            .observe_label_cache(labels.len() - missing.len(), missing.len());
        if !missing.is_empty() {
            let per_label = templates.templates.len();
            let texts: Vec<String> = missing
                .iter()
                .flat_map(|&i| templates.expand(&labels[i]))
                .collect();
            let (ids, n) =
                model::tokenize(&texts, s.info.context_length, false, |label, reason| {
                    ApiError::InvalidLabel { label, reason }
                })?;
            // One row per text: the batcher checks the count.
            let rows = s.batcher.run(Work::Texts { ids, n }).await?;
            for (k, &i) in missing.iter().enumerate() {
                let emb: Arc<[f32]> =
                    scoring::ensemble(&rows[k * per_label..(k + 1) * per_label]).into();
                s.cache
                    .insert((templates.key.clone(), labels[i].clone()), emb.clone());
                found[i] = Some(emb);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Text embeddings, L2-normalized or not, of texts as given (no template, no cache).
    pub(crate) async fn embed_texts(
        &self,
        texts: &[String],
        truncate: bool,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        let ctx = self.inner.info.context_length;
        let (ids, n) = model::tokenize(texts, ctx, truncate, |text, reason| {
            ApiError::InvalidText { text, reason }
        })?;
        let mut rows = self.inner.batcher.run(Work::Texts { ids, n }).await?;
        if normalize {
            rows.iter_mut().for_each(|r| scoring::normalize_in_place(r));
        }
        Ok(rows)
    }

    /// Decodes and preprocesses images in parallel on blocking threads; each keeps its own error.
    /// The tasks live in a `JoinSet`, so when the request is dropped (timeout, client gone) the
    /// images still waiting for a decode slot are not decoded for nobody.
    pub(crate) async fn preprocess(&self, images: Vec<ImageInput>) -> Vec<ItemResult<Vec<f32>>> {
        let names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, image) in images.into_iter().enumerate() {
            let pre = self.inner.preprocess.clone();
            let decodes = self.inner.decodes.clone();
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let permit = decodes.acquire_owned().await;
                let result = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let bytes = image.bytes?;
                    pre.preprocess_bytes(&bytes, &image.name)
                        .map_err(|e| ApiError::InvalidImage {
                            input: image.name.clone(),
                            reason: image_reason(e),
                        })
                })
                .await
                .unwrap_or_else(|e| {
                    Err(ApiError::Internal {
                        reason: format!("preprocessing panicked: {e}"),
                    })
                });
                (index, result)
            });
        }
        let mut results: Vec<Option<Result<Vec<f32>, ApiError>>> =
            names.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            // The task only awaits (a panic in the decode is caught above), so it always joins.
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }
        names
            .into_iter()
            .zip(results)
            .map(|(input, result)| {
                let result = result.unwrap_or_else(|| {
                    Err(ApiError::Internal {
                        reason: format!("preprocessing {input} did not finish"),
                    })
                });
                ItemResult { input, result }
            })
            .collect()
    }

    /// Image embeddings, L2-normalized or not, for every image that preprocessed; the others
    /// keep their error.
    pub(crate) async fn embed_images(
        &self,
        images: Vec<ImageInput>,
        normalize: bool,
    ) -> Result<Vec<ItemResult<Vec<f32>>>, ApiError> {
        let mut items = self.preprocess(images).await;
        let pixels: Vec<Vec<f32>> = items
            .iter_mut()
            .filter_map(|it| it.result.as_mut().ok().map(std::mem::take))
            .collect();
        // One row per image that preprocessed: the batcher checks the count.
        let rows = if pixels.is_empty() {
            Vec::new()
        } else {
            self.inner.batcher.run(Work::Images(pixels)).await?
        };
        for (it, mut row) in items.iter_mut().filter(|it| it.result.is_ok()).zip(rows) {
            if normalize {
                scoring::normalize_in_place(&mut row);
            }
            it.result = Ok(row);
        }
        Ok(items)
    }

    /// Classifies each image against the labels. Errors that concern the whole request (labels,
    /// templates, overload) fail it; a bad image fails only its own item.
    pub(crate) async fn classify(
        &self,
        images: Vec<ImageInput>,
        labels: &[String],
        templates: &TemplateSet,
        top_k: Option<usize>,
    ) -> Result<Vec<ItemResult<Vec<Prediction>>>, ApiError> {
        let limits = &self.inner.limits;
        labels::validate_labels(labels, limits)?;
        let per_label = templates.templates.len();
        if labels.len().saturating_mul(per_label) > limits.max_texts {
            return Err(ApiError::TooManyTexts {
                labels: labels.len(),
                templates: per_label,
                max: limits.max_texts,
            });
        }
        self.check_inputs("image", images.len())?;
        let (text, items) = tokio::join!(
            self.label_embeddings(labels, templates),
            // Raw rows: `predict` normalizes them, exactly as the classifier does.
            self.embed_images(images, false)
        );
        let text = text?;
        let scale = self.inner.info.logit_scale;
        Ok(score(items?, |img| {
            scoring::predict(img, labels, &text, scale, top_k)
        }))
    }

    /// Classifies each image against the adapter's classes with the adapter's scores (the
    /// server was started with one and the request is its classification: see
    /// [`crate::adapter`]).
    pub(crate) async fn classify_adapted(
        &self,
        images: Vec<ImageInput>,
        top_k: Option<usize>,
    ) -> Result<Vec<ItemResult<Vec<Prediction>>>, ApiError> {
        let Some(served) = self.adapter() else {
            return Err(ApiError::Internal {
                reason: "no adapter is loaded".into(),
            });
        };
        self.check_inputs("image", images.len())?;
        let (text, items) = tokio::join!(self.adapter_classes(), self.embed_images(images, false));
        let text = text?;
        let scale = self.inner.info.logit_scale;
        let a = &served.adapter;
        Ok(score(items?, |img| {
            scoring::rank(&a.probabilities(img, &text, scale), &a.labels, top_k)
        }))
    }

    /// The adapter's class embeddings, computed on first use. The work runs in its own task,
    /// so a request that gives up (timeout, client gone) does not waste it: the task finishes
    /// and keeps the result for the next request.
    async fn adapter_classes(&self) -> Result<Arc<[f32]>, ApiError> {
        if let Some(done) = self.inner.adapter_classes.get() {
            return Ok(done.clone());
        }
        let state = self.clone();
        let task = tokio::spawn(async move {
            let s = &state.inner;
            let Some(served) = &s.adapter else {
                return Err(ApiError::Internal {
                    reason: "no adapter is loaded".into(),
                });
            };
            let rows = s
                .adapter_classes
                .get_or_try_init(|| async {
                    let rows = state
                        .label_embeddings(&served.adapter.labels, &served.templates)
                        .await?;
                    Ok::<_, ApiError>(rows.iter().flat_map(|r| r.iter().copied()).collect())
                })
                .await?;
            Ok(rows.clone())
        });
        task.await.unwrap_or_else(|e| {
            Err(ApiError::Internal {
                reason: format!("computing the adapter's class embeddings failed: {e}"),
            })
        })
    }
}

/// Scores every image that has an embedding; the others keep their error.
fn score(
    items: Vec<ItemResult<Vec<f32>>>,
    predict: impl Fn(&[f32]) -> Vec<Prediction>,
) -> Vec<ItemResult<Vec<Prediction>>> {
    items
        .into_iter()
        .map(|it| ItemResult {
            input: it.input,
            result: it.result.map(|img| predict(&img)),
        })
        .collect()
}

/// The reason of a preprocessing error, without the input name the `ApiError` already gives.
fn image_reason(e: zeroclip::image::Error) -> String {
    use zeroclip::image::Error as E;
    match e {
        E::Decode { reason, .. } => format!("cannot decode: {reason}"),
        E::Unsupported { reason, .. } => format!("unsupported image: {reason}"),
        E::ZeroSize { width, height, .. } => format!("has zero size ({width}x{height})"),
        E::TooManyPixels { pixels, limit, .. } => {
            format!("has {pixels} pixels, over the limit of {limit}")
        }
        other => other.to_string(),
    }
}
