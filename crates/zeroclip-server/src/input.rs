//! Reading request bodies: JSON (with base64 images) and multipart forms, mapping every
//! extraction failure (too large, malformed) to an [`ApiError`].

use crate::error::ApiError;
use crate::labels::{split_labels, TemplatesField};
use crate::state::ImageInput;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use serde::de::DeserializeOwned;

/// Base64 with or without padding: clients differ.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What kind of body a request carries.
pub enum Body {
    /// A JSON document.
    Json(serde_json::Value),
    /// A multipart form.
    Multipart(Multipart),
}

/// Reads the body as JSON or multipart according to its content type.
pub async fn read_body(req: Request, limit: usize) -> Result<Body, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let form =
            Multipart::from_request(req, &())
                .await
                .map_err(|e| ApiError::InvalidRequest {
                    reason: e.body_text(),
                })?;
        return Ok(Body::Multipart(form));
    }
    if content_type.is_empty() || content_type.starts_with("application/json") {
        let bytes = read_bytes(req, limit).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidRequest {
            reason: format!("body is not valid JSON: {e}"),
        })?;
        return Ok(Body::Json(value));
    }
    Err(ApiError::UnsupportedMediaType { got: content_type })
}

async fn read_bytes(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidRequest {
                reason: e.body_text(),
            }
        }
    })
}

/// Reads a JSON body as `T`, naming the offending field on failure.
pub async fn read_json<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, ApiError> {
    match read_body(req, limit).await? {
        Body::Json(v) => from_json(v),
        Body::Multipart(_) => Err(ApiError::InvalidRequest {
            reason: "this endpoint takes a JSON body".into(),
        }),
    }
}

/// Converts a parsed JSON body to `T`.
pub fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::InvalidRequest {
        reason: format!("body does not match the schema: {e}"),
    })
}

/// Decodes a base64 image (a `data:` URL prefix and whitespace are allowed).
pub fn decode_base64(name: &str, text: &str) -> ImageInput {
    let payload = match text.find(";base64,") {
        Some(i) if text.starts_with("data:") => &text[i + 8..],
        _ => text,
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = B64
        .decode(compact.as_bytes())
        .map_err(|e| ApiError::InvalidImage {
            input: name.to_string(),
            reason: format!("is not valid base64: {e}"),
        });
    ImageInput {
        name: name.to_string(),
        bytes,
    }
}

/// The fields of a classification form.
#[derive(Default)]
pub struct Form {
    /// Uploaded images.
    pub images: Vec<ImageInput>,
    /// Labels from `labels` (lines or commas) and `label` (one each) fields.
    pub labels: Vec<String>,
    /// A single custom template.
    pub template: Option<String>,
    /// A preset name, or custom templates one per line.
    pub templates: Option<TemplatesField>,
    /// How many predictions to keep.
    pub top_k: Option<usize>,
}

/// Reads a multipart classification form: `image` files (repeatable), `labels`, `label`,
/// `template`, `templates`, `top_k`.
pub async fn read_form(mut form: Multipart, limit: usize) -> Result<Form, ApiError> {
    let mut out = Form::default();
    let field_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidRequest {
                reason: format!("malformed multipart body: {}", e.body_text()),
            }
        }
    };
    while let Some(field) = form.next_field().await.map_err(field_error)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" | "images" | "file" => {
                let input = field
                    .file_name()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("image[{}]", out.images.len()));
                let bytes = field.bytes().await.map_err(field_error)?;
                out.images.push(ImageInput {
                    name: input,
                    bytes: Ok(bytes.to_vec()),
                });
            }
            "labels" | "label" | "candidate_labels" => {
                let text = field.text().await.map_err(field_error)?;
                if name == "label" {
                    out.labels.push(text.trim().to_string());
                } else {
                    out.labels.extend(split_labels(&text));
                }
            }
            "template" | "hypothesis_template" => {
                let text = field.text().await.map_err(field_error)?;
                if !text.trim().is_empty() {
                    out.template = Some(text.trim().to_string());
                }
            }
            "templates" => {
                let text = field.text().await.map_err(field_error)?;
                let lines: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                out.templates = match lines.len() {
                    0 => None,
                    1 if !lines[0].contains("{}") => Some(TemplatesField::Preset(lines[0].clone())),
                    _ => Some(TemplatesField::List(lines)),
                };
            }
            "top_k" => {
                let text = field.text().await.map_err(field_error)?;
                let k = text.trim().parse().map_err(|_| ApiError::InvalidRequest {
                    reason: format!("field top_k: {text:?} is not a positive integer"),
                })?;
                out.top_k = Some(k);
            }
            other => {
                return Err(ApiError::InvalidRequest {
                    reason: format!(
                        "unknown form field {other:?}: expected image, labels, label, template, templates or top_k"
                    ),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_data_urls_and_missing_padding() {
        let a = decode_base64("x", "data:image/png;base64,aGk=")
            .bytes
            .unwrap();
        let b = decode_base64("x", "aGk").bytes.unwrap();
        let c = decode_base64("x", "aG\nk=").bytes.unwrap();
        assert_eq!(a, b"hi");
        assert_eq!(b, b"hi");
        assert_eq!(c, b"hi");
    }

    #[test]
    fn bad_base64_names_the_image() {
        let err = decode_base64("images[2]", "***").bytes.unwrap_err();
        assert!(err.to_string().contains("images[2]"), "{err}");
        assert_eq!(err.kind(), "invalid_image");
    }
}
