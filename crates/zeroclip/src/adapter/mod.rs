//! Few-shot class adapters, training-free: what `zeroclip adapt` builds from a few labelled
//! images per class and `ZeroShotClassifier::with_adapter` applies.
//!
//! Two methods, both on unit image embeddings `f` and the zero-shot classifier's unit class
//! embeddings `W` (`s` is the model's logit scale, 100 for OpenAI's models):
//!
//! - **Prototypes**: each class's prototype `P_c` is the normalized mean of its support images'
//!   unit embeddings; the classifier becomes `W' = normalize((1 − λ)·W + λ·P)` and the logits
//!   `s·f·W'ᵀ`. A class without support images keeps its text embedding.
//! - **Tip-Adapter** (Zhang et al., ECCV 2022, the training-free cache model): the support
//!   embeddings are cache keys `K` with one-hot class values `L`, and
//!   `logits = s·f·Wᵀ + α·exp(−β·(1 − f·Kᵀ))·L`.
//!
//! The hyper-parameters (λ, or α and β) are chosen by leave-one-out cross-validation on the support
//! images (`fit`); an optional softmax temperature is fitted on the same held-out logits
//! (minimizing NLL). An adapter records the model checksum, labels and templates it was built
//! with, and is stored as safetensors with that metadata (`file`). Its arithmetic is plain f32
//! vectors, so the classifier, the CLI and the Python package share it without tensors.

mod file;
mod fit;

pub use fit::{fit, FitInput, FitOptions, MethodKind};

use crate::Result;

/// An adapter method with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Class prototypes mixed with the text classifier with weight `mix` (λ).
    Prototype {
        /// λ: the prototypes' weight, the text classifier's being `1 - λ`.
        mix: f64,
    },
    /// Tip-Adapter's cache model.
    TipAdapter {
        /// α: the cache model's weight added to the zero-shot logits.
        alpha: f64,
        /// β: the sharpness of the affinities to the support images.
        beta: f64,
    },
}

impl Method {
    /// The method's name in files and reports: `prototype` or `tip-adapter`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Prototype { .. } => "prototype",
            Method::TipAdapter { .. } => "tip-adapter",
        }
    }
}

/// A fitted adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// The checksum of the model it was built with ([`crate::ZeroShotModel::identity`]).
    pub model: String,
    /// The classifier's labels, in order.
    pub labels: Vec<String>,
    /// The classifier's prompt templates.
    pub templates: Vec<String>,
    /// Method and hyper-parameters.
    pub method: Method,
    /// Softmax temperature fitted on the support images, if calibrated.
    pub temperature: Option<f64>,
    /// Leave-one-out accuracy on the support images with the chosen hyper-parameters.
    pub cv_accuracy: f64,
    /// Embedding width.
    pub dim: usize,
    /// Unit rows: the prototypes `[labels, dim]` or the cache keys `[support images, dim]`.
    pub vectors: Vec<f32>,
    /// Tip-Adapter: the class of each cache key. Prototypes: support images per class.
    pub counts: Vec<u32>,
}

/// Rows of `x` (`[rows, dim]`) divided by their L2 norm (zero rows stay zero).
pub(crate) fn normalize_rows(x: &mut [f32], dim: usize) {
    for row in x.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Adapter {
    /// Refuses a model other than the one the adapter was built with (`identity`: its
    /// [`crate::ZeroShotModel::identity`]).
    pub fn check_model(&self, identity: &str) -> Result<()> {
        if self.model != identity {
            return Err(crate::Error::AdapterMismatch {
                what: "model sha256",
                adapter: self.model.clone(),
                classifier: identity.to_string(),
            });
        }
        Ok(())
    }

    /// Refuses a classifier other than the one the adapter was built for: another model (its
    /// identity), other labels (or another order), other templates. Messages stay short for
    /// 1,000 labels: the count and the first entry that differs.
    pub fn check(&self, model: &str, labels: &[String], templates: &[String]) -> Result<()> {
        self.check_model(model)?;
        let show = |v: &[String], other: &[String]| {
            let at = v.iter().zip(other).position(|(a, b)| a != b);
            match at.or((v.len() != other.len()).then_some(v.len().min(other.len()))) {
                Some(i) => match v.get(i) {
                    Some(item) => format!("({} in all; #{i} is {item:?})", v.len()),
                    None => format!("({} in all; no #{i})", v.len()),
                },
                None => format!("({} in all)", v.len()),
            }
        };
        for (what, ours, theirs) in [
            ("labels", &self.labels, labels),
            ("templates", &self.templates, templates),
        ] {
            if ours.as_slice() != theirs {
                return Err(crate::Error::AdapterMismatch {
                    what,
                    adapter: show(ours, theirs),
                    classifier: show(theirs, ours),
                });
            }
        }
        Ok(())
    }

    /// The classifier's class embeddings `[labels, dim]` (flat, unit rows) as the adapter uses
    /// them: mixed with the prototypes, or unchanged.
    pub fn class_embeddings(&self, text: &[f32]) -> Vec<f32> {
        match self.method {
            Method::Prototype { mix } => {
                let mut out = text.to_vec();
                for (c, row) in out.chunks_mut(self.dim).enumerate() {
                    if self.counts[c] == 0 {
                        continue;
                    }
                    let proto = &self.vectors[c * self.dim..(c + 1) * self.dim];
                    for (v, p) in row.iter_mut().zip(proto) {
                        *v = ((1.0 - mix) * *v as f64 + mix * *p as f64) as f32;
                    }
                }
                normalize_rows(&mut out, self.dim);
                out
            }
            Method::TipAdapter { .. } => text.to_vec(),
        }
    }

    /// Logits `[n][labels]` of unit image embeddings `images` (flat `[n, dim]`) against unit class
    /// embeddings `text` (flat `[labels, dim]`), before any temperature. Tensor-free; the
    /// classifier uses it as it is.
    pub fn logits(&self, images: &[f32], text: &[f32], logit_scale: f32) -> Vec<Vec<f32>> {
        let classes = self.class_embeddings(text);
        images
            .chunks(self.dim)
            .map(|f| {
                let mut row: Vec<f32> = classes
                    .chunks(self.dim)
                    .map(|w| logit_scale * dot(f, w))
                    .collect();
                if let Method::TipAdapter { alpha, beta } = self.method {
                    for (key, &c) in self.vectors.chunks(self.dim).zip(&self.counts) {
                        let affinity = (-beta * (1.0 - dot(f, key) as f64)).exp();
                        row[c as usize] += (alpha * affinity) as f32;
                    }
                }
                row
            })
            .collect()
    }

    /// Probabilities over the labels, in label order, of one image embedding (normalized here,
    /// so raw tower output is fine) against the unit class embeddings `text` (flat
    /// `[labels, dim]`): the softmax of [`Self::logits`] divided by the fitted temperature. The
    /// classifier and the server both score an adapter through this.
    pub fn probabilities(&self, image: &[f32], text: &[f32], logit_scale: f32) -> Vec<f32> {
        let unit = crate::zeroshot::scoring::normalized(image);
        let logits = self.logits(&unit, text, logit_scale).remove(0);
        crate::zeroshot::scoring::softmax_with_temperature(&logits, self.temperature.unwrap_or(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes whose text embeddings point the wrong way; the support images are right.
    fn input<'a>(features: &'a [f32], targets: &'a [usize], text: &'a [f32]) -> FitInput<'a> {
        FitInput {
            features,
            targets,
            text,
            logit_scale: 100.0,
            model: "m".into(),
            labels: vec!["a".into(), "b".into()],
            templates: vec!["{}".into()],
        }
    }

    #[test]
    fn both_methods_overrule_a_wrong_text_classifier() {
        let text = [0.0, 1.0, 1.0, 0.0]; // class a -> (0, 1), class b -> (1, 0): swapped
        let features = [1.0, 0.1, 0.9, -0.1, 1.0, 0.0, 0.1, 1.0, -0.1, 0.9, 0.0, 1.0];
        let targets = [0, 0, 0, 1, 1, 1];
        for method in [MethodKind::Prototype, MethodKind::TipAdapter] {
            let options = FitOptions {
                method,
                ..Default::default()
            };
            let a = fit(input(&features, &targets, &text), &options).unwrap();
            assert_eq!(a.cv_accuracy, 1.0, "{:?}", a.method);
            let logits = a.logits(&[1.0, 0.0, 0.0, 1.0], &text, 100.0);
            assert!(
                logits[0][0] > logits[0][1] && logits[1][1] > logits[1][0],
                "{a:?}"
            );
            assert_eq!(a.temperature, None);
        }
    }

    #[test]
    fn bad_support_sets_are_errors() {
        let text = [0.0, 1.0, 1.0, 0.0];
        let options = FitOptions::default();
        let one = fit(input(&[1.0, 0.0], &[0], &text), &options);
        assert!(matches!(one, Err(crate::Error::AdapterFit { .. })));
        let out_of_range = fit(input(&[1.0, 0.0, 0.0, 1.0], &[0, 2], &text), &options);
        assert!(out_of_range
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        let ragged = fit(input(&[1.0, 0.0, 0.0], &[0, 1], &text), &options);
        assert!(ragged.is_err());
        assert!(MethodKind::from_name("knn").is_err());
    }
}
