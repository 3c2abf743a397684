//! Image decoding and preprocessing identical to the reference `clip` package's `preprocess`:
//! `Resize(n, BICUBIC)` on a PIL image, `CenterCrop(n)`, `convert("RGB")`, `ToTensor()`,
//! `Normalize(mean, std)` — Pillow's quirks included, pixel for pixel.
//!
//! The pipeline: `decode` keeps each image in its Pillow mode, `crop` computes only the n×n
//! window of Pillow's resize that the center crop keeps (`resample` is Pillow's convolution,
//! `convert` its mode conversions), then [`Preprocess::preprocess_bytes`] divides by 255 and
//! normalizes in f32, as torchvision does.

#![forbid(unsafe_code)]

mod convert;
mod crop;
mod decode;
mod error;
mod orientation;
mod pixels;
mod raw;
mod resample;
mod stream;

pub use error::{Error, Result};
pub use raw::{RawImage, RAW_MODES};

use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// OpenAI CLIP's normalization mean (`clip/clip.py`).
/// Rounded from f64 as `torch.as_tensor(mean, dtype=float32)` does.
pub const OPENAI_MEAN: [f32; 3] = [
    0.48145466f64 as f32,
    0.4578275f64 as f32,
    0.40821073f64 as f32,
];
/// OpenAI CLIP's normalization standard deviation.
pub const OPENAI_STD: [f32; 3] = [
    0.26862954f64 as f32,
    0.26130258f64 as f32,
    0.27577711f64 as f32,
];
/// The largest image file read: 1 GiB holds an uncompressed RGB image of 350 megapixels, twice
/// what [`PILLOW_MAX_PIXELS`] lets any decoder produce.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Pillow's decompression-bomb error threshold: `2 * Image.MAX_IMAGE_PIXELS`.
pub const PILLOW_MAX_PIXELS: u64 = 178_956_970;

/// An 8-bit RGB image, row-major, channels interleaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage8 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// The reference preprocessing, parameterized by model.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Output side n (224 for most CLIP models, 336 for ViT-L/14@336px).
    pub resolution: u32,
    /// Per-channel mean subtracted after scaling to 0..1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// Rotate/flip JPEG, PNG and WebP images by their EXIF orientation (or, without one, their
    /// XMP `tiff:Orientation`) first, as `ImageOps.exif_transpose` would. The reference does not
    /// (off by default). TIFFs are always turned by their orientation tag, because Pillow's TIFF
    /// plugin does so when it loads them.
    pub apply_exif_orientation: bool,
    /// Images with more pixels than this are refused before any pixel memory is allocated.
    pub max_pixels: u64,
}

impl Preprocess {
    /// The OpenAI models' preprocessing at `resolution`.
    pub fn openai(resolution: u32) -> Self {
        Preprocess {
            resolution,
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
            apply_exif_orientation: false,
            max_pixels: PILLOW_MAX_PIXELS,
        }
    }

    fn n(&self) -> Result<usize> {
        if self.resolution == 0 {
            return Err(Error::InvalidConfig {
                reason: "resolution must be at least 1".into(),
            });
        }
        Ok(self.resolution as usize)
    }

    /// The uint8 n×n RGB crop the reference passes to `ToTensor` (before normalization).
    /// `input_name` names the input in errors.
    pub fn crop_rgb8(&self, bytes: &[u8], input_name: &str) -> Result<RgbImage8> {
        let n = self.n()?;
        let limits = decode::Limits {
            max_pixels: self.max_pixels,
        };
        let data = if !self.apply_exif_orientation && decode::is_jpeg(bytes) {
            // Decoding overlapped with resampling (`stream.rs`).
            stream::crop_rgb_jpeg(bytes, input_name, &limits, n)?
        } else {
            let mut px = decode::decode(bytes, input_name, &limits)?;
            if self.apply_exif_orientation {
                if let Some(o) = orientation::exif_orientation(bytes) {
                    px = orientation::apply(px, o);
                }
            }
            crop::check_target(px.width, px.height, n, input_name)?;
            crop::crop_rgb(&px, n)
        };
        Ok(RgbImage8 {
            width: n as u32,
            height: n as u32,
            data,
        })
    }

    /// The uint8 n×n RGB crop of an image already in memory (a Pillow image's mode, size and
    /// bytes), as [`Self::crop_rgb8`] gives for a file. The pixel limit does not apply: the image
    /// is already allocated.
    pub fn crop_rgb8_raw(&self, raw: &RawImage<'_>, input_name: &str) -> Result<RgbImage8> {
        let n = self.n()?;
        let px = raw.to_pixels(input_name)?;
        crop::check_target(px.width, px.height, n, input_name)?;
        Ok(RgbImage8 {
            width: n as u32,
            height: n as u32,
            data: crop::crop_rgb(&px, n),
        })
    }

    /// [`Self::preprocess_bytes`] for an image already in memory (see [`RawImage`]).
    pub fn preprocess_raw(&self, raw: &RawImage<'_>, input_name: &str) -> Result<Vec<f32>> {
        Ok(self.normalize(&self.crop_rgb8_raw(raw, input_name)?))
    }

    /// Where the reference's `Resize(n)` + `CenterCrop(n)` take a `width`×`height` image:
    /// `(resized_width, resized_height, left, top)` — for callers that run Pillow's own resize on
    /// a mode this crate does not take.
    pub fn crop_geometry(
        &self,
        width: u32,
        height: u32,
        input_name: &str,
    ) -> Result<(u32, u32, u32, u32)> {
        let n = self.n()?;
        decode::Limits {
            max_pixels: u64::MAX,
        }
        .check(input_name, width.into(), height.into())?;
        let (tw, th) = crop::target_size(width as usize, height as usize, n);
        crop::check_target(width as usize, height as usize, n, input_name)?;
        let (left, top) = (crop::crop_offset(tw, n), crop::crop_offset(th, n));
        Ok((tw as u32, th as u32, left as u32, top as u32))
    }

    /// The normalized float32 tensor `[3, n, n]` (CHW, flattened), as `preprocess(img)`.
    pub fn preprocess_bytes(&self, bytes: &[u8], input_name: &str) -> Result<Vec<f32>> {
        let img = self.crop_rgb8(bytes, input_name)?;
        Ok(self.normalize(&img))
    }

    /// Reads and preprocesses the file at `path`: a regular file of at most [`MAX_FILE_BYTES`]
    /// (a FIFO or device is refused at once, unread).
    pub fn preprocess_path(&self, path: &Path) -> Result<Vec<f32>> {
        let name = path.display().to_string();
        let bytes = zeroclip_fs::read_capped(path, MAX_FILE_BYTES).map_err(|source| Error::Io {
            input: name.clone(),
            source,
        })?;
        self.preprocess_bytes(&bytes, &name)
    }

    /// Preprocesses many files in parallel (decoding included); one result per path, in order.
    pub fn preprocess_batch(&self, paths: &[PathBuf]) -> Vec<Result<Vec<f32>>> {
        paths.par_iter().map(|p| self.preprocess_path(p)).collect()
    }

    /// `ToTensor` then `Normalize`: `(v / 255 - mean) / std` in f32, channel-major.
    pub fn normalize(&self, img: &RgbImage8) -> Vec<f32> {
        let plane = img.width as usize * img.height as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (f32::from(px[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess::openai(224)
    }
}
