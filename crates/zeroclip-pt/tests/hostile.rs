//! Hostile and damaged files: refused with an error naming the file and the reason, never a
//! panic, never code execution.

mod common;

use common::{fixture, scratch, GOOD};
use zeroclip_pt::{read, Error};

#[test]
fn os_system_global_is_refused_and_named() {
    let path = fixture("malicious_os_system.pt");
    match read(&path) {
        Err(e @ Error::UnsupportedGlobal { .. }) => {
            let Error::UnsupportedGlobal { module, name, .. } = &e else {
                unreachable!()
            };
            assert_eq!((module.as_str(), name.as_str()), ("os", "system"));
            let msg = e.to_string();
            assert!(msg.contains("malicious_os_system.pt"), "{msg}");
            assert!(msg.contains("os.system"), "{msg}");
        }
        other => panic!("expected UnsupportedGlobal, got {other:?}"),
    }
}

#[test]
fn torch_saved_object_reducing_to_system_is_refused() {
    // torch.save of an object whose __reduce__ returns os.system pickles `posix.system`.
    match read(&fixture("malicious_legacy.pt")) {
        Err(Error::UnsupportedGlobal { module, name, .. }) => {
            assert_eq!((module.as_str(), name.as_str()), ("posix", "system"))
        }
        other => panic!("expected UnsupportedGlobal, got {other:?}"),
    }
}

#[test]
fn missing_empty_and_foreign_files_are_errors() {
    let missing = fixture("no_such_file.pt");
    assert!(matches!(read(&missing), Err(Error::Io { .. })));
    let path = scratch("foreign");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(read(&path), Err(Error::Truncated { .. })));
    std::fs::write(&path, b"\x89PNG\r\n\x1a\n not a checkpoint").unwrap();
    let err = read(&path).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_truncated_prefix_is_an_error() {
    let path = scratch("truncated");
    for name in GOOD {
        let full = std::fs::read(fixture(&format!("{name}.pt"))).unwrap();
        let n = full.len();
        let mut cuts: Vec<usize> = (0..n.min(700)).step_by(3).collect();
        cuts.extend((0..n).step_by((n / 150).max(1)));
        cuts.extend((n.saturating_sub(700)..n).step_by(3));
        cuts.push(n - 1);
        let mut truncated_variant = false;
        for cut in cuts {
            std::fs::write(&path, &full[..cut]).unwrap();
            match read(&path) {
                Ok(_) => panic!("{name} cut to {cut} of {n} bytes was accepted"),
                Err(Error::Truncated { .. }) => truncated_variant = true,
                Err(_) => {}
            }
        }
        assert!(truncated_variant, "{name}: no cut reported as truncated");
    }
    std::fs::remove_file(&path).unwrap();
}

/// A small deterministic generator, so a failure names a reproducible case.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let path = scratch("flipped");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for name in GOOD {
        let full = std::fs::read(fixture(&format!("{name}.pt"))).unwrap();
        let n = full.len() as u64;
        for case in 0..600 {
            let mut bytes = full.clone();
            for _ in 0..1 + rng.next() % 3 {
                // Half the damage lands in the first and last 4 KiB, where the zip directory,
                // the legacy pickles and data.pkl headers are.
                let r = rng.next();
                let pos = match r % 4 {
                    0 | 2 => r / 4 % n,
                    1 => (r / 4) % n.min(4096),
                    _ => n - 1 - (r / 4) % n.min(4096),
                } as usize;
                bytes[pos] = match r % 3 {
                    0 => (rng.next() & 0xff) as u8,
                    _ => bytes[pos] ^ (1 << (r % 8)),
                };
            }
            std::fs::write(&path, &bytes).unwrap();
            let outcome = std::panic::catch_unwind(|| {
                if let Ok(ckpt) = read(&path) {
                    for t in &ckpt.tensors {
                        let b = t.contiguous_bytes();
                        assert_eq!(b.len(), t.numel() * t.dtype.size_in_bytes());
                    }
                }
            });
            assert!(outcome.is_ok(), "{name}: case {case} panicked");
        }
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn missing_storage_entry_is_named() {
    // state_zip without its first storage: the error names the entry the tensor needs.
    let src = std::fs::File::open(fixture("state_zip.pt")).unwrap();
    let mut zin = zip::ZipArchive::new(src).unwrap();
    let path = scratch("missing-storage");
    let mut zout = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..zin.len() {
        let entry = zin.by_index_raw(i).unwrap();
        if entry.name_raw() != b"state_zip/data/0" {
            zout.raw_copy_file(entry).unwrap();
        }
    }
    zout.finish().unwrap();
    let err = read(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("state_zip/data/0"), "{err}");
}

#[cfg(unix)]
#[test]
fn fifo_or_device_as_checkpoint_is_refused_without_blocking() {
    let fifo = scratch("fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()));
    for path in [fifo.clone(), "/dev/zero".into()] {
        // On a thread: the open of a FIFO blocked forever before, which would hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(read(&p).map(|_| ())).unwrap());
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("reading the path never returned");
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    std::fs::remove_file(&fifo).unwrap();
}
