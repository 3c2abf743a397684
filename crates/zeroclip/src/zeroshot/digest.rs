//! The checkpoint digest memo and the atomic writes the label cache shares with it.
//!
//! Every cache key names its model by the checkpoint's SHA-256 (as the hub verifies OpenAI's
//! downloads), and hashing a checkpoint of hundreds of megabytes costs more than encoding a few
//! labels, so the digest is remembered per file identity.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The SHA-256 of the file at `path` (the hub's, as OpenAI's URLs give it), stored in
/// `memo_dir` under the file's canonical path with its identity: device, inode, size,
/// modification and status-change times to the nanosecond (the change time cannot be set back
/// by tools that preserve mtimes, such as `touch -d` or `rsync -t`). Any difference, or an
/// unreadable memo, means hashing the file again. The memo is best effort: if it cannot be
/// written, the digest is still returned.
pub(super) fn remembered_sha256(path: &Path, memo_dir: &Path) -> crate::error::Result<String> {
    // The memo file and the identity it must match; neither when the path cannot be resolved.
    let memo = std::fs::canonicalize(path).ok().and_then(|c| {
        let name = hex(&Sha256::digest(c.to_string_lossy().as_bytes()));
        Some((memo_dir.join(format!("{name}.txt")), file_identity(&c)?))
    });
    if let Some((file, id)) = &memo {
        if let Ok(text) = zeroclip_fs::read_text_capped(file, 64 << 10) {
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
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("zeroclip-digest-{name}-{}", std::process::id()));
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
}
