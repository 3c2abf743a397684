//! Convolutions over channels-last activations, `[n, h, w, c]`, as GEMMs against a weight packed
//! once at load, with the BatchNorm, residual and ReLU that follow applied as the GEMM's epilogue.
//!
//! The result is `nn.Conv2d` (no bias, dilation 1, one group) followed by eval-mode BatchNorm as
//! PyTorch's CPU kernel applies it (`y·α + β` per channel, `α`, `β` precomputed), the residual
//! addition and the ReLU, in the reference's order. In channels-last layout an image's output
//! pixels are the rows of one matrix: a 1×1 convolution is `x [n·h·w, c_in] @ W`, with no copy
//! at all; a stride-1 3×3 one goes through Winograd's F(2×2, 3×3) (`winograd.rs`); any other
//! k×k one (the stride-2 stem) first gathers each output pixel's `k·k` input pixels (`c_in`
//! contiguous values each) into a row of `k·k·c_in` columns — the weight is packed in that
//! `(kh, kw, c_in)` order. The whole batch is one GEMM with `n·h·w` rows, wide enough for the
//! deep stages too (49 pixels per image at stage 4), and the per-channel work rides on the
//! GEMM's tiles.
//! candle 0.11's own CPU `conv2d` is not used: for kernels larger than 1×1 it transposed the
//! input to NHWC on one thread, re-flattened the kernel on every call and scattered each im2col
//! tile with strided writes (a quarter of RN50's time, docs/PERFORMANCE.md). Other devices run
//! candle's convolution on NCHW views.

use super::gemm::{self, Epilogue, PackedMatrix};
use crate::tensors::StoredTensor;
use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// Keeps one column buffer under about 16 MiB by gathering a band of output rows at a time
/// (below glibc's largest mmap threshold, so the buffer is reused rather than mapped and faulted
/// in afresh).
const MAX_COLUMN_FLOATS: usize = 4 << 20;

/// Scratch buffers of [`ConvAffine::run`], reused between calls.
#[derive(Default)]
pub struct ConvScratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// A square, bias-free convolution followed by a per-channel affine map (eval BatchNorm).
#[derive(Clone, Debug)]
pub struct ConvAffine {
    weight: Weight,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
}

/// The convolution's weight and BatchNorm's per-channel `α`, `β` (`[c_out]`), in the form the
/// device's path uses.
#[derive(Clone, Debug)]
enum Weight {
    /// On the CPU: the product's weight and the affine map's values.
    Cpu {
        product: Product,
        scale: std::sync::Arc<[f32]>,
        shift: std::sync::Arc<[f32]>,
    },
    /// Other devices: `[c_out, c_in, k, k]` and `α`, `β` as tensors.
    Tensor {
        weight: Tensor,
        scale: Tensor,
        shift: Tensor,
    },
}

#[derive(Clone, Debug)]
enum Product {
    /// `[c_out, kh, kw, c_in]` packed as the GEMM's right-hand matrix `[k·k·c_in, c_out]`.
    Im2col(PackedMatrix),
    /// 3×3, stride 1: Winograd-transformed (see `winograd.rs`).
    Winograd(super::winograd::Winograd3x3),
}

fn cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

impl ConvAffine {
    /// `weight` `[c_out, c_in, k, k]` (f32 or fp16, or still in the mapped file); `scale`,
    /// `shift` `[c_out]`; padding `k / 2`.
    pub fn new(weight: StoredTensor, scale: Tensor, shift: Tensor, stride: usize) -> Result<Self> {
        let &[c_out, c_in, k, k_w] = weight.dims() else {
            candle_core::bail!(
                "conv: weight {:?} is not [c_out, c_in, k, k]",
                weight.dims()
            );
        };
        if k != k_w || stride == 0 {
            candle_core::bail!("conv: weight {:?}, stride {stride}", weight.dims());
        }
        let weight = if weight.is_cpu() {
            let product = if k == 3 && stride == 1 {
                let w = weight.into_f32_tensor()?;
                Product::Winograd(gemm::with_f32(&w, |v| {
                    super::winograd::Winograd3x3::new(v, c_out, c_in)
                })?)
            } else if k == 1 {
                // [c_out, c_in, 1, 1] is already [c_out, c_in] row-major: packed from the file.
                let w = weight.reshape(&[c_out, c_in])?;
                Product::Im2col(PackedMatrix::from_stored_transposed(
                    w,
                    gemm::Format::F32,
                    gemm::Codes::Full,
                )?)
            } else {
                // [c_out, kh, kw, c_in] as [c_out, kh·kw·c_in]; f16 or f32.
                let w = weight
                    .into_tensor()?
                    .permute((0, 2, 3, 1))?
                    .contiguous()?
                    .reshape((c_out, k * k * c_in))?;
                Product::Im2col(PackedMatrix::from_tensor_transposed(
                    &w,
                    gemm::Format::F32,
                    gemm::Codes::Full,
                )?)
            };
            let values = |t: &Tensor| gemm::with_f32(t, |v| v.into());
            Weight::Cpu {
                product,
                scale: values(&scale)?,
                shift: values(&shift)?,
            }
        } else {
            Weight::Tensor {
                weight: weight.into_tensor()?.to_dtype(DType::F32)?,
                scale,
                shift,
            }
        };
        Ok(ConvAffine {
            weight,
            c_in,
            c_out,
            k,
            stride,
            padding: k / 2,
        })
    }

    fn out(&self, size: usize) -> usize {
        (size + 2 * self.padding - self.k) / self.stride + 1
    }

    /// `relu?(conv(x)·α + β (+ residual))` for channels-last `x` `[n, h, w, c_in]` →
    /// `[n, h_out, w_out, c_out]`; `residual` has the output's shape.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        if c != self.c_in || h + 2 * self.padding < self.k || w + 2 * self.padding < self.k {
            candle_core::bail!(
                "conv: input [{n}, {h}, {w}, {c}] (NHWC) for {} input channels, kernel {}",
                self.c_in,
                self.k
            );
        }
        let (ho, wo) = (self.out(h), self.out(w));
        if let Some(r) = residual {
            if r.dims() != [n, ho, wo, self.c_out] {
                candle_core::bail!(
                    "conv: residual {:?} for [{n}, {ho}, {wo}, {}]",
                    r.dims(),
                    self.c_out
                );
            }
        }
        if !(self.is_packed() && cpu_f32(x)) {
            return self.forward_nchw(x, residual, relu);
        }
        let mut out = vec![0f32; n * ho * wo * self.c_out];
        let mut scratch = ConvScratch::default();
        gemm::with_f32(x, |src| match residual {
            Some(r) => gemm::with_f32(r, |r| {
                self.run(src, (n, h, w), &mut out, Some(r), relu, &mut scratch)
            })?,
            None => self.run(src, (n, h, w), &mut out, None, relu, &mut scratch),
        })??;
        Tensor::from_vec(out, (n, ho, wo, self.c_out), &Device::Cpu)
    }

    /// Whether the CPU path ([`Self::run`]) applies (the weight was loaded on the CPU).
    pub fn is_packed(&self) -> bool {
        matches!(self.weight, Weight::Cpu { .. })
    }

    /// The output's `(n, h_out, w_out, c_out)` for an input `[n, h, w, c_in]`.
    pub fn out_dims(&self, (n, h, w): (usize, usize, usize)) -> (usize, usize, usize, usize) {
        (n, self.out(h), self.out(w), self.c_out)
    }

    /// The CPU path on plain slices: `src` `[n, h, w, c_in]` → `out` `[n, h_out, w_out, c_out]`
    /// (every value written), with `residual` shaped like `out`. `scratch` holds the im2col
    /// rows or Winograd's transformed tiles, kept by the caller so that repeated calls reuse it.
    pub fn run(
        &self,
        src: &[f32],
        (n, h, w): (usize, usize, usize),
        out: &mut [f32],
        residual: Option<&[f32]>,
        relu: bool,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let Weight::Cpu {
            product,
            scale,
            shift,
        } = &self.weight
        else {
            candle_core::bail!("conv: the weight is not on the CPU");
        };
        let packed = match product {
            Product::Im2col(p) => p,
            Product::Winograd(wino) => {
                let finish = super::winograd::Finish {
                    scale,
                    shift,
                    residual,
                    relu,
                };
                let threads = super::threads();
                let (v, m) = (&mut scratch.a, &mut scratch.b);
                return wino.run(src, (n, h, w), out, &finish, v, m, threads);
            }
        };
        let cols = &mut scratch.a;
        let (c, co) = (self.c_in, self.c_out);
        let (ho, wo) = (self.out(h), self.out(w));
        let rows = n * ho * wo;
        if src.len() != n * h * w * c
            || out.len() != rows * co
            || residual.is_some_and(|r| r.len() != out.len())
        {
            candle_core::bail!("conv: slices do not match [{n}, {h}, {w}, {c}] → {co} channels");
        }
        let threads = super::threads();
        let epi = |r0: usize| Epilogue {
            scale: Some(scale),
            shift: Some(shift),
            residual: residual.map(|r| &r[r0 * co..]),
            relu,
            quick_gelu: false,
        };
        if self.k == 1 && self.stride == 1 {
            gemm::matmul(src, c, rows, packed, out, co, &epi(0), threads);
            return Ok(());
        }
        let cols_per_row = self.k * self.k * c;
        let band = (MAX_COLUMN_FLOATS / cols_per_row.max(1)).clamp(1, rows.max(1));
        if cols.len() < band.min(rows) * cols_per_row {
            cols.resize(band.min(rows) * cols_per_row, 0.0);
        }
        for r0 in (0..rows).step_by(band) {
            let len = band.min(rows - r0);
            let buf = &mut cols[..len * cols_per_row];
            self.im2col(src, (h, w, ho, wo), r0, buf);
            gemm::matmul(
                buf,
                cols_per_row,
                len,
                packed,
                &mut out[r0 * co..],
                co,
                &epi(r0),
                threads,
            );
        }
        Ok(())
    }

    /// Rows `first..` of the column matrix (one per output pixel, `(kh, kw, c_in)` columns).
    fn im2col(
        &self,
        src: &[f32],
        (h, w, ho, wo): (usize, usize, usize, usize),
        first: usize,
        cols: &mut [f32],
    ) {
        let (c, k, s, p) = (self.c_in, self.k, self.stride, self.padding);
        cols.par_chunks_mut(k * k * c)
            .enumerate()
            .for_each(|(i, row)| {
                let r = first + i;
                let (img, oy, ox) = (r / (ho * wo), r / wo % ho, r % wo);
                for (tap, seg) in row.chunks_exact_mut(c).enumerate() {
                    let (iy, ix) = (
                        (oy * s + tap / k) as isize - p as isize,
                        (ox * s + tap % k) as isize - p as isize,
                    );
                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                        seg.fill(0.0);
                    } else {
                        let at = ((img * h + iy as usize) * w + ix as usize) * c;
                        seg.copy_from_slice(&src[at..at + c]);
                    }
                }
            });
    }

    /// Other devices: candle's convolution and tensor ops on NCHW views.
    fn forward_nchw(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let Weight::Tensor {
            weight: wt,
            scale,
            shift,
        } = &self.weight
        else {
            candle_core::bail!("conv: a CPU-packed weight cannot run on {:?}", x.device());
        };
        let y = x
            .permute((0, 3, 1, 2))?
            .conv2d(wt, self.padding, self.stride, 1, 1)?;
        let c = self.c_out;
        let mut y = y
            .broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
        if let Some(r) = residual {
            y = (y + r.permute((0, 3, 1, 2))?)?;
        }
        if relu {
            y = y.relu()?;
        }
        y.permute((0, 2, 3, 1))?.contiguous()
    }
}

/// `nn.AvgPool2d(s)` (kernel = stride = `s`, no padding) over channels-last `x` `[n, h, w, c]`:
/// the sum of each window in row-major order divided by `s²`, as PyTorch's CPU kernel.
pub fn avg_pool(x: &Tensor, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(x.clone());
    }
    if !cpu_f32(x) {
        return x
            .permute((0, 3, 1, 2))?
            .avg_pool2d(s)?
            .permute((0, 2, 3, 1))?
            .contiguous();
    }
    let (n, h, w, c) = x.dims4()?;
    let mut out = vec![0f32; n * (h / s) * (w / s) * c];
    gemm::with_f32(x, |src| avg_pool_into(src, (n, h, w, c), s, &mut out))?;
    Tensor::from_vec(out, (n, h / s, w / s, c), &Device::Cpu)
}

/// [`avg_pool`] on slices: `src` `[n, h, w, c]` → `out` `[n, h/s, w/s, c]` (every value written).
pub fn avg_pool_into(
    src: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    s: usize,
    out: &mut [f32],
) {
    let (ho, wo) = (h / s, w / s);
    debug_assert_eq!(out.len(), n * ho * wo * c);
    let div = (s * s) as f32;
    out.par_chunks_mut((wo * c).max(1))
        .enumerate()
        .for_each(|(r, line)| {
            let (img, oy) = (r / ho, r % ho);
            for (ox, px) in line.chunks_exact_mut(c).enumerate() {
                for dy in 0..s {
                    for dx in 0..s {
                        let at = ((img * h + oy * s + dy) * w + ox * s + dx) * c;
                        let tap = &src[at..at + c];
                        if dy == 0 && dx == 0 {
                            px.copy_from_slice(tap);
                        } else {
                            for (o, v) in px.iter_mut().zip(tap) {
                                *o += v;
                            }
                        }
                    }
                }
                for o in px.iter_mut() {
                    *o /= div;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;

    fn nhwc(t: &Tensor) -> Tensor {
        t.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    #[test]
    fn matches_candle_conv2d_and_the_affine_epilogue() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 7), &dev).unwrap(); // NCHW
        for (k, stride) in [(3, 1), (3, 2), (1, 1), (1, 2), (5, 3)] {
            let wt = Tensor::randn(0f32, 1.0, (20, 3, k, k), &dev).unwrap();
            let scale = Tensor::randn(0f32, 1.0, 20, &dev).unwrap();
            let shift = Tensor::randn(0f32, 1.0, 20, &dev).unwrap();
            let conv =
                ConvAffine::new(wt.clone().into(), scale.clone(), shift.clone(), stride).unwrap();
            let y = x.conv2d(&wt, k / 2, stride, 1, 1).unwrap();
            let y = y
                .broadcast_mul(&scale.reshape((1, 20, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&shift.reshape((1, 20, 1, 1)).unwrap())
                .unwrap();
            let got = conv.forward(&nhwc(&x), None, false).unwrap();
            assert!(max_diff(&got, &nhwc(&y)) < 1e-4, "k{k} s{stride}");
            let r = Tensor::randn(0f32, 1.0, y.dims(), &dev).unwrap();
            let want = (&y + &r).unwrap().relu().unwrap();
            let got = conv.forward(&nhwc(&x), Some(&nhwc(&r)), true).unwrap();
            assert!(
                max_diff(&got, &nhwc(&want)) < 1e-4,
                "k{k} s{stride} + residual, relu"
            );
        }
    }

    #[test]
    fn gathers_columns_in_bands() {
        // 300 channels × 9 taps per row: a 30×8×8 batch (5.2 M column values) needs two bands.
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (30, 300, 8, 8), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.05, (5, 300, 3, 3), &dev).unwrap();
        let ones = Tensor::ones(5, DType::F32, &dev).unwrap();
        let zeros = Tensor::zeros(5, DType::F32, &dev).unwrap();
        let conv = ConvAffine::new(wt.clone().into(), ones, zeros, 1).unwrap();
        let want = nhwc(&x.conv2d(&wt, 1, 1, 1, 1).unwrap());
        let got = conv.forward(&nhwc(&x), None, false).unwrap();
        assert!(max_diff(&got, &want) < 1e-3);
    }

    #[test]
    fn average_pool_matches_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 8, 6), &dev).unwrap();
        for s in [1, 2, 3] {
            let want = nhwc(&x.avg_pool2d(s).unwrap());
            assert!(
                max_diff(&avg_pool(&nhwc(&x), s).unwrap(), &want) < 1e-6,
                "stride {s}"
            );
        }
    }
}
