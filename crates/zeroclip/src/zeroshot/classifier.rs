//! The zero-shot classifier: one embedding per class from its prompts, then each image's
//! probabilities over the classes.
//!
//! Reproduces OpenAI's ImageNet notebook (`zeroshot_classifier`): per class, encode every
//! template filled with the class name, L2-normalize each embedding, take the mean, and normalize
//! again. Scores are the reference's `model(image, text)` followed by softmax: the softmax over
//! classes of `logit_scale * cos(image, class)`, computed by [`super::scoring`], the scoring path
//! the server shares.

use super::cache::{CacheKey, LabelCache};

/// Labels computed between two writes to the label cache: a pack per 4,096 labels keeps the
/// files few while a long run that is interrupted keeps most of its work.
const LABELS_PER_PACK: usize = 4096;
use super::encoder::ZeroShotModel;
use super::scoring::{self, Prediction};
use super::templates::{fill, Templates};
use crate::adapter::Adapter;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// How a classifier is built.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// Truncate prompts longer than the context instead of failing (`clip.tokenize`'s `truncate`).
    pub truncate: bool,
    /// Where class embeddings are cached; `None` always runs the text tower.
    pub cache: Option<LabelCache>,
    /// At most this many prompts go through the text tower at once.
    pub text_batch_size: usize,
    /// Keep only the best `k` predictions per image; `None` keeps all.
    pub top_k: Option<usize>,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        Self {
            truncate: false,
            cache: None,
            text_batch_size: 256,
            top_k: None,
        }
    }
}

/// How the label cache served a build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Labels read from the cache.
    pub hits: usize,
    /// Labels computed with the text tower.
    pub misses: usize,
    /// Entries that could not be written (the classifier works regardless).
    pub write_errors: usize,
}

/// Classifies images against a fixed set of labels, zero-shot. `M` is the model, borrowed
/// (`&Clip`) or shared (`Arc<Clip>`).
pub struct ZeroShotClassifier<M: ZeroShotModel> {
    model: M,
    labels: Vec<String>,
    /// `[labels, embed]`, unit rows.
    class_embeddings: Tensor,
    /// The same rows as plain vectors, for [`scoring`].
    class_rows: Vec<Vec<f32>>,
    top_k: Option<usize>,
    cache_stats: CacheStats,
    /// The prompt templates the class embeddings were built from.
    templates: Vec<String>,
    /// A few-shot adapter, once [`Self::with_adapter`] applied one, with the class embeddings
    /// as flat rows (its arithmetic is tensor-free).
    adapter: Option<(Adapter, Vec<f32>)>,
}

impl<M: ZeroShotModel> ZeroShotClassifier<M> {
    /// A classifier with default options (no cache, all predictions kept).
    pub fn new(model: M, labels: Vec<String>, templates: &Templates) -> Result<Self> {
        Self::with_options(model, labels, templates, &ClassifierOptions::default())
    }

    /// A classifier; class embeddings come from the cache where present, else the text tower.
    pub fn with_options(
        model: M,
        labels: Vec<String>,
        templates: &Templates,
        options: &ClassifierOptions,
    ) -> Result<Self> {
        Self::with_progress(model, labels, templates, options, &mut |_, _| {})
    }

    /// As [`Self::with_options`], calling `progress(done, total)` as labels missing from the
    /// cache go through the text tower (ImageNet with 80 templates is 80,000 prompts).
    pub fn with_progress(
        model: M,
        labels: Vec<String>,
        templates: &Templates,
        options: &ClassifierOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        if labels.is_empty() {
            return Err(Error::NoLabels);
        }
        let templates = templates.list()?;
        let key = match &options.cache {
            Some(cache) => Some(CacheKey {
                model: {
                    let id = match model.weights_file() {
                        Some(file) => cache.checkpoint_sha256(file)?,
                        None => model.identity()?,
                    };
                    match model.precision() {
                        crate::Precision::Fp32 => id,
                        other => format!("{id}+{other}"),
                    }
                },
                templates: templates.clone(),
                context_length: model.context_length(),
                truncate: options.truncate,
            }),
            None => None,
        };
        let mut stats = CacheStats::default();
        let mut rows: Vec<Option<Vec<f32>>> = match (&options.cache, &key) {
            (Some(cache), Some(key)) => cache.get(key, &labels),
            _ => vec![None; labels.len()],
        };
        stats.hits = rows.iter().filter(|r| r.is_some()).count();
        let missing: Vec<usize> = (0..labels.len()).filter(|&i| rows[i].is_none()).collect();
        stats.misses = missing.len();

        // Computed rows are stored a pack at a time: an interrupted run keeps what it stored.
        let mut unstored: Vec<usize> = Vec::new();
        let mut store = |unstored: &mut Vec<usize>, rows: &[Option<Vec<f32>>]| {
            if let (Some(cache), Some(key)) = (&options.cache, &key) {
                let entries: Vec<(&str, &[f32])> = unstored
                    .iter()
                    .filter_map(|&i| Some((labels[i].as_str(), rows[i].as_deref()?)))
                    .collect();
                if cache.put(key, &entries).is_err() {
                    stats.write_errors += entries.len();
                }
            }
            unstored.clear();
        };
        let per_chunk = (options.text_batch_size / templates.len()).max(1);
        let mut done = 0;
        for chunk in missing.chunks(per_chunk) {
            progress(done, missing.len());
            let chunk_labels: Vec<&str> = chunk.iter().map(|&i| labels[i].as_str()).collect();
            let embeddings = encode_classes(&model, &chunk_labels, &templates, options.truncate)?;
            for (&i, emb) in chunk.iter().zip(embeddings) {
                rows[i] = Some(emb);
                unstored.push(i);
            }
            if unstored.len() >= LABELS_PER_PACK {
                store(&mut unstored, &rows);
            }
            done += chunk.len();
        }
        store(&mut unstored, &rows);
        if !missing.is_empty() {
            progress(done, missing.len());
        }

        let rows: Vec<Vec<f32>> = rows.into_iter().flatten().collect();
        let dim = rows[0].len();
        let mut flat = Vec::with_capacity(labels.len() * dim);
        for (label, row) in labels.iter().zip(&rows) {
            if row.len() != dim {
                // Only a cache entry from a different model could disagree; keys prevent that.
                return Err(Error::ShapeMismatch {
                    name: format!("class embedding of {label:?}"),
                    expected: vec![dim],
                    got: vec![row.len()],
                });
            }
            flat.extend_from_slice(row);
        }
        let class_embeddings = Tensor::from_vec(flat, (labels.len(), dim), &model.device())?;
        Ok(Self {
            model,
            labels,
            class_embeddings,
            class_rows: rows,
            top_k: options.top_k,
            cache_stats: stats,
            templates,
            adapter: None,
        })
    }

    /// Applies a few-shot adapter made by [`crate::adapter::fit`] (`zeroclip adapt`): the logits
    /// become [`Adapter::logits`] (prototypes mixed into the class embeddings, or the cache
    /// model's logits added), and a fitted temperature divides them before the softmax. Refused with
    /// [`Error::AdapterMismatch`] when the adapter was built for another model, other labels or
    /// other templates.
    pub fn with_adapter(mut self, adapter: &Adapter) -> Result<Self> {
        adapter.check(&self.model.identity()?, &self.labels, &self.templates)?;
        let text: Vec<f32> = self.class_embeddings.flatten_all()?.to_vec1()?;
        if text.len() != adapter.labels.len() * adapter.dim {
            return Err(Error::AdapterMismatch {
                what: "embedding width",
                adapter: adapter.dim.to_string(),
                classifier: self.class_embeddings.dim(1)?.to_string(),
            });
        }
        self.adapter = Some((adapter.clone(), text));
        Ok(self)
    }

    /// The softmax temperature: the adapter's fitted one, else 1.
    pub fn temperature(&self) -> f64 {
        self.adapter
            .as_ref()
            .and_then(|(a, _)| a.temperature)
            .unwrap_or(1.0)
    }

    /// Keep only the best `k` predictions per image (`None`: all).
    pub fn with_top_k(mut self, k: Option<usize>) -> Self {
        self.top_k = k;
        self
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The labels, in the order given.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The class embeddings `[labels, embed]`, unit rows, in label order.
    pub fn class_embeddings(&self) -> &Tensor {
        &self.class_embeddings
    }

    /// How the label cache served this classifier's build.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache_stats
    }

    /// Predictions for one preprocessed image (`[3, r, r]` or `[1, 3, r, r]`), best first.
    pub fn classify(&self, pixels: &Tensor) -> Result<Vec<Prediction>> {
        let pixels = if pixels.rank() == 3 {
            pixels.unsqueeze(0)?
        } else {
            pixels.clone()
        };
        if pixels.dim(0)? != 1 {
            return Err(Error::ShapeMismatch {
                name: "pixels".into(),
                expected: vec![1, 3, 0, 0],
                got: pixels.dims().to_vec(),
            });
        }
        Ok(self.classify_batch(&pixels)?.remove(0))
    }

    /// Predictions for a batch of preprocessed images `[n, 3, r, r]`, best first per image.
    pub fn classify_batch(&self, pixels: &Tensor) -> Result<Vec<Vec<Prediction>>> {
        let features = self.model.encode_image(pixels)?;
        self.classify_features(&features)
    }

    /// Predictions from image embeddings `[n, embed]` (normalized or not), best first per image.
    pub fn classify_features(&self, image_features: &Tensor) -> Result<Vec<Vec<Prediction>>> {
        let probs = self.probabilities(image_features)?;
        Ok(probs.into_iter().map(|p| self.rank(p)).collect())
    }

    /// Probabilities `[n][labels]` in label order: softmax of `logit_scale * cos` (with an
    /// adapter: of its logits divided by its temperature).
    pub fn probabilities(&self, image_features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let images: Vec<Vec<f32>> = image_features.to_dtype(DType::F32)?.to_vec2()?;
        let scale = self.model.logit_scale();
        Ok(images
            .iter()
            .map(|image| match &self.adapter {
                Some((adapter, text)) => adapter.probabilities(image, text, scale),
                None => scoring::probabilities(image, &self.class_rows, scale),
            })
            .collect())
    }

    /// Logits `[n][labels]` in label order, before any temperature: `logit_scale * cos` (with an
    /// adapter: its logits, see [`Adapter::logits`]).
    pub fn logits(&self, image_features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let images: Vec<Vec<f32>> = image_features.to_dtype(DType::F32)?.to_vec2()?;
        let scale = self.model.logit_scale();
        Ok(images
            .iter()
            .map(|image| {
                let unit = scoring::normalized(image);
                match &self.adapter {
                    Some((adapter, text)) => adapter.logits(&unit, text, scale).remove(0),
                    None => scoring::logits(&unit, &self.class_rows, scale),
                }
            })
            .collect())
    }

    fn rank(&self, probs: Vec<f32>) -> Vec<Prediction> {
        scoring::rank(&probs, &self.labels, self.top_k)
    }
}

/// Class embeddings for `labels`, one unit vector each, ensembled over `templates`.
fn encode_classes<M: ZeroShotModel + ?Sized>(
    model: &M,
    labels: &[&str],
    templates: &[String],
    truncate: bool,
) -> Result<Vec<Vec<f32>>> {
    let mut prompts = Vec::with_capacity(labels.len() * templates.len());
    for label in labels {
        for t in templates {
            prompts.push(fill(t, label)?);
        }
    }
    let embeddings = match model.encode_prompts(&prompts, truncate) {
        Ok(e) => e,
        Err(e) if labels.len() == 1 => {
            return Err(Error::Label {
                label: labels[0].to_string(),
                source: Box::new(e),
            })
        }
        // Find the label to blame, one at a time.
        Err(e) => {
            for label in labels {
                encode_classes(model, &[label], templates, truncate)?;
            }
            return Err(e);
        }
    };
    let rows: Vec<Vec<f32>> = embeddings.to_dtype(DType::F32)?.to_vec2()?;
    Ok(rows
        .chunks(templates.len())
        .map(scoring::ensemble)
        .collect())
}

/// One class embedding from its template embeddings `[templates, embed]`: the mean of the
/// L2-normalized rows, normalized again (one template: just its normalized embedding); see
/// [`scoring::ensemble`], which this wraps for tensors.
pub fn ensemble(template_embeddings: &Tensor) -> Result<Tensor> {
    let rows: Vec<Vec<f32>> = template_embeddings.to_dtype(DType::F32)?.to_vec2()?;
    let e = scoring::ensemble(&rows);
    let n = e.len();
    Ok(Tensor::from_vec(e, n, template_embeddings.device())?)
}

/// Rows `[n, d]` divided by their L2 norm, as the reference's `x / x.norm(dim=-1,
/// keepdim=True)` (a zero row stays zero); see [`scoring::normalize_in_place`], which this wraps
/// for tensors.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let mut rows: Vec<Vec<f32>> = x.to_dtype(DType::F32)?.to_vec2()?;
    rows.iter_mut().for_each(|r| scoring::normalize_in_place(r));
    let (n, d) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_vec(flat, (n, d), x.device())?)
}

/// Stacks preprocessed CHW images into one `[n, 3, r, r]` tensor on `device`.
pub fn stack_pixels(images: &[Vec<f32>], resolution: usize, device: &Device) -> Result<Tensor> {
    let per_image = 3 * resolution * resolution;
    let mut flat = Vec::with_capacity(images.len() * per_image);
    for (i, img) in images.iter().enumerate() {
        if img.len() != per_image {
            return Err(Error::ShapeMismatch {
                name: format!("pixels of image {i}"),
                expected: vec![3, resolution, resolution],
                got: vec![img.len()],
            });
        }
        flat.extend_from_slice(img);
    }
    Ok(Tensor::from_vec(
        flat,
        (images.len(), 3, resolution, resolution),
        device,
    )?)
}
