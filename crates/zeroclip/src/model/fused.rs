//! CPU kernels that fuse what the reference runs as several ops, without changing the arithmetic
//! beyond the order of additions.
//!
//! - [`segment_attention`]: `nn.MultiheadAttention`'s core, `softmax(q·kᵀ/√d + mask) · v` per head,
//!   read straight from the fused in-projection output `[n, t, 3·width]` and written straight as
//!   `[n, t, width]`. candle would permute q/k/v into contiguous copies, run one small GEMM per
//!   (image, head) twice, and make separate passes for the scale, the mask, the softmax and the
//!   final transposition; for CLIP's short sequences (50 patches, ≤ 77 tokens) that bookkeeping
//!   cost more than the arithmetic. Each query runs in `attn_query.rs` (where the SIMD classes
//!   fuse the multiply-adds, which the reference's matmuls do too).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::attn_query::{query4_for, query_for, Head, GROUP, LANES};
use super::gemm::SendPtr;
use super::ops::contiguous_f32;

/// Self-attention within each of `segments` (`(first row, rows)`, in order, covering every
/// row of `qkv` `[rows, 3·width]`) → `[rows, width]`; or, with `query`, the output at position
/// `query[s]` of each segment only → `[segments, width]`. This stacks sequences of different
/// lengths without padding: under a causal mask a position never sees the ones after it, so a
/// sequence cut after its last needed position gives the same outputs as the padded one.
pub fn segment_attention(
    qkv: &Tensor,
    heads: usize,
    causal: bool,
    segments: &[(usize, usize)],
    query: Option<&[usize]>,
) -> Result<Tensor> {
    let rows = qkv.dim(0)?;
    let mut next = 0;
    for &(first, len) in segments {
        if first != next || len == 0 {
            candle_core::bail!("attention: segments {segments:?} do not tile {rows} rows");
        }
        next = first + len;
    }
    if next != rows {
        candle_core::bail!("attention: segments {segments:?} do not tile {rows} rows");
    }
    if let Some(q) = query {
        if q.len() != segments.len() || q.iter().zip(segments).any(|(&i, s)| i >= s.1) {
            candle_core::bail!("attention: query positions {q:?} for segments {segments:?}");
        }
    }
    qkv.apply_op1_no_bwd(&Attention {
        heads,
        causal,
        segments: segments.to_vec(),
        query: query.map(<[usize]>::to_vec),
    })
}

struct Attention {
    heads: usize,
    causal: bool,
    /// `(first row, rows)` of each sequence in the `[rows, 3·width]` input.
    segments: Vec<(usize, usize)>,
    /// One query position per sequence (relative to its first row), or every position.
    query: Option<Vec<usize>>,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "attention input")?;
        let (_, w3) = l.shape().dims2()?;
        let h = self.heads;
        if w3 % 3 != 0 || h == 0 || (w3 / 3) % h != 0 {
            candle_core::bail!("attention: {w3} features cannot split into q, k, v of {h} heads");
        }
        let width = w3 / 3;
        let d = width / h;
        let scale = (d as f32).powf(-0.5);
        let out_rows = match &self.query {
            Some(q) => q.len(),
            None => self.segments.iter().map(|s| s.1).sum(),
        };
        let longest = self.segments.iter().map(|s| s.1).max().unwrap_or(0);
        let mut dst = vec![0f32; out_rows * width];
        let out = SendPtr(dst.as_mut_ptr());
        let causal = self.causal;
        let kernel = super::dispatch::Class::selected().kernel();
        // One task per (sequence, head): its keys (transposed, `[d][stride]`, so a query's scores
        // are a sum of whole rows) and values (`[len, d]`) are copied once, out of the input's
        // rows 3·width floats apart, and serve every query.
        let stride_max = longest.next_multiple_of(GROUP * LANES);
        (0..self.segments.len() * h).into_par_iter().for_each_init(
            || {
                (
                    vec![0f32; stride_max * d],
                    vec![0f32; longest * d],
                    vec![0f32; 4 * stride_max],
                )
            },
            |(kt, vbuf, p), task| {
                let (sg, hd) = (task / h, task % h);
                let (first, len) = self.segments[sg];
                let stride = len.next_multiple_of(GROUP * LANES);
                let seq = &src[first * w3..(first + len) * w3];
                for (dd, row) in kt.chunks_exact_mut(stride).take(d).enumerate() {
                    for (j, slot) in row.iter_mut().enumerate() {
                        *slot = if j < len {
                            seq[j * w3 + width + hd * d + dd]
                        } else {
                            0.0
                        };
                    }
                }
                for (j, vr) in vbuf.chunks_exact_mut(d).take(len).enumerate() {
                    vr.copy_from_slice(&seq[j * w3 + 2 * width + hd * d..][..d]);
                }
                let head = Head {
                    kt: &kt[..d * stride],
                    stride,
                    v: &vbuf[..len * d],
                    d,
                };
                let queries = match &self.query {
                    Some(q) => q[sg]..q[sg] + 1,
                    None => 0..len,
                };
                let row = |i: usize| match &self.query {
                    Some(_) => sg,
                    None => first + i,
                };
                // SAFETY: each (output row, head) slice is written by exactly one task; the four
                // slices the four-query path holds at once are of distinct rows (`first + i` for
                // four `i`: with `query`, `queries` has one element and never takes that path).
                let o = |i: usize| unsafe {
                    std::slice::from_raw_parts_mut(out.get().add(row(i) * width + hd * d), d)
                };
                let q = |i: usize| &seq[i * w3 + hd * d..][..d];
                let mut i = queries.start;
                while i < queries.end {
                    // Without a causal mask, queries meet the same keys: four side by side.
                    if !causal && i + 4 <= queries.end {
                        debug_assert!(self.query.is_none());
                        let (q, o) = (
                            [0, 1, 2, 3].map(|j| q(i + j)),
                            [0, 1, 2, 3].map(|j| o(i + j)),
                        );
                        query4_for(kernel, &head, q, scale, len, p, o);
                        i += 4;
                        continue;
                    }
                    let keys = if causal { i + 1 } else { len };
                    query_for(kernel, &head, q(i), scale, keys, p, o(i));
                    i += 1;
                }
            },
        );
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[out_rows, width])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;
    use candle_core::{Device, D};

    #[test]
    fn attention_matches_the_unfused_formula() {
        let dev = Device::Cpu;
        let (n, t, h, d) = (2, 5, 3, 4);
        let qkv = Tensor::randn(0f32, 1.0, (n, t, 3 * h * d), &dev).unwrap();
        for causal in [false, true] {
            let split = |i: usize| {
                qkv.narrow(2, i * h * d, h * d)
                    .unwrap()
                    .reshape((n, t, h, d))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let (q, k, v) = (split(0), split(1), split(2));
            let mut s = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
            if causal {
                let m: Vec<f32> = (0..t)
                    .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                    .collect();
                let m = Tensor::from_vec(m, (t, t), &dev).unwrap();
                s = s.broadcast_add(&m).unwrap();
            }
            let a = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            let want = a
                .matmul(&v)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((n, t, h * d))
                .unwrap();
            let rows = qkv.reshape((n * t, 3 * h * d)).unwrap();
            let segments = [(0, t), (t, t)];
            let got = segment_attention(&rows, h, causal, &segments, None).unwrap();
            let want_rows = want.reshape((n * t, h * d)).unwrap();
            assert!(max_diff(&got, &want_rows) < 1e-5, "causal {causal}");
            let at = segment_attention(&rows, h, causal, &segments, Some(&[3, 1])).unwrap();
            let want_at = Tensor::stack(
                &[
                    want.get(0).unwrap().get(3).unwrap(),
                    want.get(1).unwrap().get(1).unwrap(),
                ],
                0,
            )
            .unwrap();
            assert!(max_diff(&at, &want_at) < 1e-5, "causal {causal}, one query");
            if causal {
                // Sequence 0 cut after position 2, sequence 1 whole: the kept positions are
                // unchanged, because no position sees the ones after it.
                let cut = Tensor::cat(
                    &[rows.narrow(0, 0, 3).unwrap(), rows.narrow(0, t, t).unwrap()],
                    0,
                )
                .unwrap();
                let got = segment_attention(&cut, h, true, &[(0, 3), (3, t)], None).unwrap();
                let want_cut = Tensor::cat(
                    &[
                        want_rows.narrow(0, 0, 3).unwrap(),
                        want_rows.narrow(0, t, t).unwrap(),
                    ],
                    0,
                )
                .unwrap();
                assert!(max_diff(&got, &want_cut) < 1e-5, "ragged segments");
            }
        }
    }

    #[test]
    fn segments_must_tile_the_rows() {
        let qkv = Tensor::zeros((5, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(segment_attention(&qkv, 1, true, &[(0, 2), (2, 2)], None).is_err());
        assert!(segment_attention(&qkv, 1, true, &[(0, 2), (3, 2)], None).is_err());
        assert!(segment_attention(&qkv, 1, true, &[(0, 5)], Some(&[5])).is_err());
        assert!(segment_attention(&qkv, 1, true, &[(0, 3), (3, 2)], Some(&[2, 1])).is_ok());
    }
}
