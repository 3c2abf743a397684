//! `Classifier`: zero-shot classification and embedding of many images, each batch decoded in
//! parallel, then run through the model (the library's `batch::run_batches`, as the CLI runs it).
//!
//! Inputs arrive from the Python layer as tagged tuples, already told apart there (a path, an
//! encoded file's bytes, a Pillow image's raw pixels, preprocessed pixels, or an input that failed
//! before reaching us); every one of them gets a result or its error, in order.

use crate::errors::{IntoPy, Kind};
use crate::model::{array2, to_numpy2, Model, Preprocess};
use crate::runtime;
use candle_core::Device;
use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::path::PathBuf;
use std::sync::Arc;
use zeroclip::batch::{run_batches, ImageSource};
use zeroclip::zeroshot::{normalize, stack_pixels};
use zeroclip::{ClassifierOptions, Clip, LabelCache, Prediction, Templates, ZeroShotClassifier};

/// A zero-shot classifier over a fixed label set (the private half of `zeroclip.Classifier`).
#[pyclass(frozen, module = "zeroclip._native")]
pub struct Classifier {
    inner: ZeroShotClassifier<Arc<Clip>>,
    preprocess: zeroclip::image::Preprocess,
    truncate: bool,
}

/// One input's outcome: predictions (best first) and, when asked for, its unit image embedding.
type Outcome = Result<(Vec<Prediction>, Option<Vec<f32>>), String>;

/// Reads the Python layer's tagged tuples.
fn sources(items: &Bound<'_, PyList>) -> PyResult<Vec<ImageSource>> {
    items
        .iter()
        .map(|item| {
            let t = item.cast_into::<PyTuple>().map_err(PyErr::from)?;
            let tag: String = t.get_item(0)?.extract()?;
            Ok(match tag.as_str() {
                "path" => ImageSource::Path(t.get_item(1)?.extract::<PathBuf>()?),
                "bytes" => ImageSource::Bytes {
                    data: t.get_item(1)?.extract::<Vec<u8>>()?,
                    name: t.get_item(2)?.extract()?,
                },
                "raw" => ImageSource::Raw {
                    name: t.get_item(1)?.extract()?,
                    mode: t.get_item(2)?.extract()?,
                    width: t.get_item(3)?.extract()?,
                    height: t.get_item(4)?.extract()?,
                    data: t.get_item(5)?.extract::<Vec<u8>>()?,
                    palette: t.get_item(6)?.extract::<Option<Vec<u8>>>()?,
                },
                "pixels" => {
                    let a: PyReadonlyArray1<'_, f32> = t.get_item(1)?.extract()?;
                    ImageSource::Pixels(a.as_array().to_vec())
                }
                "failed" => ImageSource::Failed(t.get_item(1)?.extract()?),
                other => {
                    return Err(Kind::InvalidInput.err(format!("unknown input kind {other:?}")))
                }
            })
        })
        .collect()
}

impl Classifier {
    /// Runs every source; `embeddings` adds each image's unit embedding to its outcome.
    fn run(
        &self,
        sources: &[ImageSource],
        batch_size: usize,
        embeddings: bool,
        pool: &rayon::ThreadPool,
    ) -> Vec<Outcome> {
        let resolution = self.preprocess.resolution as usize;
        let mut out: Vec<Outcome> = Vec::with_capacity(sources.len());
        run_batches(
            sources,
            &self.preprocess,
            batch_size,
            Some(pool),
            |pixels| -> zeroclip::Result<_> {
                let stacked = stack_pixels(pixels, resolution, &Device::Cpu)?;
                let features = self.inner.model().encode_image(&stacked)?;
                let predictions = self.inner.classify_features(&features)?;
                let rows: Vec<Option<Vec<f32>>> = if embeddings {
                    normalize(&features)?
                        .to_vec2::<f32>()?
                        .into_iter()
                        .map(Some)
                        .collect()
                } else {
                    vec![None; predictions.len()]
                };
                Ok(predictions.into_iter().zip(rows).collect())
            },
            |_, result| {
                out.push(result);
                true
            },
        );
        out
    }
}

#[pymethods]
impl Classifier {
    /// Builds the class embeddings (from the label cache where present).
    #[new]
    #[allow(clippy::too_many_arguments)] // the Python constructor's keyword arguments
    #[pyo3(signature = (model, preprocess, labels, templates, top_k=None, truncate=false, cache_dir=None))]
    fn new(
        py: Python<'_>,
        model: &Model,
        preprocess: &Preprocess,
        labels: Vec<String>,
        templates: Vec<String>,
        top_k: Option<usize>,
        truncate: bool,
        cache_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let templates = match templates.len() {
            1 => Templates::Single(templates.into_iter().next().unwrap_or_default()),
            _ => Templates::Custom(templates),
        };
        let options = ClassifierOptions {
            truncate,
            cache: cache_dir.map(LabelCache::new),
            top_k,
            ..Default::default()
        };
        let clip = model.clip.clone();
        let inner = runtime::run(py, move || {
            ZeroShotClassifier::with_options(clip, labels, &templates, &options)
        })?
        .py_err()?;
        Ok(Classifier {
            inner,
            preprocess: preprocess.inner.clone(),
            truncate,
        })
    }

    /// The labels, in order.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// `[labels, embed_dim]` unit class embeddings.
    #[getter]
    fn class_embeddings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        to_numpy2(py, self.inner.class_embeddings())
    }

    /// `(hits, misses)`: labels read from the label cache and labels computed.
    #[getter]
    fn cache_stats(&self) -> (usize, usize) {
        let s = self.inner.cache_stats();
        (s.hits, s.misses)
    }

    /// Per input: `(predictions, embedding or None)` with predictions as `(label, score)` best
    /// first, or the input's error message.
    #[pyo3(signature = (items, batch_size=16, embeddings=false))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyList>,
        batch_size: usize,
        embeddings: bool,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let sources = sources(items)?;
        let outcomes =
            runtime::run_with_pool(py, |pool| self.run(&sources, batch_size, embeddings, pool))?;
        outcomes
            .into_iter()
            .map(|o| match o {
                Ok((predictions, embedding)) => {
                    let pairs: Vec<(String, f32)> = predictions
                        .into_iter()
                        .map(|p| (p.label, p.score))
                        .collect();
                    (pairs, embedding).into_pyobject(py).map(|b| b.into_any())
                }
                Err(message) => Ok(message.into_pyobject(py)?.into_any()),
            })
            .collect()
    }

    /// `(embeddings [n, embed_dim], errors)`: each input's image embedding (unit length when
    /// `normalize`), a row of NaN for an input that failed, and `(index, message)` per failure.
    #[pyo3(signature = (items, batch_size=16, normalize=false))]
    #[allow(clippy::type_complexity)]
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyList>,
        batch_size: usize,
        normalize: bool,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Vec<(usize, String)>)> {
        let sources = sources(items)?;
        let dim = self.inner.class_embeddings().dims()[1];
        let resolution = self.preprocess.resolution as usize;
        let (flat, errors) = runtime::run_with_pool(py, |pool| {
            let mut flat = Vec::with_capacity(sources.len() * dim);
            let mut errors = Vec::new();
            run_batches(
                &sources,
                &self.preprocess,
                batch_size,
                Some(pool),
                |pixels| -> zeroclip::Result<_> {
                    let stacked = stack_pixels(pixels, resolution, &Device::Cpu)?;
                    let mut f = self.inner.model().encode_image(&stacked)?;
                    if normalize {
                        f = zeroclip::zeroshot::normalize(&f)?;
                    }
                    Ok(f.to_vec2::<f32>()?)
                },
                |i, row| {
                    match row {
                        Ok(row) => flat.extend_from_slice(&row),
                        Err(e) => {
                            flat.extend(std::iter::repeat_n(f32::NAN, dim));
                            errors.push((i, e));
                        }
                    }
                    true
                },
            );
            (flat, errors)
        })?;
        Ok((array2(py, flat, sources.len(), dim)?, errors))
    }

    /// `[n, embed_dim]` text embeddings of `texts` as written (unit length when `normalize`).
    #[pyo3(signature = (texts, normalize=false))]
    fn embed_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let model = self.inner.model().clone();
        let truncate = self.truncate;
        let t = runtime::run(py, move || -> zeroclip::Result<_> {
            use zeroclip::ZeroShotModel;
            let f = model.encode_prompts(&texts, truncate)?;
            if normalize {
                zeroclip::zeroshot::normalize(&f)
            } else {
                Ok(f)
            }
        })?
        .py_err()?;
        to_numpy2(py, &t)
    }
}
