//! What the server tells clients about its model: a local checkpoint by its file or directory
//! name, never the absolute path of the machine it runs on; a model name or Hub id as given.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use zeroclip_server::{AppState, ServerConfig};

/// A started server for a model named `name`, once its worker serves.
async fn named(name: &str) -> AppState {
    let state = started(ServerConfig {
        model_name: name.into(),
        ..ServerConfig::default()
    });
    until_ready(&state).await;
    state
}

#[tokio::test]
async fn a_local_model_is_named_by_its_file_name_not_its_path() {
    let state = named(MODEL).await;
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["model"], "hf_real_vocab", "{ready}");
    let body = json!({"image": b64(&image_bytes()), "labels": ["a dog", "a cat"]});
    let (status, answer) = post_json(&state, "/v1/classify", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model"], "hf_real_vocab");
    let (_, answer) = post_json(&state, "/v1/embeddings", &json!({"texts": ["a dog"]})).await;
    assert_eq!(answer["model"], "hf_real_vocab");
    // The page shows what /readyz says; the page itself names no model.
    let (_, _, page) = get(&state, "/").await;
    assert!(!String::from_utf8_lossy(&page).contains(MODEL));
}

#[tokio::test]
async fn a_model_name_or_hub_id_is_shown_as_given() {
    for name in ["ViT-B/32", "hf-hub:timm/vit_base_patch32_clip_224.openai"] {
        let state = named(name).await;
        let (_, _, body) = get(&state, "/readyz").await;
        let ready: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ready["model"], name);
    }
}
