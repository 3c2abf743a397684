//! End-to-end `zeroclip eval` and `zeroclip adapt` on the synthetic labelled folder
//! `tests/fixtures/eval/images` and the tiny real-vocabulary checkpoint: the metrics equal those
//! the reference computed (`scripts/make_eval_fixtures.py`: OpenAI's `clip` for the predictions,
//! scikit-learn for the metrics, in `tests/fixtures/eval/expected.json`), the unreadable image is
//! listed and makes the exit code 1, the plots are valid files of the expected size, and an
//! adapter is used by `eval` and `classify` and refused for another model.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn model() -> String {
    format!("{ROOT}/model/hf_real_vocab")
}

fn images() -> PathBuf {
    Path::new(ROOT).join("eval/images")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/eval/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn zeroclip(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .args(args)
        .env("ZEROCLIP_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The report's metrics equal the reference's: ratios exactly, calibration to float rounding.
fn assert_metrics(report: &Value, reference: &Value) {
    let m = &report["metrics"];
    for key in ["acc1", "acc5", "mean_per_class_recall"] {
        assert_eq!(m.get(key), reference.get(key), "{key}");
    }
    for key in ["ece", "nll"] {
        let (a, b) = (m[key].as_f64().unwrap(), reference[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-5, "{key}: {a} vs {b}");
    }
    let per_class = report["per_class"].as_array().unwrap();
    let ref_per_class = reference["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), ref_per_class.len());
    for (ours, theirs) in per_class.iter().zip(ref_per_class) {
        for key in ["precision", "recall", "f1", "support"] {
            assert_eq!(ours[key], theirs[key], "{key} of {}", ours["class"]);
        }
    }
}

fn confusion_csv(path: &Path) -> Vec<Vec<u64>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn eval_equals_the_reference_and_lists_the_unreadable_image() {
    let dir = tempfile::tempdir().unwrap();
    let (report, confusion, svg) = (
        dir.path().join("r.json"),
        dir.path().join("c.csv"),
        dir.path().join("p.svg"),
    );
    let o = zeroclip(
        &[
            "eval",
            images().to_str().unwrap(),
            "--model",
            &model(),
            "--output",
            report.to_str().unwrap(),
            "--confusion",
            confusion.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let exp = expected();
    let r = read_json(&report);
    assert_eq!(r["task"], "zeroshot_classification");
    assert_metrics(&r, &exp["all"]);
    let classes: Vec<&str> = r["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::json!(classes), exp["classes"]);
    let reference_confusion: Vec<Vec<u64>> =
        serde_json::from_value(exp["all"]["confusion"].clone()).unwrap();
    assert_eq!(confusion_csv(&confusion), reference_confusion);
    let worst = reference_confusion
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().filter(move |(p, _)| *p != t))
        .map(|(_, &v)| v)
        .max()
        .unwrap();
    assert_eq!(r["most_confused"][0]["count"], worst);
    assert_eq!(r["images"]["evaluated"], 30);
    assert_eq!(r["images"]["total"], 31);
    let unreadable = r["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("blue_sky/broken.png"));
    assert!(!unreadable[0]["error"].as_str().unwrap().is_empty());
    assert!(text(&o).contains("acc5"));

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(r#"width="1600""#) && svg.contains(r#"height="900""#));
    assert!(svg.contains("Confusion matrix") && svg.contains("zebra stripes"));
}

#[test]
fn fewer_than_five_classes_have_no_acc5_and_a_png_plot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let exp = expected();
    let mut folders: Vec<String> = std::fs::read_dir(images())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    for f in &folders[..3] {
        std::fs::create_dir_all(data.join(f)).unwrap();
        for e in std::fs::read_dir(images().join(f)).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "broken.png" {
                std::fs::copy(e.path(), data.join(f).join(e.file_name())).unwrap();
            }
        }
    }
    let (report, png) = (dir.path().join("r.json"), dir.path().join("p.png"));
    let o = zeroclip(
        &[
            "eval",
            data.to_str().unwrap(),
            "--model",
            &model(),
            "--no-cache",
            "--output",
            report.to_str().unwrap(),
            "--plot",
            png.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read_json(&report);
    assert!(r["metrics"].get("acc5").is_none());
    assert_metrics(&r, &exp["first3"]);
    assert_eq!(png_size(&png), (1600, 900));
}

#[test]
fn adapt_then_use_the_adapter_and_refuse_it_for_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("a.safetensors");
    let folder = images();
    let o = zeroclip(
        &[
            "adapt",
            folder.to_str().unwrap(),
            "--model",
            &model(),
            "--output",
            adapter.to_str().unwrap(),
            "--calibrate",
        ],
        dir.path(),
    );
    // The unreadable image is reported and makes the exit code 1; the adapter is still written.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("broken.png"));
    assert!(adapter.is_file());

    let report = dir.path().join("r.json");
    let o = zeroclip(
        &[
            "eval",
            folder.to_str().unwrap(),
            "--model",
            &model(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--output",
            report.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = read_json(&report);
    assert_eq!(r["adapter"]["method"], "tip-adapter");
    assert!(r["metrics"]["nll_calibrated"].as_f64().is_some());
    assert_eq!(r["calibration"].as_array().unwrap().len(), 2);

    let tiny = format!("{ROOT}/model/tiny.png");
    let a = adapter.to_str().unwrap();
    let o = zeroclip(
        &[
            "classify",
            &tiny,
            "--model",
            &model(),
            "--adapter",
            a,
            "--format",
            "json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let preds: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(preds[0]["predictions"].as_array().unwrap().len(), 5);

    let o = zeroclip(
        &[
            "classify",
            &tiny,
            "--model",
            &model(),
            "--adapter",
            a,
            "--labels",
            "x",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let other = format!("{ROOT}/model/vit_jit.pt");
    let o = zeroclip(
        &[
            "eval",
            folder.to_str().unwrap(),
            "--model",
            &other,
            "--adapter",
            a,
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("model sha256"), "{}", text(&o));
}

#[test]
fn manifest_with_a_label_set() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.csv");
    let folder = images();
    std::fs::write(
        &manifest,
        format!(
            "path,label\n{0}/red_apple/0.png,automobile\n{0}/blue_sky/1.png,3\n{0}/nope.png,cat\n",
            folder.display()
        ),
    )
    .unwrap();
    let report = dir.path().join("r.json");
    let o = zeroclip(
        &[
            "eval",
            "--label-set",
            "cifar10",
            "--manifest",
            manifest.to_str().unwrap(),
            "--model",
            &model(),
            "--output",
            report.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = read_json(&report);
    assert_eq!(r["images"]["evaluated"], 2);
    assert_eq!(r["per_class"].as_array().unwrap().len(), 10);
    assert!(r["unreadable"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("nope.png"));

    std::fs::write(&manifest, "a.png,wolf\n").unwrap();
    let o = zeroclip(
        &[
            "eval",
            "--label-set",
            "cifar10",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown label \"wolf\""), "{}", text(&o));
}
