//! The crate's one error type. Every variant names the input (a path or a caller-chosen name), so a
//! batch can report each failure on its own.

/// Image errors; each names the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is corrupt or truncated, or its decoder rejected it.
    #[error("cannot decode {input}: {reason}")]
    Decode {
        /// The input's name (its path, or the name the caller gave).
        input: String,
        /// What the decoder found wrong.
        reason: String,
    },
    /// The input is not in a format (or a variant of one) that zeroclip reads.
    #[error("unsupported image {input}: {reason}")]
    Unsupported {
        /// The input's name (its path, or the name the caller gave).
        input: String,
        /// What is not supported.
        reason: String,
    },
    /// The image has no pixels (a zero width or height).
    #[error("image {input} has zero size ({width}x{height})")]
    ZeroSize {
        /// The input's name.
        input: String,
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
    },
    /// The image's header announces more pixels than the configured limit (a decompression bomb
    /// by Pillow's definition); nothing was allocated for it.
    #[error("image {input} has {pixels} pixels, over the limit of {limit} (decompression bomb?)")]
    TooManyPixels {
        /// The input's name.
        input: String,
        /// Pixels the header announces.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The input could not be read.
    #[error("cannot read {input}: {source}")]
    Io {
        /// The input's name.
        input: String,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
    /// The preprocessing parameters themselves are invalid (e.g. a resolution of 0).
    #[error("invalid preprocessing parameters: {reason}")]
    InvalidConfig {
        /// What is invalid.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn decode(input: &str, reason: impl std::fmt::Display) -> Self {
        Error::Decode {
            input: input.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn unsupported(input: &str, reason: impl std::fmt::Display) -> Self {
        Error::Unsupported {
            input: input.to_owned(),
            reason: reason.to_string(),
        }
    }
}
