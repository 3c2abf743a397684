//! `zeroclip adapt`: a few-shot class adapter from a few labelled images per class, training-free
//! (class prototypes or Tip-Adapter's cache model, hyper-parameters by leave-one-out
//! cross-validation on these images; see `zeroclip::adapter`), written as safetensors for
//! `classify --adapter` and `eval --adapter`.

use super::embed::encode_images;
use super::labelled::{run_images, DatasetArgs, PromptArgs};
use super::shared::{build_classifier, ModelArgs};
use crate::Outcome;
use anyhow::Context;
use std::path::PathBuf;
use zeroclip::adapter::{fit, FitInput, FitOptions, MethodKind};
use zeroclip::{ClassifierOptions, ZeroShotModel};

/// Arguments of `zeroclip adapt`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Where to write the adapter (safetensors).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// The method: tip-adapter (Tip-Adapter's cache model) or prototype (class prototypes mixed
    /// with the text classifier).
    #[arg(long, default_value = "tip-adapter", value_name = "NAME")]
    pub method: String,
    /// Also fit a softmax temperature on the support images (minimizing held-out NLL).
    #[arg(long)]
    pub calibrate: bool,
}

/// Runs `zeroclip adapt`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let method = MethodKind::from_name(&args.method)?;
    let dataset = args.data.load()?;
    let templates = args.prompts.templates()?;
    let (model, preprocess) = args.model.load()?;
    let options = ClassifierOptions {
        truncate: args.model.truncate,
        cache: args.prompts.cache(),
        ..Default::default()
    };
    let classifier = build_classifier(&model, dataset.classes.clone(), &templates, &options)?;
    let resolution = preprocess.resolution as usize;
    let paths: Vec<PathBuf> = dataset.images.iter().map(|(p, _)| p.clone()).collect();
    let results = run_images(
        &paths,
        &preprocess,
        args.model.batch_size as usize,
        "support images",
        |good| encode_images(&model, good, resolution, false),
    );
    let mut features = Vec::new();
    let mut targets = Vec::new();
    let mut failed = 0usize;
    for ((path, target), result) in dataset.images.iter().zip(results) {
        match result {
            Ok(row) => {
                features.extend(row);
                targets.push(*target);
            }
            Err(e) => {
                failed += 1;
                eprintln!("zeroclip: {}: {e}", path.display());
            }
        }
    }
    let text: Vec<f32> = classifier.class_embeddings().flatten_all()?.to_vec1()?;
    let adapter = fit(
        FitInput {
            features: &features,
            targets: &targets,
            text: &text,
            logit_scale: model.logit_scale(),
            model: ZeroShotModel::identity(&model)?,
            labels: dataset.classes.clone(),
            templates: templates.list()?,
        },
        &FitOptions {
            method,
            calibrate: args.calibrate,
            ..Default::default()
        },
    )?;
    adapter
        .save(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "{}: {} adapter from {} images of {} classes; {}; held-out (leave-one-out) accuracy on the support set {:.2} %{}",
        args.output.display(),
        adapter.method.name(),
        targets.len(),
        dataset.classes.len(),
        super::eval_report::adapter_json(&adapter),
        100.0 * adapter.cv_accuracy,
        adapter
            .temperature
            .map(|t| format!(", temperature {t:.4}"))
            .unwrap_or_default()
    );
    if failed > 0 {
        eprintln!(
            "zeroclip: {failed} of {} images could not be read",
            paths.len()
        );
        return Ok(Outcome::SomeFailed);
    }
    Ok(Outcome::Success)
}
