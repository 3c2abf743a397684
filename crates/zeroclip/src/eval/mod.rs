//! Evaluation of a classifier on labelled images, without tensors: the labelled image sets
//! (`dataset`), CLIP_benchmark's metrics (`metrics`), and calibration (`calibration`: ECE, NLL,
//! temperature scaling). `zeroclip eval` is these plus the model.

pub mod calibration;
pub mod dataset;
pub mod metrics;

pub use calibration::{calibration, fit_temperature, Calibration, ECE_BINS};
pub use dataset::{read_class_names, ClassNames, Dataset};
pub use metrics::{ClassMetrics, ConfusedPair, Metrics};
