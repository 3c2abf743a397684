//! `Model` and `Preprocess`: a loaded CLIP and its preprocessing, with numpy arrays in and out.
//!
//! Shapes and dtypes are checked by the Python layer (`zeroclip/_model.py`), which hands over
//! C-contiguous float32 pixels and int64 token ids; the checks here only keep a wrong call from
//! reaching the model.

use crate::errors::{image_error, IntoPy, Kind};
use crate::runtime;
use candle_core::{Device, Tensor};
use numpy::ndarray::Array;
use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyReadonlyArray2, PyReadonlyArray3, PyReadonlyArray4,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use zeroclip::image::RawImage;
use zeroclip::Clip;

/// A loaded CLIP model (the private half of `zeroclip.CLIP`).
#[pyclass(frozen, module = "zeroclip._native")]
pub struct Model {
    pub(crate) clip: Arc<Clip>,
}

/// A model's preprocessing (the private half of `zeroclip.Preprocess`).
#[pyclass(frozen, module = "zeroclip._native")]
pub struct Preprocess {
    pub(crate) inner: zeroclip::image::Preprocess,
}

/// A `[rows, cols]` f32 tensor as a numpy array.
pub(crate) fn to_numpy2<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (rows, cols) = t.dims2().map_err(|e| to_zc(e.into()))?;
    let flat: Vec<f32> = t
        .flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(|e| to_zc(e.into()))?;
    array2(py, flat, rows, cols)
}

pub(crate) fn array2(
    py: Python<'_>,
    flat: Vec<f32>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let a = Array::from_shape_vec((rows, cols), flat)
        .map_err(|e| Kind::Zeroclip.err(format!("result shape: {e}")))?;
    Ok(a.into_pyarray(py))
}

pub(crate) fn array3(
    py: Python<'_>,
    flat: Vec<f32>,
    n: usize,
) -> PyResult<Bound<'_, PyArray3<f32>>> {
    let a = Array::from_shape_vec((3, n, n), flat)
        .map_err(|e| Kind::Zeroclip.err(format!("result shape: {e}")))?;
    Ok(a.into_pyarray(py))
}

fn to_zc(e: zeroclip::Error) -> PyErr {
    crate::errors::to_py(e)
}

impl Model {
    fn pixels_tensor(
        &self,
        pixels: &PyReadonlyArray4<'_, f32>,
    ) -> PyResult<(Vec<f32>, [usize; 4])> {
        let shape = pixels.shape();
        let dims = [shape[0], shape[1], shape[2], shape[3]];
        let data = pixels
            .as_slice()
            .map_err(|_| Kind::InvalidInput.err("pixels must be C-contiguous"))?;
        Ok((data.to_vec(), dims))
    }

    fn ids(&self, tokens: &PyReadonlyArray2<'_, i64>) -> PyResult<(Vec<u32>, [usize; 2])> {
        let shape = tokens.shape();
        let data = tokens
            .as_slice()
            .map_err(|_| Kind::InvalidInput.err("tokens must be C-contiguous"))?;
        let vocab = self.clip.config().vocab_size as i64;
        let mut ids = Vec::with_capacity(data.len());
        for &v in data {
            if !(0..vocab).contains(&v) {
                return Err(Kind::InvalidInput.err(format!(
                    "token id {v} is outside the model's vocabulary [0, {vocab})"
                )));
            }
            ids.push(v as u32);
        }
        Ok((ids, [shape[0], shape[1]]))
    }
}

fn image_embeddings(clip: &Clip, pixels: Vec<f32>, dims: [usize; 4]) -> zeroclip::Result<Tensor> {
    let t = Tensor::from_vec(pixels, dims.to_vec(), &Device::Cpu)?;
    clip.encode_image(&t)
}

fn text_embeddings(clip: &Clip, ids: Vec<u32>, dims: [usize; 2]) -> zeroclip::Result<Tensor> {
    let t = Tensor::from_vec(ids, dims.to_vec(), &Device::Cpu)?;
    clip.encode_text(&t)
}

#[pymethods]
impl Model {
    /// Loads a model name, Hugging Face Hub id, or local checkpoint file or directory; the nine
    /// OpenAI names are downloaded into (or found in) `download_root`, else the shared cache.
    #[staticmethod]
    #[pyo3(signature = (name_or_path, download_root=None, precision="fp32"))]
    fn load(
        py: Python<'_>,
        name_or_path: String,
        download_root: Option<PathBuf>,
        precision: &str,
    ) -> PyResult<(Model, Preprocess)> {
        let precision: zeroclip::Precision = precision
            .parse()
            .map_err(|e: zeroclip::UnknownPrecision| Kind::InvalidInput.err(e.to_string()))?;
        let clip = runtime::run(py, || -> zeroclip::Result<Clip> {
            let options = zeroclip::hub::HubOptions {
                cache_dir: download_root,
                progress: true,
                ..Default::default()
            };
            let resolved = zeroclip::hub::resolve(&name_or_path, &options)?;
            let load = zeroclip::LoadOptions::with_precision(precision);
            Clip::load_with(&resolved.path, &Device::Cpu, &load)
        })?
        .py_err()?;
        let preprocess = zeroclip::preprocess_for(clip.config());
        Ok((
            Model {
                clip: Arc::new(clip),
            },
            Preprocess { inner: preprocess },
        ))
    }

    #[getter]
    fn precision(&self) -> &'static str {
        self.clip.precision().name()
    }

    #[getter]
    fn input_resolution(&self) -> usize {
        self.clip.config().image_resolution
    }

    #[getter]
    fn context_length(&self) -> usize {
        self.clip.config().context_length
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.clip.config().vocab_size
    }

    #[getter]
    fn embed_dim(&self) -> usize {
        self.clip.config().embed_dim
    }

    /// The `logit_scale` parameter as stored (its exponential scales the logits).
    #[getter]
    fn logit_scale(&self) -> f32 {
        self.clip.logit_scale_parameter()
    }

    /// `exp(logit_scale)`, the factor the logits are scaled by.
    #[getter]
    fn logit_scale_exp(&self) -> f32 {
        self.clip.logit_scale()
    }

    /// SHA-256 of the checkpoint.
    fn checksum(&self, py: Python<'_>) -> PyResult<String> {
        let clip = self.clip.clone();
        runtime::run(py, move || clip.checksum())?.py_err()
    }

    /// `[b, 3, n, n]` float32 → `[b, embed_dim]` float32, not normalized.
    fn encode_image<'py>(
        &self,
        py: Python<'py>,
        pixels: PyReadonlyArray4<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (data, dims) = self.pixels_tensor(&pixels)?;
        let clip = &self.clip;
        let t = runtime::run(py, move || image_embeddings(clip, data, dims))?.py_err()?;
        to_numpy2(py, &t)
    }

    /// `[b, ctx]` int64 → `[b, embed_dim]` float32, not normalized.
    fn encode_text<'py>(
        &self,
        py: Python<'py>,
        tokens: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (ids, dims) = self.ids(&tokens)?;
        let clip = &self.clip;
        let t = runtime::run(py, move || text_embeddings(clip, ids, dims))?.py_err()?;
        to_numpy2(py, &t)
    }

    /// `(logits_per_image, logits_per_text)`, as `CLIP.forward`.
    #[allow(clippy::type_complexity)]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        pixels: PyReadonlyArray4<'py, f32>,
        tokens: PyReadonlyArray2<'py, i64>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>)> {
        let (data, pdims) = self.pixels_tensor(&pixels)?;
        let (ids, tdims) = self.ids(&tokens)?;
        let clip = &self.clip;
        let (per_image, per_text) = runtime::run(py, move || -> zeroclip::Result<_> {
            let image = Tensor::from_vec(data, pdims.to_vec(), &Device::Cpu)?;
            let text = Tensor::from_vec(ids, tdims.to_vec(), &Device::Cpu)?;
            clip.forward(&image, &text)
        })?
        .py_err()?;
        Ok((to_numpy2(py, &per_image)?, to_numpy2(py, &per_text)?))
    }
}

#[pymethods]
impl Preprocess {
    /// OpenAI's preprocessing at `resolution` (the reference's `_transform(n)`), with another
    /// `mean` and `std` if given.
    #[staticmethod]
    #[pyo3(signature = (resolution, mean=None, std=None))]
    fn openai(
        resolution: u32,
        mean: Option<[f32; 3]>,
        std: Option<[f32; 3]>,
    ) -> PyResult<Preprocess> {
        if resolution == 0 || resolution > 8192 {
            return Err(Kind::InvalidInput.err(format!(
                "resolution must be between 1 and 8192, got {resolution}"
            )));
        }
        let mut inner = zeroclip::image::Preprocess::openai(resolution);
        inner.mean = mean.unwrap_or(inner.mean);
        inner.std = std.unwrap_or(inner.std);
        if inner.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || inner.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Kind::InvalidInput.err(format!(
                "mean must be finite and std positive, got mean {:?}, std {:?}",
                inner.mean, inner.std
            )));
        }
        Ok(Preprocess { inner })
    }

    #[getter]
    fn resolution(&self) -> u32 {
        self.inner.resolution
    }

    #[getter]
    fn mean(&self) -> [f32; 3] {
        self.inner.mean
    }

    #[getter]
    fn std(&self) -> [f32; 3] {
        self.inner.std
    }

    /// A file → `[3, n, n]` float32.
    fn path<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let p = &self.inner;
        let px = runtime::run(py, || p.preprocess_path(&path))?.map_err(image_error)?;
        array3(py, px, p.resolution as usize)
    }

    /// An encoded file's bytes → `[3, n, n]` float32; `name` names it in errors.
    fn bytes<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        name: String,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let p = &self.inner;
        let px = runtime::run(py, || p.preprocess_bytes(data, &name))?.map_err(image_error)?;
        array3(py, px, p.resolution as usize)
    }

    /// A Pillow image's mode, size and `tobytes()` (and palette, for `P`) → `[3, n, n]` float32.
    #[allow(clippy::too_many_arguments)]
    fn raw<'py>(
        &self,
        py: Python<'py>,
        mode: String,
        width: u32,
        height: u32,
        data: &[u8],
        palette: Option<&[u8]>,
        name: String,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let p = &self.inner;
        let raw = RawImage {
            mode: &mode,
            width,
            height,
            data,
            palette,
        };
        let px = runtime::run(py, || p.preprocess_raw(&raw, &name))?.map_err(image_error)?;
        array3(py, px, p.resolution as usize)
    }

    /// An n×n uint8 RGB crop `[n, n, 3]` → `[3, n, n]` float32 (`ToTensor` + `Normalize`).
    fn normalize<'py>(
        &self,
        py: Python<'py>,
        crop: PyReadonlyArray3<'py, u8>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let n = self.inner.resolution as usize;
        if crop.shape() != [n, n, 3] {
            return Err(Kind::InvalidInput.err(format!(
                "expected a [{n}, {n}, 3] uint8 crop, got shape {:?}",
                crop.shape()
            )));
        }
        let data = crop
            .as_slice()
            .map_err(|_| Kind::InvalidInput.err("crop must be C-contiguous"))?;
        let img = zeroclip::image::RgbImage8 {
            width: n as u32,
            height: n as u32,
            data: data.to_vec(),
        };
        array3(py, self.inner.normalize(&img), n)
    }

    /// `(resized_width, resized_height, left, top)` of the reference's Resize + CenterCrop.
    fn crop_geometry(
        &self,
        width: u32,
        height: u32,
        name: String,
    ) -> PyResult<(u32, u32, u32, u32)> {
        self.inner
            .crop_geometry(width, height, &name)
            .map_err(image_error)
    }
}
