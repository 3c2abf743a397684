//! `zeroclip classify`: zero-shot classification of images against labels, the reference
//! example as a tool (`clip.load`, `preprocess`, `clip.tokenize`, `model(image, text)`, softmax).
//!
//! Each batch of images is decoded in parallel, then run through the model (`zeroclip::batch`);
//! results are written in input order as each batch finishes. Every input appears in the output, with predictions or an error.

use super::shared::{build_classifier, progress_bar, ModelArgs};
use crate::inputs::{self, Item};
use crate::output::{Format, Record, Writer};
use crate::Outcome;
use anyhow::Context;
use std::path::PathBuf;
use zeroclip::zeroshot::stack_pixels;
use zeroclip::{ClassifierOptions, LabelCache, LabelSet, Templates, ZeroShotClassifier};

/// Arguments of `zeroclip classify`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("label_source").required(true).args(["labels", "labels_file", "label_set", "adapter"])))]
pub struct Args {
    /// Images: files, directories (searched recursively for image files), glob patterns, or `-`
    /// to read paths from stdin, one per line.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// The labels, e.g. --labels "a diagram" "a dog" "a cat".
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub labels: Vec<String>,
    /// A file with one label per line.
    #[arg(long, value_name = "FILE")]
    pub labels_file: Option<PathBuf>,
    /// A built-in label set: imagenet (OpenAI's cleaned ImageNet-1k names), cifar10, cifar100.
    #[arg(long, value_name = "NAME")]
    pub label_set: Option<String>,
    /// The prompt template, `{}` marking the label. Default: `{}` (labels used as written) with
    /// --labels/--labels-file, "a photo of a {}." with --label-set.
    #[arg(long, conflicts_with = "templates")]
    pub template: Option<String>,
    /// A built-in template set, ensembled as in OpenAI's ImageNet notebook: imagenet80, imagenet7.
    #[arg(long, value_name = "NAME")]
    pub templates: Option<String>,
    /// Show the best K labels per image (at least 1; more than the labels shows them all).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), value_name = "K")]
    pub top_k: u64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Where label embeddings are cached (default: $ZEROCLIP_CACHE_DIR/labels, else
    /// ~/.cache/zeroclip/labels).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Always compute label embeddings; neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// A few-shot adapter made by `zeroclip adapt`: its labels and templates are used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["template", "templates"])]
    pub adapter: Option<PathBuf>,
    /// Print how many label embeddings came from the cache to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

fn infer(
    classifier: &ZeroShotClassifier<&zeroclip::Clip>,
    images: &[Vec<f32>],
    resolution: usize,
    device: &candle_core::Device,
) -> anyhow::Result<Vec<Vec<zeroclip::Prediction>>> {
    let pixels = stack_pixels(images, resolution, device)?;
    Ok(classifier.classify_batch(&pixels)?)
}

/// Runs `zeroclip classify`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let adapter = super::shared::load_adapter(args.adapter.as_deref())?;
    let (labels, default_templates) = if let Some(a) = &adapter {
        (a.labels.clone(), Templates::Custom(a.templates.clone()))
    } else if let Some(name) = &args.label_set {
        (LabelSet::from_name(name)?.labels(), Templates::default())
    } else {
        let labels = match &args.labels_file {
            Some(path) => zeroclip::zeroshot::read_labels_file(path)?,
            None => args.labels.clone(),
        };
        // The server's rules too: no empty label, none twice.
        zeroclip::zeroshot::validate_labels(&labels)?;
        (labels, Templates::as_written())
    };
    let templates = match (&args.template, &args.templates) {
        (Some(t), _) => Templates::Single(t.clone()),
        (None, Some(name)) => Templates::from_name(name)?,
        (None, None) => default_templates,
    };
    // Bad templates are usage errors: say so before loading a model.
    templates.list()?;
    let items = inputs::expand(&args.inputs, &mut std::io::stdin().lock())
        .context("cannot read input paths from stdin")?;

    let (model, preprocess) = args.model.load()?;
    if let Some(a) = &adapter {
        // Before the label embeddings and images: a wrong model is a usage error.
        a.check_model(&zeroclip::ZeroShotModel::identity(&model)?)
            .context("cannot use the adapter")?;
    }
    let cache = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(LabelCache::default_dir)
            .map(LabelCache::new)
    };
    let options = ClassifierOptions {
        truncate: args.model.truncate,
        cache,
        top_k: Some(args.top_k as usize),
        ..Default::default()
    };
    let n_labels = labels.len();
    let classifier = build_classifier(&model, labels, &templates, &options)?;
    let classifier = match &adapter {
        Some(a) => classifier
            .with_adapter(a)
            .context("cannot use the adapter")?,
        None => classifier,
    };
    if args.verbose {
        let s = classifier.cache_stats();
        eprintln!(
            "zeroclip: label embeddings: {} from cache, {} computed ({} labels){}",
            s.hits,
            s.misses,
            n_labels,
            if s.write_errors > 0 {
                format!(", {} could not be cached", s.write_errors)
            } else {
                String::new()
            }
        );
    }

    let mut writer = Writer::new(args.format, std::io::stdout().lock())?;
    let bar = progress_bar(items.len());
    bar.set_message("images");
    let resolution = preprocess.resolution as usize;
    let device = model.device().clone();
    let mut failed = 0usize;
    let batch_size = args.model.batch_size as usize;
    let sources: Vec<_> = items.iter().map(Item::source).collect();
    let mut write_error = None;
    let complete = zeroclip::batch::run_batches(
        &sources,
        &preprocess,
        batch_size,
        None,
        |good| infer(&classifier, good, resolution, &device),
        |i, result| {
            let item = &items[i];
            let record = match &result {
                Ok(p) => Record::Ok {
                    input: &item.name,
                    predictions: p,
                },
                Err(e) => {
                    failed += 1;
                    Record::Err {
                        input: &item.name,
                        error: e,
                    }
                }
            };
            if let Err(e) = writer.write(&record) {
                write_error = Some(e);
                return false;
            }
            bar.inc(1);
            true
        },
    );
    let stopped = match write_error {
        // A closed pipe (`| head`) ends the run quietly, as in other Unix tools.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => true,
        Some(e) => return Err(e.into()),
        None => !complete,
    };
    bar.finish_and_clear();
    if stopped {
        return Ok(Outcome::Success);
    }
    writer.finish()?;
    if failed > 0 {
        eprintln!("zeroclip: {failed} of {} inputs failed", items.len());
        Ok(Outcome::SomeFailed)
    } else {
        Ok(Outcome::Success)
    }
}
