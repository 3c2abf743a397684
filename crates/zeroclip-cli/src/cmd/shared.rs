//! What the commands that run the model share: the model options (`--model`, `--truncate`,
//! `--batch-size`, `--threads`, `--precision`), the progress bar, and building a classifier with one.

use anyhow::Context;
use std::io::IsTerminal;
use zeroclip::{ClassifierOptions, Templates, ZeroShotClassifier};

/// Options shared by the commands that run the model.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A model name (see `zeroclip models`), a Hugging Face Hub id, or a local checkpoint file
    /// or directory.
    #[arg(long, default_value = "ViT-B/32", value_name = "NAME|PATH")]
    pub model: String,
    /// Truncate texts longer than the model's context instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Images per inference batch (1-1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    pub batch_size: u64,
    /// Worker threads for decoding and inference (default: all cores; 1-1024).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    pub threads: Option<u64>,
    /// Arithmetic of the transformer's linear layers: fp32 (the reference's), bf16 (half the
    /// weight memory; faster only with AVX-512 BF16) or int8 (dynamic quantization: a quarter
    /// of the weight memory). Speed: docs/PERFORMANCE.md; fidelity: docs/FIDELITY.md.
    #[arg(long, default_value = "fp32", value_name = "fp32|bf16|int8")]
    pub precision: zeroclip::Precision,
}

impl ModelArgs {
    /// Sizes the thread pools, then loads the model on the CPU.
    pub fn load(&self) -> anyhow::Result<(zeroclip::Clip, zeroclip::image::Preprocess)> {
        if let Some(n) = self.threads {
            // candle's CPU kernels read RAYON_NUM_THREADS; rayon's global pool is ours.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n as usize)
                .build_global();
        }
        let options = zeroclip::LoadOptions::with_precision(self.precision);
        zeroclip::load_with(&self.model, &candle_core::Device::Cpu, &options)
            .with_context(|| format!("cannot load model {:?}", self.model))
    }
}

/// The adapter file of `--adapter`, if given, read before the (slower) model load.
pub fn load_adapter(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<zeroclip::adapter::Adapter>> {
    path.map(zeroclip::adapter::Adapter::load)
        .transpose()
        .context("cannot use the adapter")
}

/// A progress bar on stderr, hidden when stderr is not a terminal or the run is one image.
pub fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if len < 2 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:16} {bar:40} {pos}/{len}  {elapsed} elapsed, eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The classifier, with a progress bar while labels missing from the cache go through the text
/// tower (ImageNet with 80 templates is 80,000 prompts).
pub fn build_classifier<'m>(
    model: &'m zeroclip::Clip,
    labels: Vec<String>,
    templates: &Templates,
    options: &ClassifierOptions,
) -> zeroclip::Result<ZeroShotClassifier<&'m zeroclip::Clip>> {
    let mut label_bar: Option<indicatif::ProgressBar> = None;
    let classifier =
        ZeroShotClassifier::with_progress(model, labels, templates, options, &mut |done, total| {
            let bar = label_bar.get_or_insert_with(|| {
                let bar = progress_bar(total);
                bar.set_message("label embeddings");
                bar
            });
            bar.set_position(done as u64);
        });
    if let Some(bar) = label_bar {
        bar.finish_and_clear();
    }
    classifier
}
