//! The persistent label-embedding cache, so that a second run with the same labels skips the
//! text tower.
//!
//! Everything a class embedding depends on besides its label — the checkpoint's SHA-256, the
//! templates (in order), the context length and whether prompts were truncated — is one
//! [`CacheKey`]. Each key has a directory (named by the key's SHA-256) of a few pack files, each
//! holding many labels' embeddings ([`super::pack`]): one run writes one pack for all the labels
//! it computed, so 20,000 labels are one file, not 20,000. When a key has more than
//! [`MAX_PACKS`] packs they are merged into one. The whole cache is kept under a size bound
//! ([`LabelCache::max_bytes`]) by removing the keys written least recently.
//!
//! Entries are written through a temporary file renamed into place, so concurrent runs never read
//! half a pack; a damaged or foreign pack reads as a miss and its labels are computed again.
//! The one-file-per-label entries (`*.emb`) of earlier versions are not read.

use super::digest::{hex, remembered_sha256, write_atomically};
use super::pack;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Bumped when what is cached for a key changes meaning.
const FORMAT_VERSION: u32 = 2;
/// Packs one key may have before they are merged into one.
pub const MAX_PACKS: usize = 8;
/// The default size bound of a cache: ImageNet's 1,000 classes at width 768 take 3 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// Everything a cached class embedding depends on besides its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// The checkpoint's identity (its SHA-256).
    pub model: String,
    /// The templates, in order.
    pub templates: Vec<String>,
    /// The text context length the prompts were tokenized to.
    pub context_length: usize,
    /// Whether over-long prompts were truncated.
    pub truncate: bool,
}

impl CacheKey {
    fn encoded(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Versioned<'a> {
            version: u32,
            #[serde(flatten)]
            key: &'a CacheKey,
        }
        serde_json::to_vec(&Versioned {
            version: FORMAT_VERSION,
            key: self,
        })
        .expect("a key of strings and numbers always serializes")
    }

    /// The name of the key's directory: the hex SHA-256 of the encoded key.
    pub fn dir_name(&self) -> String {
        hex(&Sha256::digest(self.encoded()))
    }
}

/// A directory of cached class embeddings.
#[derive(Debug, Clone)]
pub struct LabelCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl LabelCache {
    /// A cache in `dir` (created on the first write), bounded to 512 MiB (`DEFAULT_MAX_BYTES`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The same cache with another size bound.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The default cache: `$ZEROCLIP_CACHE_DIR/labels`, else `$XDG_CACHE_HOME/zeroclip/labels`,
    /// else `~/.cache/zeroclip/labels`. `None` when no home directory is known.
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(d) = env("ZEROCLIP_CACHE_DIR") {
            return Some(d.join("labels"));
        }
        let base = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))?;
        Some(base.join("zeroclip").join("labels"))
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes the cache's packs may take together.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The directory of one key's packs.
    pub fn key_dir(&self, key: &CacheKey) -> PathBuf {
        self.sets_dir().join(key.dir_name())
    }

    fn sets_dir(&self) -> PathBuf {
        self.dir.join("sets")
    }

    /// The cached embedding of each of `labels` under `key`, in order; `None` where absent.
    pub fn get(&self, key: &CacheKey, labels: &[String]) -> Vec<Option<Vec<f32>>> {
        let mut stored: HashMap<String, Vec<f32>> = HashMap::new();
        for (_, entries) in self.read_packs(key) {
            stored.extend(entries);
        }
        labels.iter().map(|l| stored.get(l).cloned()).collect()
    }

    /// Stores the embeddings of `entries` (label, embedding; all of one width) under `key` as one
    /// pack, then merges the key's packs if there are too many and removes the least recently
    /// written keys while the cache is over its bound. A pack larger than the whole bound is not
    /// written ([`std::io::ErrorKind::FileTooLarge`]).
    pub fn put(&self, key: &CacheKey, entries: &[(&str, &[f32])]) -> std::io::Result<()> {
        let Some((_, first)) = entries.first() else {
            return Ok(());
        };
        let dim = first.len();
        if dim == 0 || entries.iter().any(|(_, e)| e.len() != dim) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "cache entries of one pack must share a positive width",
            ));
        }
        let bytes = pack::encode(&key.encoded(), dim, entries);
        self.check_fits(bytes.len())?;
        let dir = self.key_dir(key);
        write_atomically(&dir.join(pack_name()), &bytes)?;
        self.merge_packs(key)?;
        self.evict(&dir)
    }

    /// The SHA-256 of a checkpoint file — the model part of every [`CacheKey`] — remembered
    /// across runs in this cache's `digests` directory: hashing ViT-B/32's 354 MB took longer
    /// than encoding a few labels, so a warm cache made `classify` slower than no cache.
    pub fn checkpoint_sha256(&self, path: &Path) -> crate::error::Result<String> {
        remembered_sha256(path, &self.dir.join("digests"))
    }

    fn check_fits(&self, len: usize) -> std::io::Result<()> {
        if len as u64 > self.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "{len} bytes of class embeddings exceed the label cache's bound of {} bytes",
                    self.max_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The key's readable packs (path and entries), oldest first.
    fn read_packs(&self, key: &CacheKey) -> Vec<(PathBuf, Entries)> {
        let expected = key.encoded();
        let mut packs = list_packs(&self.key_dir(key));
        // Oldest first, so a label stored again later wins; names start with the write time.
        packs.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
        packs
            .into_iter()
            .filter_map(|p| {
                let bytes = zeroclip_fs::read_capped(&p.path, self.max_bytes).ok()?;
                Some((p.path, pack::decode(&bytes, &expected)?))
            })
            .collect()
    }

    /// Merges the key's packs into one when there are more than [`MAX_PACKS`]. Packs another
    /// process writes meanwhile are not among those read, so they are kept.
    fn merge_packs(&self, key: &CacheKey) -> std::io::Result<()> {
        let dir = self.key_dir(key);
        if list_packs(&dir).len() <= MAX_PACKS {
            return Ok(());
        }
        let packs = self.read_packs(key);
        let mut merged: Vec<(String, Vec<f32>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (_, entries) in &packs {
            for (label, emb) in entries {
                match index.get(label) {
                    Some(&i) => merged[i].1 = emb.clone(),
                    None => {
                        index.insert(label.clone(), merged.len());
                        merged.push((label.clone(), emb.clone()));
                    }
                }
            }
        }
        let dim = merged.first().map_or(0, |(_, e)| e.len());
        let entries: Vec<(&str, &[f32])> = merged
            .iter()
            .filter(|(_, e)| e.len() == dim)
            .map(|(l, e)| (l.as_str(), e.as_slice()))
            .collect();
        if !entries.is_empty() {
            let bytes = pack::encode(&key.encoded(), dim, &entries);
            self.check_fits(bytes.len())?;
            write_atomically(&dir.join(pack_name()), &bytes)?;
        }
        // Damaged packs were not read; they go too.
        let read: Vec<&PathBuf> = packs.iter().map(|(p, _)| p).collect();
        for p in list_packs(&dir) {
            if read.contains(&&p.path) || pack_is_damaged(&p.path, &key.encoded(), self.max_bytes) {
                let _ = std::fs::remove_file(&p.path);
            }
        }
        Ok(())
    }

    /// Removes whole keys, least recently written first, then older packs of `keep` itself,
    /// until the packs fit in [`Self::max_bytes`].
    fn evict(&self, keep: &Path) -> std::io::Result<()> {
        let mut sets: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.sets_dir()) else {
            return Ok(());
        };
        for d in dirs.flatten() {
            let packs = list_packs(&d.path());
            let newest = packs.iter().map(|p| p.modified).max();
            let size = packs.iter().map(|p| p.len).sum();
            sets.push((newest.unwrap_or(SystemTime::UNIX_EPOCH), size, d.path()));
        }
        let mut total: u64 = sets.iter().map(|s| s.1).sum();
        sets.sort_by_key(|s| s.0);
        for (_, size, path) in &sets {
            if total <= self.max_bytes {
                return Ok(());
            }
            if path != keep && std::fs::remove_dir_all(path).is_ok() {
                total -= size;
            }
        }
        let mut own = list_packs(keep);
        own.sort_by_key(|p| std::cmp::Reverse(p.modified));
        for p in own.iter().skip(1) {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&p.path).is_ok() {
                total -= p.len;
            }
        }
        Ok(())
    }
}

/// One pack's labels and embeddings.
type Entries = Vec<(String, Vec<f32>)>;

struct PackFile {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// The pack files (`*.pack`, regular files) of one key's directory.
fn list_packs(dir: &Path) -> Vec<PackFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .filter_map(|e| {
            let md = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some(PackFile {
                path: e.path(),
                len: md.len(),
                modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

fn pack_is_damaged(path: &Path, key: &[u8], max_bytes: u64) -> bool {
    zeroclip_fs::read_capped(path, max_bytes)
        .ok()
        .and_then(|b| pack::decode(&b, key))
        .is_none()
}

/// A pack name no other writer uses: time, process and a per-process counter.
fn pack_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:032x}-{}-{}.pack",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests;
