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
        let mut dst = vec![0f32; src.len()];
        let eps = self.eps;
        src.par_chunks(n)
            .zip(dst.par_chunks_mut(n))
            .for_each(|(row, out)| {
                let mean = row.iter().sum::<f32>() / n as f32;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
                let inv_std = 1.0 / (var + eps).sqrt();
                for (((o, v), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                    *o = (v - mean) * inv_std * w + b;
                }
            });
        Ok((CpuStorage::F32(dst), Shape::from_dims(dims)))
    }
}

struct QuickGelu;

/// `v · sigmoid(1.702 v)` as the reference's fp32 `QuickGELU` computes it.
#[inline]
pub(crate) fn quick_gelu_value(v: f32) -> f32 {
    v * (1.0 / (1.0 + (-1.702 * v).exp()))
}

/// [`quick_gelu_value`] over a slice, eight values at a time where the CPU has AVX2 and FMA:
/// `exp` by range reduction and a degree-6 polynomial (within about 1 ulp of libm's `expf` on
/// the reduced range), the division and product as the scalar form does them. The scalar form
/// calls libm once per value, which made QuickGELU a tenth of an int8 ViT's time.
pub(crate) fn quick_gelu_slice(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { quick_gelu_avx2(values) };
        return;
    }
    for v in values {
        *v = quick_gelu_value(*v);
    }
}

/// `e^x` for each value in place, eight at a time where the CPU has AVX2 and FMA (the same
/// `exp` as [`quick_gelu_slice`]; inputs below -87 give `e^-87` rather than a denormal).
pub(crate) fn exp_slice(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { exp_avx2(values) };
        return;
    }
    for v in values {
        *v = v.exp();
    }
}

/// [`exp_slice`] with AVX2 and FMA.
///
/// # Safety
///
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(values: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = values.len() / 8 * 8;
    let (head, tail) = values.split_at_mut(whole);
    for chunk in head.chunks_exact_mut(8) {
        // SAFETY: `chunk` holds 8 floats.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), exp8(_mm256_loadu_ps(chunk.as_ptr()))) };
    }
    for v in tail {
        *v = v.exp();
    }
}

/// [`quick_gelu_slice`] with AVX2 and FMA.
///
/// # Safety
///
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quick_gelu_avx2(values: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = values.len() / 8 * 8;
    let (head, tail) = values.split_at_mut(whole);
    let one = _mm256_set1_ps(1.0);
    for chunk in head.chunks_exact_mut(8) {
        // SAFETY: `chunk` holds 8 floats.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        let e = exp8(_mm256_mul_ps(v, _mm256_set1_ps(-1.702)));
        let y = _mm256_mul_ps(v, _mm256_div_ps(one, _mm256_add_ps(one, e)));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), y) };
    }
    for v in tail {
        *v = quick_gelu_value(*v);
    }
}

/// `e^x` on 8 lanes: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its Taylor polynomial of
/// degree 6 (relative error below 1.2e-7 there), times `2^n` built in the exponent bits. Inputs
/// are held to [-87, 88], where `2^n` stays a normal float; beyond, the sigmoid is 0 or 1 to
/// f32 precision either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 split in two so that `n · ln2_hi` is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
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
        dst.par_chunks_mut(4096).for_each(quick_gelu_slice);
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
        for len in [xs.len(), xs.len() - 3, 5] {
            let mut got = xs[..len].to_vec();
            quick_gelu_slice(&mut got);
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
        for len in [xs.len(), xs.len() - 5, 3] {
            let mut got = xs[..len].to_vec();
            exp_slice(&mut got);
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
