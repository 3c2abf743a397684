//! Paths that are not regular files: `zeroclip tokenize --file` and the font `eval --plot`
//! reads (`ZEROCLIP_FONT`) refuse a FIFO nobody writes and `/dev/zero` at once with an error
//! naming the path and what it is, instead of hanging or reading zeros until memory runs out.
#![cfg(unix)]

use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

mod common;
use common::run_bounded;

/// A FIFO in a fresh temporary directory (kept alive by the returned guard).
fn fifo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo");
    (dir, path.to_str().unwrap().to_string())
}

fn assert_refused(out: &Output, path: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(path), "names the path: {stderr}");
    assert!(stderr.contains(what), "says it is {what}: {stderr}");
}

#[test]
fn tokenize_refuses_a_fifo_and_a_device_as_its_texts_file() {
    let (_dir, fifo) = fifo();
    let out = run_bounded(&["tokenize", "--file", &fifo], &[]);
    assert_refused(&out, &fifo, "not a regular file (a FIFO)");
    let out = run_bounded(&["tokenize", "--file", "/dev/zero"], &[]);
    assert_refused(&out, "/dev/zero", "not a regular file");
}

#[test]
fn eval_plot_refuses_a_fifo_and_a_device_as_its_font() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("p.svg");
    let (_fifo_dir, fifo) = fifo();
    let model = format!("{FIXTURES}/model/hf_real_vocab");
    let images = format!("{FIXTURES}/eval/images");
    for font in [fifo.as_str(), "/dev/zero"] {
        let out = run_bounded(
            &[
                "eval",
                &images,
                "--model",
                &model,
                "--plot",
                plot.to_str().unwrap(),
            ],
            &[
                ("ZEROCLIP_FONT", font),
                ("ZEROCLIP_CACHE_DIR", dir.path().to_str().unwrap()),
            ],
        );
        assert_refused(&out, font, "not a regular file");
        assert!(String::from_utf8_lossy(&out.stderr).contains("ZEROCLIP_FONT"));
    }
}
