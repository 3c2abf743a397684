//! CPU kernels that fuse what the reference runs as several ops, without changing the arithmetic
//! beyond the order of additions.
//!
//! - [`linear`]: `x @ weight.T + bias` as one GEMM whose destination starts as the bias rows
//!   (`nn.Linear` / `F.linear` computes `bias + x @ weight.T` the same way, via `addmm`), instead
//!   of a matmul followed by a separate broadcast-add pass.
//! - [`self_attention`]: `nn.MultiheadAttention`'s core, `softmax(q·kᵀ/√d + mask) · v` per head,
//!   read straight from the fused in-projection output `[n, t, 3·width]` and written straight as
//!   `[n, t, width]`. candle would permute q/k/v into contiguous copies, run one small GEMM per
//!   (image, head) twice, and make separate passes for the scale, the mask, the softmax and the
//!   final transposition; for CLIP's short sequences (50 patches, ≤ 77 tokens) that bookkeeping
//!   cost more than the arithmetic.

use candle_core::{backend::BackendStorage, CpuStorage, CustomOp1, CustomOp3, Layout, Shape};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: expected f32, got {:?}", s.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// `x [rows, in] @ weight[out, in]ᵀ + bias[out]` → `[rows, out]` (f32, CPU, contiguous).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.apply_op3_no_bwd(weight, bias, &Linear { residual: None })
}

/// `residual + (x @ weightᵀ + bias)`, the residual connection folded into the GEMM's starting
/// value instead of a separate add over the whole activation (`residual` `[rows, out]`).
pub fn linear_residual(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    let residual = Some(residual.clone());
    x.apply_op3_no_bwd(weight, bias, &Linear { residual })
}

struct Linear {
    /// `[rows, out]` values the product is added to (the bias still applies).
    residual: Option<Tensor>,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(s1, l1, "linear input")?;
        let w = contiguous(s2, l2, "linear weight")?;
        let b = contiguous(s3, l3, "linear bias")?;
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || b.len() != n {
            candle_core::bail!(
                "linear: input [{m}, {k}], weight [{n}, {k2}], bias {}",
                b.len()
            );
        }
        let mut dst = Vec::with_capacity(m * n);
        match &self.residual {
            Some(r) => {
                let (storage, layout) = r.storage_and_layout();
                let r = match &*storage {
                    candle_core::Storage::Cpu(cpu) => contiguous(cpu, layout, "residual")?,
                    _ => candle_core::bail!("linear: the residual must be on the CPU"),
                };
                if r.len() != m * n {
                    candle_core::bail!("linear: residual of {} for [{m}, {n}]", r.len());
                }
                for row in r.chunks_exact(n.max(1)) {
                    dst.extend(row.iter().zip(b).map(|(v, bb)| v + bb));
                }
            }
            None => {
                for _ in 0..m {
                    dst.extend_from_slice(b);
                }
            }
        }
        if m > 0 && n > 0 {
            let threads = candle_core::utils::get_num_threads();
            let par = if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            // Safety: the pointers cover m·k, n·k and m·n floats with the strides given.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize, // rhs[kk, j] = w[j, kk]: the weight read transposed, not copied
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
        Ok((CpuStorage::F32(dst), Shape::from_dims(&[m, n])))
    }
}

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
        let src = contiguous(s, l, "attention input")?;
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
    fn linear_adds_the_bias_to_the_product() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (5, 7), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        let want = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert!(max_diff(&linear(&x, &w, &b).unwrap(), &want) < 1e-5);
        let r = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        let got = linear_residual(&x, &w, &b, &r).unwrap();
        assert!(max_diff(&got, &(want + &r).unwrap()) < 1e-5);
    }

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
