//! Element-wise kernels the reference computes differently from candle's stock ops.
//!
//! - LayerNorm: the reference (`clip.model.LayerNorm`, torch's `native_layer_norm`) centres each
//!   row before squaring. candle's fused CPU kernel uses `E[x²] - E[x]²` in f32, which loses
//!   digits on rows with a large mean (CLIP's residual streams have outlier channels), so this
//!   two-pass kernel replaces it on the CPU; other devices use the same two-pass formula built
//!   from tensor ops.
//! - QuickGELU: `x * sigmoid(1.702 x)` in one pass over the data instead of three.

use candle_core::{backend::BackendStorage, CpuStorage, CustomOp1, CustomOp3, Layout, Shape};
use candle_core::{DType, Device, Result, Tensor, D};
use rayon::prelude::*;

/// LayerNorm over the last dimension, computed in f32 as the reference's fp32 `LayerNorm`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
        let x = x.contiguous()?;
        return x.apply_op3_no_bwd(weight, bias, &TwoPassLayerNorm { eps });
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps as f64)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// `x * sigmoid(1.702 x)`, the reference's `QuickGELU`.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
        return x.apply_op1_no_bwd(&QuickGelu);
    }
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

struct TwoPassLayerNorm {
    eps: f32,
}

/// The f32 values of a contiguous CPU operand of a custom op; `what` names it in errors.
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: expected f32, got {:?}", s.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

impl CustomOp3 for TwoPassLayerNorm {
    fn name(&self) -> &'static str {
        "two-pass-layer-norm"
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
        let src = contiguous_f32(s1, l1, "layer norm input")?;
        let weight = contiguous_f32(s2, l2, "layer norm weight")?;
        let bias = contiguous_f32(s3, l3, "layer norm bias")?;
        let dims = l1.shape().dims();
        let n = *dims.last().unwrap_or(&0);
        if n == 0 || weight.len() != n || bias.len() != n {
            candle_core::bail!(
                "layer norm over {n} features with weight {} and bias {}",
                weight.len(),
                bias.len()
            );
        }
        // Every value is written below, so the buffer needs no zeroing first.
        let mut dst: Vec<f32> = Vec::with_capacity(src.len());
        let eps = self.eps;
        src.par_chunks(n)
            .zip(dst.spare_capacity_mut()[..src.len()].par_chunks_mut(n))
            .for_each(|(row, out)| {
                let mean = lane_sum(row, |v| v) / n as f32;
                let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n as f32;
                let inv_std = 1.0 / (var + eps).sqrt();
                for (((o, v), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                    o.write((v - mean) * inv_std * w + b);
                }
            });
        // SAFETY: the rows above cover all `src.len()` values (`n` divides it: the last
        // dimension), and each wrote every one of its `n`.
        unsafe { dst.set_len(src.len()) };
        Ok((CpuStorage::F32(dst), Shape::from_dims(dims)))
    }
}

/// `Σ f(v)` over `row` in 16 interleaved partial sums, added in order at the end: a sum the
/// compiler can keep in vector registers, where one running sum is a chain of dependent adds.
#[inline]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    rest.iter()
        .fold(lanes.iter().sum::<f32>(), |s, &v| s + f(v))
}

struct QuickGelu;

/// `v · sigmoid(1.702 v)` as the reference's fp32 `QuickGELU` computes it.
#[inline]
pub(crate) fn quick_gelu_value(v: f32) -> f32 {
    v * (1.0 / (1.0 + (-1.702 * v).exp()))
}

/// [`quick_gelu_value`] over a slice, sixteen or eight values at a time where the CPU has
/// AVX-512 or AVX2 + FMA (`vmath.rs`: `exp` by range reduction and a polynomial, within about
/// 1 ulp of libm's `expf`; the division and product as the scalar form does them), the scalar
/// form for the rest; sixteen only if `wide` (the caller's CPU class has AVX-512: a class held
/// narrower is measured as it is). The scalar form calls libm once per value, which made
/// QuickGELU a tenth of an int8 ViT's time.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn quick_gelu_slice(values: &mut [f32], wide: bool) {
    #[cfg(target_arch = "x86_64")]
    let done = super::vmath::quick_gelu_vectors(values, wide);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for v in &mut values[done..] {
        *v = quick_gelu_value(*v);
    }
}

/// `e^x` for each value in place, in vectors where the CPU has AVX-512 or AVX2 + FMA (the same
/// `exp` as [`quick_gelu_slice`], and the same `wide`; inputs below -87 give `e^-87` rather
/// than a denormal).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn exp_slice(values: &mut [f32], wide: bool) {
    #[cfg(target_arch = "x86_64")]
    let done = super::vmath::exp_vectors(values, wide);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for v in &mut values[done..] {
        *v = v.exp();
    }
}

impl CustomOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "quick-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = match s {
            CpuStorage::F32(d) => d,
            _ => candle_core::bail!("quick gelu: expected f32, got {:?}", s.dtype()),
        };
        let src = match l.contiguous_offsets() {
            Some((a, b)) => &data[a..b],
            None => candle_core::bail!("quick gelu input must be contiguous"),
        };
        let mut dst = src.to_vec();
        // The path of weights kept as tensors (not the packed CPU products): AVX2 at most.
        dst.par_chunks_mut(4096)
            .for_each(|v| quick_gelu_slice(v, false));
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

/// Calls `f` with the values of a CPU f32 tensor (copied first if not contiguous).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_f32(cpu, layout, "matrix operand")?)),
        _ => candle_core::bail!("gemm: operand on {:?}, expected the CPU", t.device()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_is_exact_on_rows_with_a_large_mean() {
        // Row with mean 1e4 and unit spread: E[x²]-E[x]² in f32 would cancel to noise.
        let row: Vec<f32> = (0..8).map(|i| 1.0e4 + (i as f32 - 3.5)).collect();
        let x = Tensor::from_vec(row, (1, 8), &Device::Cpu).unwrap();
        let w = Tensor::ones(8, DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = layer_norm(&x, &w, &b, 1e-5)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let var = (0..8).map(|i| (i as f32 - 3.5).powi(2)).sum::<f32>() / 8.0;
        for (i, v) in y.iter().enumerate() {
            let want = (i as f32 - 3.5) / (var + 1e-5).sqrt();
            assert!((v - want).abs() < 1e-5, "{i}: {v} vs {want}");
        }
    }

    #[test]
    fn quick_gelu_slices_match_the_scalar_form_on_every_path() {
        // Dense over the range where the sigmoid is neither 0 nor 1, then the tails; lengths
        // that are not multiples of the SIMD width reach the scalar remainder too.
        let mut xs: Vec<f32> = (-24_000..24_000).map(|i| i as f32 * 1e-3).collect();
        xs.extend([
            -200.0, -90.0, -60.0, 60.0, 90.0, 200.0, 0.0, -0.0, 1e-30, -1e-30,
        ]);
        for (len, wide) in [
            (xs.len(), false),
            (xs.len(), true),
            (xs.len() - 3, true),
            (5, true),
        ] {
            let mut got = xs[..len].to_vec();
            quick_gelu_slice(&mut got, wide);
            for (&x, &y) in xs.iter().zip(&got) {
                // Against the scalar form in f32: the same rounding of `-1.702·x`, so only the
                // exponential's own error shows (a few ulp).
                let want = quick_gelu_value(x);
                let err = (y - want).abs();
                assert!(err <= 4e-7 * want.abs() + 1e-35, "x {x}: {y} vs {want}");
            }
        }
    }

    #[test]
    fn exp_slices_match_libm_within_a_few_ulp() {
        // Inside the clamp [-87, 88] (below it `e^-87` stands for smaller values, as documented).
        let xs: Vec<f32> = (-86_990..88_000)
            .step_by(7)
            .map(|i| i as f32 * 1e-3)
            .collect();
        for (len, wide) in [
            (xs.len(), false),
            (xs.len(), true),
            (xs.len() - 5, true),
            (3, true),
        ] {
            let mut got = xs[..len].to_vec();
            exp_slice(&mut got, wide);
            for (&x, &y) in xs.iter().zip(&got) {
                let want = x.exp();
                assert!((y - want).abs() <= 4e-7 * want, "x {x}: {y} vs {want}");
            }
        }
    }

    #[test]
    fn quick_gelu_matches_its_formula() {
        let xs = [-3.0f32, -0.5, 0.0, 0.25, 4.0];
        let x = Tensor::new(&xs, &Device::Cpu).unwrap();
        let y: Vec<f32> = quick_gelu(&x).unwrap().to_vec1().unwrap();
        for (v, x) in y.iter().zip(xs) {
            let want = x / (1.0 + (-1.702 * x).exp());
            assert!((v - want).abs() < 1e-7);
        }
    }
}
