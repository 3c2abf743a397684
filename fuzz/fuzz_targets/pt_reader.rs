//! Fuzzes the PyTorch reader (zip archives, TorchScript, legacy files, and the pickle VM under
//! them) on arbitrary bytes written to a scratch file, since the reader maps files: nothing may
//! panic, and every tensor of an accepted file has exactly the bytes its shape and dtype say.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch::path("pt");
    std::fs::write(path, data).expect("scratch file");
    if let Ok(ckpt) = zeroclip_pt::read(path) {
        for t in &ckpt.tensors {
            let bytes = t.contiguous_bytes();
            assert_eq!(bytes.len(), t.numel() * t.dtype.size_in_bytes());
        }
    }
});
