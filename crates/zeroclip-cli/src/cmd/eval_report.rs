//! `zeroclip eval`'s outputs: the terminal table, the JSON report (LAION CLIP_benchmark's
//! `{"dataset", "model", "task", "metrics"}` plus our blocks) and the confusion-matrix CSV.

use serde_json::{json, Map, Value};
use std::io::{self, Write};
use std::path::Path;
use zeroclip::adapter::{Adapter, Method};
use zeroclip::eval::{Calibration, Metrics};

/// How many confused pairs the report lists.
pub const MOST_CONFUSED: usize = 10;
/// Up to this many classes the table lists every class; beyond, the lowest recalls only.
const TABLE_CLASSES: usize = 30;

/// An image that could not be read, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unreadable {
    pub path: String,
    pub error: String,
}

/// Everything `zeroclip eval` reports.
pub struct Report<'a> {
    pub dataset: String,
    pub model: String,
    pub classes: &'a [String],
    pub templates: Vec<String>,
    pub adapter: Option<&'a Adapter>,
    pub metrics: &'a Metrics,
    /// At temperature 1, then at the adapter's fitted temperature if it has one.
    pub calibrations: Vec<Calibration>,
    pub unreadable: Vec<Unreadable>,
}

/// An adapter's method and hyper-parameters as JSON.
pub fn adapter_json(a: &Adapter) -> Value {
    let mut v = json!({
        "method": a.method.name(),
        "model_sha256": a.model,
        "cv_accuracy": a.cv_accuracy,
        "temperature": a.temperature,
    });
    match a.method {
        Method::Prototype { mix } => v["mix"] = json!(mix),
        Method::TipAdapter { alpha, beta } => {
            v["alpha"] = json!(alpha);
            v["beta"] = json!(beta);
        }
    }
    v
}

impl Report<'_> {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let m = self.metrics;
        let mut metrics = Map::new();
        metrics.insert("acc1".into(), json!(m.acc1));
        if let Some(acc5) = m.acc5 {
            metrics.insert("acc5".into(), json!(acc5));
        }
        metrics.insert(
            "mean_per_class_recall".into(),
            json!(m.mean_per_class_recall),
        );
        metrics.insert("nll".into(), json!(self.calibrations[0].nll));
        metrics.insert("ece".into(), json!(self.calibrations[0].ece));
        if let Some(after) = self.calibrations.get(1) {
            metrics.insert("nll_calibrated".into(), json!(after.nll));
            metrics.insert("ece_calibrated".into(), json!(after.ece));
        }
        let per_class: Vec<Value> = self
            .classes
            .iter()
            .zip(&m.per_class)
            .map(|(name, c)| {
                json!({"class": name, "precision": c.precision, "recall": c.recall, "f1": c.f1,
                       "support": c.support, "predicted": c.predicted})
            })
            .collect();
        let confused: Vec<Value> = m
            .most_confused(MOST_CONFUSED)
            .iter()
            .map(|p| {
                json!({"true": self.classes[p.true_class], "predicted": self.classes[p.predicted],
                       "count": p.count})
            })
            .collect();
        json!({
            "dataset": self.dataset,
            "model": self.model,
            "task": "zeroshot_classification",
            "metrics": metrics,
            "images": {
                "total": m.images + self.unreadable.len(),
                "evaluated": m.images,
                "unreadable": self.unreadable.len(),
            },
            "templates": self.templates,
            "adapter": self.adapter.map(adapter_json),
            "calibration": self.calibrations,
            "per_class": per_class,
            "most_confused": confused,
            "unreadable": self.unreadable,
        })
    }

    /// Writes [`Self::to_json`] to `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(&self.to_json())?;
        text.push('\n');
        std::fs::write(path, text)
    }

    /// The summary, the per-class table and the most confused pairs.
    pub fn print_table(&self, out: &mut impl Write) -> io::Result<()> {
        let m = self.metrics;
        let pct = |v: f64| format!("{:.2} %", 100.0 * v);
        writeln!(out, "dataset   {}", self.dataset)?;
        writeln!(out, "model     {}", self.model)?;
        if let Some(a) = self.adapter {
            writeln!(out, "adapter   {}", adapter_json(a))?;
        }
        writeln!(
            out,
            "images    {} evaluated, {} unreadable",
            m.images,
            self.unreadable.len()
        )?;
        writeln!(out, "acc1      {}", pct(m.acc1))?;
        if let Some(acc5) = m.acc5 {
            writeln!(out, "acc5      {}", pct(acc5))?;
        }
        writeln!(
            out,
            "mean per-class recall  {}",
            pct(m.mean_per_class_recall)
        )?;
        for c in &self.calibrations {
            writeln!(
                out,
                "calibration at T = {:.4}: NLL {:.4}, ECE {}",
                c.temperature,
                c.nll,
                pct(c.ece)
            )?;
        }
        let mut order: Vec<usize> = (0..self.classes.len()).collect();
        let title = if order.len() > TABLE_CLASSES {
            order.sort_by(|&a, &b| m.per_class[a].recall.total_cmp(&m.per_class[b].recall));
            order.truncate(TABLE_CLASSES);
            format!("the {TABLE_CLASSES} classes with the lowest recall")
        } else {
            "per class".to_string()
        };
        let width = order
            .iter()
            .map(|&c| self.classes[c].chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        writeln!(out, "\n{title}")?;
        writeln!(
            out,
            "  {:<width$}  precision  recall      f1  support",
            "class"
        )?;
        for &c in &order {
            let s = &m.per_class[c];
            writeln!(
                out,
                "  {:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                self.classes[c], s.precision, s.recall, s.f1, s.support
            )?;
        }
        let confused = m.most_confused(MOST_CONFUSED);
        if !confused.is_empty() {
            writeln!(out, "\nmost confused (true -> predicted: images)")?;
            for p in confused {
                writeln!(
                    out,
                    "  {} -> {}: {}",
                    self.classes[p.true_class], self.classes[p.predicted], p.count
                )?;
            }
        }
        if !self.unreadable.is_empty() {
            writeln!(out, "\nunreadable")?;
            for u in &self.unreadable {
                writeln!(out, "  {}: {}", u.path, u.error)?;
            }
        }
        out.flush()
    }
}

/// The confusion matrix as CSV: a header of predicted classes, then one row per true class.
pub fn write_confusion_csv(path: &Path, classes: &[String], metrics: &Metrics) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    write!(out, "true\\predicted")?;
    for c in classes {
        write!(out, ",{}", crate::output::csv_field(c))?;
    }
    writeln!(out)?;
    for (c, row) in classes.iter().zip(&metrics.confusion) {
        write!(out, "{}", crate::output::csv_field(c))?;
        for v in row {
            write!(out, ",{v}")?;
        }
        writeln!(out)?;
    }
    out.flush()
}
