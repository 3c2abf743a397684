//! The CLIP model: both towers and the logits, as `clip.model.CLIP`.
//!
//! Everything is computed in f32 (the reference on CPU calls `model.float()`) unless the model is
//! loaded in a lower [`Precision`] for its linear layers; fp16 weights are widened as each layer
//! takes them (on the CPU, GEMM weights are packed straight from the mapped checkpoint's bytes).
//! `encode_image` / `encode_text` return unnormalized embeddings; `forward` L2-normalizes them
//! and scales the cosine similarities by `logit_scale.exp()`.

mod a_tiles;
mod amx;
mod attn_query;
mod bf16;
pub mod config;
mod conv;
mod dispatch;
mod epilogue;
mod fallback;
#[cfg(target_arch = "x86_64")]
mod fma_loop;
mod fused;
/// The CPU GEMM, public only for the benchmark (`examples/bench_model.rs`); not a stable API.
#[doc(hidden)]
pub mod gemm;
mod int8;
#[doc(hidden)]
pub mod layer_report;
mod microkernel;
mod ops;
mod packed;
pub(crate) mod resnet;
pub(crate) mod text;
pub(crate) mod transformer;
pub(crate) mod vit;
#[cfg(target_arch = "x86_64")]
mod vmath;
mod winograd;

pub use config::{Activation, ClipConfig, VisionConfig};

use crate::error::{Error, Result};
pub use crate::tensors::{Precision, UnknownPrecision};
use crate::tensors::{StoredTensor, TensorStore, Vb};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The image tower.
#[derive(Clone, Debug)]
enum Visual {
    ViT(vit::VisionTransformer),
    ResNet(Box<resnet::ModifiedResNet>),
}

/// What the weights came from, for [`Clip::checksum`].
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    Files(Vec<PathBuf>),
    /// Built by [`Clip::from_tensors`]: the digest taken then, so no tensor is kept for it.
    Tensors {
        digest: String,
    },
}

/// A loaded CLIP model.
#[derive(Debug)]
pub struct Clip {
    config: ClipConfig,
    visual: Visual,
    text: text::TextTransformer,
    logit_scale: f32,
    logit_scale_parameter: f32,
    device: Device,
    origin: Origin,
    checksum: OnceLock<String>,
    precision: Precision,
}

/// How to build a model beyond what its checkpoint says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The arithmetic of the linear layers; fp32 (the reference's) by default.
    pub precision: Precision,
}

impl LoadOptions {
    /// The defaults, in `precision`.
    pub fn with_precision(precision: Precision) -> Self {
        LoadOptions { precision }
    }
}

impl Clip {
    /// Builds the model from tensors under OpenAI's names (any float dtype, any device), strictly:
    /// a missing, unexpected or misshapen tensor is an error naming it.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        cfg: ClipConfig,
        device: &Device,
    ) -> Result<Clip> {
        Self::from_tensors_with(tensors, cfg, device, &LoadOptions::default())
    }

    /// [`Self::from_tensors`] with `options`.
    pub fn from_tensors_with(
        tensors: HashMap<String, Tensor>,
        cfg: ClipConfig,
        device: &Device,
        options: &LoadOptions,
    ) -> Result<Clip> {
        let mut converted = HashMap::with_capacity(tensors.len());
        for (name, t) in tensors {
            let t = t.to_device(device)?.to_dtype(DType::F32)?;
            converted.insert(name, t);
        }
        // Hashed now, while the tensors exist anyway: keeping them for a later hash would hold
        // a second copy of every weight the layers pack.
        let digest = tensors_digest(&converted)?;
        let stored = converted.into_iter().map(|(k, t)| (k, t.into())).collect();
        Self::build(stored, cfg, device, Origin::Tensors { digest }, options)
    }

    pub(crate) fn build(
        tensors: HashMap<String, StoredTensor>,
        config: ClipConfig,
        device: &Device,
        origin: Origin,
        options: &LoadOptions,
    ) -> Result<Clip> {
        config.validate("model configuration")?;
        if matches!(device, Device::Cpu) {
            keep_freed_activations();
        }
        let store = TensorStore::from_stored(tensors).with_precision(options.precision);
        let vb: Vb = store.root();
        let visual = match &config.vision {
            VisionConfig::ViT {
                width,
                layers,
                heads,
                patch_size,
            } => Visual::ViT(vit::VisionTransformer::new(
                &vb.pp("visual"),
                &config,
                *width,
                *layers,
                *heads,
                *patch_size,
            )?),
            VisionConfig::ResNet {
                layers,
                width,
                heads,
            } => Visual::ResNet(Box::new(resnet::ModifiedResNet::new(
                &vb.pp("visual"),
                &config,
                *layers,
                *width,
                *heads,
            )?)),
        };
        // The text tower runs once per label set (its embeddings are cached): its int8 layers
        // keep full weight codes, the image tower's take what the CPU runs fastest.
        let text = text::TextTransformer::new(&vb.with_full_int8_codes(), &config)?;
        let logit_scale_parameter = vb.get_scalar("logit_scale")?;
        store.finish()?;
        Ok(Clip {
            config,
            visual,
            text,
            logit_scale: logit_scale_parameter.exp(),
            logit_scale_parameter,
            device: device.clone(),
            origin,
            checksum: OnceLock::new(),
            precision: options.precision,
        })
    }

    /// The precision the model was built in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `[n, 3, r, r]` pixels (normalized as by the model's preprocessing) → `[n, embed_dim]`
    /// image embeddings, not normalized.
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        let r = self.config.image_resolution;
        let dims = pixels.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] != r || dims[3] != r {
            return Err(Error::ModelInput {
                input: "pixels".into(),
                reason: format!("expected shape [n, 3, {r}, {r}], got {dims:?}"),
            });
        }
        if !pixels.dtype().is_float() {
            return Err(Error::ModelInput {
                input: "pixels".into(),
                reason: format!("expected a float tensor, got {:?}", pixels.dtype()),
            });
        }
        if dims[0] == 0 {
            return Ok(Tensor::zeros(
                (0, self.config.embed_dim),
                DType::F32,
                &self.device,
            )?);
        }
        let pixels = pixels.to_device(&self.device)?.to_dtype(DType::F32)?;
        self.in_pool(|| match &self.visual {
            Visual::ViT(v) => v.forward(&pixels),
            Visual::ResNet(v) => v.forward(&pixels),
        })
    }

    /// Runs a forward pass on the CPU's thread pool: its sequential parts on a worker, so each
    /// parallel product forks inside the pool instead of being injected from outside with the
    /// calling thread asleep until it ends (two wake-ups per product, costly in a VM; measured
    /// in docs/PERFORMANCE.md). Other devices run on the calling thread.
    fn in_pool<R: Send>(&self, forward: impl FnOnce() -> R + Send) -> R {
        if matches!(self.device, Device::Cpu) {
            rayon::scope(|_| forward())
        } else {
            forward()
        }
    }

    /// `[n, ctx]` token ids (u32 or i64; `ctx` ≤ the context length, EOT the row's largest id, as
    /// `clip.tokenize` makes them) → `[n, embed_dim]` text embeddings, not normalized. Each row is
    /// computed only up to its own EOT (on other devices than the CPU, up to the batch's last).
    pub fn encode_text(&self, ids: &Tensor) -> Result<Tensor> {
        self.in_pool(|| self.text.forward(ids))
    }

    /// [`Self::encode_text`] computed over every position, as the reference does; the result is
    /// the same. Exposed to test that claim.
    pub fn encode_text_all_positions(&self, ids: &Tensor) -> Result<Tensor> {
        self.text.forward_full(ids)
    }

    /// `(logits_per_image [n_img, n_txt], logits_per_text [n_txt, n_img])`: scaled cosine
    /// similarities, as `CLIP.forward`.
    pub fn forward(&self, pixels: &Tensor, ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let image = transformer::l2_normalize(&self.encode_image(pixels)?)?;
        let text = transformer::l2_normalize(&self.encode_text(ids)?)?;
        let per_image = (image.matmul(&text.t()?)? * self.logit_scale as f64)?;
        let per_text = per_image.t()?.contiguous()?;
        Ok((per_image, per_text))
    }

    /// `logit_scale.exp()`.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// The checkpoint's `logit_scale` parameter as stored: the log of [`Self::logit_scale`]
    /// (what the reference's `model.logit_scale` holds).
    pub fn logit_scale_parameter(&self) -> f32 {
        self.logit_scale_parameter
    }

    /// The architecture and preprocessing parameters.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The checkpoint file the model was loaded from, when it was one file.
    pub fn weights_file(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Files(files) if files.len() == 1 => Some(&files[0]),
            _ => None,
        }
    }

    /// SHA-256 (hex) identifying the weights: of the file for a single-file checkpoint (equal
    /// to the digest in OpenAI's download URLs) and of the files' names and digests for a
    /// directory, both computed on first use; of the names, shapes and f32 values for
    /// [`Self::from_tensors`], computed when it built the model.
    pub fn checksum(&self) -> Result<String> {
        if let Some(c) = self.checksum.get() {
            return Ok(c.clone());
        }
        let digest = match &self.origin {
            Origin::Files(files) if files.len() == 1 => sha256_file(&files[0])?,
            Origin::Files(files) => {
                let mut h = Sha256::new();
                for f in files {
                    let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                    h.update(name.unwrap_or_default().as_bytes());
                    h.update([0]);
                    h.update(sha256_file(f)?.as_bytes());
                    h.update([0]);
                }
                crate::zeroshot::hex(&h.finalize())
            }
            Origin::Tensors { digest } => digest.clone(),
        };
        Ok(self.checksum.get_or_init(|| digest).clone())
    }
}

/// Lets glibc's allocator keep freed activation buffers for the next forward pass instead of
/// handing them back to the kernel, once per process: allocations up to 32 MiB come from the
/// heap rather than fresh mappings, and up to 256 MiB of free heap stays mapped. By default
/// every multi-megabyte activation of a batch was mapped, faulted in page by page and cleared,
/// then unmapped (a tenth of ViT-B/32's batch-16 time, docs/PERFORMANCE.md). Left alone where
/// the process sets `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` itself, and outside
/// glibc.
fn keep_freed_activations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            if !user_set {
                // SAFETY: `mallopt` only changes the allocator's thresholds (it takes its own
                // lock); both values are in the ranges glibc accepts (the mmap threshold at
                // most 32 MiB on 64-bit targets).
                unsafe {
                    libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                    libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
                }
            }
        });
    }
}

/// How many threads the CPU kernels split work into: the rayon pool they run in — the global one,
/// or the caller's own when it runs the model inside `ThreadPool::install` (as the Python package
/// does, so that its thread count can change and a forked child can start a fresh pool).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads()
}

/// SHA-256 of tensors: in name order, each name, its dims and its f32 values.
fn tensors_digest(tensors: &HashMap<String, Tensor>) -> Result<String> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = &tensors[name];
        h.update(name.as_bytes());
        h.update([0]);
        for d in t.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        for v in t.flatten_all()?.to_vec1::<f32>()? {
            h.update(v.to_le_bytes());
        }
    }
    Ok(crate::zeroshot::hex(&h.finalize()))
}

// One SHA-256 of a file for the whole project: the hub's, which also verifies downloads, so a
// checkpoint's checksum here equals the digest in OpenAI's download URLs.
fn sha256_file(path: &Path) -> Result<String> {
    Ok(zeroclip_hub::sha256_file(path)?)
}

/// The largest absolute difference between two tensors of one shape, for the layers' tests.
#[cfg(test)]
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minor page faults of this thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn minor_faults() -> i64 {
        // SAFETY: `getrusage` fills the zeroed struct it is given.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut u);
            u.ru_minflt
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_activations_stay_mapped_for_the_next_pass() {
        let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        keep_freed_activations();
        // An 8 MiB activation, freed, then one of the same size: by default the second one is
        // fresh memory again (mapped or grown), faulted in page by page (2048 pages).
        let pass = || std::hint::black_box(vec![1u8; 8 << 20]).len();
        pass();
        let before = minor_faults();
        pass();
        let faults = minor_faults() - before;
        if !user_set {
            assert!(
                faults < 256,
                "{faults} page faults for a reused 8 MiB buffer"
            );
        }
    }

    #[test]
    fn clip_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Clip>();
    }
}
