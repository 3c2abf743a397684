//! Opening files whose paths come from users: images, label lists, checkpoints, cache entries.
//!
//! `std::fs::read` trusts the path: a FIFO blocks the open until some writer appears (forever, in
//! a batch nobody feeds), and a character device such as `/dev/zero` is read until memory runs
//! out. Every reader of untrusted paths in zeroclip goes through here instead: the file is opened
//! without blocking, must be a regular file (after symlinks), and is read only up to a cap the
//! caller states. Errors are plain [`std::io::Error`]s for the caller to wrap with the path.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Opens `path` for reading if it is a regular file; a FIFO, socket, device or directory is an
/// [`io::ErrorKind::InvalidInput`] error naming what it is, returned at once.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer opens it, unless non-blocking. On a
        // regular file the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", describe(kind)),
        ))
    }
}

/// The whole of the regular file at `path`, refused with [`io::ErrorKind::FileTooLarge`] when it
/// holds more than `max` bytes (checked against its size first, then while reading, so a file
/// that grows meanwhile is still capped).
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_large(len, max));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(out.len() as u64, max));
    }
    Ok(out)
}

/// As [`read_capped`], for UTF-8 text ([`io::ErrorKind::InvalidData`] otherwise).
pub fn read_text_capped(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, max)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
}

fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{len} bytes, over the limit of {max}"),
    )
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    "not a file"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("zeroclip-fs-{}-{tag}", std::process::id()))
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let path = scratch("regular");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_capped(&path, 10).unwrap(), b"0123456789");
        let err = read_capped(&path, 9).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("10 bytes"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn directories_are_refused() {
        let err = open_regular(&std::env::temp_dir()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused_before_reading() {
        let err = read_capped(Path::new("/dev/zero"), u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("a device"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_without_writer_is_refused_at_once() {
        let path = scratch("fifo");
        let _ = std::fs::remove_file(&path);
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening blocked forever before; the test harness would hang rather than fail, so the
        // open runs on a thread and the answer must come.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(read_capped(&p, 1 << 20)).unwrap());
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("opening a FIFO blocked");
        std::fs::remove_file(&path).unwrap();
        let err = result.unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
    }
}
