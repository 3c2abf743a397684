//! Fitting an adapter: hyper-parameters by leave-one-out cross-validation on the support images
//! (never on evaluation images), then an optional temperature on the same held-out logits.
//!
//! Each support image is scored by the adapter built from all the *other* support images (for
//! prototypes: its class prototype without it; for Tip-Adapter: the cache without its own key), and
//! the grid point with the most correct held-out predictions wins, ties going to the lower
//! held-out NLL. With many support images the held-out queries are an evenly spaced subset of at
//! most `max_queries` (the cache or prototypes still use every image).

use super::{dot, normalize_rows, Adapter, Method};
use crate::eval::calibration::{fit_temperature, log_softmax};
use crate::{Error, Result};
use rayon::prelude::*;

/// Which method to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// Class prototypes mixed with the text classifier.
    Prototype,
    /// Tip-Adapter's training-free cache model.
    TipAdapter,
}

impl MethodKind {
    /// `prototype` or `tip-adapter`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "prototype" => Ok(MethodKind::Prototype),
            "tip-adapter" | "tip" => Ok(MethodKind::TipAdapter),
            _ => Err(Error::UnknownName {
                kind: "adapter method",
                name: name.into(),
                known: "prototype, tip-adapter".into(),
            }),
        }
    }
}

/// How to fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The method.
    pub method: MethodKind,
    /// Also fit a softmax temperature (minimizing held-out NLL).
    pub calibrate: bool,
    /// At most this many held-out queries in cross-validation.
    pub max_queries: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            method: MethodKind::TipAdapter,
            calibrate: false,
            max_queries: 2000,
        }
    }
}

/// What an adapter is fitted on.
#[derive(Debug, Clone)]
pub struct FitInput<'a> {
    /// Support image embeddings, flat `[n, dim]` (normalized here).
    pub features: &'a [f32],
    /// The class index of each support image.
    pub targets: &'a [usize],
    /// The zero-shot classifier's unit class embeddings, flat `[labels, dim]`.
    pub text: &'a [f32],
    /// The model's logit scale (`logit_scale.exp()`).
    pub logit_scale: f32,
    /// The model's checksum.
    pub model: String,
    /// The classifier's labels.
    pub labels: Vec<String>,
    /// The classifier's templates.
    pub templates: Vec<String>,
}

/// λ for prototypes: 0 (text only) to 1 (prototypes only) in steps of 0.05.
fn mix_grid() -> Vec<f64> {
    (0..=20).map(|i| i as f64 / 20.0).collect()
}

/// β for Tip-Adapter: sharpness of the affinity, up to values a weak embedding needs.
const BETAS: [f64; 16] = [
    0.5, 1.0, 2.0, 3.0, 5.5, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0,
];
/// α for Tip-Adapter, 0 (zero-shot only) first.
const ALPHAS: [f64; 15] = [
    0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];

struct Support<'a> {
    features: Vec<f32>,
    targets: &'a [usize],
    text: &'a [f32],
    scale: f32,
    dim: usize,
    classes: usize,
}

impl Support<'_> {
    fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }
    fn n(&self) -> usize {
        self.targets.len()
    }
    fn text_logits(&self, f: &[f32]) -> Vec<f64> {
        self.text
            .chunks(self.dim)
            .map(|w| (self.scale * dot(f, w)) as f64)
            .collect()
    }
}

/// Fits an adapter on `input` (see the module header for how).
pub fn fit(input: FitInput, options: &FitOptions) -> Result<Adapter> {
    let classes = input.labels.len();
    let fail = |reason: String| Err(Error::AdapterFit { reason });
    if classes == 0 || !input.text.len().is_multiple_of(classes) || input.text.is_empty() {
        return fail(format!(
            "{} class embeddings for {classes} labels",
            input.text.len()
        ));
    }
    let dim = input.text.len() / classes;
    let n = input.targets.len();
    if input.features.len() != n * dim {
        return fail(format!(
            "{} support values for {n} images of width {dim}",
            input.features.len()
        ));
    }
    if n < 2 {
        return fail(format!(
            "{n} support images; cross-validation needs at least 2"
        ));
    }
    if let Some(&t) = input.targets.iter().find(|&&t| t >= classes) {
        return fail(format!("class index {t} out of range for {classes} labels"));
    }
    let mut features = input.features.to_vec();
    normalize_rows(&mut features, dim);
    let support = Support {
        features,
        targets: input.targets,
        text: input.text,
        scale: input.logit_scale,
        dim,
        classes,
    };
    let step = n.div_ceil(options.max_queries.max(1));
    let queries: Vec<usize> = (0..n).step_by(step).collect();
    let (sums, class_counts) = class_sums(&support);

    let (method, vectors, counts) = match options.method {
        MethodKind::Prototype => {
            let counts = class_counts.clone();
            let mut protos = sums.clone();
            normalize_rows(&mut protos, dim);
            let grid: Vec<Method> = mix_grid()
                .into_iter()
                .map(|mix| Method::Prototype { mix })
                .collect();
            let best = search(&support, &queries, &grid, |i, out| {
                prototype_loo(&support, &sums, &counts, i, &grid, out)
            });
            (best, protos, counts)
        }
        MethodKind::TipAdapter => {
            let grid: Vec<Method> = BETAS
                .iter()
                .flat_map(|&beta| {
                    ALPHAS
                        .iter()
                        .map(move |&alpha| Method::TipAdapter { alpha, beta })
                })
                .collect();
            let best = search(&support, &queries, &grid, |i, out| {
                tip_loo(&support, i, out)
            });
            let counts = support.targets.iter().map(|&t| t as u32).collect();
            (best, support.features.clone(), counts)
        }
    };
    // The held-out logits of the chosen method, for its accuracy and the temperature.
    let mut held_out = Vec::with_capacity(queries.len());
    let mut correct = 0usize;
    for &i in &queries {
        let mut rows = Vec::new();
        match options.method {
            MethodKind::Prototype => {
                prototype_loo(&support, &sums, &class_counts, i, &[method], &mut rows)
            }
            MethodKind::TipAdapter => tip_loo_one(&support, i, method, &mut rows),
        }
        let row: Vec<f32> = rows.remove(0).into_iter().map(|v| v as f32).collect();
        correct += usize::from(crate::eval::metrics::argmax(&row) == support.targets[i]);
        held_out.push(row);
    }
    let targets: Vec<usize> = queries.iter().map(|&i| support.targets[i]).collect();
    let temperature = options
        .calibrate
        .then(|| fit_temperature(&held_out, &targets));
    Ok(Adapter {
        model: input.model,
        labels: input.labels,
        templates: input.templates,
        method,
        temperature,
        cv_accuracy: correct as f64 / queries.len() as f64,
        dim,
        vectors,
        counts,
    })
}

/// Per class: the sum of its unit support embeddings, and its image count.
fn class_sums(s: &Support) -> (Vec<f32>, Vec<u32>) {
    let mut sums = vec![0f32; s.classes * s.dim];
    let mut counts = vec![0u32; s.classes];
    for i in 0..s.n() {
        let t = s.targets[i];
        counts[t] += 1;
        for (acc, v) in sums[t * s.dim..(t + 1) * s.dim].iter_mut().zip(s.row(i)) {
            *acc += v;
        }
    }
    (sums, counts)
}

/// Runs `score(i, out)` (pushing one logits row per grid point into `out`) for every query, in
/// parallel, and returns the grid point with the most correct predictions, then the lowest NLL.
fn search<F>(s: &Support, queries: &[usize], grid: &[Method], score: F) -> Method
where
    F: Fn(usize, &mut Vec<Vec<f64>>) + Sync,
{
    let totals = queries
        .par_iter()
        .map(|&i| {
            let mut rows = Vec::with_capacity(grid.len());
            score(i, &mut rows);
            rows.iter()
                .map(|row| {
                    let row32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
                    let t = s.targets[i];
                    let correct = crate::eval::metrics::argmax(&row32) == t;
                    (u64::from(correct), -log_softmax(&row32, 1.0)[t])
                })
                .collect::<Vec<_>>()
        })
        .reduce(
            || vec![(0u64, 0f64); grid.len()],
            |a, b| {
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| (x.0 + y.0, x.1 + y.1))
                    .collect()
            },
        );
    let mut best = 0;
    for (g, &(correct, nll)) in totals.iter().enumerate() {
        let (bc, bn) = totals[best];
        if correct > bc || (correct == bc && nll < bn) {
            best = g;
        }
    }
    grid[best]
}

/// Held-out prototype logits of support image `i` for each mixing weight in `grid`.
fn prototype_loo(
    s: &Support,
    sums: &[f32],
    counts: &[u32],
    i: usize,
    grid: &[Method],
    out: &mut Vec<Vec<f64>>,
) {
    let f = s.row(i);
    let t = s.targets[i];
    let text = s.text_logits(f);
    // Per class: f·p̂, w·p̂ with p̂ the unit prototype (None without support images).
    let protos: Vec<Option<(f64, f64)>> = (0..s.classes)
        .map(|c| {
            let sum = &sums[c * s.dim..(c + 1) * s.dim];
            let w = &s.text[c * s.dim..(c + 1) * s.dim];
            let (mut fs, mut ws, mut ss) =
                (dot(f, sum) as f64, dot(w, sum) as f64, dot(sum, sum) as f64);
            let mut count = counts[c];
            if c == t {
                // Leave image i out: sum − f, with |f| = 1.
                ws -= dot(w, f) as f64;
                ss += 1.0 - 2.0 * fs;
                fs -= 1.0;
                count -= 1;
            }
            (count > 0 && ss > 1e-12).then(|| (fs / ss.sqrt(), ws / ss.sqrt()))
        })
        .collect();
    for m in grid {
        let Method::Prototype { mix } = *m else {
            continue;
        };
        let row = (0..s.classes)
            .map(|c| match protos[c] {
                None => text[c],
                Some((fp, wp)) => {
                    let ft = text[c] / s.scale as f64;
                    let norm2 = (1.0 - mix).powi(2) + mix * mix + 2.0 * mix * (1.0 - mix) * wp;
                    s.scale as f64 * ((1.0 - mix) * ft + mix * fp) / norm2.max(1e-24).sqrt()
                }
            })
            .collect();
        out.push(row);
    }
}

/// Held-out Tip-Adapter logits of support image `i` for every (β, α) of the grid, β-major.
fn tip_loo(s: &Support, i: usize, out: &mut Vec<Vec<f64>>) {
    let f = s.row(i);
    let text = s.text_logits(f);
    let sims: Vec<f64> = (0..s.n()).map(|j| dot(f, s.row(j)) as f64).collect();
    for &beta in &BETAS {
        let cache = tip_cache(s, i, &sims, beta);
        for &alpha in &ALPHAS {
            out.push(
                text.iter()
                    .zip(&cache)
                    .map(|(t, c)| t + alpha * c)
                    .collect(),
            );
        }
    }
}

fn tip_loo_one(s: &Support, i: usize, method: Method, out: &mut Vec<Vec<f64>>) {
    let Method::TipAdapter { alpha, beta } = method else {
        return;
    };
    let f = s.row(i);
    let text = s.text_logits(f);
    let sims: Vec<f64> = (0..s.n()).map(|j| dot(f, s.row(j)) as f64).collect();
    let cache = tip_cache(s, i, &sims, beta);
    out.push(
        text.iter()
            .zip(&cache)
            .map(|(t, c)| t + alpha * c)
            .collect(),
    );
}

/// `exp(−β(1 − f·K_jᵀ))·L` over every key but image `i`'s own.
fn tip_cache(s: &Support, i: usize, sims: &[f64], beta: f64) -> Vec<f64> {
    let mut cache = vec![0f64; s.classes];
    for (j, &sim) in sims.iter().enumerate() {
        if j != i {
            cache[s.targets[j]] += (-beta * (1.0 - sim)).exp();
        }
    }
    cache
}
