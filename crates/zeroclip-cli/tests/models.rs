//! `zeroclip models` end to end, on a temporary cache chosen through `$ZEROCLIP_CACHE`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

const NAMES: [&str; 9] = [
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B/32",
    "ViT-B/16",
    "ViT-L/14",
    "ViT-L/14@336px",
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zeroclip-cli-models-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn zeroclip(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .env("ZEROCLIP_CACHE", cache)
        .args(args)
        .output()
        .unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// The output line that starts with `name` followed by a space or a colon.
fn line_of<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', ':']))
        })
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
}

/// A loopback server answering every request with 200 and the same few bytes.
fn junk_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\njunk",
            );
        }
    });
    base
}

#[test]
fn list_shows_all_nine_and_the_cache() {
    let cache = TempDir::new("list");
    for args in [&["models"][..], &["models", "list"]] {
        let (code, out, err) = zeroclip(&cache.0, args);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&cache.0.display().to_string()), "{out}");
        for name in NAMES {
            let line = line_of(&out, name);
            assert!(line.split_whitespace().nth(1) == Some("no"), "{line}");
        }
    }
}

#[test]
fn corrupt_cached_file_is_listed_and_fails_verify() {
    let cache = TempDir::new("corrupt");
    std::fs::write(cache.0.join("RN50.pt"), vec![0u8; 2048]).unwrap();

    let (code, out, _) = zeroclip(&cache.0, &["models", "list"]);
    assert_eq!(code, 0);
    let line = line_of(&out, "RN50");
    assert!(line.contains("yes") && line.contains("2.0 KiB"), "{line}");
    assert!(line.contains("MISMATCH"), "{line}");
    assert!(line_of(&out, "RN101").contains("no"));

    let (_, out, _) = zeroclip(&cache.0, &["models", "list", "--no-verify"]);
    assert!(line_of(&out, "RN50").contains("not checked"), "{out}");

    // All cached models: the one present fails.
    let (code, out, _) = zeroclip(&cache.0, &["models", "verify"]);
    assert_eq!(code, 1, "{out}");
    let line = line_of(&out, "RN50");
    assert!(
        line.contains("error") && line.contains("afeb0e10"),
        "{line}"
    );

    // Named models: each one reported, a missing one is a failure too.
    let (code, out, _) = zeroclip(&cache.0, &["models", "verify", "RN50", "ViT-B/32", "nope"]);
    assert_eq!(code, 1, "{out}");
    assert!(line_of(&out, "RN50").contains("error"));
    assert!(line_of(&out, "ViT-B/32").contains("not cached"), "{out}");
    assert!(line_of(&out, "nope").contains("available models"), "{out}");
}

#[test]
fn verify_with_nothing_cached_succeeds() {
    let cache = TempDir::new("empty");
    let (code, out, _) = zeroclip(&cache.0, &["models", "verify"]);
    assert_eq!(code, 0);
    assert!(out.contains("no OpenAI models cached"), "{out}");
}

#[test]
fn download_refuses_a_wrong_checksum_and_keeps_nothing() {
    let cache = TempDir::new("download");
    let base = junk_server();
    let (code, out, _) = zeroclip(
        &cache.0,
        &[
            "models",
            "download",
            "ViT-B/32",
            "RN-nope",
            "--base-url",
            &base,
        ],
    );
    assert_eq!(code, 1, "{out}");
    let line = line_of(&out, "ViT-B/32");
    assert!(line.contains("SHA-256"), "{line}");
    assert!(
        line.contains(&format!(
            "{base}/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
        )),
        "{line}"
    );
    assert!(line.contains("--model /path/to/ViT-B-32.pt"), "{line}");
    assert!(line_of(&out, "RN-nope").contains("available models"));
    assert!(cache.entries().is_empty(), "{:?}", cache.entries());
}

#[test]
fn download_without_names_is_a_usage_error() {
    let cache = TempDir::new("usage");
    let (code, _, err) = zeroclip(&cache.0, &["models", "download"]);
    assert_eq!(code, 2, "{err}");
}
