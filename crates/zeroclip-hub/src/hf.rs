//! Hugging Face Hub ids (`openai/clip-vit-base-patch32`, optionally `@revision`) through the
//! `hf-hub` crate's blocking API, into the standard Hub cache, so files `huggingface_hub`
//! downloaded are reused.
//!
//! Two checkpoint layouts are tried, in order: transformers (`config.json` + `model.safetensors`
//! or `pytorch_model.bin`) and open_clip (`open_clip_config.json` + `open_clip_model.safetensors`
//! or `open_clip_pytorch_model.bin`). A complete layout already in the cache is used without
//! touching the network.

use crate::{Error, HubOptions, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use std::io::IsTerminal;
use std::path::PathBuf;

/// A config file and the weight files that may go with it, preferred first.
const LAYOUTS: &[(&str, &[&str])] = &[
    ("config.json", &["model.safetensors", "pytorch_model.bin"]),
    (
        "open_clip_config.json",
        &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
    ),
];

/// A parsed Hub id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `owner/name`.
    pub repo: String,
    /// The branch, tag or commit; `main` when not given.
    pub revision: String,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && !s.ends_with(['.', '-'])
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `owner/name` or `owner/name@revision`; `None` for anything else.
pub fn parse_hub_id(s: &str) -> Option<HubId> {
    let (repo, revision) = match s.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() && !rev.contains(char::is_whitespace) => {
            (repo, rev.to_string())
        }
        Some(_) => return None,
        None => (s, "main".to_string()),
    };
    let (owner, name) = repo.split_once('/')?;
    (valid_part(owner) && valid_part(name)).then(|| HubId {
        repo: repo.to_string(),
        revision,
    })
}

/// The Hub cache directory: [`HubOptions::hf_cache_dir`], else `$HF_HUB_CACHE`, else
/// `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's own order).
pub fn hf_cache_dir(opts: &HubOptions) -> PathBuf {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    opts.hf_cache_dir
        .clone()
        .or_else(|| env("HF_HUB_CACHE"))
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".cache")
                .join("huggingface")
                .join("hub")
        })
}

fn endpoint(opts: &HubOptions) -> String {
    opts.hf_endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The snapshot directory of a complete layout already in the cache.
fn cached_snapshot(cache: &Cache, repo: &Repo) -> Option<PathBuf> {
    let cached = cache.repo(repo.clone());
    let by_ref = LAYOUTS.iter().find_map(|(config, weights)| {
        cached.get(config)?;
        let weight = weights.iter().find_map(|w| cached.get(w))?;
        weight.parent().map(PathBuf::from)
    });
    // A commit hash has no `refs/` entry when huggingface_hub downloaded it; its snapshot
    // folder is named after it directly.
    let revision = repo.revision();
    let is_commit = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    by_ref.or_else(|| {
        let dir = cache
            .path()
            .join(repo.folder_name())
            .join("snapshots")
            .join(revision);
        let complete = LAYOUTS.iter().any(|(config, weights)| {
            dir.join(config).is_file() && weights.iter().any(|w| dir.join(w).is_file())
        });
        (is_commit && complete).then_some(dir)
    })
}

fn is_not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::RequestError(b) if matches!(**b, ureq::Error::Status(404, _)))
}

fn hub_error(id: &HubId, api_repo: &ApiRepo, file: &str, e: ApiError) -> Error {
    let reason = match &e {
        ApiError::RequestError(b) => match &**b {
            ureq::Error::Status(status, _) => format!("the server answered HTTP {status}"),
            ureq::Error::Transport(t) => format!("{} (offline?)", t),
        },
        other => other.to_string(),
    };
    let name = id.repo.rsplit('/').next().unwrap_or(&id.repo);
    Error::HuggingFace {
        repo: id.repo.clone(),
        file: file.to_string(),
        url: api_repo.url(file),
        reason,
        hint: format!(
            "To load it without the Hub, download the repo's config and weights elsewhere and \
             pass their folder as the model (e.g. --model /path/to/{name}/)"
        ),
    }
}

/// Fetches `file` into the cache; `Ok(None)` when the repo has no such file.
fn fetch(id: &HubId, api_repo: &ApiRepo, file: &str) -> Result<Option<PathBuf>> {
    match api_repo.get(file) {
        Ok(path) => Ok(Some(path)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(hub_error(id, api_repo, file, e)),
    }
}

/// Resolves a Hub id to the snapshot directory holding its config and weights.
pub fn resolve_hub(id: &HubId, opts: &HubOptions) -> Result<PathBuf> {
    let cache = Cache::new(hf_cache_dir(opts));
    let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
    if let Some(dir) = cached_snapshot(&cache, &repo) {
        return Ok(dir);
    }
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint(opts))
        .with_progress(opts.progress && std::io::stderr().is_terminal())
        .build()
        .map_err(|e| Error::HuggingFace {
            repo: id.repo.clone(),
            file: String::new(),
            url: endpoint(opts),
            reason: e.to_string(),
            hint: String::new(),
        })?;
    let api_repo = api.repo(repo);
    for (config, weights) in LAYOUTS {
        if fetch(id, &api_repo, config)?.is_none() {
            continue;
        }
        for weight in *weights {
            if let Some(path) = fetch(id, &api_repo, weight)? {
                if let Some(dir) = path.parent() {
                    return Ok(dir.to_path_buf());
                }
            }
        }
    }
    let tried = LAYOUTS
        .iter()
        .map(|(c, w)| format!("{c} with {}", w.join(" or ")))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::HubNoCheckpoint {
        repo: id.repo.clone(),
        tried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        let id = parse_hub_id("openai/clip-vit-base-patch32").unwrap();
        assert_eq!(id.repo, "openai/clip-vit-base-patch32");
        assert_eq!(id.revision, "main");
        let id = parse_hub_id("laion/CLIP-ViT-B-32-laion2B-s34B-b79K@v1.0").unwrap();
        assert_eq!(id.revision, "v1.0");
        for bad in [
            "ViT-B-32.pt",
            "a/b/c",
            "./x",
            "../x/y",
            "/abs/path",
            "owner/",
            "/name",
            "o/n@",
            "o w/n",
            "o/n.",
        ] {
            assert_eq!(parse_hub_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn option_beats_environment_for_hub_cache() {
        let opts = HubOptions {
            hf_cache_dir: Some(PathBuf::from("/tmp/hfcache")),
            ..Default::default()
        };
        assert_eq!(hf_cache_dir(&opts), PathBuf::from("/tmp/hfcache"));
        let opts = HubOptions {
            hf_endpoint: Some("http://127.0.0.1:9/".into()),
            ..Default::default()
        };
        assert_eq!(endpoint(&opts), "http://127.0.0.1:9");
    }
}
