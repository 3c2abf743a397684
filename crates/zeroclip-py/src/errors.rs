//! Library errors as Python exceptions: the hierarchy of `zeroclip._errors` (every class derives
//! from `zeroclip.ZeroclipError`), and Python's own `OSError` subclasses for files that are missing
//! or unreadable, so `except FileNotFoundError` works as with any Python library.

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use zeroclip::Error;

/// The exception classes, by their names in `zeroclip._errors`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Base class.
    Zeroclip,
    /// A checkpoint or model name that cannot be loaded.
    ModelLoad,
    /// An image that cannot be decoded or preprocessed.
    ImageDecode,
    /// A text that cannot be tokenized (too long without `truncate`).
    Tokenize,
    /// A model input, label or template that is not valid.
    InvalidInput,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Zeroclip => "ZeroclipError",
            Kind::ModelLoad => "ModelLoadError",
            Kind::ImageDecode => "ImageDecodeError",
            Kind::Tokenize => "TokenizeError",
            Kind::InvalidInput => "InvalidInputError",
        }
    }

    /// The exception of this kind with `message`.
    pub fn err(self, message: impl Into<String>) -> PyErr {
        let message = message.into();
        Python::attach(|py| {
            let class = py
                .import("zeroclip._errors")
                .and_then(|m| m.getattr(self.class_name()))
                .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
            match class {
                Ok(class) => PyErr::from_type(class, message),
                // Only a broken installation gets here; the message is kept all the same.
                Err(e) => PyRuntimeError::new_err(format!("{message} (and: {e})")),
            }
        })
    }
}

fn os_error(err: &std::io::Error, message: String, filename: String) -> PyErr {
    // `OSError(errno, ...)` builds the matching subclass (FileNotFoundError, PermissionError, ...).
    match err.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, message, filename)),
        None => PyOSError::new_err(message),
    }
}

/// An image-crate error as a Python exception.
pub fn image_error(e: zeroclip::image::Error) -> PyErr {
    let message = e.to_string();
    match e {
        zeroclip::image::Error::Io { input, source } => os_error(&source, message, input),
        zeroclip::image::Error::InvalidConfig { .. } => Kind::InvalidInput.err(message),
        _ => Kind::ImageDecode.err(message),
    }
}

/// A library error as a Python exception.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Image(e) => image_error(e),
        Error::Io { path, source } => os_error(&source, message, path.display().to_string()),
        Error::Hub(ref hub) => match hub.as_ref() {
            zeroclip::hub::Error::LocalPathMissing { path } => {
                PyOSError::new_err((2, message.clone(), path.display().to_string()))
            }
            _ => Kind::ModelLoad.err(message),
        },
        Error::Tokenizer(_) => Kind::Tokenize.err(message),
        Error::Label { ref source, .. } if matches!(**source, Error::Tokenizer(_)) => {
            Kind::Tokenize.err(message)
        }
        Error::MissingTensor { .. }
        | Error::UnexpectedTensor { .. }
        | Error::ShapeMismatch { .. }
        | Error::Checkpoint { .. }
        | Error::Config { .. }
        | Error::Pt(_) => Kind::ModelLoad.err(message),
        Error::ModelInput { .. }
        | Error::NoLabels
        | Error::NoTemplates
        | Error::Template { .. }
        | Error::UnknownName { .. }
        | Error::Label { .. } => Kind::InvalidInput.err(message),
        _ => Kind::Zeroclip.err(message),
    }
}

/// `Result` conversion for the library's errors.
pub trait IntoPy<T> {
    /// The value, or the error as a Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for zeroclip::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
