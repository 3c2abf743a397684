//! Checkpoint readers: every format maps onto the OpenAI tensor names.
//!
//! The canonical names are the keys of the reference's `CLIP.state_dict()` (and of OpenAI's
//! released files); the model's layers are built from them. Each other format has one rename table:
//! [`hf`] (transformers `CLIPModel`) and [`open_clip`]. [`openai_pt`] reads PyTorch files
//! (TorchScript archives like OpenAI's, `torch.save` zip and legacy files) through `zeroclip-pt`;
//! safetensors files are memory-mapped. fp16 tensors are kept as fp16 (half the memory): a
//! layer widens one when it takes it, and a GEMM weight is packed straight from it; every other
//! float type is widened to f32 once, here.
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
mod store;

pub use store::{TensorStore, Vb, IGNORED_KEYS};

use crate::error::{Error, Result};
use crate::model::ClipConfig;
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

/// A checkpoint read and renamed, ready for [`crate::Clip::from_tensors`].
pub struct Loaded {
    pub format: Format,
    /// Tensors on the target device, under canonical names: f32, or fp16 as stored.
    pub tensors: HashMap<String, Tensor>,
    pub config: ClipConfig,
    /// The files read (weights first), for checksums.
    pub files: Vec<PathBuf>,
}

/// A format's last step: named tensors read from a weight file, plus the configuration beside it.
type FromRaw = fn(Vec<(String, Tensor)>, &Path, &Path) -> Result<Loaded>;

/// Reads the first of `weight_files` present in `dir`, then lets `finish` add the configuration.
fn load_dir(dir: &Path, weight_files: &[&str], device: &Device, finish: FromRaw) -> Result<Loaded> {
    let weights = first_file(dir, weight_files)?;
    let raw = read_tensors(&weights, device)?;
    finish(raw, &weights, dir)
}

/// Reads any supported checkpoint; see the module documentation.
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
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
fn openai_names(raw: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    raw.into_iter().collect()
}

/// The shape of every tensor, for architecture inference.
pub fn shapes(tensors: &HashMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect()
}

/// Reads every tensor of one file (safetensors or PyTorch, told apart by content) as f32.
pub fn read_tensors(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
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
) -> Result<Vec<(String, Tensor)>> {
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
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| bad(e.to_string()))?;
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
        let t = load_tensor(elem, view.shape(), view.data(), device)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        out.push((name, t));
    }
    Ok(out)
}

/// A tensor from little-endian row-major bytes: fp16 kept as fp16 (half the memory until a layer
/// takes it, widening it then — [`store::Vb::get`] — or packing a GEMM weight straight from it),
/// every other type widened to f32 in one pass.
pub(crate) fn load_tensor(
    elem: DType,
    shape: &[usize],
    bytes: &[u8],
    device: &Device,
) -> candle_core::Result<Tensor> {
    if elem == DType::F16 {
        let numel: usize = shape.iter().product();
        if bytes.len() != 2 * numel {
            candle_core::bail!("{} bytes do not hold {numel} F16 elements", bytes.len());
        }
        // SAFETY: every bit pattern is a valid f16; `align_to` only yields the aligned middle.
        let (head, aligned, _) = unsafe { bytes.align_to::<half::f16>() };
        let halves: Vec<half::f16> = if cfg!(target_endian = "little") && head.is_empty() {
            aligned.to_vec()
        } else {
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        return Tensor::from_vec(halves, shape, device);
    }
    fn conv<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect()
    }
    let data: Vec<f32> = match elem {
        DType::F16 => unreachable!("kept as f16 above"),
        DType::BF16 => conv(bytes, |b| half::bf16::from_le_bytes(b).to_f32()),
        DType::F32 => conv(bytes, f32::from_le_bytes),
        DType::F64 => conv(bytes, |b| f64::from_le_bytes(b) as f32),
        DType::I64 => conv(bytes, |b| i64::from_le_bytes(b) as f32),
        DType::I32 => conv(bytes, |b| i32::from_le_bytes(b) as f32),
        DType::I16 => conv(bytes, |b| i16::from_le_bytes(b) as f32),
        DType::I8 => conv(bytes, |b: [u8; 1]| b[0] as i8 as f32),
        DType::U8 | DType::Bool => conv(bytes, |b: [u8; 1]| b[0] as f32),
    };
    let numel: usize = shape.iter().product();
    if data.len() != numel {
        candle_core::bail!(
            "{} bytes do not hold {numel} {elem:?} elements",
            bytes.len()
        );
    }
    Tensor::from_vec(data, shape, device)
}

/// fp16 values widened to f32, in parallel blocks, each converted with half's slice conversion
/// (F16C, eight values per instruction, where the CPU has it). OpenAI's files are fp16, so this
/// is ~150 million values for ViT-B/32; one value at a time on one thread it was about 40% of the
/// load time.
pub(crate) fn widen_f16(halves: &[half::f16]) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    let mut out = vec![0f32; halves.len()];
    out.par_chunks_mut(BLOCK)
        .zip(halves.par_chunks(BLOCK))
        .for_each(|(dst, src)| src.convert_to_f32_slice(dst));
    out
}

/// `t` as f32: fp16 CPU tensors through [`widen_f16`], anything else through candle.
pub(crate) fn to_f32(t: Tensor) -> candle_core::Result<Tensor> {
    if t.dtype() == candle_core::DType::F32 {
        return Ok(t);
    }
    if t.dtype() == candle_core::DType::F16 && matches!(t.device(), Device::Cpu) {
        let t = t.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F16(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            let wide = widen_f16(&v[a..b]);
            return Tensor::from_vec(wide, t.dims(), &Device::Cpu);
        }
    }
    t.to_dtype(candle_core::DType::F32)
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
