//! The web page and the OpenAPI document, compiled into the binary so the server works offline
//! (no CDN, no files next to the binary).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use zeroclip::adapter::Adapter;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The hand-written OpenAPI 3.0 document of the API.
pub const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

/// `GET /`: the page.
pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// `GET /assets/{file}`: the page's script and style sheet.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => {
            return Err(ApiError::NotFound {
                method: "GET".into(),
                path: format!("/assets/{file}"),
            })
        }
    };
    Ok((
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response())
}

/// `GET /openapi.json`: the document as this server's configuration makes it true.
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi().to_string(),
    )
        .into_response()
}

/// The OpenAPI document for a server with or without an adapter. With one, labels are
/// optional in classification requests (they default to the adapter's).
pub(crate) fn openapi_document(adapter: Option<&Adapter>) -> String {
    let Some(adapter) = adapter else {
        return OPENAPI_JSON.to_string();
    };
    let Ok(mut doc) = serde_json::from_str::<Value>(OPENAPI_JSON) else {
        // The document is compiled in and parsed by the tests: this cannot happen.
        return OPENAPI_JSON.to_string();
    };
    let note = format!(
        " This server classifies with a {} adapter over {} labels (see /readyz): labels and templates may be left out and, when given, must be the adapter's.",
        adapter.method.name(),
        adapter.labels.len()
    );
    if let Some(Value::String(d)) = doc.pointer_mut("/info/description") {
        d.push_str(&note);
    }
    if let Some(request) = doc.pointer_mut("/components/schemas/ClassifyRequest") {
        if let Some(o) = request.as_object_mut() {
            o.remove("required");
        }
    }
    let form = "/paths/~1v1~1classify/post/requestBody/content/multipart~1form-data/schema";
    if let Some(Value::Object(o)) = doc.pointer_mut(form) {
        o.remove("anyOf");
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| OPENAPI_JSON.to_string())
}
