//! End-to-end `zeroclip classify` on the tiny real-vocabulary fixture checkpoint
//! (`tests/fixtures/model/hf_real_vocab`, made by `scripts/make_model_fixtures.py` with the
//! reference): probabilities equal to the reference's, every output format, nothing lost, exit
//! codes, and the label cache's hit and invalidation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model");
/// The labels the fixture script tokenized for `tiny.png` (its `LABELS`).
const LABELS: [&str; 3] = ["a diagram", "a dog", "a cat"];

fn model() -> String {
    format!("{FIXTURES}/hf_real_vocab")
}

fn tiny_png() -> String {
    format!("{FIXTURES}/tiny.png")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zeroclip-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary with a private label cache unless the arguments name one.
fn zeroclip(args: &[&str], stdin: Option<&str>, cache: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeroclip"));
    cmd.args(args)
        .env("ZEROCLIP_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn classify(extra: &[&str], cache: &Path) -> Output {
    let model = model();
    let mut args = vec!["classify", "--model", &model];
    args.extend_from_slice(extra);
    zeroclip(&args, None, cache)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The reference's probabilities for `tiny.png` and [`LABELS`]: softmax of the fixture logits.
fn reference_probs() -> Vec<f32> {
    let path = format!("{FIXTURES}/hf_real_vocab.expected.safetensors");
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let logits: Vec<f32> = t["png_logits_per_image"]
        .to_vec2::<f32>()
        .unwrap()
        .remove(0);
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let z: f32 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// Label -> score of one JSON record.
fn scores(record: &serde_json::Value) -> Vec<(String, f32)> {
    record["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {record}"))
        .iter()
        .map(|p| {
            (
                p["label"].as_str().unwrap().to_string(),
                p["score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

#[test]
fn reference_example_probabilities_equal_the_reference() {
    let cache = temp_dir("ref");
    let png = tiny_png();
    let mut args = vec![png.as_str(), "--format", "json", "--labels"];
    args.extend(LABELS);
    let out = classify(&args, &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["input"], png.as_str());
    let got = scores(&v[0]);
    let want = reference_probs();
    assert_eq!(got.len(), 3);
    for (label, score) in &got {
        let i = LABELS.iter().position(|l| l == label).unwrap();
        assert!((score - want[i]).abs() < 1e-4, "{got:?} vs {want:?}");
    }
    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "sorted: {got:?}");
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn every_output_format_carries_the_same_results() {
    let cache = temp_dir("formats");
    let png = tiny_png();
    let run = |format: &str, top_k: &str| {
        let mut args = vec![
            png.as_str(),
            "--top-k",
            top_k,
            "--format",
            format,
            "--labels",
        ];
        args.extend(LABELS);
        let out = classify(&args, &cache);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    let want = scores(&json(&run("json", "2"))[0]);
    assert_eq!(want.len(), 2);

    let jsonl = stdout(&run("jsonl", "2"));
    let lines: Vec<&str> = jsonl.lines().collect();
    assert_eq!(lines.len(), 1);
    let rec: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(scores(&rec), want);

    let csv = stdout(&run("csv", "2"));
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["input", "rank", "label", "score", "error"]);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], png);
        assert_eq!(row[1], (i + 1).to_string());
        assert_eq!(row[2], want[i].0);
        assert!((row[3].parse::<f32>().unwrap() - want[i].1).abs() < 1e-6);
        assert_eq!(row[4], "");
    }

    // The table: the input, then each label with its probability, like the reference printout.
    let table = stdout(&run("table", "2"));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], png);
    assert_eq!(lines.len(), 3);
    for (line, (label, score)) in lines[1..].iter().zip(&want) {
        let (l, s) = line.trim().rsplit_once(' ').unwrap();
        assert_eq!(l.trim(), label);
        assert!((s.parse::<f32>().unwrap() - score).abs() < 1e-6, "{line}");
    }
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn nothing_lost_with_a_corrupt_file_in_a_directory() {
    let cache = temp_dir("lost-cache");
    let dir = temp_dir("lost");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(tiny_png(), dir.join("good.png")).unwrap();
    std::fs::copy(tiny_png(), dir.join("sub/also good.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    std::fs::write(dir.join("notes.txt"), b"not an image, not an input").unwrap();
    let d = dir.display().to_string();
    let missing = format!("{d}/missing.jpg");
    // Batch size 2 puts the broken file in a batch with a good one.
    let args = [
        d.as_str(),
        missing.as_str(),
        "--batch-size",
        "2",
        "--format",
        "json",
        "--labels",
        "a",
        "b",
    ];
    let out = classify(&args, &cache);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    let recs = v.as_array().unwrap();
    let inputs: Vec<&str> = recs.iter().map(|r| r["input"].as_str().unwrap()).collect();
    assert_eq!(
        inputs,
        [
            format!("{d}/broken.png"),
            format!("{d}/good.png"),
            format!("{d}/sub/also good.png"),
            missing.clone()
        ]
    );
    let err = recs[0]["error"].as_str().unwrap();
    assert!(err.contains("broken.png"), "{err}");
    assert!(recs[0].get("predictions").is_none());
    assert_eq!(scores(&recs[1]).len(), 2);
    assert_eq!(scores(&recs[1]), scores(&recs[2]));
    assert!(recs[3]["error"].as_str().unwrap().contains("no such file"));
    assert!(
        stderr(&out).contains("2 of 4 inputs failed"),
        "{}",
        stderr(&out)
    );

    // Globs and paths on stdin reach the same images.
    let model = model();
    let pattern = format!("{d}/*.png");
    let stdin = format!("{d}/good.png\n{d}/broken.png\n");
    let out = zeroclip(
        &[
            "classify", "--model", &model, &pattern, "-", "--format", "jsonl", "--labels", "a", "b",
        ],
        Some(&stdin),
        &cache,
    );
    assert_eq!(out.status.code(), Some(1));
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["input"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            format!("{d}/broken.png"),
            format!("{d}/good.png"),
            format!("{d}/good.png"),
            format!("{d}/broken.png")
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn exit_codes() {
    let cache = temp_dir("exit");
    let png = tiny_png();
    let ok = classify(&[&png, "--labels", "a dog"], &cache);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let usage: &[&[&str]] = &[
        &[&png],                                                  // no labels
        &["--labels", "a dog"],                                   // no inputs
        &[&png, "--labels", "a", "--label-set", "cifar10"],       // two label sources
        &[&png, "--label-set", "mnist"],                          // unknown label set
        &[&png, "--labels", "a", "--templates", "imagenet9"],     // unknown template set
        &[&png, "--labels", "a", "--template", "no placeholder"], // bad template
        &[&png, "--labels", "a", "--format", "xml"],
        &[&png, "--labels", "a", "--batch-size", "0"],
        &[&png, "--labels-file", "/nonexistent/labels.txt"],
    ];
    for args in usage {
        let out = classify(args, &cache);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Model errors.
    for model in ["/nonexistent/model.pt", &png] {
        let out = zeroclip(
            &["classify", &png, "--labels", "a", "--model", model],
            None,
            &cache,
        );
        assert_eq!(out.status.code(), Some(2), "{model}: {}", stderr(&out));
        assert!(stderr(&out).contains(model), "{}", stderr(&out));
    }
    // A label too long for the context, without --truncate: named; with it: fine.
    let long = "a very long label ".repeat(20);
    let out = classify(&[&png, "--labels", "short", &long], &cache);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a very long label"),
        "{}",
        stderr(&out)
    );
    let out = classify(&[&png, "--truncate", "--labels", "short", &long], &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&cache);
}

/// The `-v` line: (from cache, computed).
fn cache_use(out: &Output) -> (usize, usize) {
    let err = stderr(out);
    let line = err
        .lines()
        .find(|l| l.contains("label embeddings:"))
        .unwrap_or_else(|| panic!("{err}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn label_cache_hit_and_invalidation() {
    let cache = temp_dir("labelcache");
    let dir = cache.join("labels");
    let c = dir.display().to_string();
    let png = tiny_png();
    let base = ["--cache-dir", c.as_str(), "-v", "--format", "json"];
    let default_model = model();
    let run = |extra: &[&str], labels: &[&str]| {
        let mut args = vec!["classify", png.as_str()];
        args.extend_from_slice(&base);
        if !extra.contains(&"--model") {
            args.extend(["--model", default_model.as_str()]);
        }
        args.extend_from_slice(extra);
        args.push("--labels");
        args.extend_from_slice(labels);
        let out = zeroclip(&args, None, &cache);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    let first = run(&[], &LABELS);
    assert_eq!(cache_use(&first), (0, 3));
    // The three labels' embeddings are one file.
    assert_eq!(packs(&dir).len(), 1);
    let second = run(&[], &LABELS);
    assert_eq!(cache_use(&second), (3, 0));
    assert_eq!(json(&first), json(&second));

    // Each key part: a new label, templates, truncation, the checkpoint.
    assert_eq!(
        cache_use(&run(&[], &["a diagram", "a dog", "a cat", "a bird"])),
        (3, 1)
    );
    assert_eq!(
        cache_use(&run(&["--template", "a photo of {}."], &LABELS)),
        (0, 3)
    );
    assert_eq!(
        cache_use(&run(&["--templates", "imagenet7"], &LABELS)),
        (0, 3)
    );
    assert_eq!(cache_use(&run(&["--truncate"], &LABELS)), (0, 3));
    let other = cache.join("same-weights-other-file");
    copy_with_new_header(Path::new(&model()), &other);
    let o = other.display().to_string();
    let renamed = run(&["--model", &o], &LABELS);
    assert_eq!(cache_use(&renamed), (0, 3));
    // Same weights: same probabilities, computed afresh.
    assert_eq!(json(&renamed), json(&first));
    assert_eq!(cache_use(&run(&["--model", &o], &LABELS)), (3, 0));

    // --no-cache neither reads nor writes.
    let before = packs(&dir);
    let out = classify(
        &[&png, "--no-cache", "-v", "--labels", "fresh label"],
        &cache,
    );
    assert_eq!(cache_use(&out), (0, 1));
    assert_eq!(packs(&dir), before);
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_cache_hit_reads_the_cached_embeddings() {
    // Plant different (valid) embeddings under the same keys: the output follows the cache,
    // which it could not if the text tower had run.
    let cache = temp_dir("plant");
    let c = cache.join("labels").display().to_string();
    let png = tiny_png();
    let mut args = vec![
        png.as_str(),
        "--cache-dir",
        c.as_str(),
        "--format",
        "json",
        "--labels",
    ];
    args.extend(LABELS);
    let first = json(&classify(&args, &cache));
    // Swap the names of two labels of equal length in the cache's one pack file, so each gets
    // the other's embedding.
    let pack = packs(Path::new(&c)).pop().expect("a pack file");
    let bytes = std::fs::read(&pack).unwrap();
    let swapped = replace_all(&bytes, b"a dog", b"#####");
    let swapped = replace_all(&swapped, b"a cat", b"a dog");
    let swapped = replace_all(&swapped, b"#####", b"a cat");
    assert_ne!(swapped, bytes);
    std::fs::write(&pack, swapped).unwrap();
    let second = json(&classify(&args, &cache));
    let (s1, s2) = (scores(&first[0]), scores(&second[0]));
    let score_of = |s: &[(String, f32)], l: &str| s.iter().find(|p| p.0 == l).unwrap().1;
    let moved = LABELS
        .iter()
        .filter(|l| (score_of(&s1, l) - score_of(&s2, l)).abs() > 1e-6)
        .count();
    assert_eq!(moved, 2, "{s1:?} vs {s2:?}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// The label cache's pack files under `dir`, sorted.
fn packs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "pack") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `bytes` with every `from` replaced by `to` (of the same length).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

/// Copies a Hugging Face checkpoint directory, rewriting `model.safetensors` with metadata in
/// its header: the same tensors in a file with another checksum.
fn copy_with_new_header(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let path = dst.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"] = serde_json::json!({"note": "same weights, other file"});
    let mut h = header.to_string();
    h.push_str(&" ".repeat((8 - h.len() % 8) % 8));
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
}

#[test]
fn label_rules_and_messages_match_the_server() {
    let cache = temp_dir("rules");
    let png = tiny_png();
    let dir = cache.display().to_string();
    let bad_utf8 = cache.join("labels.txt");
    std::fs::write(&bad_utf8, b"a dog\na cat\nab\xffc\n").unwrap();
    let bad_utf8 = bad_utf8.display().to_string();
    let long = "x".repeat(10_000);
    // (arguments, what stderr must say)
    let cases: &[(&[&str], &str)] = &[
        (&[&png, "--labels", "a dog", ""], "is empty (label 2 of 2)"),
        (&[&png, "--labels", "a dog", "a dog"], "more than once"),
        (
            &[&png, "--labels-file", &bad_utf8],
            "line 3 is not valid UTF-8 (bad byte at column 3)",
        ),
        (
            &[&png, "--labels-file", &dir],
            "not a regular file (a directory)",
        ),
        (&[&png, "--labels", "a dog", &long], "xxx…"),
    ];
    for (args, says) in cases {
        let out = classify(args, &cache);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{says:?} not in {err}");
        assert!(err.len() < 500, "a short message: {err}");
        // No cause said twice ("Is a directory (os error 21): Is a directory (os error 21)").
        let parts: Vec<&str> = err.trim_end().split(": ").collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(p), "{p:?} repeated in {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
}
