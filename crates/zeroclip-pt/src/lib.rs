//! Reads the tensors of PyTorch files without Python and without executing anything from the
//! pickle.
//!
//! Three layouts are understood, as `torch.load` / `torch.jit.load` would read them:
//! - TorchScript archives (`torch.jit.save`; OpenAI's released CLIP `.pt` files, written by
//!   PyTorch 1.7), whose pickled module tree is flattened into `state_dict` names;
//! - `torch.save` zip files (PyTorch ≥ 1.6);
//! - legacy `torch.save` files (`_use_new_zipfile_serialization=False`).
//!
//! Pickles are run by a small VM of our own that accepts only an allowlist of
//! tensor-rebuilding globals; anything else is refused with [`Error::UnsupportedGlobal`]. Storages
//! stay in the memory-mapped file: a contiguous tensor's bytes are borrowed, never copied.

mod archive;
mod error;
mod globals;
mod legacy;
mod names;
mod pickle;
mod tensor;
mod value;

pub use error::Error;
pub use tensor::{release_range, DType, TensorRecord};

use memmap2::Mmap;
use std::path::Path;
use std::sync::Arc;

/// Which layout a checkpoint had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `torch.jit.save` archive (OpenAI's released `.pt` files).
    TorchScript,
    /// A `torch.save` zip file.
    ZipStateDict,
    /// A legacy (pre-1.6, non-zip) `torch.save` file.
    LegacyStateDict,
}

/// The tensors of one checkpoint file, in the order the file lists them.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The layout the file had.
    pub kind: Kind,
    /// The tensors, in the order the file lists them.
    pub tensors: Vec<TensorRecord>,
}

impl Checkpoint {
    /// The tensor with this `state_dict` name, if any.
    pub fn get(&self, name: &str) -> Option<&TensorRecord> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a TorchScript archive, `torch.save` zip file or legacy `torch.save` file.
///
/// For a training checkpoint (a dict with a `state_dict` entry, as open_clip writes) the inner
/// dict's tensors are returned, without the `module.` prefix of DataParallel. For TorchScript,
/// every tensor attribute of the module tree is returned (parameters, buffers, and tensor
/// attributes such as the `input_resolution` of OpenAI's files).
pub fn read(path: &Path) -> Result<Checkpoint, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // A FIFO or device is refused here: mapping it would block or fail obscurely.
    let file = zeroclip_fs::open_regular(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < 4 {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            what: format!("{len} bytes is too short for a PyTorch file"),
        });
    }
    // SAFETY: the map is read-only. If another process truncates or rewrites the file while it
    // is mapped, reads may fault or see new bytes; that is the usual contract of memory-mapped
    // checkpoints (safetensors and candle rely on it too) and the price of not copying storages.
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
    if map.starts_with(b"PK\x03\x04") || map.starts_with(b"PK\x05\x06") {
        archive::read(path, &map)
    } else if legacy::is_legacy(&map) {
        legacy::read(path, &map)
    } else {
        Err(Error::Format {
            path: path.to_path_buf(),
            reason: "neither a zip archive nor a legacy torch.save file".into(),
        })
    }
}
