//! One attention query of one head, `softmax(q·kᵀ·scale) · v`, the inner loop of
//! [`super::fused`]'s attention: the scores over keys held transposed, the softmax, the values
//! mixed, each in blocks of 16 lanes held in registers. The SIMD classes run the multiply-adds
//! fused in `__m512` or `__m256` registers (the same operations per lane at either width, so
//! the same bits); the portable class rounds each product. Queries that meet the same keys (no
//! causal mask) go four side by side ([`query4_for`]): in AVX-512 one query's sums are four long
//! chains of multiply-adds, each waiting on the last, and four queries' sixteen chains overlap;
//! in AVX2 (eight chains either way) each load of keys or values serves four queries instead of
//! one. Each lane still adds in the same order, so the bits equal four single calls. The reference computes the same
//! sums with PyTorch's batched matmuls; only the order and rounding of additions differ.

use super::microkernel::Kernel;

/// Keys per block of scores, and values per block of the output: one vector register.
pub(super) const LANES: usize = 16;
/// Blocks computed side by side: independent sums, so the additions overlap instead of each
/// waiting on the last.
pub(super) const GROUP: usize = 4;

/// One (sequence, head)'s keys, transposed (`kt` `[d][stride]`, `stride` the keys rounded up
/// to whole groups of blocks, zero-padded), and values (`v` `[len][d]`).
pub(super) struct Head<'a> {
    pub(super) kt: &'a [f32],
    pub(super) stride: usize,
    pub(super) v: &'a [f32],
    pub(super) d: usize,
}

/// The two multiply-add loops of a query, in blocks of [`GROUP`] × [`LANES`] lanes.
///
/// # Safety
/// Callers uphold each method's bounds ([`query`] and [`query4`] assert them); an
/// implementation may need CPU features (see [`query_for`]).
trait Loops {
    /// `p[j] = Σ_dd q[dd] · kt[dd·stride + j]` for `j < span` (a multiple of `GROUP·LANES`), `dd`
    /// in order. `kt` holds `q.len()` rows of `stride ≥ span` floats; `p` at least `span`.
    unsafe fn scores(kt: &[f32], stride: usize, q: &[f32], span: usize, p: &mut [f32]);
    /// `o[c] += Σ_j p[j] · v[j·d + c]` over `j` in order, for whole blocks of `c` from 0; returns
    /// where they stop (the rest is left to the caller). `v` holds `p.len()` rows of `d`.
    unsafe fn mix(p: &[f32], v: &[f32], d: usize, o: &mut [f32]) -> usize;
    /// [`Loops::scores`] for four queries over the same keys: each score the same operations.
    unsafe fn scores4(kt: &[f32], stride: usize, q: [&[f32]; 4], span: usize, p: [&mut [f32]; 4]) {
        for (q, p) in q.into_iter().zip(p) {
            // SAFETY: the caller's contract, query by query.
            unsafe { Self::scores(kt, stride, q, span, p) };
        }
    }
    /// [`Loops::mix`] for four queries over the same keys (`p`s of one length): each output the
    /// same operations; returns where the blocks stop, as `mix` does.
    unsafe fn mix4(p: [&[f32]; 4], v: &[f32], d: usize, o: [&mut [f32]; 4]) -> usize {
        let mut c0 = 0;
        for (p, o) in p.into_iter().zip(o) {
            // SAFETY: the caller's contract, query by query.
            c0 = unsafe { Self::mix(p, v, d, o) };
        }
        c0
    }
}

/// The Rust loops: each product rounded, then added (CPUs of the portable class may lack FMA).
struct Portable;

impl Loops for Portable {
    unsafe fn scores(kt: &[f32], stride: usize, q: &[f32], span: usize, p: &mut [f32]) {
        for (g, scores) in p[..span].chunks_exact_mut(GROUP * LANES).enumerate() {
            let mut acc = [[0f32; LANES]; GROUP];
            for (dd, &qv) in q.iter().enumerate() {
                let k = &kt[dd * stride + g * GROUP * LANES..][..GROUP * LANES];
                for (block, k) in acc.iter_mut().zip(k.chunks_exact(LANES)) {
                    for (a, &kv) in block.iter_mut().zip(k) {
                        *a += qv * kv;
                    }
                }
            }
            for (dst, block) in scores.chunks_exact_mut(LANES).zip(&acc) {
                dst.copy_from_slice(block);
            }
        }
    }

    unsafe fn mix(p: &[f32], v: &[f32], d: usize, o: &mut [f32]) -> usize {
        let mut c0 = 0;
        while c0 + GROUP * LANES <= d {
            let mut acc = [[0f32; LANES]; GROUP];
            for (block, out) in acc.iter_mut().zip(o[c0..].chunks_exact(LANES)) {
                block.copy_from_slice(out);
            }
            for (&a, v) in p.iter().zip(v.chunks_exact(d)) {
                let v = &v[c0..c0 + GROUP * LANES];
                for (block, v) in acc.iter_mut().zip(v.chunks_exact(LANES)) {
                    for (x, &vv) in block.iter_mut().zip(v) {
                        *x += a * vv;
                    }
                }
            }
            for (block, out) in acc.iter().zip(o[c0..].chunks_exact_mut(LANES)) {
                out.copy_from_slice(block);
            }
            c0 += GROUP * LANES;
        }
        c0
    }
}

/// Defines `$name`, [`Loops`] in `$vec` registers of `$w` lanes with fused multiply-adds (the
/// compiler leaves the Rust loops' products unfused, and scalarizes `f32::mul_add` there): each
/// lane the same operations in the same order at any width, so the classes agree bit for bit.
macro_rules! simd_loops {
    ($name:ident, $feature:literal, $vec:ident, $w:literal, $kv:literal, $zero:ident,
     $load:ident, $store:ident, $splat:ident, $fma:ident) => {
        #[cfg(target_arch = "x86_64")]
        struct $name;

        #[cfg(target_arch = "x86_64")]
        impl $name {
            /// `acc[i] += Σ_t s[i][t] · row t` for `t` in `0..rows`, in order, one fused
            /// multiply-add per lane and row: row `t` is the `KV` vectors at `base + t·ld`. The
            /// one loop of both products (`t` runs over `d` for the scores, over the keys for
            /// the mix), each load serving all `Q` queries.
            ///
            /// # Safety
            /// Each `s[i]` has at least `rows` values; the `KV·$w` floats at `base + t·ld` are
            /// readable for every `t < rows`; the CPU must have `$feature`.
            #[target_feature(enable = $feature)]
            #[inline]
            unsafe fn add_rows<const Q: usize, const KV: usize>(
                acc: &mut [[std::arch::x86_64::$vec; KV]; Q],
                s: [&[f32]; Q],
                rows: usize,
                base: *const f32,
                ld: usize,
            ) {
                use std::arch::x86_64::*;
                for t in 0..rows {
                    let x: [$vec; KV] = std::array::from_fn(|j| {
                        // SAFETY: row `t < rows` is readable (the function's contract).
                        unsafe { $load(base.add(t * ld + j * $w)) }
                    });
                    for (a, s) in acc.iter_mut().zip(s) {
                        let s = $splat(s[t]);
                        for (a, x) in a.iter_mut().zip(x) {
                            *a = $fma(s, x, *a);
                        }
                    }
                }
            }

            /// [`Loops::scores`] for `Q` queries over the same keys, side by side on `KV`
            /// vectors of keys each: `Q·KV` independent sums (each load of `kt` serving `Q`
            /// queries); each lane adds in the same order whatever `Q` and `KV`.
            ///
            /// # Safety
            /// As for [`Loops::scores`], for each query; `KV·$w` divides `GROUP·LANES`; the CPU
            /// must have `$feature`.
            #[target_feature(enable = $feature)]
            unsafe fn scores_n<const Q: usize, const KV: usize>(
                kt: &[f32],
                stride: usize,
                q: [&[f32]; Q],
                span: usize,
                mut p: [&mut [f32]; Q],
            ) {
                use std::arch::x86_64::*;
                let d = q[0].len();
                for g in (0..span).step_by(KV * $w) {
                    let mut acc: [[$vec; KV]; Q] = [[$zero(); KV]; Q];
                    // SAFETY: each of the `d` rows of `kt` has `stride ≥ span` floats, and the
                    // keys `g..g + KV·$w` lie below `span` (the caller's contract).
                    unsafe { Self::add_rows(&mut acc, q, d, kt.as_ptr().add(g), stride) };
                    for (a, p) in acc.iter().zip(p.iter_mut()) {
                        assert!(p.len() >= g + KV * $w);
                        for (j, a) in a.iter().enumerate() {
                            // SAFETY: `p` has at least `g + KV·$w` floats (asserted above).
                            unsafe { $store(p.as_mut_ptr().add(g + j * $w), *a) };
                        }
                    }
                }
            }

            /// [`Loops::mix`] for `Q` queries over the same keys (`p`s of one length), side by
            /// side on `KV` vectors of output lanes each (each load of `v` serving `Q` queries).
            ///
            /// # Safety
            /// As for [`Loops::mix`], for each query; `KV·$w` divides `GROUP·LANES`; the CPU must
            /// have `$feature`.
            #[target_feature(enable = $feature)]
            unsafe fn mix_n<const Q: usize, const KV: usize>(
                p: [&[f32]; Q],
                v: &[f32],
                d: usize,
                mut o: [&mut [f32]; Q],
            ) -> usize {
                use std::arch::x86_64::*;
                let keys = p[0].len();
                let mut c0 = 0;
                while c0 + GROUP * LANES <= d {
                    for c in (c0..c0 + GROUP * LANES).step_by(KV * $w) {
                        let mut acc: [[$vec; KV]; Q] = std::array::from_fn(|i| {
                            std::array::from_fn(|j| {
                                // SAFETY: `c + KV·$w ≤ d ≤ o.len()` for each query.
                                unsafe { $load(o[i].as_ptr().add(c + j * $w)) }
                            })
                        });
                        // SAFETY: each of the `keys` rows of `v` has `d ≥ c + KV·$w` floats (the
                        // caller's contract).
                        unsafe { Self::add_rows(&mut acc, p, keys, v.as_ptr().add(c), d) };
                        for (a, o) in acc.iter().zip(o.iter_mut()) {
                            for (j, a) in a.iter().enumerate() {
                                // SAFETY: as for the loads of `o`.
                                unsafe { $store(o.as_mut_ptr().add(c + j * $w), *a) };
                            }
                        }
                    }
                    c0 += GROUP * LANES;
                }
                c0
            }
        }

        // One query takes a whole block of keys or output lanes at once (`GROUP·LANES / $w`
        // vectors); four take `$kv` vectors each (see the module's header).
        #[cfg(target_arch = "x86_64")]
        impl Loops for $name {
            #[target_feature(enable = $feature)]
            unsafe fn scores(kt: &[f32], stride: usize, q: &[f32], span: usize, p: &mut [f32]) {
                // SAFETY: the caller's contract.
                unsafe { Self::scores_n::<1, { GROUP * LANES / $w }>(kt, stride, [q], span, [p]) }
            }

            #[target_feature(enable = $feature)]
            unsafe fn mix(p: &[f32], v: &[f32], d: usize, o: &mut [f32]) -> usize {
                // SAFETY: the caller's contract.
                unsafe { Self::mix_n::<1, { GROUP * LANES / $w }>([p], v, d, [o]) }
            }

            #[target_feature(enable = $feature)]
            unsafe fn scores4(
                kt: &[f32],
                stride: usize,
                q: [&[f32]; 4],
                span: usize,
                p: [&mut [f32]; 4],
            ) {
                // SAFETY: the caller's contract.
                unsafe { Self::scores_n::<4, $kv>(kt, stride, q, span, p) }
            }

            #[target_feature(enable = $feature)]
            unsafe fn mix4(p: [&[f32]; 4], v: &[f32], d: usize, o: [&mut [f32]; 4]) -> usize {
                // SAFETY: the caller's contract.
                unsafe { Self::mix_n::<4, $kv>(p, v, d, o) }
            }
        }
    };
}
simd_loops!(
    Avx512Loops,
    "avx512f,fma",
    __m512,
    16,
    4,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
simd_loops!(
    Avx2Loops,
    "avx2,fma",
    __m256,
    8,
    2,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);

/// One query of a head: `o = softmax(q·kᵀ·scale) · v` over the first `keys` keys, `p` scratch
/// of `stride` floats, the multiply-adds by `L`. Each score sums over `d` in order and each
/// output over the keys in order, blocks of lanes held in registers meanwhile; `wide` lets the
/// exponentials take 16 lanes (`ops::exp_slice`).
///
/// # Safety
/// The CPU must have what `L` needs.
#[inline(always)]
unsafe fn query<L: Loops>(
    head: &Head,
    q: &[f32],
    scale: f32,
    keys: usize,
    p: &mut [f32],
    o: &mut [f32],
    wide: bool,
) {
    let span = check(head, q, keys, p, o);
    // SAFETY: `kt` has `q.len()` rows of `stride ≥ span` floats, `p` at least `span` floats
    // (checked above); the CPU has `L`'s features.
    unsafe { L::scores(head.kt, head.stride, q, span, p) };
    let p = &mut p[..keys];
    softmax(p, scale, wide);
    // SAFETY: `v` holds at least `keys` rows of `d`, `o` at least `d` floats (checked above);
    // the CPU has `L`'s features.
    let c0 = unsafe { L::mix(p, head.v, head.d, o) };
    mix_rest(p, head, c0, o);
}

/// [`query`] for four queries over the same `keys` keys, side by side (the same bits as four
/// calls), `p` scratch of `4 · stride` floats.
///
/// # Safety
/// The CPU must have what `L` needs.
#[inline(always)]
unsafe fn query4<L: Loops>(
    head: &Head,
    q: [&[f32]; 4],
    scale: f32,
    keys: usize,
    p: &mut [f32],
    o: [&mut [f32]; 4],
    wide: bool,
) {
    let stride = head.stride;
    assert!(
        p.len() >= 4 * stride,
        "attention queries: scratch of {}",
        p.len()
    );
    let mut ps: [&mut [f32]; 4] = {
        let (a, rest) = p.split_at_mut(stride);
        let (b, rest) = rest.split_at_mut(stride);
        let (c, d) = rest.split_at_mut(stride);
        [a, b, c, &mut d[..stride]]
    };
    let mut o = o;
    let mut span = 0;
    for ((q, p), o) in q.iter().zip(ps.iter_mut()).zip(o.iter_mut()) {
        span = check(head, q, keys, p, o);
    }
    // SAFETY: as in `query`, for each of the four (checked above).
    unsafe { L::scores4(head.kt, stride, q, span, ps.each_mut().map(|p| &mut **p)) };
    for p in ps.iter_mut() {
        softmax(&mut p[..keys], scale, wide);
    }
    let p = ps.each_ref().map(|p| &p[..keys]);
    // SAFETY: as in `query`, for each of the four (checked above).
    let c0 = unsafe { L::mix4(p, head.v, head.d, o.each_mut().map(|o| &mut **o)) };
    for (p, o) in p.into_iter().zip(o) {
        mix_rest(p, head, c0, o);
    }
}

/// The bounds the SIMD loops of one query rely on (they read through raw pointers), checked
/// once per query; returns the keys rounded up to whole blocks.
#[inline(always)]
fn check(head: &Head, q: &[f32], keys: usize, p: &[f32], o: &[f32]) -> usize {
    let span = keys.next_multiple_of(GROUP * LANES);
    let d = head.d;
    assert!(
        q.len() == d
            && span <= head.stride
            && head.kt.len() >= d * head.stride
            && head.v.len() >= keys * d
            && p.len() >= span
            && o.len() >= d,
        "attention query: {keys} keys over a head of {d} × {} (p {}, o {})",
        head.stride,
        p.len(),
        o.len()
    );
    span
}

/// `p ← softmax(p · scale)` in place.
#[inline(always)]
fn softmax(p: &mut [f32], scale: f32, wide: bool) {
    // Lane-wise maxima and sums, folded in a fixed order: vectors of any width agree.
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in p.chunks_mut(LANES) {
        for (m, pj) in lanes.iter_mut().zip(chunk) {
            *pj *= scale;
            if *pj > *m {
                *m = *pj;
            }
        }
    }
    let max = lanes
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for pj in p.iter_mut() {
        *pj -= max;
    }
    super::ops::exp_slice(p, wide);
    let mut lanes = [0f32; LANES];
    for chunk in p.chunks(LANES) {
        for (s, &pj) in lanes.iter_mut().zip(chunk) {
            *s += pj;
        }
    }
    let sum: f32 = lanes.iter().sum();
    let inv = 1.0 / sum;
    for pj in p.iter_mut() {
        *pj *= inv;
    }
}

/// The output lanes from `c0` on, past the loops' whole blocks.
#[inline(always)]
fn mix_rest(p: &[f32], head: &Head, c0: usize, o: &mut [f32]) {
    let d = head.d;
    for (&a, v) in p.iter().zip(head.v.chunks_exact(d)) {
        for (x, &vv) in o[c0..].iter_mut().zip(&v[c0..]) {
            *x += a * vv;
        }
    }
}

/// [`query`] compiled for the widest vectors the selected CPU class's f32 kernel uses
/// (`dispatch.rs`), so a class held narrower is measured as it is.
pub(super) fn query_for(
    kernel: Kernel,
    head: &Head,
    q: &[f32],
    scale: f32,
    keys: usize,
    p: &mut [f32],
    o: &mut [f32],
) {
    match kernel {
        // SAFETY: the selected class's kernel runs on this CPU, so it has these features.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { query_avx512(head, q, scale, keys, p, o) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => unsafe { query_avx2(head, q, scale, keys, p, o) },
        // SAFETY: the portable loops need no CPU feature.
        _ => unsafe { query::<Portable>(head, q, scale, keys, p, o, false) },
    }
}

/// [`query_for`] for four queries over the same `keys` keys (the same bits as four calls), `p`
/// scratch of `4 · stride` floats.
pub(super) fn query4_for(
    kernel: Kernel,
    head: &Head,
    q: [&[f32]; 4],
    scale: f32,
    keys: usize,
    p: &mut [f32],
    o: [&mut [f32]; 4],
) {
    match kernel {
        // SAFETY: the selected class's kernel runs on this CPU, so it has these features.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { query4_avx512(head, q, scale, keys, p, o) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => unsafe { query4_avx2(head, q, scale, keys, p, o) },
        // SAFETY: the portable loops need no CPU feature.
        _ => unsafe { query4::<Portable>(head, q, scale, keys, p, o, false) },
    }
}

/// Defines `$one` and `$four`: [`query`] and [`query4`] on `$loops`, compiled with the target
/// features `$feature` (they are inlined there, so their other loops take that width; a closure
/// would not be), `$wide` if they are AVX-512.
macro_rules! query_compiled_for {
    ($one:ident, $four:ident, $loops:ident, $feature:literal, $what:literal, $wide:literal) => {
        #[doc = concat!("[`query`] compiled for ", $what, ".")]
        ///
        /// # Safety
        ///
        #[doc = concat!("The CPU must have ", $what, ".")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $one(
            head: &Head,
            q: &[f32],
            scale: f32,
            keys: usize,
            p: &mut [f32],
            o: &mut [f32],
        ) {
            // SAFETY: the CPU has `$feature` (the function's contract).
            unsafe { query::<$loops>(head, q, scale, keys, p, o, $wide) }
        }

        #[doc = concat!("[`query4`] compiled for ", $what, ".")]
        ///
        /// # Safety
        ///
        #[doc = concat!("The CPU must have ", $what, ".")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $four(
            head: &Head,
            q: [&[f32]; 4],
            scale: f32,
            keys: usize,
            p: &mut [f32],
            o: [&mut [f32]; 4],
        ) {
            // SAFETY: the CPU has `$feature` (the function's contract).
            unsafe { query4::<$loops>(head, q, scale, keys, p, o, $wide) }
        }
    };
}
query_compiled_for!(
    query_avx512,
    query4_avx512,
    Avx512Loops,
    "avx512f,fma",
    "AVX-512 F and FMA",
    true
);
query_compiled_for!(
    query_avx2,
    query4_avx2,
    Avx2Loops,
    "avx2,fma",
    "AVX2 and FMA",
    false
);

#[cfg(test)]
mod tests;
