//! Downloading, verifying and caching checkpoints, as the reference `clip.load` does.

/// Hub errors; each names the URL or file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A download failed.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
}
