//! Streaming, verified download into the cache, as the reference `clip._download` does, made
//! safe: the bytes go to a temporary file in the cache directory while being hashed, and only a
//! complete file with the expected SHA-256 is renamed (atomically) to its final name. A stalled
//! server hits the read timeout, a short transfer is caught against `Content-Length`, and every
//! failure leaves nothing behind.

use crate::cache::{to_hex, verify};
use crate::{Error, HubOptions, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a failed download tells the user to do instead.
pub(crate) fn offline_hint(url: &str, target: &Path) -> String {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "To load it without this download, fetch {url} elsewhere and pass its path as the model \
         (e.g. --model /path/to/{file}), or put it at {}",
        target.display()
    )
}

/// Returns `target` if it already holds a file with this SHA-256; otherwise downloads `url` to
/// `target` and verifies it. A cached file with a wrong checksum is downloaded again, never used.
pub fn fetch_verified(
    url: &str,
    sha256: &str,
    target: &Path,
    opts: &HubOptions,
) -> Result<PathBuf> {
    if target.exists() && !target.is_file() {
        return Err(Error::NotAFile {
            path: target.to_path_buf(),
        });
    }
    if target.is_file() {
        if verify(target, sha256)? {
            return Ok(target.to_path_buf());
        }
        // The reference warns here too; the stale file stays until a good download replaces it.
        eprintln!(
            "zeroclip: warning: {} exists, but its SHA-256 does not match; downloading it again",
            target.display()
        );
    }
    download(url, sha256, target, opts)?;
    Ok(target.to_path_buf())
}

/// A temporary file that is deleted unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    // Same directory as the target so the final rename never crosses file systems; the process
    // id and counter keep concurrent downloads (threads or processes) apart.
    target.with_file_name(format!(".{name}.{}.{n}.part", std::process::id()))
}

fn agent(opts: &HubOptions) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(opts.connect_timeout)
        .timeout_read(opts.read_timeout)
        // Proxies as urllib honours them, but only for real downloads: ureq ignores NO_PROXY, so
        // an overridden (local) base URL is always reached directly.
        .try_proxy_from_env(opts.base_url.is_none())
        .user_agent(concat!("zeroclip/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn transport_reason(t: &ureq::Transport, opts: &HubOptions) -> String {
    use ureq::ErrorKind as K;
    let what = match t.kind() {
        K::Dns => "could not resolve the host (offline?)".to_string(),
        K::ConnectionFailed => "could not connect (offline?)".to_string(),
        K::Io if is_timeout(t) => format!(
            "no data received for {:?} (the server stalled; read timeout)",
            opts.read_timeout
        ),
        kind => kind.to_string(),
    };
    let detail = [
        t.message().map(str::to_string),
        std::error::Error::source(t).map(|s| s.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(": ");
    if detail.is_empty() {
        what
    } else {
        format!("{what}: {detail}")
    }
}

fn is_timeout(t: &ureq::Transport) -> bool {
    std::error::Error::source(t)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|e| is_timeout_kind(e.kind()))
}

fn is_timeout_kind(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn progress_bar(len: Option<u64>, label: &str, opts: &HubOptions) -> ProgressBar {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("static template"),
        ),
    };
    bar.with_message(label.to_string())
}

/// Downloads `url` to `target` through a temporary file; `target` is only replaced by a complete
/// file whose SHA-256 is `sha256`.
fn download(url: &str, sha256: &str, target: &Path, opts: &HubOptions) -> Result<()> {
    let hint = || offline_hint(url, target);
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let response = agent(opts)
        .get(url)
        // A checkpoint is not worth compressing, and Content-Length must count the file's bytes.
        .set("Accept-Encoding", "identity")
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(status, _) => Error::HttpStatus {
                url: url.to_string(),
                status,
                hint: hint(),
            },
            ureq::Error::Transport(t) => Error::Download {
                url: url.to_string(),
                reason: transport_reason(&t, opts),
                hint: hint(),
            },
        })?;
    let expected_len = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());

    let mut temp = TempFile {
        path: temp_path(target),
        keep: false,
    };
    let mut file = std::fs::File::create(&temp.path).map_err(|e| Error::io(&temp.path, e))?;
    let label = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = progress_bar(expected_len, &label, opts);

    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let truncated = |received| Error::Truncated {
        url: url.to_string(),
        received,
        expected: expected_len.unwrap_or(received),
        hint: hint(),
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && expected_len.is_some() => {
                bar.abandon();
                return Err(truncated(received));
            }
            Err(e) => {
                bar.abandon();
                let reason = if is_timeout_kind(e.kind()) {
                    format!(
                        "no data received for {:?} after {received} bytes (the server stalled; \
                         read timeout)",
                        opts.read_timeout
                    )
                } else {
                    format!("connection failed after {received} bytes: {e}")
                };
                return Err(Error::Download {
                    url: url.to_string(),
                    reason,
                    hint: hint(),
                });
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io(&temp.path, e))?;
        hasher.update(&buf[..n]);
        received += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if expected_len.is_some_and(|len| len != received) {
        return Err(truncated(received));
    }
    file.sync_all().map_err(|e| Error::io(&temp.path, e))?;
    drop(file);

    let actual = to_hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(Error::ChecksumMismatch {
            url: url.to_string(),
            expected: sha256.to_ascii_lowercase(),
            actual,
            hint: hint(),
        });
    }
    std::fs::rename(&temp.path, target).map_err(|e| Error::io(target, e))?;
    temp.keep = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_hidden_siblings_and_unique() {
        let target = Path::new("/cache/clip/ViT-B-32.pt");
        let a = temp_path(target);
        let b = temp_path(target);
        assert_ne!(a, b);
        assert_eq!(a.parent(), target.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".ViT-B-32.pt.") && name.ends_with(".part"),
            "{name}"
        );
    }

    #[test]
    fn hint_names_the_url_and_the_cache_location() {
        let hint = offline_hint("https://x/ViT-B-32.pt", Path::new("/c/ViT-B-32.pt"));
        assert!(hint.contains("https://x/ViT-B-32.pt"), "{hint}");
        assert!(hint.contains("--model /path/to/ViT-B-32.pt"), "{hint}");
        assert!(hint.contains("/c/ViT-B-32.pt"), "{hint}");
    }
}
