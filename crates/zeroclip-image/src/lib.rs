//! Image decoding and preprocessing identical to the reference `clip` package's `preprocess`.

/// Image errors; each names the input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input could not be decoded.
    #[error("cannot decode {input}: {reason}")]
    Decode { input: String, reason: String },
}
