//! Candidate labels and templates as requests give them, validated against the limits. Scoring
//! is the library's ([`zeroclip::zeroshot::scoring`]), the same as the command line's.

use crate::config::Limits;
use crate::error::ApiError;
use serde::Deserialize;
use std::sync::Arc;
use zeroclip::zeroshot;

/// The template of explicit labels when a request names none: labels used as written, as the
/// reference's README example and `zeroclip classify --labels` use them.
pub const DEFAULT_TEMPLATE: &str = zeroshot::AS_WRITTEN_TEMPLATE;

/// The `default` preset: the CLIP paper's single template `a photo of a {}.`.
pub const PHOTO_TEMPLATE: &str = zeroshot::DEFAULT_TEMPLATE;

/// Hugging Face's `ZeroShotImageClassificationPipeline` default `hypothesis_template`, used for
/// HF payloads that give none, so zeroclip answers as an HF endpoint would.
pub const HF_DEFAULT_TEMPLATE: &str = "This is a photo of {}.";

/// Labels as JSON gives them: a list, or one string of lines or comma-separated names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LabelsField {
    /// `["a dog", "a cat"]`
    List(Vec<String>),
    /// `"a dog, a cat"` or `"a dog\na cat"`
    Text(String),
}

impl LabelsField {
    /// The labels, split and trimmed.
    pub fn into_labels(self) -> Vec<String> {
        match self {
            LabelsField::List(v) => v.into_iter().map(|s| s.trim().to_string()).collect(),
            LabelsField::Text(s) => split_labels(&s),
        }
    }
}

/// Splits a text of labels: one per line when it has several lines, else comma-separated.
/// Blank entries are dropped.
pub fn split_labels(text: &str) -> Vec<String> {
    let parts: Vec<&str> = if text.trim().contains('\n') {
        text.lines().collect()
    } else {
        text.split(',').collect()
    };
    parts
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks the label rules shared with the command line ([`zeroshot::validate_labels`]: none
/// empty, none twice) and the server's limits (count, length).
pub fn validate_labels(labels: &[String], limits: &Limits) -> Result<(), ApiError> {
    if labels.len() > limits.max_labels {
        return Err(ApiError::TooManyLabels {
            count: labels.len(),
            max: limits.max_labels,
        });
    }
    if let Some(label) = labels
        .iter()
        .find(|l| l.chars().count() > limits.max_label_chars)
    {
        return Err(ApiError::InvalidLabel {
            label: label.clone(),
            reason: format!(
                "is {} characters long, the limit is {}",
                label.chars().count(),
                limits.max_label_chars
            ),
        });
    }
    zeroshot::validate_labels(labels).map_err(|e| match e {
        zeroclip::Error::InvalidLabel { label, reason } => ApiError::InvalidLabel { label, reason },
        _ => ApiError::NoLabels,
    })
}

/// Templates as JSON gives them: a preset name or a list of templates with `{}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TemplatesField {
    /// `"default"`, `"imagenet7"` or `"imagenet80"`.
    Preset(String),
    /// `["a photo of a {}.", "a drawing of a {}."]`
    List(Vec<String>),
}

/// A resolved template set: what each label is expanded with before the text tower.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    /// Stable key: identifies the set in the label cache.
    pub key: Arc<str>,
    /// The templates, each with one `{}`.
    pub templates: Arc<Vec<String>>,
}

impl TemplateSet {
    /// A set of custom templates; each must contain `{}`.
    pub fn custom(templates: Vec<String>, limits: &Limits) -> Result<Self, ApiError> {
        if templates.is_empty() {
            return Err(ApiError::InvalidTemplate {
                template: String::new(),
                reason: "the template list is empty".into(),
            });
        }
        if templates.len() > limits.max_templates {
            return Err(ApiError::InvalidTemplate {
                template: templates[0].clone(),
                reason: format!(
                    "{} templates given, the limit is {}",
                    templates.len(),
                    limits.max_templates
                ),
            });
        }
        for t in &templates {
            if t.chars().count() > limits.max_label_chars {
                return Err(ApiError::InvalidTemplate {
                    template: t.clone(),
                    reason: format!("is longer than {} characters", limits.max_label_chars),
                });
            }
            // The library's `fill` is Python's `str.format` with one field: reject what it rejects.
            if let Err(e) = zeroshot::fill(t, "") {
                let reason = match e {
                    zeroclip::Error::Template { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(ApiError::InvalidTemplate {
                    template: t.clone(),
                    reason,
                });
            }
        }
        Ok(Self::trusted(templates))
    }

    /// A set of templates already checked elsewhere (an adapter's, which the library checked
    /// when it was built): no request limits apply to them.
    pub(crate) fn trusted(templates: Vec<String>) -> Self {
        // The unit separator cannot be typed in a template, so keys of distinct sets differ.
        let key: Arc<str> = format!("custom\u{1f}{}", templates.join("\u{1f}")).into();
        TemplateSet {
            key,
            templates: Arc::new(templates),
        }
    }

    /// The texts for one label: each template filled as `template.format(label)`.
    pub fn expand(&self, label: &str) -> Vec<String> {
        self.templates
            .iter()
            // Every template passed `fill` when the set was built, so this cannot fail; a
            // label holding braces is inserted verbatim, as Python does.
            .map(|t| zeroshot::fill(t, label).unwrap_or_else(|_| t.replacen("{}", label, 1)))
            .collect()
    }
}

/// Resolves the `template` / `templates` fields of a request. `fallback` is used when neither
/// is given.
pub fn resolve_templates(
    template: Option<String>,
    templates: Option<TemplatesField>,
    fallback: &str,
    limits: &Limits,
) -> Result<TemplateSet, ApiError> {
    match (template, templates) {
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest {
            reason: "give either `template` or `templates`, not both".into(),
        }),
        (Some(t), None) => TemplateSet::custom(vec![t], limits),
        (None, Some(TemplatesField::List(v))) => TemplateSet::custom(v, limits),
        (None, Some(TemplatesField::Preset(name))) => preset(&name, limits),
        (None, None) => TemplateSet::custom(vec![fallback.to_string()], limits),
    }
}

/// A named template set: `default` (one template), `imagenet7` or `imagenet80`.
pub fn preset(name: &str, limits: &Limits) -> Result<TemplateSet, ApiError> {
    let templates: Vec<String> = match name {
        "default" | "single" => vec![PHOTO_TEMPLATE.to_string()],
        _ => {
            let unknown = |_| ApiError::InvalidTemplate {
                template: name.to_string(),
                reason: "unknown template set: use default, imagenet7 or imagenet80".into(),
            };
            let set = zeroshot::Templates::from_name(name).map_err(unknown)?;
            set.list().map_err(unknown)?
        }
    };
    let mut limits = limits.clone();
    limits.max_templates = limits.max_templates.max(templates.len());
    TemplateSet::custom(templates, &limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_or_commas() {
        assert_eq!(split_labels("a dog, a cat ,,"), ["a dog", "a cat"]);
        assert_eq!(
            split_labels("a dog, black\na cat\n\n"),
            ["a dog, black", "a cat"]
        );
        assert!(split_labels("  ").is_empty());
    }

    #[test]
    fn rejects_bad_label_sets() {
        let limits = Limits {
            max_labels: 2,
            max_label_chars: 5,
            ..Limits::default()
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(matches!(
            validate_labels(&[], &limits),
            Err(ApiError::NoLabels)
        ));
        assert!(matches!(
            validate_labels(&v(&["a", "b", "c"]), &limits),
            Err(ApiError::TooManyLabels { count: 3, max: 2 })
        ));
        assert!(matches!(
            validate_labels(&v(&["a", "a"]), &limits),
            Err(ApiError::InvalidLabel { .. })
        ));
        assert!(matches!(
            validate_labels(&v(&["abcdef"]), &limits),
            Err(ApiError::InvalidLabel { .. })
        ));
        assert!(validate_labels(&v(&["a", "b"]), &limits).is_ok());
    }

    #[test]
    fn templates_need_a_placeholder_and_expand_once() {
        let limits = Limits::default();
        assert!(TemplateSet::custom(vec!["a photo".into()], &limits).is_err());
        assert!(TemplateSet::custom(vec!["a {} of {}".into()], &limits).is_err());
        let set = TemplateSet::custom(vec!["a {} of {{x}}".into()], &limits).unwrap();
        assert_eq!(set.expand("dog"), ["a dog of {x}"]);
        let other = TemplateSet::custom(vec!["a {} of x".into()], &limits).unwrap();
        assert_ne!(set.key, other.key);
        assert!(resolve_templates(
            Some("{}".into()),
            Some(TemplatesField::Preset("default".into())),
            "{}",
            &limits
        )
        .is_err());
    }
}
