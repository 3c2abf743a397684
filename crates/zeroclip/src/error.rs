//! The library's one error type. Variants are structured so callers can match on the cause and
//! messages always name the input (tensor, file, URL) and the reason.

use std::path::PathBuf;

/// Everything that can go wrong in `zeroclip`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- weights: loading and checkpoint structure ---
    /// A tensor the model needs is absent from the checkpoint.
    #[error("checkpoint is missing tensor `{name}`")]
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// The checkpoint has a tensor the model does not use.
    #[error("checkpoint has unexpected tensor `{name}`")]
    UnexpectedTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor has a different shape than the model expects.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A checkpoint file could not be parsed.
    #[error("cannot read checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model configuration (`config.json`, `open_clip_config.json`, or one given in code) is
    /// invalid or describes an architecture the model does not implement.
    #[error("model configuration {source_name}: {reason}")]
    Config {
        /// Where the configuration came from (a file name, or what was inferred from).
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A model input (pixels or token ids) has the wrong shape, type or values.
    #[error("invalid {input}: {reason}")]
    ModelInput {
        /// The input concerned.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    // --- zero-shot classification ---
    /// A classifier was asked for with no labels.
    #[error("no labels to classify against")]
    NoLabels,
    /// A template set was empty.
    #[error("no templates to build prompts from")]
    NoTemplates,
    /// A prompt template is not a valid `str.format` pattern with one class-name field.
    #[error("template {template:?}: {reason}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A built-in label set or template set name is not known.
    #[error("unknown {kind} {name:?}; known: {known}")]
    UnknownName {
        /// What kind of name, e.g. `label set`.
        kind: &'static str,
        /// The name as given.
        name: String,
        /// The names that are known.
        known: String,
    },
    /// A user's label breaks the label rules (empty, given twice); see
    /// [`crate::zeroshot::validate_labels`].
    #[error("label {:?}: {reason}", zeroclip_tokenizer::shorten(.label, zeroclip_tokenizer::MESSAGE_CHARS))]
    InvalidLabel {
        /// The label.
        label: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A label's prompts could not be encoded (for example, too long for the context).
    #[error("label {:?}: {source}", zeroclip_tokenizer::shorten(.label, zeroclip_tokenizer::MESSAGE_CHARS))]
    Label {
        /// The label.
        label: String,
        #[source]
        /// The tokenizer's error.
        source: Box<Error>,
    },

    // --- evaluation and adapters ---
    /// A true class index is not one of the classes.
    #[error("image {index}: class index {target} is out of range for {classes} classes")]
    TargetOutOfRange {
        /// The image's position in the set.
        index: usize,
        /// Its class index.
        target: usize,
        /// How many classes there are.
        classes: usize,
    },
    /// A labelled image set (folder, manifest, class-names file) is invalid.
    #[error("{path}: {reason}")]
    Dataset {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An adapter cannot be built from the support images given.
    #[error("cannot build an adapter: {reason}")]
    AdapterFit {
        /// Why not.
        reason: String,
    },
    /// An adapter file is not a valid zeroclip adapter.
    #[error("adapter {path}: {reason}")]
    AdapterFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An adapter was built for another model, other labels or other templates.
    #[error("adapter was built for {what} {adapter}, not {classifier}")]
    AdapterMismatch {
        /// What differs: the model, the labels or the templates.
        what: &'static str,
        /// What the adapter was built for.
        adapter: String,
        /// What the classifier has.
        classifier: String,
    },

    // --- wrapped errors from the pipeline's other crates and dependencies ---
    /// Tokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] zeroclip_tokenizer::Error),
    /// Image decoding or preprocessing failed.
    #[error(transparent)]
    Image(#[from] zeroclip_image::Error),
    /// Downloading or caching a checkpoint failed.
    #[error(transparent)]
    Hub(Box<zeroclip_hub::Error>),
    /// A PyTorch checkpoint file could not be read.
    #[error(transparent)]
    Pt(#[from] zeroclip_pt::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
}

// Boxed: hub errors carry a URL, a path and a hint, and inline they would make every
// `Result<T, Error>` in the crate twice as large.
impl From<zeroclip_hub::Error> for Error {
    fn from(e: zeroclip_hub::Error) -> Self {
        Error::Hub(Box::new(e))
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
