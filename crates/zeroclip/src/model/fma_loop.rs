//! The inner `k` loop of the SIMD f32 micro-kernels, scheduled by hand for their usual tiles:
//! AVX-512 on 7 to 12 rows × two panels, AVX2 + FMA on 4 to 6 rows × one panel (with `A` read
//! in place or packed in `[k][6]` tiles). The same fused multiply-adds as the kernels' Rust
//! loop, in the same order (so the same bits), but with `A`'s rows addressed from one base
//! register per three rows (a packed tile is rows one float apart) and `k` unrolled by four, so
//! the loop spends a few integer instructions per four steps instead of several per step, and
//! it prefetches the panels ahead. The compiler's schedule of the Rust loop left more of the
//! FMA peak unused (docs/PERFORMANCE.md, speed round 3). Shorter tiles keep the Rust loop: they
//! are rare, and too short to keep the multiply-adds busy either way. The kernels reach these
//! loops through the hooks at the end (`fp32_avx512_loop`, `fp32_avx2_loop`, `no_hand_loop`).

use std::arch::asm;
use std::arch::x86_64::{__m256, __m512};

/// One step `p` of `k`, as one string: both column vectors at byte offset `$b` from `{b0}` and
/// `{b1}`, then for each row its `A` value at byte offset `$a` from the row's address,
/// broadcast and multiplied into the row's two accumulators.
macro_rules! step {
    ($a:literal, $b:literal, [$(($lo:ident $hi:ident $i:literal $addr:literal $s:literal)),*]) => {
        concat!(
            "vmovups {b0v}, [{b0} + ", $b, "]\n",
            "vmovups {b1v}, [{b1} + ", $b, "]\n",
            $(
                "vbroadcastss {", $s, "}, dword ptr [", $addr, " + ", $a, "]\n",
                "vfmadd231ps {", stringify!($lo), "}, {b0v}, {", $s, "}\n",
                "vfmadd231ps {", stringify!($hi), "}, {b1v}, {", $s, "}\n",
            )*
        )
    };
}

/// Defines `$name`, the loop for `$rows` rows of `$vec` vectors (register class `$class`,
/// target features `$feature`): `A`'s four steps at byte offsets `$steps` from the row
/// addresses, which advance by `$next` bytes a step (`$next4` four steps);
/// `[$($base = first row),*]` are the row bases (all advanced, used or not), then each row's
/// accumulators, index, address and broadcast register.
macro_rules! k_loop {
    ($name:ident, $feature:literal, $class:ident, $vec:ty, $rows:literal,
     [$a0:literal, $a1:literal, $a2:literal, $a3:literal], $next:literal, $next4:literal,
     [$($base:ident = $first:literal),*],
     [$(($lo:ident $hi:ident $i:literal $addr:literal $s:literal)),*]) => {
        /// `lo[i] += Σ_p A[i, p] · B0[p]` and `hi[i] += Σ_p A[i, p] · B1[p]` for `p` in
        /// `0..kc`, in increasing `p`, one fused multiply-add each: `A[i, p]` is
        /// `a[i·lda + p·ak]`, `B0[p]` the vector at `b0 + p·16` floats, `B1[p]` the one at
        /// `b1 + p·16`; `ak` is the one this loop was written for (see its step offsets).
        ///
        /// # Safety
        ///
        /// The CPU must have the target features; `a` must be readable for the rows (`lda`
        /// floats apart) of `kc` steps, and `b0` and `b1` for `kc` steps of 16 floats each.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn $name(
            kc: usize,
            a: *const f32,
            lda: usize,
            b0: *const f32,
            b1: *const f32,
            lo: &mut [$vec; $rows],
            hi: &mut [$vec; $rows],
        ) {
            // SAFETY: the loops read `A[rows, 0..kc]` through the row bases (each followed by
            // the rows `lda` and `2·lda` floats further, or at their offsets in a packed
            // tile) and `kc` vectors at `b0` and `b1`, all inside what the caller vouches for;
            // the CPU has the target features (the function's contract); prefetches do not
            // fault. Only the named registers are written.
            unsafe {
                asm!(
                    "test {quads}, {quads}",
                    "jz 3f",
                    "2:",
                    step!($a0, "0", [$(($lo $hi $i $addr $s)),*]),
                    step!($a1, "64", [$(($lo $hi $i $addr $s)),*]),
                    step!($a2, "128", [$(($lo $hi $i $addr $s)),*]),
                    step!($a3, "192", [$(($lo $hi $i $addr $s)),*]),
                    // The panels' lines 32 steps ahead: on a block's first tile of rows they
                    // come from memory (the weights of a layer are read once per image at
                    // batch 1), too late for the hardware prefetcher alone.
                    "prefetcht0 [{b0} + 2048]",
                    "prefetcht0 [{b0} + 2112]",
                    "prefetcht0 [{b0} + 2176]",
                    "prefetcht0 [{b0} + 2240]",
                    "prefetcht0 [{b1} + 2048]",
                    "prefetcht0 [{b1} + 2112]",
                    "prefetcht0 [{b1} + 2176]",
                    "prefetcht0 [{b1} + 2240]",
                    $(concat!("add {", stringify!($base), "}, ", $next4),)*
                    "add {b0}, 256",
                    "add {b1}, 256",
                    "dec {quads}",
                    "jnz 2b",
                    "3:",
                    "test {rest}, {rest}",
                    "jz 5f",
                    "4:",
                    step!("0", "0", [$(($lo $hi $i $addr $s)),*]),
                    $(concat!("add {", stringify!($base), "}, ", $next),)*
                    "add {b0}, 64",
                    "add {b1}, 64",
                    "dec {rest}",
                    "jnz 4b",
                    "5:",
                    quads = inout(reg) kc / 4 => _,
                    rest = inout(reg) kc % 4 => _,
                    lda = in(reg) lda * 4,
                    $($base = inout(reg) a.wrapping_add($first * lda) => _,)*
                    b0 = inout(reg) b0 => _,
                    b1 = inout(reg) b1 => _,
                    b0v = out($class) _,
                    b1v = out($class) _,
                    s0 = out($class) _,
                    s1 = out($class) _,
                    $($lo = inout($class) lo[$i], $hi = inout($class) hi[$i],)*
                    options(nostack, readonly),
                );
            }
        }
    };
}

/// Defines one loop per name of `[$name $height, ...]` (heights decreasing by one), the first
/// on all of `[$row, ...]` (rows listed last first), each next one without the first row left.
macro_rules! peel {
    ($feature:literal, $class:ident, $vec:ty, $steps:tt, $next:literal, $next4:literal, $bases:tt,
     [$name:ident $n:literal $(, $names:ident $ns:literal)*], [$row:tt $(, $rows:tt)*]) => {
        k_loop!($name, $feature, $class, $vec, $n, $steps, $next, $next4, $bases, [$row $(, $rows)*]);
        peel!($feature, $class, $vec, $steps, $next, $next4, $bases, [$($names $ns),*], [$($rows),*]);
    };
    ($feature:literal, $class:ident, $vec:ty, $steps:tt, $next:literal, $next4:literal, $bases:tt,
     [], $rows:tt) => {};
}

/// The loops of one vector width: for each `{steps, next, next4, [names]}`, the heights named.
macro_rules! k_loops {
    ($feature:literal, $class:ident, $vec:ty, $bases:tt, $rows:tt,
     $({$steps:tt, $next:literal, $next4:literal, $names:tt})*) => {
        $(peel!($feature, $class, $vec, $steps, $next, $next4, $bases, $names, $rows);)*
    };
}

// AVX-512: 12 down to 7 rows of `A` read in place (`lda` floats apart).
k_loops!(
    "avx512f", zmm_reg, __m512, [r0 = 0, r3 = 3, r6 = 6, r9 = 9],
    [(l11 h11 11 "{r9} + {lda}*2" "s1"), (l10 h10 10 "{r9} + {lda}" "s0"), (l9 h9 9 "{r9}" "s1"),
     (l8 h8 8 "{r6} + {lda}*2" "s0"), (l7 h7 7 "{r6} + {lda}" "s1"), (l6 h6 6 "{r6}" "s0"),
     (l5 h5 5 "{r3} + {lda}*2" "s1"), (l4 h4 4 "{r3} + {lda}" "s0"), (l3 h3 3 "{r3}" "s1"),
     (l2 h2 2 "{r0} + {lda}*2" "s0"), (l1 h1 1 "{r0} + {lda}" "s1"), (l0 h0 0 "{r0}" "s0")],
    {["0", "4", "8", "12"], "4", "16",
     [avx512_12 12, avx512_11 11, avx512_10 10, avx512_9 9, avx512_8 8, avx512_7 7]}
);

// AVX2 + FMA: 6 down to 4 rows, read in place, or packed in `[k][6]` tiles (`lda` 1, a step 6
// floats).
k_loops!(
    "avx2,fma", ymm_reg, __m256, [r0 = 0, r3 = 3],
    [(l5 h5 5 "{r3} + {lda}*2" "s1"), (l4 h4 4 "{r3} + {lda}" "s0"), (l3 h3 3 "{r3}" "s1"),
     (l2 h2 2 "{r0} + {lda}*2" "s0"), (l1 h1 1 "{r0} + {lda}" "s1"), (l0 h0 0 "{r0}" "s0")],
    {["0", "4", "8", "12"], "4", "16", [avx2_6 6, avx2_5 5, avx2_4 4]}
    {["0", "24", "48", "72"], "24", "96", [avx2_packed_6 6, avx2_packed_5 5, avx2_packed_4 4]}
);

/// The `k` loop of kernels that have none scheduled by hand: the macro's own runs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn no_hand_loop<V, const R: usize>(
    _: usize,
    _: *const f32,
    _: usize,
    _: usize,
    _: [*const f32; 2],
    _: &mut [V; R],
    _: &mut [V; R],
) -> bool {
    false
}

/// Defines `$name`, a kernel's `k` loop hook for `$vec` vectors: the hand-scheduled loop of
/// `fma_loop.rs` for each `(height, a step)` listed, returning whether one ran (else the
/// macro's own loop runs).
macro_rules! hand_loops {
    ($(#[$doc:meta])* $name:ident, $vec:ident, $(($n:literal, $ak:literal) => $f:ident),*) => {
        $(#[$doc])*
        ///
        /// # Safety
        ///
        /// As for the kernel: `a`, `b` and `kc` must describe a tile the caller vouches for,
        /// and the CPU must have the loops' target features.
        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        pub(super) unsafe fn $name<const R: usize>(
            kc: usize,
            a: *const f32,
            lda: usize,
            ak: usize,
            b: [*const f32; 2],
            lo: &mut [std::arch::x86_64::$vec; R],
            hi: &mut [std::arch::x86_64::$vec; R],
        ) -> bool {
            use std::arch::x86_64::$vec;
            match (R, ak) {
                $(($n, $ak) => {
                    // SAFETY: `R` is `$n` here, so the arrays are the same type; the tile's
                    // rows of `kc` steps and both column vectors' `kc` steps are readable and
                    // the CPU has the loop's features (the caller's contract).
                    unsafe {
                        let lo = &mut *(lo as *mut [$vec; R]).cast::<[$vec; $n]>();
                        let hi = &mut *(hi as *mut [$vec; R]).cast::<[$vec; $n]>();
                        $f(kc, a, lda, b[0], b[1], lo, hi)
                    }
                    true
                })*
                _ => false,
            }
        }
    };
}

hand_loops!(
    /// The AVX-512 f32 kernel's `k` loop on 7 to 12 rows of `A` read in place.
    fp32_avx512_loop, __m512,
    (12, 1) => avx512_12, (11, 1) => avx512_11, (10, 1) => avx512_10,
    (9, 1) => avx512_9, (8, 1) => avx512_8, (7, 1) => avx512_7
);
hand_loops!(
    /// The AVX2 + FMA f32 kernel's `k` loop on 4 to 6 rows of `A`, read in place or packed in
    /// `[k][MR]` tiles.
    fp32_avx2_loop, __m256,
    (6, 1) => avx2_6, (5, 1) => avx2_5, (4, 1) => avx2_4,
    (6, 6) => avx2_packed_6, (5, 6) => avx2_packed_5, (4, 6) => avx2_packed_4
);
