//! The server's one error type, [`ApiError`], with a fixed status table and a JSON body
//! `{"error": <message naming the input and the reason>, "type": <stable machine-readable kind>}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything a request can fail with. Each variant has one HTTP status (see [`ApiError::status`])
/// and one stable `type` string (see [`ApiError::kind`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not the JSON or multipart form the endpoint expects.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why, in words.
        reason: String,
    },
    /// The request's content type is neither JSON nor multipart.
    #[error("unsupported content type {got:?}: send application/json or multipart/form-data")]
    UnsupportedMediaType {
        /// The content type the request had.
        got: String,
    },
    /// The body is larger than the server accepts.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// An image could not be decoded or preprocessed (bad base64, not an image, too many pixels).
    #[error("image {input}: {reason}")]
    InvalidImage {
        /// The image's name: `images[1]`, the uploaded file name, `inputs`.
        input: String,
        /// Why, in words.
        reason: String,
    },
    /// A label is empty, too long, duplicated or does not fit the text context.
    #[error("label {:?}: {reason}", short(.label))]
    InvalidLabel {
        /// The label (quoted cut short).
        label: String,
        /// Why, in words.
        reason: String,
    },
    /// A text to embed does not fit the text context or is too long.
    #[error("text {:?}: {reason}", short(.text))]
    InvalidText {
        /// The text (quoted cut short).
        text: String,
        /// Why, in words.
        reason: String,
    },
    /// A template has no `{}` placeholder, or the template set name is unknown.
    #[error("template {:?}: {reason}", short(.template))]
    InvalidTemplate {
        /// The template or preset name (quoted cut short).
        template: String,
        /// Why, in words.
        reason: String,
    },
    /// The request's labels or templates are not those of the adapter the server was started
    /// with (`zeroclip serve --adapter`).
    #[error("{reason}: with this server's adapter, leave out labels and templates or give the adapter's")]
    AdapterMismatch {
        /// Why, in words.
        reason: String,
    },
    /// No labels were given.
    #[error("no labels given: send at least one candidate label")]
    NoLabels,
    /// More labels than the limit.
    #[error("{count} labels given, the limit is {max}")]
    TooManyLabels {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Labels × templates is more texts than one request may send through the text tower.
    #[error("{labels} labels × {templates} templates is {} texts, the limit per request is {max}", labels * templates)]
    TooManyTexts {
        /// Labels given.
        labels: usize,
        /// Templates per label.
        templates: usize,
        /// The limit.
        max: usize,
    },
    /// No images (or texts) were given.
    #[error("no inputs given: send at least one {what}")]
    NoInputs {
        /// What was counted or what is full.
        what: &'static str,
    },
    /// More images or texts than the limit for one request.
    #[error("{count} {what} given, the limit per request is {max}")]
    TooManyInputs {
        /// What was counted or what is full.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// No route for this path.
    #[error("no such endpoint: {method} {path}")]
    NotFound {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The path exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The model queue or the in-flight request limit is full: the client should retry later.
    #[error("server overloaded: {what} ({capacity}) is full, retry later")]
    Overloaded {
        /// What was counted or what is full.
        what: &'static str,
        /// Its capacity.
        capacity: usize,
    },
    /// The model is not (or no longer) serving.
    #[error("model not ready: {reason}")]
    NotReady {
        /// Why, in words.
        reason: String,
    },
    /// The request took longer than the request timeout.
    #[error("request did not complete within {timeout_ms} ms")]
    Timeout {
        /// The request timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// A bug or a model failure; the message says where.
    #[error("internal error: {reason}")]
    Internal {
        /// Why, in words.
        reason: String,
    },
}

/// User input as messages quote it: cut to the library's message length, so a huge label is
/// never echoed in full.
fn short(text: &str) -> String {
    zeroclip::tokenizer::shorten(text, zeroclip::tokenizer::MESSAGE_CHARS)
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Human-readable message naming the input and the reason.
    pub error: String,
    /// Stable machine-readable kind, e.g. `invalid_image`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl ApiError {
    /// The fixed status table.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidRequest { .. } | AdapterMismatch { .. } => StatusCode::BAD_REQUEST,
            UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidImage { .. }
            | InvalidLabel { .. }
            | InvalidText { .. }
            | InvalidTemplate { .. }
            | NoLabels
            | TooManyLabels { .. }
            | TooManyTexts { .. }
            | NoInputs { .. }
            | TooManyInputs { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Overloaded { .. } | NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `type` string of the JSON body.
    pub fn kind(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidRequest { .. } => "invalid_request",
            UnsupportedMediaType { .. } => "unsupported_media_type",
            PayloadTooLarge { .. } => "payload_too_large",
            InvalidImage { .. } => "invalid_image",
            InvalidLabel { .. } => "invalid_label",
            InvalidText { .. } => "invalid_text",
            InvalidTemplate { .. } => "invalid_template",
            AdapterMismatch { .. } => "adapter_mismatch",
            NoLabels => "no_labels",
            TooManyLabels { .. } => "too_many_labels",
            TooManyTexts { .. } => "too_many_texts",
            NoInputs { .. } => "no_inputs",
            TooManyInputs { .. } => "too_many_inputs",
            NotFound { .. } => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            Overloaded { .. } => "overloaded",
            NotReady { .. } => "not_ready",
            Timeout { .. } => "timeout",
            Internal { .. } => "internal",
        }
    }

    /// The JSON body for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
            kind: self.kind(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if matches!(
            self,
            ApiError::Overloaded { .. } | ApiError::NotReady { .. }
        ) {
            // Tells well-behaved clients (and load balancers) when to come back.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_mistake_is_4xx_and_capacity_is_503() {
        let client = [
            ApiError::InvalidRequest { reason: "x".into() },
            ApiError::InvalidImage {
                input: "a.png".into(),
                reason: "x".into(),
            },
            ApiError::NoLabels,
            ApiError::TooManyLabels { count: 3, max: 2 },
            ApiError::PayloadTooLarge { limit: 1 },
        ];
        for e in client {
            assert!(e.status().is_client_error(), "{e:?}");
        }
        assert_eq!(
            ApiError::Overloaded {
                what: "the model queue",
                capacity: 1
            }
            .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn long_inputs_are_quoted_short() {
        let label = "x".repeat(10_000);
        let e = ApiError::InvalidLabel {
            label,
            reason: "is too long".into(),
        };
        let message = e.to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("xxx…"), "{message}");
    }

    #[test]
    fn body_names_the_input() {
        let e = ApiError::InvalidImage {
            input: "cat.png".into(),
            reason: "not an image".into(),
        };
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["type"], "invalid_image");
        assert!(body["error"].as_str().unwrap().contains("cat.png"));
    }
}
