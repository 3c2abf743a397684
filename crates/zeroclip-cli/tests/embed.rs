//! End-to-end `zeroclip embed` on the tiny real-vocabulary fixture checkpoint: image and text
//! embeddings equal to the reference's (`scripts/make_model_fixtures.py`), in `.npy`,
//! `.safetensors` and JSON lines, normalized or not, with failed inputs reported.

use std::path::PathBuf;
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model");
const LABELS: [&str; 3] = ["a diagram", "a dog", "a cat"];
const TOL: f32 = 1e-4;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zeroclip-embed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn embed(args: &[&str]) -> Output {
    let model = format!("{FIXTURES}/hf_real_vocab");
    Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .arg("embed")
        .args(["--model", &model])
        .args(args)
        .output()
        .unwrap()
}

fn expected(name: &str) -> Vec<Vec<f32>> {
    let path = format!("{FIXTURES}/hf_real_vocab.expected.safetensors");
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    t[name].to_vec2::<f32>().unwrap()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn assert_rows_close(got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= TOL, "{g:?}\nvs\n{w:?}");
        }
    }
}

/// Reads a float32 C-order 2-D `.npy` file.
fn read_npy(path: &PathBuf) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header aligned as NumPy writes it");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    data.chunks(dims[1]).map(<[f32]>::to_vec).collect()
}

fn jsonl(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn image_embeddings_to_npy_with_a_failed_input_indexed() {
    let dir = temp_dir("npy");
    let png = format!("{FIXTURES}/tiny.png");
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"not an image").unwrap();
    let b = broken.display().to_string();
    let out_path = dir.join("images.npy");
    let o = out_path.display().to_string();
    let out = embed(&[&png, &b, &png, "-o", &o]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_npy(&out_path);
    let want = expected("png_image_embeds");
    assert_rows_close(&rows, &[want[0].clone(), want[0].clone()]);
    let index = jsonl(&out);
    assert_eq!(index.len(), 3);
    assert_eq!(index[0], serde_json::json!({"input": png, "row": 0}));
    assert!(index[1]["error"].as_str().unwrap().contains("broken.png"));
    assert_eq!(index[2], serde_json::json!({"input": png, "row": 1}));

    // Normalized.
    let out = embed(&[&png, "--normalize", "-o", &o]);
    assert_eq!(out.status.code(), Some(0));
    assert_rows_close(&read_npy(&out_path), &[unit(&want[0])]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_embeddings_to_safetensors_and_jsonl() {
    let dir = temp_dir("text");
    let out_path = dir.join("texts.safetensors");
    let o = out_path.display().to_string();
    let mut args = vec!["--normalize", "-o", o.as_str(), "--text"];
    args.extend(LABELS);
    let out = embed(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = candle_core::safetensors::load(&out_path, &candle_core::Device::Cpu).unwrap();
    let got: Vec<Vec<f32>> = t["embeddings"].to_vec2().unwrap();
    let want: Vec<Vec<f32>> = expected("label_text_embeds")
        .iter()
        .map(|r| unit(r))
        .collect();
    assert_rows_close(&got, &want);
    // The row names travel in the metadata.
    let bytes = std::fs::read(&out_path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let rows: Vec<String> =
        serde_json::from_str(header["__metadata__"]["rows"].as_str().unwrap()).unwrap();
    assert_eq!(rows, LABELS);
    assert_eq!(header["__metadata__"]["normalized"], "true");

    // JSON lines on stdout, not normalized, from a file of texts.
    let texts = dir.join("texts.txt");
    std::fs::write(&texts, LABELS.join("\n")).unwrap();
    let out = embed(&["--texts-file", &texts.display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    let lines = jsonl(&out);
    let got: Vec<Vec<f32>> = lines
        .iter()
        .map(|l| {
            l["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(names, LABELS);
    assert_rows_close(&got, &expected("label_text_embeds"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2_and_a_long_text_fails_alone() {
    // Binary formats need a file; nothing to embed; images and texts together.
    for args in [
        &["--text", "a", "--format", "npy"][..],
        &[][..],
        &["x.png", "--text", "a"][..],
    ] {
        let out = embed(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let long = "word ".repeat(100);
    let out = embed(&["--text", "a dog", &long]);
    assert_eq!(out.status.code(), Some(1));
    let lines = jsonl(&out);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["embedding"].is_array());
    assert!(
        lines[1]["error"].as_str().unwrap().contains("too long"),
        "{}",
        lines[1]
    );
}
