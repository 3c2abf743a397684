//! A server started with a few-shot adapter (`zeroclip serve --adapter`): requests without
//! labels get the adapter's classes with the adapter's scores, equal bit for bit to the
//! library's `ZeroShotClassifier::with_adapter`; other labels or templates are a 400; an adapter
//! for another model is refused; `/readyz`, the OpenAPI document and the page say so.
//!
//! The adapters are fitted here with the library's `adapter::fit` on the synthetic labelled
//! folder `tests/fixtures/eval/images` and the tiny real-vocabulary checkpoint.

mod common;

use axum::http::StatusCode;
use candle_core::Device;
use common::*;
use serde_json::{json, Value};
use zeroclip::adapter::{fit, Adapter, FitInput, FitOptions, MethodKind};
use zeroclip::zeroshot::{stack_pixels, Templates, ZeroShotClassifier};
use zeroclip::ZeroShotModel;
use zeroclip_server::{AppState, LoadedModel};

const FOLDER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/eval/images"
);
const TEMPLATE: &str = "a photo of a {}.";

fn pixels(
    preprocess: &zeroclip::image::Preprocess,
    path: &std::path::Path,
    r: usize,
) -> candle_core::Tensor {
    let p = preprocess.preprocess_path(path).unwrap();
    stack_pixels(&[p], r, &Device::Cpu).unwrap()
}

/// An adapter fitted on the fixture folder's readable images, one class per sub-folder.
fn fitted(method: MethodKind, calibrate: bool) -> Adapter {
    let (clip, preprocess) = zeroclip::load(MODEL, &Device::Cpu).unwrap();
    let r = clip.config().image_resolution;
    let mut folders: Vec<_> = std::fs::read_dir(FOLDER)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    folders.sort();
    let labels: Vec<String> = folders
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().replace('_', " "))
        .collect();
    let templates = vec![TEMPLATE.to_string()];
    let classifier =
        ZeroShotClassifier::new(&clip, labels.clone(), &Templates::Custom(templates.clone()))
            .unwrap();
    let text: Vec<f32> = classifier
        .class_embeddings()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (mut features, mut targets) = (Vec::new(), Vec::new());
    for (class, folder) in folders.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with("broken.png"))
            .collect();
        files.sort();
        for file in files {
            let e = clip.encode_image(&pixels(&preprocess, &file, r)).unwrap();
            features.extend(e.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            targets.push(class);
        }
    }
    let input = FitInput {
        features: &features,
        targets: &targets,
        text: &text,
        logit_scale: clip.logit_scale(),
        model: clip.identity().unwrap(),
        labels,
        templates,
    };
    let options = FitOptions {
        method,
        calibrate,
        ..FitOptions::default()
    };
    fit(input, &options).unwrap()
}

/// Labels and scores, best first.
type Scores = Vec<(String, f32)>;

/// The library's answer for the fixture image with the adapter (what the server must give),
/// and without it.
fn library(adapter: &Adapter) -> (Scores, Scores) {
    let (clip, preprocess) = zeroclip::load(MODEL, &Device::Cpu).unwrap();
    let r = clip.config().image_resolution;
    let x = pixels(&preprocess, std::path::Path::new(IMAGE), r);
    let templates = Templates::Custom(adapter.templates.clone());
    let zero_shot = ZeroShotClassifier::new(&clip, adapter.labels.clone(), &templates).unwrap();
    let scores = |c: &ZeroShotClassifier<&zeroclip::Clip>| -> Scores {
        let p = c.classify(&x).unwrap();
        p.into_iter().map(|p| (p.label, p.score)).collect()
    };
    let plain = scores(&zero_shot);
    (scores(&zero_shot.with_adapter(adapter).unwrap()), plain)
}

fn serving(adapter: Adapter) -> AppState {
    AppState::start(model().with_adapter(adapter).unwrap(), config())
}

fn assert_bitwise(got: &Value, want: &[(String, f32)]) {
    let got = got.as_array().expect("predictions");
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, (label, score)) in got.iter().zip(want) {
        assert_eq!(g["label"], label.as_str(), "{got:?} vs {want:?}");
        let s = g["score"].as_f64().unwrap() as f32;
        assert_eq!(s.to_bits(), score.to_bits(), "{label}: {s} vs {score}");
    }
}

#[tokio::test]
async fn without_labels_the_adapters_classes_and_scores_equal_the_library() {
    for (method, calibrate) in [
        (MethodKind::TipAdapter, true),
        (MethodKind::Prototype, false),
    ] {
        let adapter = fitted(method, calibrate);
        assert_eq!(adapter.temperature.is_some(), calibrate);
        let (want, zero_shot) = library(&adapter);
        // The adapter must change the answer, or this test could not tell it was applied.
        assert_ne!(want, zero_shot, "{method:?}");

        let state = serving(adapter.clone());
        let b = b64(&image_bytes());
        let (status, body) = post_json(&state, "/v1/classify", &json!({"image": b})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["adapter"], adapter.method.name());
        assert_eq!(body["templates"], 1);
        assert_bitwise(&body["results"][0]["predictions"], &want);

        // The adapter's own labels and template, given explicitly, are the same request.
        let same = json!({"image": b, "labels": adapter.labels, "template": TEMPLATE});
        let (status, body) = post_json(&state, "/v1/classify", &same).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_bitwise(&body["results"][0]["predictions"], &want);

        // The Hugging Face payload without candidate labels, and a multipart form without any.
        let (status, body) = post_json(&state, "/", &json!({"inputs": b})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_bitwise(&body, &want);
        let req = multipart_request(
            "/v1/classify",
            &[Part("image", Some("t.png"), &image_bytes())],
        );
        let (status, _, bytes) = send(&state, req).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_bitwise(&body["results"][0]["predictions"], &want);
    }
}

#[tokio::test]
async fn other_labels_or_templates_are_a_400_naming_the_difference() {
    let adapter = fitted(MethodKind::TipAdapter, false);
    let state = serving(adapter.clone());
    let b = b64(&image_bytes());
    let mut reversed = adapter.labels.clone();
    reversed.reverse();
    let cases = [
        (json!({"image": b, "labels": ["a dog", "a cat"]}), "labels"),
        (json!({"image": b, "labels": reversed}), "labels"),
        (json!({"image": b, "template": "{}"}), "templates"),
        (json!({"image": b, "templates": "imagenet7"}), "templates"),
        (
            json!({"inputs": b, "parameters": {"candidate_labels": ["x", "y"]}}),
            "labels",
        ),
        (
            json!({"inputs": b, "parameters": {"hypothesis_template": "This is a photo of {}."}}),
            "templates",
        ),
    ];
    for (request, names) in cases {
        let (status, body) = post_json(&state, "/v1/classify", &request).await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "adapter_mismatch",
            names,
        );
    }
}

#[test]
fn an_adapter_for_another_model_is_refused() {
    let adapter = fitted(MethodKind::Prototype, false);
    let other = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/model/hf_gelu_bin"
    );
    let e = LoadedModel::load(other)
        .unwrap()
        .with_adapter(adapter)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("model sha256"), "{e}");
}

#[tokio::test]
async fn readyz_and_the_openapi_document_show_the_adapter() {
    let adapter = fitted(MethodKind::TipAdapter, false);
    let plain = started(config());
    let state = serving(adapter.clone());
    until_ready(&plain).await;
    until_ready(&state).await;

    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["adapter"]["method"], "tip-adapter");
    assert_eq!(ready["adapter"]["labels"], json!(adapter.labels));
    assert_eq!(ready["adapter"]["templates"], json!([TEMPLATE]));
    let (_, _, body) = get(&plain, "/readyz").await;
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert!(ready["adapter"].is_null(), "{ready}");

    let required =
        |doc: &Value| doc["components"]["schemas"]["ClassifyRequest"]["required"].clone();
    let (_, _, body) = get(&state, "/openapi.json").await;
    let adapted: Value = serde_json::from_slice(&body).unwrap();
    let (_, _, body) = get(&plain, "/openapi.json").await;
    let zero_shot: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(required(&zero_shot), json!(["labels"]));
    assert!(required(&adapted).is_null(), "labels are optional");
    assert!(adapted["info"]["description"]
        .as_str()
        .unwrap()
        .contains("adapter"));
    // The page learns the adapter from /readyz and shows it.
    let (_, _, js) = get(&state, "/assets/app.js").await;
    let js = String::from_utf8(js).unwrap();
    assert!(js.contains("b.adapter"), "the page reads the adapter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_adapters_class_embeddings_are_computed() {
    let adapter = fitted(MethodKind::Prototype, false);
    // Built but not started: nothing computes the adapter's classes yet.
    let (state, worker) = AppState::new(model().with_adapter(adapter).unwrap(), config());
    let (status, _, body) = get(&state, "/readyz").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        "worker is not running",
    );
    // The probe queued the adapter's labels for the text tower; once the model serves, they
    // are computed with no classification request at all.
    while state.queue_depth() != 1 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    worker.spawn();
    until_ready(&state).await;
    let (status, _, _) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state.label_cache_len(), 6, "the six classes' embeddings");
}
