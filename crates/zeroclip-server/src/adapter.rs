//! A few-shot adapter (`zeroclip adapt`, `zeroclip serve --adapter`) as the server applies it.
//!
//! The rule: with an adapter loaded, the server classifies against the adapter's classes with
//! the adapter's scores. A request may leave out labels and templates (they are the adapter's);
//! labels or templates it does give must be exactly the adapter's (same entries, same order),
//! else it gets a 400 `adapter_mismatch` naming the first difference. Silently scoring other
//! labels zero-shot, or the adapter's labels with other prompts, would answer a different
//! question than the one the operator deployed.

use crate::config::Limits;
use crate::error::ApiError;
use crate::labels::{self, TemplateSet, TemplatesField};
use zeroclip::adapter::Adapter;

/// An adapter checked against the served model, with its templates as a [`TemplateSet`].
#[derive(Debug, Clone)]
pub(crate) struct ServedAdapter {
    pub(crate) adapter: Adapter,
    pub(crate) templates: TemplateSet,
}

impl ServedAdapter {
    pub(crate) fn new(adapter: Adapter) -> Self {
        let templates = TemplateSet::trusted(adapter.templates.clone());
        ServedAdapter { adapter, templates }
    }

    /// Checks a request's `labels` (empty: none given) and template fields against the
    /// adapter's; `Ok` means the request is the adapter's classification.
    pub(crate) fn check_request(
        &self,
        labels: &[String],
        template: Option<String>,
        templates: Option<TemplatesField>,
        limits: &Limits,
    ) -> Result<(), ApiError> {
        let a = &self.adapter;
        let labels = if labels.is_empty() { &a.labels } else { labels };
        let templates = match (template, templates) {
            (None, None) => a.templates.clone(),
            // The fallback is unused: one of the two fields is given.
            (t, ts) => labels::resolve_templates(t, ts, "{}", limits)?
                .templates
                .to_vec(),
        };
        a.check(&a.model, labels, &templates)
            .map_err(|e| ApiError::AdapterMismatch {
                reason: e.to_string(),
            })
    }

    /// What `/readyz` says about the adapter.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let a = &self.adapter;
        serde_json::json!({
            "method": a.method.name(),
            "labels": a.labels,
            "templates": a.templates,
            "temperature": a.temperature,
            "cv_accuracy": a.cv_accuracy,
        })
    }
}

/// Checks an adapter against a model's checksum and embedding width before serving it.
pub(crate) fn check_model(
    adapter: &Adapter,
    checksum: &str,
    embed_dim: usize,
) -> Result<(), Box<zeroclip::Error>> {
    adapter.check_model(checksum)?;
    if adapter.dim != embed_dim {
        return Err(Box::new(zeroclip::Error::AdapterMismatch {
            what: "embedding width",
            adapter: adapter.dim.to_string(),
            classifier: embed_dim.to_string(),
        }));
    }
    Ok(())
}
