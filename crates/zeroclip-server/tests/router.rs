//! Router tests through `oneshot` on the tiny fixture model: every endpoint's happy path, the
//! answers equal to the library's, and each bad input getting its 4xx with a JSON error.

mod common;

use axum::http::StatusCode;
use candle_core::Device;
use common::*;
use serde_json::{json, Value};
use zeroclip::zeroshot::{stack_pixels, Templates, ZeroShotClassifier};
use zeroclip_server::{Limits, ServerConfig};

/// What the library says for the fixture image: the reference the server must reproduce.
fn library_scores(labels: &[&str], templates: &Templates) -> Vec<(String, f32)> {
    let (clip, preprocess) = zeroclip::load(MODEL, &Device::Cpu).unwrap();
    let pixels = preprocess
        .preprocess_bytes(&image_bytes(), "tiny.png")
        .unwrap();
    let r = clip.config().image_resolution;
    let x = stack_pixels(&[pixels], r, &Device::Cpu).unwrap();
    let labels = labels.iter().map(|s| s.to_string()).collect();
    let classifier = ZeroShotClassifier::new(&clip, labels, templates).unwrap();
    classifier
        .classify(&x)
        .unwrap()
        .into_iter()
        .map(|p| (p.label, p.score))
        .collect()
}

/// The same labels in the same order with the same `f32` scores, bit for bit: the server and
/// the library score through one path (a JSON number round-trips an `f32` exactly).
fn assert_same_scores(got: &Value, want: &[(String, f32)]) {
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, (label, score)) in got.iter().zip(want) {
        assert_eq!(
            g["label"],
            label.as_str(),
            "order differs: {got:?} vs {want:?}"
        );
        let s = g["score"].as_f64().unwrap() as f32;
        assert_eq!(s, *score, "{label}: server {s}, library {score}");
    }
}

const LABELS: [&str; 3] = ["a diagram", "a dog", "a cat"];

#[tokio::test]
async fn multipart_classify_matches_the_library() {
    let state = started(config());
    let image = image_bytes();
    let req = multipart_request(
        "/v1/classify",
        &[
            Part("image", Some("tiny.png"), &image),
            Part("labels", None, b"a diagram\na dog\na cat"),
        ],
    );
    let (status, headers, body) = send(&state, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["templates"], 1);
    let result = &body["results"][0];
    assert_eq!(result["input"], "tiny.png");
    assert_predictions(&result["predictions"], &LABELS);
    // Explicit labels without a template are used as written, as `zeroclip classify --labels`.
    assert_same_scores(
        &result["predictions"],
        &library_scores(&LABELS, &Templates::as_written()),
    );
}

#[tokio::test]
async fn native_json_without_a_template_uses_labels_as_written() {
    let state = started(config());
    let body = json!({"image": b64(&image_bytes()), "labels": LABELS});
    let (status, body) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let want = library_scores(&LABELS, &Templates::as_written());
    assert_same_scores(&body["results"][0]["predictions"], &want);
}

/// The reference's probabilities for `tiny.png` and [`LABELS`] (the README example's labels,
/// tokenized as written): softmax of the fixture's logits.
fn reference_probs() -> Vec<(String, f32)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/model/hf_real_vocab.expected.safetensors"
    );
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let logits: Vec<f32> = t["png_logits_per_image"].to_vec2().unwrap().remove(0);
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f64> = logits.iter().map(|l| ((l - max) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    LABELS
        .iter()
        .zip(e)
        .map(|(l, x)| (l.to_string(), (x / z) as f32))
        .collect()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?}")) + start.len();
    let len = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?}"));
    &text[from..from + len]
}

#[tokio::test]
async fn the_web_page_default_reproduces_the_reference_example() {
    let state = started(config());
    let (status, _, page) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(page).unwrap();
    // The page's defaults: the labels in its text area and its selected template option.
    let labels_text = between(&page, "<textarea id=\"labels\"", "</textarea>");
    let labels_text = &labels_text[labels_text.find('>').unwrap() + 1..];
    let select = between(&page, "<select id=\"template\">", "</select>");
    let selected = select
        .split("<option")
        .find(|o| o.contains(" selected"))
        .expect("a selected template");
    let template = between(selected, "value=\"", "\"");
    // Posted as app.js posts them.
    let image = image_bytes();
    let req = multipart_request(
        "/v1/classify",
        &[
            Part("image", Some("tiny.png"), &image),
            Part("labels", None, labels_text.as_bytes()),
            Part("template", None, template.as_bytes()),
        ],
    );
    let (status, _, body) = send(&state, req).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = &body["results"][0]["predictions"];
    for (label, want) in reference_probs() {
        let score = got
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["label"] == label.as_str())
            .unwrap_or_else(|| panic!("the page's default labels lack {label:?}: {got}"))["score"]
            .as_f64()
            .unwrap() as f32;
        assert!(
            (score - want).abs() < 1e-4,
            "{label}: page {score}, reference {want}"
        );
    }
}

#[tokio::test]
async fn json_classify_with_ensembled_templates_matches_the_library() {
    let state = started(config());
    let body = json!({
        "images": [b64(&image_bytes())],
        "labels": "a diagram, a dog, a cat",
        "templates": "imagenet7",
        "top_k": 2,
    });
    let (status, body) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["templates"], 7);
    let want = library_scores(&LABELS, &Templates::ImageNet7);
    assert_same_scores(&body["results"][0]["predictions"], &want[..2]);
}

#[tokio::test]
async fn a_bad_image_in_a_batch_keeps_its_place_with_its_error() {
    let state = started(config());
    let body = json!({
        "images": [b64(&image_bytes()), b64(b"this is not an image"), "@@not base64@@"],
        "labels": ["a dog", "a cat"],
    });
    let (status, body) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_predictions(&results[0]["predictions"], &["a dog", "a cat"]);
    for (i, r) in results.iter().enumerate().skip(1) {
        assert_eq!(r["input"], format!("images[{i}]"));
        assert_eq!(r["type"], "invalid_image", "{r}");
        assert!(r["error"]
            .as_str()
            .unwrap()
            .contains(&format!("images[{i}]")));
        assert!(r.get("predictions").is_none());
    }
}

#[tokio::test]
async fn labels_times_templates_over_the_text_limit_is_a_422() {
    let state = started(ServerConfig {
        limits: Limits {
            max_texts: 20,
            ..Limits::default()
        },
        ..config()
    });
    let body = json!({"image": b64(&image_bytes()), "labels": LABELS, "templates": "imagenet7"});
    let (status, body) = post_json(&state, "/v1/classify", &body).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_texts",
        "3 labels × 7 templates is 21 texts, the limit per request is 20",
    );
}

#[tokio::test]
async fn a_lone_bad_image_is_a_422_naming_it() {
    let state = started(config());
    let req = multipart_request(
        "/v1/classify",
        &[
            Part("image", Some("broken.png"), b"\x89PNG\r\n\x1a\n truncated"),
            Part("labels", None, b"a dog, a cat"),
        ],
    );
    let (status, _, body) = send(&state, req).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_image",
        "broken.png",
    );
}

#[tokio::test]
async fn label_problems_are_422s_naming_them() {
    let config = ServerConfig {
        limits: Limits {
            max_labels: 3,
            max_label_chars: 20,
            ..Limits::default()
        },
        ..config()
    };
    let state = started(config);
    let image = b64(&image_bytes());
    let cases = [
        (json!(["a", "b", "c", "d"]), "too_many_labels", "4 labels"),
        (json!([]), "no_labels", "no labels"),
        (json!(["a dog", "a dog"]), "invalid_label", "a dog"),
        (
            json!(["an extremely long label indeed"]),
            "invalid_label",
            "an extremely",
        ),
    ];
    for (labels, kind, names) in cases {
        let (status, body) = post_json(
            &state,
            "/v1/classify",
            &json!({"image": image, "labels": labels}),
        )
        .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY, kind, names);
    }
    let (status, body) = post_json(
        &state,
        "/v1/classify",
        &json!({"image": image, "labels": ["a dog"], "template": "no placeholder"}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template",
        "no placeholder",
    );
}

#[tokio::test]
async fn a_label_too_long_for_the_context_is_named() {
    let state = started(config());
    // 80 one-token words: short in characters, too long for the 77-token context.
    let long = vec!["a"; 80].join(" ");
    let (status, body) = post_json(
        &state,
        "/v1/classify",
        &json!({"image": b64(&image_bytes()), "labels": [long.clone(), "a cat"]}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_label",
        "context length",
    );
    assert!(body["error"].as_str().unwrap().contains("a a a a"));
}

#[tokio::test]
async fn oversize_body_is_a_413_json_error() {
    let config = ServerConfig {
        limits: Limits {
            max_body_bytes: 2048,
            ..Limits::default()
        },
        ..config()
    };
    let state = started(config);
    let big = "A".repeat(4096);
    let (status, body) = post_json(
        &state,
        "/v1/classify",
        &json!({"image": big, "labels": ["a"]}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "2048",
    );
    let blob = vec![0u8; 4096];
    let req = multipart_request(
        "/v1/classify",
        &[
            Part("labels", None, b"a, b"),
            Part("image", Some("big.png"), &blob),
        ],
    );
    let (status, _, body) = send(&state, req).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "2048",
    );
}

#[tokio::test]
async fn too_many_pixels_is_a_422_naming_the_image() {
    let config = ServerConfig {
        limits: Limits {
            max_image_pixels: 100, // the fixture is 52×40
            ..Limits::default()
        },
        ..config()
    };
    let state = started(config);
    let (status, body) = post_json(
        &state,
        "/v1/classify",
        &json!({"image": b64(&image_bytes()), "labels": ["a dog"]}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_image",
        "image",
    );
}

#[tokio::test]
async fn malformed_requests_are_4xx_json() {
    let state = started(config());
    let (status, body) = post_raw(&state, "/v1/classify", "application/json", "{not json").await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "JSON",
    );
    let (status, body) = post_json(
        &state,
        "/v1/classify",
        &json!({"imagez": [], "labels": ["a"]}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "imagez",
    );
    let (status, body) = post_raw(&state, "/v1/classify", "text/plain", "hi").await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "text/plain",
    );
    let (status, _, body) = get(&state, "/v2/nothing").await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "not_found",
        "/v2/nothing",
    );
}

#[tokio::test]
async fn what_the_rules_refuse_is_refused_naming_it() {
    let state = started(config());
    let image = b64(&image_bytes());
    let cases = [
        (
            json!({"image": image, "images": [image], "labels": LABELS}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not both",
        ),
        (
            json!({"inputs": image, "parameters": {"candidate_label": LABELS}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "candidate_label",
        ),
        (
            json!({"image": image, "labels": LABELS, "top_k": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "top_k",
        ),
        (
            json!({"image": image, "labels": ["a dog", " "]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
            "is empty",
        ),
        (
            json!({"image": image, "labels": ["a dog", "a dog"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
            "more than once",
        ),
    ];
    for (request, want, kind, names) in cases {
        let (status, body) = post_json(&state, "/v1/classify", &request).await;
        assert_error(status, &body, want, kind, names);
    }
    // The document says so too.
    let (_, _, spec) = get(&state, "/openapi.json").await;
    let spec: Value = serde_json::from_slice(&spec).unwrap();
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["ClassifyRequest"]["oneOf"],
        json!([{"required": ["image"]}, {"required": ["images"]}])
    );
    assert_eq!(
        schemas["HfRequest"]["properties"]["parameters"]["additionalProperties"],
        false
    );
    let list = &schemas["Labels"]["oneOf"][0];
    assert_eq!(list["uniqueItems"], true);
    assert_eq!(list["items"]["minLength"], 1);
}

#[tokio::test]
async fn hugging_face_payload_at_root_and_classify() {
    let state = started(config());
    let payload = json!({
        "inputs": b64(&image_bytes()),
        "parameters": {"candidate_labels": LABELS, "hypothesis_template": "a photo of a {}."},
    });
    let want = library_scores(&LABELS, &Templates::default());
    for path in ["/", "/v1/classify"] {
        let (status, body) = post_json(&state, path, &payload).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        // Exactly the HF shape: a bare array of {label, score}.
        for item in body.as_array().unwrap() {
            let mut keys: Vec<&String> = item.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["label", "score"]);
        }
        assert_same_scores(&body, &want);
    }
    // Without a template, HF's pipeline default applies.
    let payload =
        json!({"inputs": b64(&image_bytes()), "parameters": {"candidate_labels": LABELS}});
    let (status, body) = post_json(&state, "/", &payload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hf_default = Templates::Single("This is a photo of {}.".into());
    assert_same_scores(&body, &library_scores(&LABELS, &hf_default));
    let (status, body) = post_json(
        &state,
        "/",
        &json!({"inputs": "???", "parameters": {"candidate_labels": ["a"]}}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_image",
        "inputs",
    );
}

#[tokio::test]
async fn embeddings_have_the_model_width_and_match_the_library() {
    let state = started(config());
    let body =
        json!({"images": [b64(&image_bytes())], "texts": ["a dog", "a cat"], "normalize": false});
    let (status, body) = post_json(&state, "/v1/embeddings", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (clip, preprocess) = zeroclip::load(MODEL, &Device::Cpu).unwrap();
    let dim = clip.config().embed_dim;
    assert_eq!(body["dim"], dim);
    let pixels = preprocess.preprocess_bytes(&image_bytes(), "x").unwrap();
    let x = stack_pixels(&[pixels], clip.config().image_resolution, &Device::Cpu).unwrap();
    let want: Vec<Vec<f32>> = clip.encode_image(&x).unwrap().to_vec2().unwrap();
    let got: Vec<f32> = serde_json::from_value(body["images"][0]["embedding"].clone()).unwrap();
    assert_eq!(got.len(), dim);
    for (g, w) in got.iter().zip(&want[0]) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    assert_eq!(body["texts"].as_array().unwrap().len(), 2);
    assert_eq!(body["texts"][1]["input"], "a cat");

    let body = json!({"texts": ["a dog"]});
    let (status, body) = post_json(&state, "/v1/embeddings", &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e: Vec<f32> = serde_json::from_value(body["texts"][0]["embedding"].clone()).unwrap();
    assert_eq!(e.len(), dim);
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "normalized by default: {norm}");

    let (status, body) = post_json(&state, "/v1/embeddings", &json!({})).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no_inputs",
        "image or text",
    );
}

#[tokio::test]
async fn health_readiness_openapi_and_page() {
    let state = started(config());
    let (status, _, body) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ok"
    );
    // The worker thread sets readiness as it starts; wait for it without timing anything.
    while !state.is_ready() {
        tokio::task::yield_now().await;
    }
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["model"], "tiny");
    assert_eq!(ready["embed_dim"], state.info().embed_dim);

    let (status, _, body) = get(&state, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let spec: Value = serde_json::from_slice(&body).unwrap();
    for path in [
        "/",
        "/v1/classify",
        "/v1/embeddings",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(spec["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    let (status, headers, body) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("/assets/style.css"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let (status, _, body) = get(&state, asset).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(!body.is_empty());
    }
    let (status, _, _) = get(&state, "/assets/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
