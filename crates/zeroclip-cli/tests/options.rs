//! Every numeric option is bounded: a value that would refuse everything (0) or exhaust the
//! machine (a million-pixel side, a hundred thousand threads) is a usage error naming the option,
//! exit 2, before any model or image is read.

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/model");

mod common;
use common::run_bounded;

#[test]
fn out_of_range_numbers_are_usage_errors_naming_the_option() {
    let model = format!("{FIXTURES}/hf_real_vocab");
    let png = format!("{FIXTURES}/tiny.png");
    let out = std::env::temp_dir().join(format!("zeroclip-options-{}.npy", std::process::id()));
    let out = out.display().to_string();
    let serve = |option: &str, value: &str| {
        vec![
            "serve".to_string(),
            "--model".into(),
            model.clone(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            option.into(),
            value.into(),
        ]
    };
    let classify = |option: &str, value: &str| {
        [
            "classify", "--model", &model, &png, option, value, "--labels", "a dog",
        ]
        .map(String::from)
        .to_vec()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            ["preprocess", &png, "-o", &out, "--resolution", "1000000"]
                .map(String::from)
                .to_vec(),
            "--resolution",
        ),
        (
            ["preprocess", &png, "-o", &out, "--max-pixels", "0"]
                .map(String::from)
                .to_vec(),
            "--max-pixels",
        ),
        (classify("--threads", "100000"), "--threads"),
        (classify("--batch-size", "1000000"), "--batch-size"),
        (classify("--top-k", "0"), "--top-k"),
        (serve("--timeout-s", "0"), "--timeout-s"),
        (serve("--max-body-mib", "0"), "--max-body-mib"),
        (serve("--max-inputs", "0"), "--max-inputs"),
        (serve("--max-labels", "0"), "--max-labels"),
        (serve("--max-texts", "0"), "--max-texts"),
        (serve("--max-label-chars", "0"), "--max-label-chars"),
        (serve("--max-in-flight", "0"), "--max-in-flight"),
        (serve("--max-batch", "0"), "--max-batch"),
        (serve("--queue", "0"), "--queue"),
        (serve("--max-pixels", "0"), "--max-pixels"),
        (serve("--header-timeout-s", "0"), "--header-timeout-s"),
        (serve("--max-connections", "0"), "--max-connections"),
        (serve("--max-wait-ms", "100000"), "--max-wait-ms"),
        (serve("--max-body-mib", "100000000"), "--max-body-mib"),
    ];
    for (args, option) in cases {
        let run = run_bounded(&args, &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("invalid value") && stderr.contains(option),
            "{args:?} should be refused naming {option}: {stderr}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: nothing served or written");
    }
    assert!(!std::path::Path::new(&out).exists(), "no tensor written");
}
