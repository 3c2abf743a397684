//! `zeroclip tokenize` end to end: its lines against the reference fixtures, and bad input.

use serde_json::Value;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/tokenizer/"
);

fn records(name: &str) -> Vec<Value> {
    let file = std::fs::File::open(format!("{FIXTURES}{name}")).expect("tokenizer fixture");
    BufReader::new(flate2_free_gunzip(file))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("JSON"))
        .collect()
}

/// The fixtures are gzip; the CLI crate has no gzip dependency, so let `gzip -dc` read them.
fn flate2_free_gunzip(file: std::fs::File) -> std::process::ChildStdout {
    Command::new("gzip")
        .arg("-dc")
        .stdin(file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed")
        .stdout
        .expect("gzip stdout")
}

fn zeroclip(args: &[OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .arg("tokenize")
        .args(args)
        .output()
        .expect("run zeroclip")
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("zeroclip-tokenize-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

fn head(row: &Value) -> Vec<u64> {
    row.as_array()
        .expect("a row")
        .iter()
        .take(4)
        .map(|v| v.as_u64().expect("id"))
        .collect()
}

#[test]
fn rows_match_clip_tokenize_for_every_fixture_case() {
    for truncate in [false, true] {
        for ctx in [77u64, 10, 5, 2, 1, 100] {
            let cases: Vec<Value> = records("tokenize.jsonl.gz")
                .into_iter()
                .filter(|c| c["truncate"] == truncate && c["context_length"] == ctx)
                .collect();
            let mut args: Vec<OsString> = vec!["--context-length".into(), ctx.to_string().into()];
            if truncate {
                args.push("--truncate".into());
            }
            args.extend(
                cases
                    .iter()
                    .map(|c| c["text"].as_str().expect("text").into()),
            );
            let out = zeroclip(&args);
            let got = lines(&out);
            assert_eq!(got.len(), cases.len());
            let any_error = cases.iter().any(|c| c.get("row").is_none());
            assert_eq!(out.status.code(), Some(if any_error { 1 } else { 0 }));
            for (case, line) in cases.iter().zip(&got) {
                match case.get("row") {
                    Some(row) => assert_eq!(line, row, "{}", case["text"]),
                    None => assert!(line["error"].as_str().unwrap().contains("too long")),
                }
            }
        }
    }
}

#[test]
fn file_lines_match_the_reference_ids() {
    let mut body = Vec::new();
    let mut want = Vec::new();
    for rec in records("encode.jsonl.gz").iter().step_by(7) {
        let text = rec["text"].as_str().expect("text");
        let ids = rec["ids"].as_array().expect("ids");
        if text.contains(['\n', '\r']) || ids.len() > 75 || rec.get("mojibake").is_some() {
            continue;
        }
        body.extend_from_slice(text.as_bytes());
        body.push(b'\n');
        let mut row: Vec<Value> = vec![49406.into()];
        row.extend(ids.iter().cloned());
        row.push(49407.into());
        row.resize(77, 0.into());
        want.push(Value::Array(row));
    }
    let path = temp_file("corpus.txt", &body);
    let out = zeroclip(&["--file".into(), path.clone().into()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(want.len() > 500, "{} lines", want.len());
    assert_eq!(lines(&out), want);
}

#[cfg(unix)]
#[test]
fn non_utf8_inputs_are_reported_by_name_and_the_rest_still_run() {
    use std::os::unix::ffi::OsStringExt;
    let path = temp_file("bad.txt", b"a dog\n\xff\xfe bad\r\na cat\n");
    let out = zeroclip(&[
        "a diagram".into(),
        OsString::from_vec(b"caf\xe9".to_vec()),
        "--file".into(),
        path.clone().into(),
    ]);
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert_eq!(got.len(), 5);
    assert_eq!(head(&got[0]), [49406, 320, 22697, 49407]);
    assert!(got[1]["error"].as_str().unwrap().starts_with("argument 2:"));
    assert_eq!(head(&got[2]), [49406, 320, 1929, 49407]);
    let bad_line = got[3]["error"].as_str().unwrap();
    assert!(
        bad_line.contains(&format!("{}:2:", path.display())),
        "{bad_line}"
    );
    assert!(bad_line.contains("not valid UTF-8"));
    assert_eq!(head(&got[4]), [49406, 320, 2368, 49407]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("argument 2") && stderr.contains(":2:"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        zeroclip(&["--context-length".into(), "0".into(), "x".into()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(zeroclip(&[]).status.code(), Some(2));
    let missing = zeroclip(&["--file".into(), "/nonexistent/zeroclip-texts.txt".into()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/zeroclip-texts.txt"));
}
