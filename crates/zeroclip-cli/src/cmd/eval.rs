//! `zeroclip eval`: zero-shot (or adapted) accuracy on a labelled image set, with LAION
//! CLIP_benchmark's metrics and report shape, per-class metrics, the confusion matrix, calibration,
//! and optional plots.
//!
//! Every image appears in the report: the unreadable ones are listed with their errors and counted
//! apart (the metrics are over the readable ones), and make the exit code 1.

use super::eval_report::{self as report, Report};
use super::labelled::{run_images, DatasetArgs, PromptArgs};
use super::shared::{build_classifier, ModelArgs};
use crate::Outcome;
use anyhow::Context;
use std::path::PathBuf;
use zeroclip::eval::{calibration, Metrics};
use zeroclip::zeroshot::stack_pixels;
use zeroclip::{ClassifierOptions, Templates};

/// Arguments of `zeroclip eval`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// A few-shot adapter made by `zeroclip adapt` (its templates are used; its labels must be
    /// the data set's classes).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["template", "templates"])]
    pub adapter: Option<PathBuf>,
    /// Write the report as JSON (CLIP_benchmark's shape, plus per-class metrics and the
    /// unreadable images).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the confusion matrix as CSV (rows: true class, columns: predicted class).
    #[arg(long, value_name = "FILE")]
    pub confusion: Option<PathBuf>,
    /// Draw the confusion matrix, per-class recall and reliability diagram (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Runs `zeroclip eval`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let dataset = args.data.load()?;
    let adapter = super::shared::load_adapter(args.adapter.as_deref())?;
    let templates = match &adapter {
        Some(a) => Templates::Custom(a.templates.clone()),
        None => args.prompts.templates()?,
    };
    if let Some(plot) = &args.plot {
        super::eval_plot::check_path(plot)?;
    }
    let (model, preprocess) = args.model.load()?;
    if let Some(a) = &adapter {
        // Before the label embeddings and images: a wrong model is a usage error.
        a.check_model(&zeroclip::ZeroShotModel::identity(&model)?)
            .context("cannot use the adapter")?;
    }
    let options = ClassifierOptions {
        truncate: args.model.truncate,
        cache: args.prompts.cache(),
        ..Default::default()
    };
    let mut classifier = build_classifier(&model, dataset.classes.clone(), &templates, &options)?;
    if let Some(a) = &adapter {
        classifier = classifier
            .with_adapter(a)
            .context("cannot use the adapter")?;
    }
    let resolution = preprocess.resolution as usize;
    let device = model.device().clone();
    let paths: Vec<PathBuf> = dataset.images.iter().map(|(p, _)| p.clone()).collect();
    let results = run_images(
        &paths,
        &preprocess,
        args.model.batch_size as usize,
        "images",
        |good| {
            let pixels = stack_pixels(good, resolution, &device)?;
            let features = model.encode_image(&pixels)?;
            classifier.logits(&features)
        },
    );

    let mut logits = Vec::new();
    let mut targets = Vec::new();
    let mut unreadable = Vec::new();
    for ((path, target), result) in dataset.images.iter().zip(results) {
        match result {
            Ok(row) => {
                logits.push(row);
                targets.push(*target);
            }
            Err(error) => unreadable.push(report::Unreadable {
                path: path.display().to_string(),
                error,
            }),
        }
    }
    let metrics = Metrics::compute(&logits, &targets, dataset.classes.len())?;
    let mut calibrations = vec![calibration(&logits, &targets, 1.0)];
    if classifier.temperature() != 1.0 {
        calibrations.push(calibration(&logits, &targets, classifier.temperature()));
    }
    let report = Report {
        dataset: args.data.name(),
        model: args.model.model.clone(),
        classes: &dataset.classes,
        templates: templates.list()?,
        adapter: adapter.as_ref(),
        metrics: &metrics,
        calibrations,
        unreadable,
    };
    let mut out = std::io::stdout().lock();
    match report.print_table(&mut out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.context("cannot write to stdout")?,
    }
    if let Some(path) = &args.output {
        report
            .write_json(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.confusion {
        report::write_confusion_csv(path, &dataset.classes, &metrics)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let temperature = classifier.temperature();
        super::eval_plot::draw(path, &report, &logits, &targets, temperature)
            .with_context(|| format!("cannot draw {}", path.display()))?;
    }
    if report.unreadable.is_empty() {
        Ok(Outcome::Success)
    } else {
        eprintln!(
            "zeroclip: {} of {} images could not be read",
            report.unreadable.len(),
            dataset.images.len()
        );
        Ok(Outcome::SomeFailed)
    }
}
