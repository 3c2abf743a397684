//! `zeroclip preprocess`: writes an image's normalized float32 `[3, n, n]` tensor as a `.npy`
//! file — the reference `preprocess(img)`, for checking parity with Python
//! (`np.load(path)` vs `preprocess(Image.open(image)).numpy()`).

use crate::Outcome;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroclip::image::Preprocess;

/// Arguments of `zeroclip preprocess`.
#[derive(clap::Args)]
pub struct Args {
    /// The image file (PNG, JPEG, GIF, WebP, BMP or TIFF).
    pub image: PathBuf,
    /// Output side n (224 for most CLIP models, 336 for ViT-L/14@336px; 1-4096).
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub resolution: u32,
    /// Where to write the float32 [3, n, n] tensor (.npy).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Rotate/flip JPEG, PNG and WebP by their EXIF/XMP orientation first (the reference does not;
    /// TIFFs are always turned, as Pillow does when it loads them).
    #[arg(long)]
    pub exif_orientation: bool,
    /// Refuse images with more pixels than this (Pillow's decompression-bomb limit by default;
    /// 1-2^32).
    #[arg(long, default_value_t = zeroclip::image::PILLOW_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub max_pixels: u64,
}

/// Runs `zeroclip preprocess`. A bad image is reported on stderr with exit code 1.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let pre = Preprocess {
        apply_exif_orientation: args.exif_orientation,
        max_pixels: args.max_pixels,
        ..Preprocess::openai(args.resolution)
    };
    let tensor = match pre.preprocess_path(&args.image) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("zeroclip: {e}");
            return Ok(Outcome::SomeFailed);
        }
    };
    let n = args.resolution as usize;
    write_npy_f32(&args.output, &[3, n, n], &tensor)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(Outcome::Success)
}

/// Writes a little-endian float32 C-order array in NumPy's `.npy` format, version 1.0.
fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, newline-terminated, padded to 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::File::create(path)?.write_all(&out)
}
