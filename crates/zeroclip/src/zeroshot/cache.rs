//! The persistent label-embedding cache: one file per class embedding, so that a second run with
//! the same labels skips the text tower.
//!
//! An entry's key is everything the embedding depends on: the checkpoint's SHA-256, the templates
//! (in order), the label, the context length and whether prompts were truncated. The file name is
//! the SHA-256 of the key, and the file repeats the key in full, so a change in any part of it,
//! a hash collision or a damaged file reads as a miss and the entry is computed again.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 5] = b"ZCLE\x01";
/// Bumped when what is cached for a key changes meaning.
const FORMAT_VERSION: u32 = 1;

/// Everything a cached class embedding depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// The checkpoint's identity (its SHA-256).
    pub model: String,
    /// The templates, in order.
    pub templates: Vec<String>,
    /// The label the templates were filled with.
    pub label: String,
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

    /// The entry's file name: the hex SHA-256 of the encoded key.
    pub fn file_name(&self) -> String {
        let digest = Sha256::digest(self.encoded());
        format!("{}.emb", hex(&digest))
    }
}

/// A directory of cached class embeddings.
#[derive(Debug, Clone)]
pub struct LabelCache {
    dir: PathBuf,
}

impl LabelCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
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

    /// The file an entry lives in.
    pub fn path_for(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The cached embedding for `key`, or `None` when absent, unreadable, damaged, or stored
    /// for a different key.
    pub fn get(&self, key: &CacheKey) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path_for(key)).ok()?;
        decode(&bytes, &key.encoded())
    }

    /// Stores `embedding` for `key`, atomically (a temporary file renamed into place), so that
    /// concurrent runs never read half an entry.
    pub fn put(&self, key: &CacheKey, embedding: &[f32]) -> std::io::Result<()> {
        write_atomically(&self.path_for(key), &encode(&key.encoded(), embedding))
    }
}

impl LabelCache {
    /// The SHA-256 of a checkpoint file — the model part of every [`CacheKey`] — remembered
    /// across runs in this cache's `digests` directory: hashing ViT-B/32's 354 MB took longer
    /// than encoding a few labels, so a warm cache made `classify` slower than no cache.
    pub fn checkpoint_sha256(&self, path: &Path) -> crate::error::Result<String> {
        remembered_sha256(path, &self.dir.join("digests"))
    }
}

/// The SHA-256 of the file at `path` (the hub's, as OpenAI's URLs give it), stored in
/// `memo_dir` under the file's canonical path with its identity: device, inode, size,
/// modification and status-change times to the nanosecond (the change time cannot be set back
/// by tools that preserve mtimes, such as `touch -d` or `rsync -t`). Any difference, or an
/// unreadable memo, means hashing the file again. The memo is best effort: if it cannot be
/// written, the digest is still returned.
fn remembered_sha256(path: &Path, memo_dir: &Path) -> crate::error::Result<String> {
    // The memo file and the identity it must match; neither when the path cannot be resolved.
    let memo = std::fs::canonicalize(path).ok().and_then(|c| {
        let name = hex(&Sha256::digest(c.to_string_lossy().as_bytes()));
        Some((memo_dir.join(format!("{name}.txt")), file_identity(&c)?))
    });
    if let Some((file, id)) = &memo {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some((stored, sha)) = text.trim_end().rsplit_once('\n') {
                if stored == id && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(sha.to_string());
                }
            }
        }
    }
    let sha = zeroclip_hub::sha256_file(path)?;
    if let Some((file, id)) = memo {
        let _ = write_atomically(&file, format!("{id}\n{sha}\n").as_bytes());
    }
    Ok(sha)
}

/// What identifies one version of a file without reading it.
fn file_identity(path: &Path) -> Option<String> {
    let md = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(format!(
            "{} dev {} ino {} len {} mtime {}.{:09} ctime {}.{:09}",
            path.display(),
            md.dev(),
            md.ino(),
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec()
        ))
    }
    #[cfg(not(unix))]
    {
        let modified = md
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!(
            "{} len {} mtime {}",
            path.display(),
            md.len(),
            modified.as_nanos()
        ))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `path` through a temporary file renamed into place, so readers never see half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn encode(key: &[u8], embedding: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + key.len() + 4 * embedding.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(embedding.len() as u32).to_le_bytes());
    for v in embedding {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8], expected_key: &[u8]) -> Option<Vec<f32>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (key_len, rest) = take_u32(rest)?;
    let (key, rest) = rest.split_at_checked(key_len as usize)?;
    if key != expected_key {
        return None;
    }
    let (dim, rest) = take_u32(rest)?;
    if dim == 0 || rest.len() != 4 * dim as usize {
        return None;
    }
    let values: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    values.iter().all(|v| v.is_finite()).then_some(values)
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_at_checked(4)?;
    Some((
        u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zeroclip-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn checkpoint_digest_is_remembered_until_the_file_changes() {
        let dir = temp_dir("digest");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.pt");
        std::fs::write(&file, b"weights v1").unwrap();
        let memo = dir.join("digests");
        let real = zeroclip_hub::sha256_file(&file).unwrap();
        assert_eq!(remembered_sha256(&file, &memo).unwrap(), real);
        // The memo is what the second call reads: a doctored digest for the same identity
        // comes back as is.
        let entry = std::fs::read_dir(&memo)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(&entry).unwrap();
        let fake = "0".repeat(64);
        std::fs::write(&entry, text.replace(&real, &fake)).unwrap();
        assert_eq!(remembered_sha256(&file, &memo).unwrap(), fake);
        // New contents (a new size, modification and change time): hashed again.
        std::fs::write(&file, b"weights version 2").unwrap();
        let real2 = zeroclip_hub::sha256_file(&file).unwrap();
        assert_ne!(real2, real);
        assert_eq!(remembered_sha256(&file, &memo).unwrap(), real2);
        // An unwritable memo directory still gives the digest.
        let blocked = dir.join("model.pt");
        assert_eq!(remembered_sha256(&file, &blocked).unwrap(), real2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn key() -> CacheKey {
        CacheKey {
            model: "abc".into(),
            templates: vec!["a photo of a {}.".into()],
            label: "dog".into(),
            context_length: 77,
            truncate: false,
        }
    }

    #[test]
    fn round_trip_and_miss_on_every_key_part() {
        let dir = temp_dir("roundtrip");
        let cache = LabelCache::new(&dir);
        assert_eq!(cache.get(&key()), None);
        cache.put(&key(), &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(cache.get(&key()), Some(vec![1.0, -2.5, 3.25]));
        let variants = [
            CacheKey {
                model: "abd".into(),
                ..key()
            },
            CacheKey {
                templates: vec!["a photo of the {}.".into()],
                ..key()
            },
            CacheKey {
                templates: vec!["a photo of a {}.".into(), "{}".into()],
                ..key()
            },
            CacheKey {
                label: "cat".into(),
                ..key()
            },
            CacheKey {
                context_length: 76,
                ..key()
            },
            CacheKey {
                truncate: true,
                ..key()
            },
        ];
        for v in &variants {
            assert_ne!(v.file_name(), key().file_name(), "{v:?}");
            assert_eq!(cache.get(v), None, "{v:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_or_foreign_entries_read_as_misses() {
        let dir = temp_dir("damaged");
        let cache = LabelCache::new(&dir);
        cache.put(&key(), &[1.0, 2.0]).unwrap();
        let path = cache.path_for(&key());
        let good = std::fs::read(&path).unwrap();
        // Truncated.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert_eq!(cache.get(&key()), None);
        // An entry for another key under this key's name.
        let other = CacheKey {
            label: "cat".into(),
            ..key()
        };
        std::fs::write(&path, encode(&other.encoded(), &[1.0, 2.0])).unwrap();
        assert_eq!(cache.get(&key()), None);
        // Garbage.
        std::fs::write(&path, b"not an entry").unwrap();
        assert_eq!(cache.get(&key()), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
