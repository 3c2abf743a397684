//! Finding a checkpoint by name, as the reference `clip.load(name)` does: one of OpenAI's 9 model
//! names is downloaded from the reference's URL into `~/.cache/clip` (checksum verified, reused
//! when already there), an existing path is used as is, and a Hugging Face Hub id goes through
//! the `hf-hub` crate.
//!
//! Names are matched before paths, in the reference's order (`if name in _MODELS` comes first).

#![forbid(unsafe_code)]

mod cache;
mod download;
mod error;
mod hf;
mod models;

pub use cache::{
    cache_dir, cached_models, default_cache_dir, scan_cache, sha256_file, sha256_reader, verify,
    CachedModel, CACHE_ENV,
};
pub use download::fetch_verified;
pub use error::{Error, Result};
pub use hf::{hf_cache_dir, parse_hub_id, HubId};
pub use models::{available_models, find_model, OpenAiModel, MODELS, OPENAI_BASE_URL};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to resolve and download. Build with `..Default::default()`: fields may be added.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Cache directory of the 9 OpenAI models; `None`: [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar on stderr (only ever drawn when stderr is a terminal).
    pub progress: bool,
    /// Replaces the OpenAI download host (tests, mirrors); the path after it stays the
    /// reference's. `None`: [`OPENAI_BASE_URL`].
    pub base_url: Option<String>,
    /// Hugging Face endpoint; `None`: `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub hf_endpoint: Option<String>,
    /// Hugging Face cache directory; `None`: see [`hf_cache_dir`].
    pub hf_cache_dir: Option<PathBuf>,
    /// Longest wait to establish a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from the server before giving up (a stalled server).
    pub read_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            cache_dir: None,
            progress: true,
            base_url: None,
            hf_endpoint: None,
            hf_cache_dir: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a resolved checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file or directory the caller named.
    LocalPath,
    /// One of the 9 OpenAI models, verified against `sha256`.
    OpenAi {
        /// The model name, e.g. `ViT-B/32`.
        name: String,
        /// The SHA-256 its URL carries (hex).
        sha256: String,
    },
    /// A Hugging Face Hub repo; the path is its snapshot directory.
    HuggingFace {
        /// The repo id.
        repo: String,
        /// The revision (branch, tag or commit), if one was given.
        revision: String,
    },
}

/// A checkpoint on local disk, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// A checkpoint file, or a directory (Hub snapshot, or a local folder) holding one.
    pub path: PathBuf,
    /// Where it came from.
    pub source: Source,
}

/// Names that can only mean a file: a missing one is reported as such, not as an unknown model.
fn looks_like_path(s: &str) -> bool {
    const EXTENSIONS: &[&str] = &[".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar"];
    s.starts_with(['/', '.', '~'])
        || s.contains('\\')
        || EXTENSIONS
            .iter()
            .any(|e| s.to_ascii_lowercase().ends_with(e))
}

/// Resolves a model name, local path or Hub id to a checkpoint on local disk, downloading it
/// if needed.
///
/// - one of [`available_models`] → the cached file, verified; else downloaded from the
///   reference's URL, verified, and renamed into the cache;
/// - an existing file or directory → itself;
/// - `owner/name` or `owner/name@revision` → the Hub snapshot directory (see [`hf_cache_dir`]).
pub fn resolve(name_or_path: &str, opts: &HubOptions) -> Result<Resolved> {
    if let Some(model) = find_model(name_or_path) {
        let target = cache_dir(opts).join(model.file_name);
        let url = model.url_with_base(opts.base_url.as_deref());
        let path = fetch_verified(&url, model.sha256, &target, opts)?;
        return Ok(Resolved {
            path,
            source: Source::OpenAi {
                name: model.name.to_string(),
                sha256: model.sha256.to_string(),
            },
        });
    }
    let path = Path::new(name_or_path);
    if path.exists() {
        return Ok(Resolved {
            path: path.to_path_buf(),
            source: Source::LocalPath,
        });
    }
    if let Some(id) = parse_hub_id(name_or_path) {
        if !looks_like_path(name_or_path) {
            let path = hf::resolve_hub(&id, opts)?;
            return Ok(Resolved {
                path,
                source: Source::HuggingFace {
                    repo: id.repo,
                    revision: id.revision,
                },
            });
        }
    }
    if looks_like_path(name_or_path) {
        return Err(Error::LocalPathMissing {
            path: path.to_path_buf(),
        });
    }
    Err(Error::UnknownModel {
        name: name_or_path.to_string(),
        available: available_models(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_paths_and_unknown_names_are_told_apart() {
        let opts = HubOptions::default();
        for p in ["/no/such/file.pt", "./nope", "weights/model.safetensors"] {
            match resolve(p, &opts) {
                Err(Error::LocalPathMissing { path }) => assert_eq!(path, Path::new(p)),
                other => panic!("{p}: {other:?}"),
            }
        }
        match resolve("ViT-B-99", &opts) {
            Err(e @ Error::UnknownModel { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("ViT-B-99") && msg.contains("ViT-L/14@336px"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn existing_path_is_used_as_is() {
        let here = env!("CARGO_MANIFEST_DIR");
        let r = resolve(here, &HubOptions::default()).unwrap();
        assert_eq!(r.path, Path::new(here));
        assert_eq!(r.source, Source::LocalPath);
    }
}
