//! Reads the tensors of PyTorch files without Python and without executing anything from the pickle.

/// Reader errors; each names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a PyTorch checkpoint this reader understands.
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
}
