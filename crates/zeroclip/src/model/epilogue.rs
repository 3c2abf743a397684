//! What the GEMM does to each finished output tile, and the panel width both the packing
//! ([`super::gemm`]) and the micro-kernels ([`super::microkernel`]) are built around. A leaf of
//! both, so the kernels do not import the driver that calls them.

/// Columns per packed panel (two 8-float AVX registers).
pub const NR: usize = 16;

/// What happens to each finished output: `acc·scale[j] + shift[j]`, then `+ residual[i, j]`,
/// then `max(0, ·)` or QuickGELU. `None` skips a step (no scale is not a multiplication by one).
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Per-column factor (BatchNorm's scale).
    pub scale: Option<&'a [f32]>,
    /// Per-column addend (bias, or BatchNorm's shift).
    pub shift: Option<&'a [f32]>,
    /// Laid out like `C` (same row stride).
    pub residual: Option<&'a [f32]>,
    /// `max(0, ·)` after the residual.
    pub relu: bool,
    /// QuickGELU last (`ops::quick_gelu_slice`), on the finished tile while it is in registers
    /// or L1 (the MLP's `c_fc`), instead of a pass over the whole activation and a buffer for
    /// its result.
    pub quick_gelu: bool,
}

/// The epilogue over one finished row segment starting at column `col0`; `wide` as for
/// `ops::quick_gelu_slice`.
#[inline]
pub(super) fn finish(
    row: &mut [f32],
    col0: usize,
    residual: Option<&[f32]>,
    epi: &Epilogue,
    wide: bool,
) {
    let cols = row.len();
    if let Some(s) = epi.scale {
        for (v, s) in row.iter_mut().zip(&s[col0..col0 + cols]) {
            *v *= s;
        }
    }
    if let Some(s) = epi.shift {
        for (v, s) in row.iter_mut().zip(&s[col0..col0 + cols]) {
            *v += s;
        }
    }
    if let Some(res) = residual {
        for (v, r) in row.iter_mut().zip(res) {
            *v += r;
        }
    }
    if epi.relu {
        for v in row.iter_mut() {
            *v = v.max(0.0);
        }
    }
    if epi.quick_gelu {
        super::ops::quick_gelu_slice(row, wide);
    }
}
