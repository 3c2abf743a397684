//! The inner `k` loop of the AVX-512 f32 micro-kernel on tiles of 7 to 12 rows × two panels,
//! scheduled by hand: the same fused multiply-adds as the kernel's Rust loop, in the same order
//! (so the same bits), but with `A`'s rows addressed from one base register per three rows and
//! `k` unrolled by four, so the loop spends a few integer instructions per four steps instead
//! of a dozen per step, and it prefetches the panels ahead. The compiler's schedule of the Rust loop left more of the FMA peak
//! unused (docs/PERFORMANCE.md, speed round 3). Shorter tiles keep the Rust loop: they are
//! rare, and too short to keep the multiply-adds busy either way.

use std::arch::{asm, x86_64::__m512};

/// One step `p` of `k`, as one string: both panels' vectors at byte offset `$b`, then for each
/// row its `A` value at byte offset `$a` from the row's address, broadcast and multiplied into
/// the row's two accumulators.
macro_rules! step {
    ($a:literal, $b:literal, [$($lo:ident $hi:ident $addr:literal $s:literal),*]) => {
        concat!(
            "vmovups {b0v}, zmmword ptr [{b0} + ", $b, "]\n",
            "vmovups {b1v}, zmmword ptr [{b1} + ", $b, "]\n",
            $(
                "vbroadcastss {", $s, "}, dword ptr [", $addr, " + ", $a, "]\n",
                "vfmadd231ps {", stringify!($lo), "}, {b0v}, {", $s, "}\n",
                "vfmadd231ps {", stringify!($hi), "}, {b1v}, {", $s, "}\n",
            )*
        )
    };
}

/// Defines `$name`, the loop for `$rows` rows: `[$($base = first row),*]` are the row bases
/// (one per three rows), then each row's accumulators, index, address and broadcast register.
macro_rules! k_loop {
    ($name:ident, $rows:literal, [$($base:ident = $first:literal),*],
     [$($lo:ident $hi:ident $i:literal $addr:literal $s:literal),*]) => {
        /// `lo[i] += Σ_p A[i, p] · B0[p]` and `hi[i] += Σ_p A[i, p] · B1[p]` for `p` in
        /// `0..kc`, in increasing `p`, one fused multiply-add each: `A[i, p]` is
        /// `a[i·lda + p]`, `B0[p]` the 16 floats at `b0 + p·16`, `B1[p]` those at `b1 + p·16`.
        ///
        /// # Safety
        ///
        /// The CPU must have AVX-512F; `a` must be readable for the rows (`lda` floats apart)
        /// of `kc` floats, and `b0` and `b1` for `kc · 16` floats each.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn $name(
            kc: usize,
            a: *const f32,
            lda: usize,
            b0: *const f32,
            b1: *const f32,
            lo: &mut [__m512; $rows],
            hi: &mut [__m512; $rows],
        ) {
            // SAFETY: the loops read `A[rows, 0..kc]` through the row bases (each followed by
            // the rows `lda` and `2·lda` floats further) and `kc` vectors of each panel, all
            // inside what the caller vouches for; the CPU has AVX-512F (the function's
            // contract). Only the named registers are written.
            unsafe {
                asm!(
                    "test {quads}, {quads}",
                    "jz 3f",
                    "2:",
                    step!("0", "0", [$($lo $hi $addr $s),*]),
                    step!("4", "64", [$($lo $hi $addr $s),*]),
                    step!("8", "128", [$($lo $hi $addr $s),*]),
                    step!("12", "192", [$($lo $hi $addr $s),*]),
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
                    $(concat!("add {", stringify!($base), "}, 16"),)*
                    "add {b0}, 256",
                    "add {b1}, 256",
                    "dec {quads}",
                    "jnz 2b",
                    "3:",
                    "test {rest}, {rest}",
                    "jz 5f",
                    "4:",
                    step!("0", "0", [$($lo $hi $addr $s),*]),
                    $(concat!("add {", stringify!($base), "}, 4"),)*
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
                    b0v = out(zmm_reg) _,
                    b1v = out(zmm_reg) _,
                    s0 = out(zmm_reg) _,
                    s1 = out(zmm_reg) _,
                    $($lo = inout(zmm_reg) lo[$i], $hi = inout(zmm_reg) hi[$i],)*
                    options(nostack, readonly),
                );
            }
        }
    };
}

k_loop!(
    k_loop_12,
    12,
    [r0 = 0, r3 = 3, r6 = 6, r9 = 9],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0",
        l7 h7 7 "{r6} + {lda}" "s1",
        l8 h8 8 "{r6} + {lda}*2" "s0",
        l9 h9 9 "{r9}" "s1",
        l10 h10 10 "{r9} + {lda}" "s0",
        l11 h11 11 "{r9} + {lda}*2" "s1"
    ]
);

k_loop!(
    k_loop_11,
    11,
    [r0 = 0, r3 = 3, r6 = 6, r9 = 9],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0",
        l7 h7 7 "{r6} + {lda}" "s1",
        l8 h8 8 "{r6} + {lda}*2" "s0",
        l9 h9 9 "{r9}" "s1",
        l10 h10 10 "{r9} + {lda}" "s0"
    ]
);

k_loop!(
    k_loop_10,
    10,
    [r0 = 0, r3 = 3, r6 = 6, r9 = 9],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0",
        l7 h7 7 "{r6} + {lda}" "s1",
        l8 h8 8 "{r6} + {lda}*2" "s0",
        l9 h9 9 "{r9}" "s1"
    ]
);

k_loop!(
    k_loop_9,
    9,
    [r0 = 0, r3 = 3, r6 = 6],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0",
        l7 h7 7 "{r6} + {lda}" "s1",
        l8 h8 8 "{r6} + {lda}*2" "s0"
    ]
);

k_loop!(
    k_loop_8,
    8,
    [r0 = 0, r3 = 3, r6 = 6],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0",
        l7 h7 7 "{r6} + {lda}" "s1"
    ]
);

k_loop!(
    k_loop_7,
    7,
    [r0 = 0, r3 = 3, r6 = 6],
    [
        l0 h0 0 "{r0}" "s0",
        l1 h1 1 "{r0} + {lda}" "s1",
        l2 h2 2 "{r0} + {lda}*2" "s0",
        l3 h3 3 "{r3}" "s1",
        l4 h4 4 "{r3} + {lda}" "s0",
        l5 h5 5 "{r3} + {lda}*2" "s1",
        l6 h6 6 "{r6}" "s0"
    ]
);
