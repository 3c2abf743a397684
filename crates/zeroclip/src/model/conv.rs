//! Square-kernel convolution as one im2col copy plus one matmul per image.
//!
//! The result is `nn.Conv2d` (no bias, dilation 1, one group). candle 0.11's CPU `conv2d` for
//! kernels larger than 1×1 transposes the input to NHWC on one thread, re-flattens the kernel on
//! every call and scatters each im2col tile with strided writes; on the RN50 tower that was a
//! quarter of the time (see docs/PERFORMANCE.md, "Speed round 1"). Here the columns are built
//! in the kernel's own `(c_in, kh, kw)` order, so the `[c_out, c_in, k, k]` weight is already the
//! `[c_out, c_in·k·k]` matrix the GEMM wants, and `weight @ columns` is `[c_out, h_out·w_out]`:
//! NCHW output with no transposition.

use candle_core::{backend::BackendStorage, CpuStorage, CustomOp1, Layout, Shape};
use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// Keeps the column buffer of one call under about 16 MiB by splitting large batches (below
/// glibc's largest mmap threshold, so the buffer is reused rather than mapped afresh).
const MAX_COLUMN_FLOATS: usize = 4 << 20;

/// `conv2d(x, weight, padding, stride)` for `x` `[n, c_in, h, w]` and `weight`
/// `[c_out, c_in, k, k]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !(matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32) {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    let (n, c_in, h, w) = x.dims4()?;
    let (c_out, c_in_k, k, k_w) = weight.dims4()?;
    if c_in != c_in_k || k != k_w || stride == 0 || h + 2 * padding < k || w + 2 * padding < k {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    let op = Im2Col { k, stride, padding };
    let (h_out, w_out) = (op.out(h), op.out(w));
    let rows = c_in * k * k;
    let w2 = weight.reshape((c_out, rows))?;
    let per_image = rows * h_out * w_out;
    let chunk = (MAX_COLUMN_FLOATS / per_image.max(1)).clamp(1, n);
    let mut outs = Vec::with_capacity(n.div_ceil(chunk));
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let cols = x
            .narrow(0, start, len)?
            .contiguous()?
            .apply_op1_no_bwd(&op)?; // [len, rows, hw]
        let y = w2.broadcast_left(len)?.matmul(&cols)?;
        outs.push(y.reshape((len, c_out, h_out, w_out))?);
        start += len;
    }
    if outs.len() == 1 {
        Ok(outs.pop().unwrap_or_else(|| unreachable!()))
    } else {
        Tensor::cat(&outs, 0)
    }
}

struct Im2Col {
    k: usize,
    stride: usize,
    padding: usize,
}

impl Im2Col {
    fn out(&self, size: usize) -> usize {
        (size + 2 * self.padding - self.k) / self.stride + 1
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = match s {
            CpuStorage::F32(d) => d,
            _ => candle_core::bail!("im2col: expected f32, got {:?}", s.dtype()),
        };
        let src = match l.contiguous_offsets() {
            Some((a, b)) => &data[a..b],
            None => candle_core::bail!("im2col input must be contiguous"),
        };
        let (n, c, h, w) = l.shape().dims4()?;
        let (k, s, p) = (self.k, self.stride, self.padding);
        let (ho, wo) = (self.out(h), self.out(w));
        let hw = ho * wo;
        let mut dst = vec![0f32; n * c * k * k * hw];
        if hw == 0 {
            return Ok((CpuStorage::F32(dst), Shape::from_dims(&[n, c * k * k, hw])));
        }
        // One task per (image, input channel): its k·k rows of the column matrix.
        dst.par_chunks_mut(k * k * hw)
            .enumerate()
            .for_each(|(ic, rows)| {
                let plane = &src[ic * h * w..(ic + 1) * h * w];
                for (r, row) in rows.chunks_mut(hw).enumerate() {
                    let (kh, kw) = (r / k, r % k);
                    // Output columns whose input column lies inside the image.
                    let x_lo = p.saturating_sub(kw).div_ceil(s);
                    let x_hi = if w + p > kw {
                        ((w + p - kw - 1) / s + 1).min(wo)
                    } else {
                        0
                    };
                    for (oy, out) in row.chunks_mut(wo).enumerate() {
                        let iy = oy * s + kh;
                        if iy < p || iy - p >= h || x_lo >= x_hi {
                            continue; // zero padding, already zero
                        }
                        let line = &plane[(iy - p) * w..(iy - p + 1) * w];
                        if s == 1 {
                            let ix = x_lo + kw - p;
                            out[x_lo..x_hi].copy_from_slice(&line[ix..ix + (x_hi - x_lo)]);
                        } else {
                            for (ox, o) in out[x_lo..x_hi].iter_mut().enumerate() {
                                *o = line[(ox + x_lo) * s + kw - p];
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[n, c * k * k, hw])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;

    #[test]
    fn matches_candle_conv2d_for_strides_and_paddings() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 7), &dev).unwrap();
        for (k, pad, stride) in [(3, 1, 1), (3, 1, 2), (3, 0, 1), (1, 0, 2), (5, 2, 3)] {
            let wt = Tensor::randn(0f32, 1.0, (4, 3, k, k), &dev).unwrap();
            let want = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
            let got = conv2d(&x, &wt, pad, stride).unwrap();
            assert_eq!(got.dims(), want.dims(), "k{k} p{pad} s{stride}");
            assert!(max_diff(&got, &want) < 1e-4, "k{k} p{pad} s{stride}");
        }
    }
}
