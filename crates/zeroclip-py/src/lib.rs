//! `zeroclip._native`: the private extension module under the `zeroclip` Python package.
//!
//! The public API — OpenAI `clip`'s names with numpy instead of torch — is the pure-Python package
//! in `python/zeroclip/`; this module holds the objects that do the work and releases the GIL
//! for all of it (see [`runtime`]). Errors become the exceptions of `zeroclip._errors`.

mod classifier;
mod errors;
mod model;
mod runtime;

use errors::IntoPy;
use numpy::ndarray::Array;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;

/// `clip.available_models()`.
#[pyfunction]
fn available_models() -> Vec<&'static str> {
    zeroclip::available_models()
}

/// `clip.tokenize(texts, context_length, truncate)` as int64 `[n, context_length]`.
#[pyfunction]
fn tokenize(
    py: Python<'_>,
    texts: Vec<String>,
    context_length: usize,
    truncate: bool,
) -> PyResult<Bound<'_, PyArray2<i64>>> {
    let batch = runtime::run(py, || {
        zeroclip::tokenizer::tokenize(&texts, context_length, truncate)
    })?
    .map_err(|e| errors::to_py(e.into()))?;
    let ids: Vec<i64> = batch.ids.iter().map(|&v| i64::from(v)).collect();
    let a = Array::from_shape_vec((batch.n, batch.context_length), ids)
        .map_err(|e| errors::Kind::Zeroclip.err(format!("token ids: {e}")))?;
    Ok(a.into_pyarray(py))
}

/// The built-in label set `name` (imagenet, cifar10, cifar100).
#[pyfunction]
fn label_set(name: &str) -> PyResult<Vec<String>> {
    Ok(zeroclip::LabelSet::from_name(name).py_err()?.labels())
}

/// The built-in template set `name` (imagenet80, imagenet7).
#[pyfunction]
fn template_set(name: &str) -> PyResult<Vec<String>> {
    zeroclip::Templates::from_name(name)
        .py_err()?
        .list()
        .py_err()
}

/// The label cache's default folder, if the environment gives one.
#[pyfunction]
fn default_cache_dir() -> Option<std::path::PathBuf> {
    zeroclip::LabelCache::default_dir()
}

/// Sets the number of threads the library works with.
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    runtime::set_num_threads(n)
}

/// The number of threads the library works with.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    runtime::num_threads()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(available_models, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(label_set, m)?)?;
    m.add_function(wrap_pyfunction!(template_set, m)?)?;
    m.add_function(wrap_pyfunction!(default_cache_dir, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::Preprocess>()?;
    m.add_class::<classifier::Classifier>()?;
    m.add("MAX_THREADS", runtime::MAX_THREADS)?;
    m.add("RAW_MODES", zeroclip::image::RAW_MODES.to_vec())?;
    m.add("DEFAULT_TEMPLATE", zeroclip::zeroshot::DEFAULT_TEMPLATE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
