//! The checkpoint cache: where it is, checksums, and which of the 9 models it holds.
//!
//! Same directory and file names as the reference (`~/.cache/clip/ViT-B-32.pt`), so files the
//! Python package downloaded are reused; like the reference, a cached file is only trusted after
//! its SHA-256 matches.

use crate::{Error, HubOptions, Result, MODELS};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache directory of the 9 OpenAI models.
pub const CACHE_ENV: &str = "ZEROCLIP_CACHE";

/// `$ZEROCLIP_CACHE` when set and non-empty, else `~/.cache/clip` (the reference's
/// `download_root` default).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    // Without a home directory there is no reference location to share; stay local.
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("clip")
}

/// The cache directory these options select: [`HubOptions::cache_dir`], else
/// [`default_cache_dir`].
pub fn cache_dir(opts: &HubOptions) -> PathBuf {
    opts.cache_dir.clone().unwrap_or_else(default_cache_dir)
}

/// Lowercase hex of the SHA-256 of everything `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(to_hex(&hasher.finalize()))
}

/// Lowercase hex of the SHA-256 of the file at `path`, read in a stream (checkpoints are GBs).
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = zeroclip_fs::open_regular(path).map_err(|e| Error::io(path, e))?;
    sha256_reader(file).map_err(|e| Error::io(path, e))
}

/// Whether the file at `path` has this SHA-256 (hex, either case).
pub fn verify(path: impl AsRef<Path>, sha256: &str) -> Result<bool> {
    Ok(sha256_file(path.as_ref())?.eq_ignore_ascii_case(sha256))
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One of the 9 OpenAI models found in the cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// The model's name, e.g. `ViT-B/32`.
    pub name: &'static str,
    /// Where the file is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether its SHA-256 matches; `None` when not checked (or it could not be read).
    pub sha256_ok: Option<bool>,
}

/// The OpenAI models present in the cache, in the reference's order, each checksum verified.
pub fn cached_models(opts: &HubOptions) -> Vec<CachedModel> {
    scan_cache(opts, true)
}

/// The OpenAI models present in the cache; hashes them only when `verify_checksums` (hashing
/// reads every byte, seconds per GB).
pub fn scan_cache(opts: &HubOptions, verify_checksums: bool) -> Vec<CachedModel> {
    let dir = cache_dir(opts);
    MODELS
        .iter()
        .filter_map(|m| {
            let path = dir.join(m.file_name);
            let meta = std::fs::metadata(&path).ok().filter(|md| md.is_file())?;
            let sha256_ok = if verify_checksums {
                verify(&path, m.sha256).ok()
            } else {
                None
            };
            Some(CachedModel {
                name: m.name,
                path,
                size: meta.len(),
                sha256_ok,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2 known answers: the hasher and the hex encoding, independent of any download.
    #[test]
    fn sha256_known_answers() {
        assert_eq!(
            sha256_reader(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_reader(&b""[..]).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Longer than one read buffer, so the chunked loop is exercised.
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256_reader(&million_a[..]).unwrap(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn option_beats_default() {
        let opts = HubOptions {
            cache_dir: Some(PathBuf::from("/somewhere/else")),
            ..Default::default()
        };
        assert_eq!(cache_dir(&opts), PathBuf::from("/somewhere/else"));
    }
}
