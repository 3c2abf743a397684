//! The one scoring path of zero-shot classification, on plain `f32` rows: L2 normalization,
//! template ensembling, the softmax of `logit_scale * cos(image, class)`, and ranking.
//!
//! Reproduces the reference's `x / x.norm(dim=-1, keepdim=True)`, `logit_scale * image @ text.T`
//! and `.softmax(dim=-1)` (OpenAI's README example and ImageNet notebook). The classifier, the
//! HTTP server and the Python package all score through these functions, so one request gives
//! the same `f32` values everywhere. Sums are accumulated in `f64` and rounded once, which makes
//! the result independent of how rows were batched and at least as close to exact as the
//! reference's `f32` BLAS.
//!
//! A zero vector (which a real model does not produce, but an ensemble of opposite prompts or a
//! hand-made embedding can) stays zero instead of becoming NaN: its cosine with everything is 0.

use serde::Serialize;

/// One class and its probability for an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The label as given (not the filled-in prompt).
    pub label: String,
    /// The softmax probability over all labels.
    pub score: f32,
}

/// `‖v‖₂`, accumulated in `f64`.
fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

/// Divides `v` by its L2 norm in place; a zero vector stays zero.
pub fn normalize_in_place(v: &mut [f32]) {
    let n = norm(v);
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    }
}

/// `v` divided by its L2 norm (a zero vector stays zero).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    normalize_in_place(&mut v);
    v
}

/// One class embedding from its template embeddings (each one row, not normalized): the mean of
/// the L2-normalized rows, normalized again, as OpenAI's ImageNet notebook. One template: just
/// its normalized embedding (the reference's single-prompt path normalizes once). No rows: an
/// empty vector.
pub fn ensemble<R: AsRef<[f32]>>(template_embeddings: &[R]) -> Vec<f32> {
    match template_embeddings {
        [] => Vec::new(),
        [one] => normalized(one.as_ref()),
        rows => {
            let dim = rows[0].as_ref().len();
            let mut mean = vec![0f64; dim];
            for row in rows {
                let row = row.as_ref();
                let n = norm(row);
                let inv = if n > 0.0 && n.is_finite() {
                    1.0 / n
                } else {
                    0.0
                };
                for (m, &x) in mean.iter_mut().zip(row) {
                    // Rounded to f32 as the reference's normalized rows are, then averaged.
                    *m += ((x as f64 * inv) as f32) as f64;
                }
            }
            let mut out: Vec<f32> = mean
                .iter()
                .map(|m| (m / rows.len() as f64) as f32)
                .collect();
            normalize_in_place(&mut out);
            out
        }
    }
}

/// `logit_scale * cos(image, class)` for each class: `image` and the classes are unit rows (as
/// [`normalized`] and [`ensemble`] make them), so the cosine is their dot product.
pub fn logits<R: AsRef<[f32]>>(image: &[f32], classes: &[R], logit_scale: f32) -> Vec<f32> {
    classes
        .iter()
        .map(|c| {
            let dot: f64 = c
                .as_ref()
                .iter()
                .zip(image)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            (logit_scale as f64 * dot) as f32
        })
        .collect()
}

/// The softmax of `logits`, stable (the maximum subtracted first), in the logits' order.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The softmax of `logits / temperature` (a fitted calibration temperature; 1 is the plain
/// [`softmax`], bit for bit).
pub fn softmax_with_temperature(logits: &[f32], temperature: f64) -> Vec<f32> {
    if temperature == 1.0 {
        return softmax(logits);
    }
    let scaled: Vec<f32> = logits
        .iter()
        .map(|&l| (l as f64 / temperature) as f32)
        .collect();
    softmax(&scaled)
}

/// Probabilities over the classes, in class order, of one image embedding (normalized here, so
/// raw tower output is fine) against unit class embeddings.
pub fn probabilities<R: AsRef<[f32]>>(image: &[f32], classes: &[R], logit_scale: f32) -> Vec<f32> {
    softmax(&logits(&normalized(image), classes, logit_scale))
}

/// The predictions, best first (equal scores keep label order), cut to `top_k`.
pub fn rank(probs: &[f32], labels: &[String], top_k: Option<usize>) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probs.len().min(labels.len())).collect();
    // A stable sort, so ties keep the order the labels were given in.
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    order.truncate(top_k.unwrap_or(usize::MAX));
    order
        .into_iter()
        .map(|i| Prediction {
            label: labels[i].clone(),
            score: probs[i],
        })
        .collect()
}

/// [`probabilities`] then [`rank`]: one image's predictions against labelled unit class
/// embeddings.
pub fn predict<R: AsRef<[f32]>>(
    image: &[f32],
    labels: &[String],
    classes: &[R],
    logit_scale: f32,
    top_k: Option<usize>,
) -> Vec<Prediction> {
    rank(&probabilities(image, classes, logit_scale), labels, top_k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_vector_stays_zero_and_scores_uniformly() {
        let mut zero = vec![0.0f32; 4];
        normalize_in_place(&mut zero);
        assert_eq!(zero, [0.0; 4]);
        let classes = [vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]];
        let p = probabilities(&zero, &classes, 100.0);
        assert_eq!(p, [0.5, 0.5]);
        assert_eq!(ensemble(&[vec![1.0, 0.0], vec![-1.0, 0.0]]), [0.0, 0.0]);
    }

    #[test]
    fn softmax_of_scaled_cosines_ranked_with_ties_in_label_order() {
        let labels: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let classes = [vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 1.0]];
        let p = predict(&[3.0, 0.0], &labels, &classes, 2.0, None);
        assert_eq!(p[0].label, "y");
        let e = (-2.0f64).exp();
        assert!((p[0].score as f64 - 1.0 / (1.0 + 2.0 * e)).abs() < 1e-7);
        assert_eq!((p[1].label.as_str(), p[2].label.as_str()), ("x", "z"));
        assert_eq!(p[1].score, p[2].score);
        assert_eq!(
            predict(&[3.0, 0.0], &labels, &classes, 2.0, Some(1)).len(),
            1
        );
    }

    #[test]
    fn ensemble_is_the_normalized_mean_of_normalized_rows() {
        let e = ensemble(&[vec![2.0, 0.0], vec![0.0, 5.0]]);
        let s = std::f32::consts::FRAC_1_SQRT_2;
        assert!((e[0] - s).abs() < 1e-7 && (e[1] - s).abs() < 1e-7, "{e:?}");
        assert_eq!(ensemble(&[vec![0.0, 3.0]]), [0.0, 1.0]);
    }
}
