//! The reader's one error type: every variant names the file and what was wrong with it.

use std::path::PathBuf;

/// Reader errors; each names the file and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a PyTorch checkpoint this reader understands, or its contents are inconsistent.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file ends (or a zip entry or pickle ends) before the structure it announced.
    #[error("{path}: truncated: {what}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What ends early.
        what: String,
    },
    /// The pickle names a Python global outside the allowlist; nothing is imported or executed.
    #[error("{path}: refusing pickle global `{module}.{name}`: not a known tensor reconstructor")]
    UnsupportedGlobal {
        /// The file.
        path: PathBuf,
        /// The global's module, e.g. `os`.
        module: String,
        /// The global's name, e.g. `system`.
        name: String,
    },
    /// A storage of a dtype this reader has no [`crate::DType`] for (complex, quantized, ...).
    #[error("{path}: unsupported storage type `{storage}`")]
    UnsupportedDType {
        /// The file.
        path: PathBuf,
        /// The storage class, e.g. `ComplexFloatStorage`.
        storage: String,
    },
}

/// A failure found while decoding bytes, before the file path is attached.
#[derive(Debug)]
pub(crate) enum Fault {
    Format(String),
    Truncated(String),
    Global { module: String, name: String },
    DType(String),
}

impl Fault {
    pub(crate) fn at(self, path: &std::path::Path) -> Error {
        let path = path.to_path_buf();
        match self {
            Fault::Format(reason) => Error::Format { path, reason },
            Fault::Truncated(what) => Error::Truncated { path, what },
            Fault::Global { module, name } => Error::UnsupportedGlobal { path, module, name },
            Fault::DType(storage) => Error::UnsupportedDType { path, storage },
        }
    }
}

/// Shorthand for a format fault with a formatted reason.
macro_rules! format_fault {
    ($($arg:tt)*) => { $crate::error::Fault::Format(format!($($arg)*)) };
}
pub(crate) use format_fault;
