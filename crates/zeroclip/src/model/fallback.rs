//! The f32 products where none of our SIMD kernels runs and the CPU is not x86 (aarch64): the
//! `gemm` crate, which candle's CPU matmul calls and which has NEON kernels, reads the weight in
//! place (`Layout::Transposed`, `[n, k]` as stored) and packs both operands itself; the
//! epilogue then runs over each finished row, in the order the micro-kernels apply it (the
//! reference's: bias or BatchNorm, residual, activation). On x86 CPUs without AVX2 the crate
//! would run its scalar kernels, which the portable loops beat (docs/PERFORMANCE.md, speed
//! round 3), so it is used there only when `ZEROCLIP_KERNEL=candle` asks for it.

use rayon::prelude::*;

use super::dispatch::{Class, Format};
use super::epilogue::{finish, Epilogue};
use super::packed::PackedMatrix;

/// How a [`PackedMatrix`] lays its values out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Panels of `NR` columns, `[steps][NR]` each, for the micro-kernels.
    Panels,
    /// f32 only: `Bᵀ` `[n, k]` row-major, as an `nn.Linear` weight is stored, for the `gemm`
    /// crate.
    Transposed,
}

impl Layout {
    /// The layout the products of `format` read on this CPU.
    pub(super) fn for_format(format: Format) -> Layout {
        if format == Format::F32 && Class::selected().f32_through_gemm_crate() {
            Layout::Transposed
        } else {
            Layout::Panels
        }
    }
}

/// `C[i, j] = epilogue(Σ_k A[i, k] · B[k, j])` for `A` `[m, k]` (rows `lda` apart) and `C`
/// `[m, n]` (rows `ldc` apart), with `b` in [`Layout::Transposed`]; the caller
/// has checked the operands' lengths.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedMatrix,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    threads: usize,
) {
    let (k, n) = (b.k, b.n);
    let bt = b.transposed();
    assert!(bt.len() >= n * k, "B is too short");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0.0);
        }
    } else {
        // SAFETY: `A` is read at `i·lda + kk` (i < m, kk < k), `B[kk, j]` at `j·k + kk` of `bt`
        // (j < n), `C` written at `i·ldc + j`: all inside the slices, as asserted here (`bt`)
        // and by the caller (`A`, `C`); `C` is not read (`read_dst` false), and nothing else
        // touches it during the call.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                ldc as isize,
                false,
                a.as_ptr(),
                1,
                lda as isize,
                bt.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        };
    }
    let plain = epi.scale.is_none()
        && epi.shift.is_none()
        && epi.residual.is_none()
        && !epi.relu
        && !epi.quick_gelu;
    if plain {
        return;
    }
    let each = |(i, row): (usize, &mut [f32])| {
        let res = epi.residual.map(|r| &r[i * ldc..][..n]);
        finish(&mut row[..n], 0, res, epi, false);
    };
    // The rows of `C` (the last one may be shorter than `ldc`).
    let c = &mut c[..(m - 1) * ldc + n];
    if threads > 1 && m * n >= 1 << 14 {
        c.par_chunks_mut(ldc).enumerate().for_each(each);
    } else {
        c.chunks_mut(ldc).enumerate().for_each(each);
    }
}
