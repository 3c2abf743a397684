//! A reader that stops early (`zeroclip ... | head -1`) ends every command quietly with exit 0,
//! as ripgrep does: each command is made to write far more than a pipe buffer holds, the test
//! reads one line and closes the pipe.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model");

/// Far more output than the 64 KiB a Linux pipe buffers.
const LINES: usize = 3000;

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("zeroclip-pipe-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `zeroclip args`, reads its first line, closes its stdout, and returns the exit code
/// and what it wrote to stderr.
fn first_line_then_close(args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .args(args)
        .env(
            "ZEROCLIP_CACHE_DIR",
            std::env::temp_dir().join("zeroclip-pipe-cache"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "the command wrote a first line");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn texts_file(name: &str) -> String {
    let text: String = (0..LINES)
        .map(|i| format!("a photo of dog number {i}\n"))
        .collect();
    temp_file(name, &text).display().to_string()
}

#[test]
fn tokenize_stops_quietly() {
    let file = texts_file("tokenize.txt");
    let (code, stderr) = first_line_then_close(&["tokenize".into(), "--file".into(), file]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn embed_stops_quietly() {
    let file = texts_file("embed.txt");
    let model = format!("{FIXTURES}/hf_real_vocab");
    let args = ["embed", "--model", &model, "--texts-file", &file];
    let (code, stderr) = first_line_then_close(&args.map(String::from));
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn classify_stops_quietly() {
    let model = format!("{FIXTURES}/hf_real_vocab");
    let png = format!("{FIXTURES}/tiny.png");
    let mut args: Vec<String> = [
        "classify",
        "--model",
        &model,
        "--no-cache",
        "--format",
        "jsonl",
    ]
    .map(String::from)
    .to_vec();
    args.extend(std::iter::repeat_n(png, LINES));
    args.extend(["--labels", "a diagram", "a dog", "a cat"].map(String::from));
    let (code, stderr) = first_line_then_close(&args);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
}
