//! PyTorch files — OpenAI's TorchScript archives, `torch.save` zip and legacy state dicts, and the
//! `.bin` files of open_clip and transformers — turned into [`StoredTensor`]s.
//!
//! `zeroclip-pt` parses the file without executing its pickle and yields each tensor's name
//! (as `state_dict()` would give it), dtype, shape and row-major little-endian bytes; this module
//! leaves float tensors in the mapped file for the CPU (see [`StoredTensor`]) and widens the rest. The names are kept as they are: for OpenAI's files they are the canonical
//! ones, including the `input_resolution` / `context_length` / `vocab_size` entries that
//! `build_model` deletes (see [`super::IGNORED_KEYS`]).

use crate::error::{Error, Result};
use crate::tensors::StoredTensor;
use candle_core::Device;
use std::path::Path;

/// Every tensor of the PyTorch file at `path`, in file order, for `device`.
pub fn read(path: &Path, device: &Device) -> Result<Vec<(String, StoredTensor)>> {
    let checkpoint = zeroclip_pt::read(path)?;
    let mut out = Vec::with_capacity(checkpoint.tensors.len());
    for record in checkpoint.tensors {
        let name = record.name.clone();
        let t = StoredTensor::from_record(record, device).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        out.push((name, t));
    }
    Ok(out)
}
