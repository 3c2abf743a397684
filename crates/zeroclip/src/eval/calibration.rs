//! Calibration of softmax probabilities: negative log-likelihood, expected calibration error, the
//! reliability diagram's bins, and the softmax temperature that minimizes NLL.
//!
//! ECE is Guo et al. (ICML 2017, "On Calibration of Modern Neural Networks"): images are put in
//! equal-width bins `(i/B, (i+1)/B]` by their top probability (confidence), and ECE is the
//! image-weighted mean of `|accuracy − mean confidence|` over the bins. Temperature scaling is the
//! same paper's: logits divided by one scalar `T`, chosen to minimize NLL on labelled images.
//! Everything is computed in f64 from the f32 logits.

use serde::Serialize;

/// The bins of the reliability diagram and of ECE, as in Guo et al.
pub const ECE_BINS: usize = 15;

/// NLL and ECE of one set of probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// Mean of `−ln p(true class)`.
    pub nll: f64,
    /// Expected calibration error over [`ECE_BINS`] bins.
    pub ece: f64,
    /// The temperature the logits were divided by.
    pub temperature: f64,
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    /// Lower edge (exclusive).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Images whose confidence falls in the bin.
    pub count: u64,
    /// Their top-1 accuracy (0 when empty).
    pub accuracy: f64,
    /// Their mean confidence (0 when empty).
    pub confidence: f64,
}

/// `ln softmax(logits / temperature)`, in f64.
pub fn log_softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let z: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// Mean NLL of the true classes under `softmax(logits / temperature)`.
pub fn nll(logits: &[Vec<f32>], targets: &[usize], temperature: f64) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let total: f64 = logits
        .iter()
        .zip(targets)
        .map(|(row, &t)| -log_softmax(row, temperature)[t])
        .sum();
    total / logits.len() as f64
}

/// The reliability diagram's `bins` equal-width confidence bins.
pub fn reliability(
    logits: &[Vec<f32>],
    targets: &[usize],
    temperature: f64,
    bins: usize,
) -> Vec<Bin> {
    let mut count = vec![0u64; bins];
    let mut correct = vec![0u64; bins];
    let mut confidence = vec![0f64; bins];
    for (row, &t) in logits.iter().zip(targets) {
        let lp = log_softmax(row, temperature);
        // The first maximum, as argmax.
        let (best, &top) = lp
            .iter()
            .enumerate()
            .fold((0, &f64::NEG_INFINITY), |acc, (i, v)| {
                if *v > *acc.1 {
                    (i, v)
                } else {
                    acc
                }
            });
        let conf = top.exp();
        // Bin i holds (i/B, (i+1)/B]: the smallest i with conf <= (i+1)/B.
        let b = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        correct[b] += u64::from(best == t);
        confidence[b] += conf;
    }
    (0..bins)
        .map(|b| {
            let n = count[b];
            Bin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: n,
                accuracy: if n == 0 {
                    0.0
                } else {
                    correct[b] as f64 / n as f64
                },
                confidence: if n == 0 {
                    0.0
                } else {
                    confidence[b] / n as f64
                },
            }
        })
        .collect()
}

/// NLL and ECE ([`ECE_BINS`] bins) of `softmax(logits / temperature)`.
pub fn calibration(logits: &[Vec<f32>], targets: &[usize], temperature: f64) -> Calibration {
    let n = logits.len().max(1) as f64;
    let ece = reliability(logits, targets, temperature, ECE_BINS)
        .iter()
        .map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs())
        .sum();
    Calibration {
        nll: nll(logits, targets, temperature),
        ece,
        temperature,
    }
}

/// The temperature in `[1e-3, 1e3]` that minimizes [`nll`]. NLL is convex in `1/T`, so a
/// golden-section search on `ln T` finds the minimum.
pub fn fit_temperature(logits: &[Vec<f32>], targets: &[usize]) -> f64 {
    let f = |u: f64| nll(logits, targets, u.exp());
    let (mut a, mut b) = (1e-3f64.ln(), 1e3f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-6 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_confident_predictions_have_no_error() {
        let logits = vec![vec![50.0, 0.0], vec![0.0, 50.0]];
        let c = calibration(&logits, &[0, 1], 1.0);
        assert!(c.nll < 1e-20 && c.ece < 1e-20, "{c:?}");
    }

    #[test]
    fn ece_by_hand() {
        // Two images at confidence 0.75 (bin 11 of 15: (0.7333, 0.8]), one right one wrong.
        let l = (3f64).ln() as f32; // softmax([ln 3, 0]) = [0.75, 0.25]
        let logits = vec![vec![l, 0.0], vec![l, 0.0]];
        let c = calibration(&logits, &[0, 1], 1.0);
        assert!((c.ece - 0.25).abs() < 1e-6, "{c:?}");
        let bins = reliability(&logits, &[0, 1], 1.0, ECE_BINS);
        assert_eq!(bins[11].count, 2);
        assert!((c.nll - (-(0.75f64.ln()) - 0.25f64.ln()) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn temperature_recovers_the_scale_of_overconfident_logits() {
        // Labels drawn so that p(true) = softmax(z)[true] with z the logits divided by 4: the
        // NLL-optimal temperature of the scaled logits is near 4.
        let mut logits = Vec::new();
        let mut targets = Vec::new();
        for i in 0..400 {
            let z = [(i % 7) as f32 * 0.5, 1.0, 0.0];
            let p: Vec<f64> = log_softmax(&z, 1.0).iter().map(|v| v.exp()).collect();
            // Deterministic "sampling": the fraction of images of each kind per class equals p.
            let u = (i as f64 * 0.618_033_988_7).fract();
            let t = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            logits.push(z.iter().map(|v| v * 4.0).collect());
            targets.push(t);
        }
        let t = fit_temperature(&logits, &targets);
        assert!((t - 4.0).abs() < 0.6, "{t}");
        assert!(nll(&logits, &targets, t) < nll(&logits, &targets, 1.0));
    }
}
