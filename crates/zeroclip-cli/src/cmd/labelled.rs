//! What `zeroclip eval` and `zeroclip adapt` share: reading a labelled image set from the command
//! line (an ImageFolder, or a label set plus a manifest), the classifier's label cache and
//! templates, and running every image through the model in batches with a progress bar. Every
//! image gets its result or its error.

use super::shared::progress_bar;
use anyhow::Context;
use std::path::PathBuf;
use zeroclip::batch::{run_batches, ImageSource};
use zeroclip::eval::{read_class_names, Dataset};
use zeroclip::{LabelCache, LabelSet, Templates};

/// Where the labelled images come from.
#[derive(clap::Args)]
pub struct DatasetArgs {
    /// An ImageFolder: one sub-directory per class (class name = folder name with `_` read as a
    /// space), images anywhere below it.
    #[arg(value_name = "DIR", required_unless_present = "manifest")]
    pub dir: Option<PathBuf>,
    /// Class names for the folders: lines `folder<TAB>name`, or one name per line in sorted
    /// folder order.
    #[arg(long, value_name = "FILE", requires = "dir")]
    pub classnames: Option<PathBuf>,
    /// A built-in label set (imagenet, cifar10, cifar100) for --manifest's labels.
    #[arg(long, value_name = "NAME", requires = "manifest")]
    pub label_set: Option<String>,
    /// A CSV of `path,label` rows (label: a class name of --label-set or its index; paths relative
    /// to the CSV), instead of DIR.
    #[arg(
        long,
        value_name = "CSV",
        requires = "label_set",
        conflicts_with = "dir"
    )]
    pub manifest: Option<PathBuf>,
}

impl DatasetArgs {
    /// Lists the images and their classes.
    pub fn load(&self) -> anyhow::Result<Dataset> {
        if let (Some(manifest), Some(set)) = (&self.manifest, &self.label_set) {
            let classes = LabelSet::from_name(set)?.labels();
            return Ok(Dataset::manifest(manifest, classes)?);
        }
        let dir = self.dir.as_ref().context("no image folder given")?;
        let names = self
            .classnames
            .as_deref()
            .map(read_class_names)
            .transpose()?;
        Ok(Dataset::image_folder(dir, names.as_ref())?)
    }

    /// The data set's name in reports: the folder or manifest as given.
    pub fn name(&self) -> String {
        self.manifest
            .as_ref()
            .or(self.dir.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// Templates and the label cache, as `classify` takes them.
#[derive(clap::Args)]
pub struct PromptArgs {
    /// The prompt template, `{}` marking the class name.
    #[arg(long, default_value = zeroclip::zeroshot::DEFAULT_TEMPLATE, conflicts_with = "templates")]
    pub template: String,
    /// A built-in template set, ensembled as in OpenAI's ImageNet notebook: imagenet80, imagenet7.
    #[arg(long, value_name = "NAME")]
    pub templates: Option<String>,
    /// Where label embeddings are cached (default: $ZEROCLIP_CACHE_DIR/labels, else
    /// ~/.cache/zeroclip/labels).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Always compute label embeddings; neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl PromptArgs {
    /// The templates asked for (checked).
    pub fn templates(&self) -> anyhow::Result<Templates> {
        let t = match &self.templates {
            Some(name) => Templates::from_name(name)?,
            None => Templates::Single(self.template.clone()),
        };
        t.list()?;
        Ok(t)
    }

    /// The label cache asked for.
    pub fn cache(&self) -> Option<LabelCache> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(LabelCache::default_dir)
            .map(LabelCache::new)
    }
}

/// Runs every image of `paths` through `infer` in batches of `batch_size` (the library's batch
/// pipeline) with a progress bar, and returns, per path, its output or why it failed.
pub fn run_images<T: Send, E: std::fmt::Display>(
    paths: &[PathBuf],
    preprocess: &zeroclip::image::Preprocess,
    batch_size: usize,
    message: &'static str,
    infer: impl FnMut(&[Vec<f32>]) -> Result<Vec<T>, E> + Send,
) -> Vec<Result<T, String>> {
    let sources: Vec<ImageSource> = paths.iter().cloned().map(ImageSource::Path).collect();
    let bar = progress_bar(sources.len());
    bar.set_message(message);
    let mut results = Vec::with_capacity(sources.len());
    run_batches(
        &sources,
        preprocess,
        batch_size,
        None,
        infer,
        |_, result| {
            results.push(result);
            bar.inc(1);
            true
        },
    );
    bar.finish_and_clear();
    results
}
