//! Checkpoint readers: every format maps onto the OpenAI tensor names.
//!
//! The canonical names are the keys of the reference's `CLIP.state_dict()` (and of OpenAI's
//! released files); the model's layers are built from them. Each other format has one rename table:
//! [`hf`] (transformers `CLIPModel`) and [`open_clip`]. [`openai_pt`] reads PyTorch files
//! (TorchScript archives like OpenAI's, `torch.save` zip and legacy files) through `zeroclip-pt`;
//! safetensors files are memory-mapped. For the CPU, f32, fp16 and bf16 tensors stay in the
//! mapped file ([`StoredTensor`]): a GEMM weight is packed straight from the file's bytes, and
//! any other tensor read (widened to f32) when a layer takes it; for other devices, and for other
//! element types, every tensor is read here (fp16 kept as fp16, the rest widened to f32).
//! [`Clip::load`] is defined here: the readers build the model from what they loaded, so the model
//! never depends on them.
//!
//! What [`load`] accepts:
//! - a directory with `open_clip_config.json` (open_clip; weights `open_clip_model.safetensors`
//!   or `open_clip_pytorch_model.bin`);
//! - a directory with `config.json` (transformers; `model.safetensors` or `pytorch_model.bin`);
//! - a file (`.pt`, `.bin`, `.safetensors`, detected by content) under OpenAI names, the
//!   architecture read from the shapes as `build_model` does — or under transformers names with a
//!   `config.json` beside it, or with an `open_clip_config.json` beside it.

pub mod hf;
pub mod open_clip;
pub mod openai_pt;
pub use crate::tensors::{StoredTensor, TensorStore, Vb, IGNORED_KEYS};

use crate::error::{Error, Result};
use crate::model::{Clip, ClipConfig, LoadOptions, Origin};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use zeroclip_pt::DType;

/// The naming a checkpoint came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenAI's names (their `.pt` files, `torch.save(model.state_dict())`, safetensors).
    OpenAi,
    /// transformers `CLIPModel`.
    HuggingFace,
    /// open_clip (OpenAI's names plus `open_clip_config.json`).
    OpenClip,
}

impl Format {
    /// Rewrites the canonical tensor names in a loading error into this format's own names, so
    /// the message names a tensor the user can find in their file.
    pub fn source_names(self, e: Error) -> Error {
        match self {
            Format::HuggingFace => hf::source_names(e),
            Format::OpenAi | Format::OpenClip => e,
        }
    }
}

/// A checkpoint read and renamed, ready for [`crate::Clip::from_tensors`] (`T` = [`Tensor`]), or
/// as the readers leave it, some tensors still in the mapped file (`T` = [`StoredTensor`]).
pub struct Loaded<T = Tensor> {
    /// The naming the checkpoint came in.
    pub format: Format,
    /// Tensors on the target device, under canonical names: f32, or fp16 as stored.
    pub tensors: HashMap<String, T>,
    /// The architecture, from the configuration file or the shapes.
    pub config: ClipConfig,
    /// The files read (weights first), for checksums.
    pub files: Vec<PathBuf>,
}

/// A format's last step: named tensors read from a weight file, plus the configuration beside it.
type FromRaw = fn(Vec<(String, StoredTensor)>, &Path, &Path) -> Result<Loaded<StoredTensor>>;

/// Reads the first of `weight_files` present in `dir`, then lets `finish` add the configuration.
fn load_dir(
    dir: &Path,
    weight_files: &[&str],
    device: &Device,
    finish: FromRaw,
) -> Result<Loaded<StoredTensor>> {
    let weights = first_file(dir, weight_files)?;
    let raw = read_tensors(&weights, device)?;
    finish(raw, &weights, dir)
}

/// Reads any supported checkpoint into tensors; see the module documentation.
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let loaded = load_stored(path, device)?;
    let mut tensors = HashMap::with_capacity(loaded.tensors.len());
    for (name, t) in loaded.tensors {
        let t = t.into_tensor().map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        tensors.insert(name, t);
    }
    Ok(Loaded {
        format: loaded.format,
        tensors,
        config: loaded.config,
        files: loaded.files,
    })
}

/// Reads any supported checkpoint, leaving tensors in the mapped file where [`read_tensors`]
/// does; see the module documentation.
pub fn load_stored(path: &Path, device: &Device) -> Result<Loaded<StoredTensor>> {
    if path.is_dir() {
        if path.join(open_clip::CONFIG_FILE).is_file() {
            return load_dir(path, &open_clip::WEIGHT_FILES, device, open_clip::from_raw);
        }
        if path.join(hf::CONFIG_FILE).is_file() {
            return load_dir(path, &hf::WEIGHT_FILES, device, hf::from_raw);
        }
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "directory has neither {} (open_clip) nor {} (transformers)",
                open_clip::CONFIG_FILE,
                hf::CONFIG_FILE
            ),
        });
    }
    let raw = read_tensors(path, device)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if hf::has_hf_names(&raw) {
        let config = dir.join(hf::CONFIG_FILE);
        if !config.is_file() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "tensors have transformers names but there is no {} beside the file",
                    hf::CONFIG_FILE
                ),
            });
        }
        return hf::from_raw(raw, path, dir);
    }
    if dir.join(open_clip::CONFIG_FILE).is_file() {
        return open_clip::from_raw(raw, path, dir);
    }
    let tensors = openai_names(raw);
    let config = ClipConfig::from_shapes(&shapes(&tensors))?;
    Ok(Loaded {
        format: Format::OpenAi,
        tensors,
        config,
        files: vec![path.to_path_buf()],
    })
}

/// Tensors under OpenAI names as a map (later duplicates win, as in a Python dict).
fn openai_names(raw: Vec<(String, StoredTensor)>) -> HashMap<String, StoredTensor> {
    raw.into_iter().collect()
}

/// The shape of every tensor, for architecture inference.
pub fn shapes(tensors: &HashMap<String, StoredTensor>) -> HashMap<String, Vec<usize>> {
    tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect()
}

/// Reads every tensor of one file (safetensors or PyTorch, told apart by content) for `device`:
/// on the CPU, float tensors are left in the mapped file.
pub fn read_tensors(path: &Path, device: &Device) -> Result<Vec<(String, StoredTensor)>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = zeroclip_fs::open_regular(path).map_err(io)?;
    let mut head = [0u8; 9];
    let n = std::io::Read::read(&mut &file, &mut head).map_err(io)?;
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    if n == 9 && head[8] == b'{' {
        read_safetensors(path, &file, device)
    } else {
        openai_pt::read(path, device)
    }
}

fn read_safetensors(
    path: &Path,
    file: &std::fs::File,
    device: &Device,
) -> Result<Vec<(String, StoredTensor)>> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: read-only map; the file must not change while it is read (as for every mmap
    // loader, candle's and safetensors' own included).
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let map = std::sync::Arc::new(map);
    let st = safetensors::SafeTensors::deserialize(&map[..])
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        use safetensors::Dtype as S;
        // Safetensors names the same element types as PyTorch's storages: one enum for both.
        let elem = match view.dtype() {
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::BOOL => DType::Bool,
            other => {
                return Err(bad(format!(
                    "tensor `{name}` has unsupported dtype {other:?}"
                )))
            }
        };
        // Where the view's bytes lie in the map, so the tensor can keep the map instead.
        let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
        let range = (start, view.data().len());
        let t = StoredTensor::from_map(elem, view.shape(), &map, range, device)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.push((name, t));
    }
    Ok(out)
}

impl Clip {
    /// Loads a checkpoint file (OpenAI `.pt`, `torch.save` state dict, safetensors) or a
    /// Hugging Face / open_clip directory; see [`crate::weights`].
    pub fn load(path: &Path, device: &Device) -> Result<Clip> {
        Self::load_with(path, device, &LoadOptions::default())
    }

    /// [`Self::load`] with `options` (the precision of the linear layers).
    pub fn load_with(path: &Path, device: &Device, options: &LoadOptions) -> Result<Clip> {
        let loaded = load_stored(path, device)?;
        let renamer = loaded.format;
        Clip::build(
            loaded.tensors,
            loaded.config,
            device,
            Origin::Files(loaded.files),
            options,
        )
        .map_err(|e| renamer.source_names(e))
    }
}

/// The first of `names` that exists in `dir`.
fn first_file(dir: &Path, names: &[&str]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: dir.to_path_buf(),
            reason: format!("no weights file: expected one of {}", names.join(", ")),
        })
}

/// The largest `config.json` / `open_clip_config.json` read: real ones are a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A JSON file, parsed.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        zeroclip_fs::read_text_capped(path, MAX_CONFIG_BYTES).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        source_name: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A `[f32; 3]` from a JSON array, if it is one.
fn triple(v: Option<&serde_json::Value>) -> Option<[f32; 3]> {
    let a = v?.as_array()?;
    if a.len() != 3 {
        return None;
    }
    let mut out = [0f32; 3];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_f64()? as f32;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_over_the_cap_are_refused_unparsed() {
        let path = std::env::temp_dir().join(format!("zeroclip-cfg-{}.json", std::process::id()));
        let mut big = b"{\"pad\": \"".to_vec();
        big.resize(MAX_CONFIG_BYTES as usize + 1, b'x');
        std::fs::write(&path, &big).unwrap();
        let err = read_json(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn safetensors_header_claiming_100_mb_is_refused_before_reading_it() {
        // An 8-byte header length just over safetensors' 100 MB cap, then the start of a header,
        // in a 17-byte file: refused by the length alone.
        let path =
            std::env::temp_dir().join(format!("zeroclip-st-{}.safetensors", std::process::id()));
        let mut bytes = 100_000_001u64.to_le_bytes().to_vec();
        bytes.extend(b"{\"a\":{}}");
        std::fs::write(&path, &bytes).unwrap();
        let err = read_tensors(&path, &Device::Cpu).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("zeroclip-st-") && msg.to_lowercase().contains("header"),
            "{msg}"
        );
    }
}
