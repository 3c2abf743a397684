//! CPU kernels that fuse what the reference runs as several ops, without changing the arithmetic
//! beyond the order of additions.
//!
//! - [`self_attention`]: `nn.MultiheadAttention`'s core, `softmax(q·kᵀ/√d + mask) · v` per head,
//!   read straight from the fused in-projection output `[n, t, 3·width]` and written straight as
//!   `[n, t, width]`. candle would permute q/k/v into contiguous copies, run one small GEMM per
//!   (image, head) twice, and make separate passes for the scale, the mask, the softmax and the
//!   final transposition; for CLIP's short sequences (50 patches, ≤ 77 tokens) that bookkeeping
//!   cost more than the arithmetic.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::ops::contiguous_f32;

/// Self-attention over `qkv` `[n, t, 3·width]` (q, k, v side by side, each `heads × d`), with
/// a causal mask if `causal` → `[n, t, width]`.
pub fn self_attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    qkv.apply_op1_no_bwd(&Attention {
        heads,
        causal,
        query: None,
    })
}

/// [`self_attention`] for one query position per sequence (`query[b]`, keys and values from
/// every position) → `[n, width]`: all a final layer needs when only one token is pooled.
pub fn self_attention_at(
    qkv: &Tensor,
    heads: usize,
    causal: bool,
    query: &[usize],
) -> Result<Tensor> {
    qkv.apply_op1_no_bwd(&Attention {
        heads,
        causal,
        query: Some(query.to_vec()),
    })
}

struct Attention {
    heads: usize,
    causal: bool,
    query: Option<Vec<usize>>,
}

/// Dot product with eight independent partial sums, so the compiler can vectorize it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "attention input")?;
        let (n, t, w3) = l.shape().dims3()?;
        let h = self.heads;
        if w3 % 3 != 0 || h == 0 || (w3 / 3) % h != 0 {
            candle_core::bail!("attention: {w3} features cannot split into q, k, v of {h} heads");
        }
        let width = w3 / 3;
        let d = width / h;
        let scale = (d as f32).powf(-0.5);
        let query = self.query.as_deref();
        if let Some(q) = query {
            if q.len() != n || q.iter().any(|&i| i >= t) {
                candle_core::bail!("attention: query positions {q:?} for {n} sequences of {t}");
            }
        }
        let rows = if query.is_some() { n } else { n * t };
        let mut dst = vec![0f32; rows * width];
        let causal = self.causal;
        // One task per (sequence, query position): it owns one output row.
        dst.par_chunks_mut(width.max(1)).enumerate().for_each_init(
            || vec![0f32; t],
            |p, (row, out)| {
                let (b, i) = match query {
                    Some(q) => (row, q[row]),
                    None => (row / t, row % t),
                };
                let seq = &src[b * t * w3..(b + 1) * t * w3];
                let keys = if causal { i + 1 } else { t };
                for hd in 0..h {
                    let q = &seq[i * w3 + hd * d..i * w3 + hd * d + d];
                    let mut max = f32::NEG_INFINITY;
                    for (j, pj) in p[..keys].iter_mut().enumerate() {
                        let k = &seq[j * w3 + width + hd * d..][..d];
                        *pj = dot(q, k) * scale;
                        max = max.max(*pj);
                    }
                    let mut sum = 0f32;
                    for pj in &mut p[..keys] {
                        *pj = (*pj - max).exp();
                        sum += *pj;
                    }
                    let inv = 1.0 / sum;
                    let o = &mut out[hd * d..hd * d + d];
                    for (j, &pj) in p[..keys].iter().enumerate() {
                        let v = &seq[j * w3 + 2 * width + hd * d..][..d];
                        let a = pj * inv;
                        for (oo, &vv) in o.iter_mut().zip(v) {
                            *oo += a * vv;
                        }
                    }
                }
            },
        );
        let shape = if query.is_some() {
            Shape::from_dims(&[n, width])
        } else {
            Shape::from_dims(&[n, t, width])
        };
        Ok((CpuStorage::F32(dst), shape))
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
            let got = self_attention(&qkv, h, causal).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "causal {causal}");
            let at = self_attention_at(&qkv, h, causal, &[3, 1]).unwrap();
            let want_at = Tensor::stack(
                &[
                    want.get(0).unwrap().get(3).unwrap(),
                    want.get(1).unwrap().get(1).unwrap(),
                ],
                0,
            )
            .unwrap();
            assert!(max_diff(&at, &want_at) < 1e-5, "causal {causal}, one query");
        }
    }
}
