//! Single-label classification metrics from per-image class scores and true classes.
//!
//! Reproduces LAION CLIP_benchmark's `metrics/zeroshot_classification.py`: `acc1` and `acc5` are
//! the fractions of images whose true class is among the best 1 and 5 scores (`acc5` only with at
//! least 5 classes), `mean_per_class_recall` is scikit-learn's `balanced_accuracy_score` (the
//! mean recall over the classes that have images). Per class: precision, recall and F1 as
//! scikit-learn's `precision_recall_fscore_support` (0 where undefined), and its support.

use crate::{Error, Result};
use serde::Serialize;

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Correct predictions of this class over all predictions of it (0 if never predicted).
    pub precision: f64,
    /// Correct predictions of this class over its images (0 if it has none).
    pub recall: f64,
    /// `2·tp / (support + predicted)`, scikit-learn's form (0 if both are 0).
    pub f1: f64,
    /// Images whose true class this is.
    pub support: u64,
    /// Images predicted as this class.
    pub predicted: u64,
}

/// How often images of one class were predicted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConfusedPair {
    /// The true class index.
    pub true_class: usize,
    /// The predicted class index.
    pub predicted: usize,
    /// Images of `true_class` predicted as `predicted`.
    pub count: u64,
}

/// Every metric `zeroclip eval` reports except calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Images scored.
    pub images: usize,
    /// Top-1 accuracy.
    pub acc1: f64,
    /// Top-5 accuracy; `None` with fewer than 5 classes, as CLIP_benchmark.
    pub acc5: Option<f64>,
    /// Mean over classes with images of their recall.
    pub mean_per_class_recall: f64,
    /// Per class, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` image counts.
    pub confusion: Vec<Vec<u64>>,
}

/// The classes of `scores`, best first: higher score first, equal scores in class order (as
/// `argmax` takes the first maximum).
pub fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// The best class of `scores`: the first maximum, as `argmax` (and [`ranking`]'s first).
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in scores.iter().enumerate() {
        if *v > scores[best] {
            best = i;
        }
    }
    best
}

impl Metrics {
    /// Metrics of `scores[i]` (one score per class, any monotone scale: logits or
    /// probabilities) against the true class `targets[i]`, over `classes` classes.
    pub fn compute(scores: &[Vec<f32>], targets: &[usize], classes: usize) -> Result<Self> {
        if scores.len() != targets.len() {
            return Err(Error::ShapeMismatch {
                name: "targets".into(),
                expected: vec![scores.len()],
                got: vec![targets.len()],
            });
        }
        let mut confusion = vec![vec![0u64; classes]; classes];
        let (mut top1, mut top5) = (0u64, 0u64);
        for (i, (row, &target)) in scores.iter().zip(targets).enumerate() {
            if row.len() != classes {
                return Err(Error::ShapeMismatch {
                    name: format!("scores of image {i}"),
                    expected: vec![classes],
                    got: vec![row.len()],
                });
            }
            if target >= classes {
                return Err(Error::TargetOutOfRange {
                    index: i,
                    target,
                    classes,
                });
            }
            let order = ranking(row);
            confusion[target][order[0]] += 1;
            top1 += u64::from(order[0] == target);
            top5 += u64::from(order.iter().take(5).any(|&c| c == target));
        }
        let n = scores.len() as f64;
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let per_class: Vec<ClassMetrics> = (0..classes)
            .map(|c| {
                let tp = confusion[c][c];
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
                ClassMetrics {
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    f1: ratio(2 * tp, support + predicted),
                    support,
                    predicted,
                }
            })
            .collect();
        let recalls: Vec<f64> = per_class
            .iter()
            .filter(|m| m.support > 0)
            .map(|m| m.recall)
            .collect();
        let mean_per_class_recall = if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        };
        let (acc1, acc5) = if scores.is_empty() {
            (0.0, (classes >= 5).then_some(0.0))
        } else {
            (top1 as f64 / n, (classes >= 5).then(|| top5 as f64 / n))
        };
        Ok(Metrics {
            images: scores.len(),
            acc1,
            acc5,
            mean_per_class_recall,
            per_class,
            confusion,
        })
    }

    /// The `k` largest off-diagonal confusion counts, largest first (ties in (true, predicted)
    /// order); pairs never confused are left out.
    pub fn most_confused(&self, k: usize) -> Vec<ConfusedPair> {
        let mut pairs: Vec<ConfusedPair> = self
            .confusion
            .iter()
            .enumerate()
            .flat_map(|(t, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |&(p, &count)| p != t && count > 0)
                    .map(move |(p, &count)| ConfusedPair {
                        true_class: t,
                        predicted: p,
                        count,
                    })
            })
            .collect();
        pairs.sort_by_key(|p| std::cmp::Reverse(p.count));
        pairs.truncate(k);
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(c: usize, n: usize) -> Vec<f32> {
        (0..n).map(|i| if i == c { 1.0 } else { 0.0 }).collect()
    }

    #[test]
    fn counts_and_ratios_by_hand() {
        // 3 classes; class 2 has no images but is predicted once.
        let preds = [0, 0, 1, 0, 1, 2];
        let targets = [0, 0, 0, 1, 1, 1];
        let scores: Vec<Vec<f32>> = preds.iter().map(|&p| one_hot(p, 3)).collect();
        let m = Metrics::compute(&scores, &targets, 3).unwrap();
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![1, 1, 1], vec![0, 0, 0]]
        );
        assert_eq!(m.acc1, 3.0 / 6.0);
        assert_eq!(m.acc5, None);
        assert_eq!(m.mean_per_class_recall, (2.0 / 3.0 + 1.0 / 3.0) / 2.0);
        assert_eq!(m.per_class[0].precision, 2.0 / 3.0);
        assert_eq!(m.per_class[1].f1, 2.0 / 5.0);
        assert_eq!(
            m.per_class[2],
            ClassMetrics {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 0,
                predicted: 1
            }
        );
        let top = m.most_confused(2);
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0].true_class, top[0].predicted, top[0].count),
            (0, 1, 1)
        );
        assert_eq!((top[1].true_class, top[1].predicted), (1, 0));
    }

    #[test]
    fn acc5_needs_five_classes_and_counts_the_best_five() {
        // True class ranked 5th for image 0, 6th for image 1.
        let scores = vec![
            vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        ];
        let m = Metrics::compute(&scores, &[4, 5], 6).unwrap();
        assert_eq!(m.acc1, 0.0);
        assert_eq!(m.acc5, Some(0.5));
    }

    #[test]
    fn bad_targets_and_rows_are_errors() {
        let scores = vec![vec![0.5, 0.5]];
        assert!(matches!(
            Metrics::compute(&scores, &[2], 2),
            Err(Error::TargetOutOfRange { target: 2, .. })
        ));
        assert!(Metrics::compute(&scores, &[0, 1], 2).is_err());
        assert!(Metrics::compute(&scores, &[0], 3).is_err());
    }
}
