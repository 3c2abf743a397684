//! The hub's one error type. Every variant names the URL, repo or file involved and the reason;
//! download failures also carry a `hint` saying how to load the checkpoint without the network.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, downloading or verifying a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is none of the 9 OpenAI models, no existing local path, and not a Hub id.
    #[error(
        "model `{name}` not found; available models = {available:?} \
         (an existing local checkpoint path or a Hugging Face Hub id `owner/name` also works)"
    )]
    UnknownModel {
        /// The name as given.
        name: String,
        /// The OpenAI model names that are known.
        available: Vec<&'static str>,
    },
    /// The name looks like a file path (or checkpoint file name) but nothing exists there.
    #[error("local checkpoint {path} does not exist")]
    LocalPathMissing {
        /// The path that does not exist.
        path: PathBuf,
    },
    /// The transfer could not start or was interrupted: offline, DNS, refused, timed out.
    #[error("download of {url} failed: {reason}. {hint}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
        /// How to load the checkpoint without the network.
        hint: String,
    },
    /// The server answered with an HTTP error status.
    #[error("download of {url} failed: the server answered HTTP {status}. {hint}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// How to load the checkpoint without the network.
        hint: String,
    },
    /// The connection closed before the announced `Content-Length` arrived.
    #[error("download of {url} was cut short: received {received} of {expected} bytes. {hint}")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes the server announced.
        expected: u64,
        /// How to load the checkpoint without the network.
        hint: String,
    },
    /// The downloaded bytes do not have the SHA-256 the URL carries; nothing was kept.
    #[error(
        "downloaded {url} but its SHA-256 is {actual}, expected {expected}; the download was \
         discarded. {hint}"
    )]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The SHA-256 the URL carries (hex).
        expected: String,
        /// The SHA-256 of the bytes received (hex).
        actual: String,
        /// How to load the checkpoint without the network.
        hint: String,
    },
    /// The cache location of a model exists but is a directory or other non-file, as the
    /// reference refuses too.
    #[error("{path} exists and is not a regular file")]
    NotAFile {
        /// The cache location.
        path: PathBuf,
    },
    /// Fetching one file of a Hugging Face Hub repo failed.
    #[error("Hugging Face Hub: fetching {file} of {repo} from {url} failed: {reason}. {hint}")]
    HuggingFace {
        /// The repo id.
        repo: String,
        /// The file of the repo.
        file: String,
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
        /// How to load the checkpoint without the network.
        hint: String,
    },
    /// A Hub repo exists but holds no checkpoint layout zeroclip reads.
    #[error(
        "Hugging Face Hub repo {repo} has none of the checkpoint files zeroclip reads \
         (tried {tried})"
    )]
    HubNoCheckpoint {
        /// The repo id.
        repo: String,
        /// The file names looked for.
        tried: String,
    },
    /// A local file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
