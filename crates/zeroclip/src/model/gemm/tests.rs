//! The GEMM against an f64 product, on every kernel this CPU can run.

use super::*;
use crate::model::dispatch::Class;

/// `bt` (`[n, k]`, `B` transposed) packed in `format` and `layout`, from memory (int8 codes
/// ±127).
fn pack(bt: &[f32], n: usize, k: usize, format: Format, layout: Layout) -> PackedMatrix {
    pack_coded(bt, n, k, format, layout, false)
}

/// [`pack`] with int8 codes within ±63 if `narrow`, whichever CPU class is selected.
fn pack_coded(
    bt: &[f32],
    n: usize,
    k: usize,
    format: Format,
    layout: Layout,
    narrow: bool,
) -> PackedMatrix {
    let copy = |s: &[f32], d: &mut [f32]| d.copy_from_slice(s);
    PackedMatrix::from_transposed_with(bt, n, k, format, layout, narrow, copy)
}

/// The epilogues every product is checked with.
fn epilogues<'a>(scale: &'a [f32], shift: &'a [f32], res: &'a [f32]) -> [Epilogue<'a>; 4] {
    [
        Epilogue::default(),
        Epilogue {
            shift: Some(shift),
            residual: Some(res),
            ..Default::default()
        },
        Epilogue {
            scale: Some(scale),
            shift: Some(shift),
            relu: true,
            ..Default::default()
        },
        Epilogue {
            shift: Some(shift),
            quick_gelu: true,
            ..Default::default()
        },
    ]
}

fn rand(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// `block` as one task over a whole `m × b.n` product, `A` as the kernels read it (rows
/// `b.steps` apart), into a `C` that starts as NaN, so a value the kernels did not write shows.
///
/// # Safety
///
/// `kernels` must be ones this CPU runs (from a class of `Class::runnable()`), `a` must hold
/// `m` rows and `row_quant` `m` scales and zero points for an int8 `b`.
unsafe fn one_task(
    kernels: Kernels,
    a: &[f32],
    row_quant: int8::RowQuant,
    b: &PackedMatrix,
    m: usize,
    epi: &Epilogue,
) -> Vec<f32> {
    let n = b.n;
    let mut c = vec![f32::NAN; m * n];
    let panels = 0..n.div_ceil(NR);
    // SAFETY: one task over all of `c`; the rest is the caller's contract.
    unsafe {
        block(
            kernels,
            a,
            b.steps,
            row_quant,
            b,
            c.as_mut_ptr(),
            n,
            epi,
            0..m,
            panels,
        )
    };
    c
}

/// f64 reference of `epilogue(A·B)`.
fn naive(a: &[f32], m: usize, k: usize, bt: &[f32], n: usize, epi: &Epilogue) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for kk in 0..k {
                s += a[i * k + kk] as f64 * bt[j * k + kk] as f64;
            }
            let mut v = s as f32;
            if let Some(sc) = epi.scale {
                v *= sc[j];
            }
            if let Some(sh) = epi.shift {
                v += sh[j];
            }
            if let Some(r) = epi.residual {
                v += r[i * n + j];
            }
            if epi.relu {
                v = v.max(0.0);
            }
            if epi.quick_gelu {
                v = crate::model::ops::quick_gelu_value(v);
            }
            out[i * n + j] = v;
        }
    }
    out
}

fn check(kernels: Kernels, format: Format, m: usize, k: usize, n: usize, threads: usize) {
    // int8 weights of both code ranges where these kernels have a kernel for narrow codes.
    let ranges: &[bool] = if kernels.need_narrow_codes() {
        &[true, false]
    } else {
        &[false]
    };
    for &narrow in ranges {
        check_codes(kernels.for_codes(narrow), format, narrow, m, k, n, threads);
    }
}

/// [`check`] for a matrix of int8 codes within ±63 if `narrow`.
fn check_codes(
    kernels: Kernels,
    format: Format,
    narrow: bool,
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) {
    let a = rand(m * k, 1);
    let bt = rand(n * k, 2); // [n, k], B = btᵀ
    let (scale, shift, res) = (rand(n, 3), rand(n, 4), rand(m * n, 5));
    let w_max = if narrow {
        int8::W_MAX_NARROW
    } else {
        int8::W_MAX
    };
    let a_codes = int8::ActivationCodes::for_weights(narrow);
    // The operands as the product sees them: rounded, or quantized per row of `A` and per
    // column of `B` (a row of `bt`).
    let seen = |v: &[f32], rows: usize, activations: bool| -> Vec<f32> {
        match format {
            Format::F32 => v.to_vec(),
            Format::Bf16 => v.iter().map(|&x| bf16::widen(bf16::round(x))).collect(),
            Format::Int8 => v
                .chunks(k)
                .take(rows)
                .flat_map(|row| {
                    if activations {
                        let mut slots = vec![0f32; k.div_ceil(4)];
                        let lanes = int8::Lanes::Sixteen;
                        let (s, z) = int8::pack_activations(row, &mut slots, lanes, a_codes);
                        let codes = slots.iter().flat_map(|&q| int8::unslot(q));
                        let values = codes.map(|u| (u as i32 - z) as f32 * s);
                        values.take(k).collect::<Vec<_>>()
                    } else {
                        let mut codes = vec![0i8; k];
                        let s = int8::quantize(row, w_max, &mut codes);
                        codes.iter().map(|&q| q as f32 * s).collect()
                    }
                })
                .collect(),
        }
    };
    let (a_seen, bt_seen) = (seen(&a, m, true), seen(&bt, n, false));
    let packed = pack_coded(&bt, n, k, format, Layout::Panels, narrow);
    let mut matrices = vec![packed];
    if format == Format::F32 {
        let mut b_rows = vec![0f32; k * n];
        for j in 0..n {
            for kk in 0..k {
                b_rows[kk * n + j] = bt[j * k + kk];
            }
        }
        matrices.push(PackedMatrix::from_rows(&b_rows, k, n));
    }
    // `A` as the kernels read it (padded to whole tile blocks of rows for AMX).
    let padded = m.next_multiple_of(amx::ROWS);
    let slots = match format {
        Format::F32 => Slots {
            data: a.clone(),
            scales: Vec::new(),
            zeros: Vec::new(),
        },
        _ => a_as_slots(&a, k, m, padded, k, format, kernels.lanes(), a_codes, 1),
    };
    let (a_in, row_quant) = (&slots.data, slots.row_quant());
    let lda_in = steps_of(k, format).max(1);
    let epis = epilogues(&scale, &shift, &res);
    for (e, epi) in epis.iter().enumerate() {
        let want = naive(&a_seen, m, k, &bt_seen, n, epi);
        for b in &matrices {
            let mut c = vec![f32::NAN; m * n];
            // Same loops as `matmul`, forcing the kernel under test.
            let tasks = m.div_ceil(MC);
            for t in 0..tasks {
                let rows = t * MC..(t * MC + MC).min(m);
                if kernels.amx && amx::fits(b) {
                    let (ptr, panels) = (c.as_mut_ptr(), 0..n.div_ceil(NR));
                    // SAFETY: one task at a time, each inside `c`; tiles are usable here
                    // (`kernels.amx`), `b` fits them and `A` is padded to whole row blocks.
                    unsafe { amx::block(a_in, lda_in, row_quant, b, ptr, n, epi, rows, panels) };
                    continue;
                }
                // SAFETY: one task at a time, each inside `c`; the kernel was checked above.
                unsafe {
                    block(
                        kernels,
                        a_in,
                        lda_in,
                        row_quant,
                        b,
                        c.as_mut_ptr(),
                        n,
                        epi,
                        rows,
                        0..n.div_ceil(NR),
                    )
                };
            }
            let tol = 1e-5 * (k as f32).sqrt().max(1.0);
            for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol,
                    "{kernels:?} {m}x{k}x{n} epilogue {e} at {i}: {g} vs {w}"
                );
            }
            if kernels == kernels_for(Class::selected(), format).for_codes(b.narrow_codes) {
                let mut c2 = vec![f32::NAN; m * n];
                matmul(&a, k, m, b, &mut c2, n, epi, threads);
                assert_eq!(c, c2, "tasks and kernel width change nothing: {m}x{k}x{n}");
            }
        }
    }
}

#[test]
fn matches_a_naive_product_on_every_edge() {
    // Every kernel this CPU runs, whichever `matmul` picks, in both formats.
    let formats = [Format::F32, Format::Bf16, Format::Int8];
    let all = formats.into_iter().flat_map(|f| {
        // Every class this CPU can stand in for.
        Class::runnable()
            .into_iter()
            .map(move |c| (kernels_for(c, f), f))
    });
    for (kernels, format) in all {
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 17),
            (6, 16, 16),
            (7, 255, 31),
            (13, 257, 48),
            (50, 520, 40),
            (121, 33, 5),
            (250, 64, 70),
            (600, 40, 20),
            (30, 70, 100),
            (19, 530, 520),
            (50, 768, 96),
            (33, 128, 40),
            (64, 256, 17),
            // Rows 4 KiB apart (an f32 `A` copied with padded rows by `matmul`).
            (29, 1024, 56),
            (17, 4096, 40),
        ] {
            check(kernels, format, m, k, n, 2);
        }
    }
}

#[test]
fn the_gemm_crate_path_matches_a_naive_product() {
    // The f32 products of CPUs without our SIMD kernels outside x86 (`fallback.rs`), run here
    // whatever this CPU picks: the layout, not the kernel, routes a product there.
    for (m, k, n) in [
        (1, 1, 1),
        (4, 0, 5),
        (5, 3, 17),
        (7, 255, 31),
        (13, 257, 48),
        (50, 768, 40),
        (121, 33, 5),
        (250, 64, 70),
        (19, 530, 520),
    ] {
        let (a, bt) = (rand(m * k, 1), rand(n * k, 2));
        let (scale, shift, res) = (rand(n, 3), rand(n, 4), rand(m * n, 5));
        let b = pack(&bt, n, k, Format::F32, Layout::Transposed);
        for (e, epi) in epilogues(&scale, &shift, &res).iter().enumerate() {
            let want = naive(&a, m, k, &bt, n, epi);
            for threads in [1, 2] {
                let mut c = vec![f32::NAN; m * n];
                matmul(&a, k, m, &b, &mut c, n, epi, threads);
                let tol = 1e-5 * (k as f32).sqrt().max(1.0);
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= tol,
                        "gemm crate {m}x{k}x{n} epilogue {e} threads {threads} at {i}: {g} vs {w}"
                    );
                }
            }
        }
    }
    // Row strides wider than the rows: the padding is left alone.
    check_row_strides(Layout::Transposed, true);
}

/// A 9×20 · 20×18 product with row strides wider than the rows (`lda` 27, `ldc` 25), `B` in
/// `layout`, with a residual and ReLU if `residual_relu`: every product equals the f32 dot
/// product and the padding columns of `C` are left alone.
fn check_row_strides(layout: Layout, residual_relu: bool) {
    let (m, k, n, lda, ldc) = (9, 20, 18, 27, 25);
    let (a, bt, res) = (rand(m * lda, 7), rand(n * k, 8), rand(m * ldc, 9));
    let b = pack(&bt, n, k, Format::F32, layout);
    let epi = Epilogue {
        residual: residual_relu.then_some(&res[..]),
        relu: residual_relu,
        ..Default::default()
    };
    let mut c = vec![-7f32; m * ldc];
    matmul(&a, lda, m, &b, &mut c, ldc, &epi, 2);
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                assert_eq!(got, -7.0, "padding column {j} of row {i} untouched");
                continue;
            }
            let dot: f32 = (0..k).map(|kk| a[i * lda + kk] * bt[j * k + kk]).sum();
            let want = if residual_relu {
                (dot + res[i * ldc + j]).max(0.0)
            } else {
                dot
            };
            assert!((got - want).abs() < 1e-4, "{i},{j}: {got} vs {want}");
        }
    }
}

#[test]
fn int8_extreme_codes_do_not_saturate_on_any_kernel() {
    // Every activation at its largest code (u = 255 or 1; 127 or 1 for narrow weights) against
    // every weight at its largest, ±127 and ±63 on every class, so every byte pair of
    // `vpmaddubsw` (and every i16 sum of two steps' pairs) sits at the edge of its i16 range:
    // the sums must still be exact.
    // 25 steps: the paired kernels' odd last step too.
    let (m, k, n) = (7, 100, 40);
    let a: Vec<f32> = (0..m * k)
        .map(|i| if (i / k) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let bt: Vec<f32> = (0..n * k)
        .map(|i| if (i / k) % 3 == 0 { -2.0 } else { 2.0 })
        .collect();
    for class in Class::runnable() {
        let class_kernels = kernels_for(class, Format::Int8);
        for narrow in [false, true] {
            let kernels = class_kernels.for_codes(narrow);
            let b = pack_coded(&bt, n, k, Format::Int8, Layout::Panels, narrow);
            let lanes = kernels.lanes();
            let codes = int8::ActivationCodes::for_weights(narrow);
            let slots = a_as_slots(&a, k, m, m, k, Format::Int8, lanes, codes, 1);
            let (a_in, row_quant) = (&slots.data, slots.row_quant());
            // SAFETY: the kernels are ones this CPU runs, for `b`'s codes; `a_in` and
            // `row_quant` have `m` rows.
            let c = unsafe { one_task(kernels, a_in, row_quant, &b, m, &Epilogue::default()) };
            for i in 0..m {
                for j in 0..n {
                    let want = a[i * k] * bt[j * k] * k as f32;
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-3,
                        "{kernels:?} narrow {narrow} ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn respects_row_strides() {
    check_row_strides(Layout::for_format(Format::F32), false);
}

#[test]
fn int8_tiles_equal_the_vnni_kernel_bit_for_bit() {
    // Both sum the same integer products exactly and finish them in the same order.
    let (tiles, vnni) = (kernels_for(Class::Native, Format::Int8), Class::Avx512Vnni);
    if !tiles.amx || !Class::Avx512Vnni.runs_here() {
        eprintln!("skipped: this CPU has no AMX-INT8 tiles (or no AVX-512 VNNI)");
        return;
    }
    let vnni = kernels_for(vnni, Format::Int8);
    let (m, k, n) = (77, 512, 80);
    let (a, bt, shift, res) = (
        rand(m * k, 11),
        rand(n * k, 12),
        rand(n, 13),
        rand(m * n, 14),
    );
    let b = pack(&bt, n, k, Format::Int8, Layout::Panels);
    assert!(amx::fits(&b));
    let slots = a_as_slots(
        &a,
        k,
        m,
        m.next_multiple_of(amx::ROWS),
        k,
        Format::Int8,
        int8::Lanes::Sixteen,
        int8::ActivationCodes::for_weights(b.narrow_codes),
        1,
    );
    let (a_in, row_quant) = (&slots.data, slots.row_quant());
    for epi in [
        Epilogue {
            shift: Some(&shift),
            residual: Some(&res),
            ..Default::default()
        },
        Epilogue {
            shift: Some(&shift),
            quick_gelu: true,
            ..Default::default()
        },
    ] {
        // SAFETY: the VNNI kernel runs on this CPU; `a_in` and `row_quant` have `m` rows.
        let want = unsafe { one_task(vnni, a_in, row_quant, &b, m, &epi) };
        let mut got = vec![f32::NAN; m * n];
        let panels = 0..n.div_ceil(NR);
        // SAFETY: one task over all of the output; tiles run on this CPU, `A` is padded.
        unsafe {
            amx::block(
                a_in,
                b.steps,
                row_quant,
                &b,
                got.as_mut_ptr(),
                n,
                &epi,
                0..m,
                panels,
            );
        }
        assert_eq!(got, want);
    }
}

#[test]
fn every_int8_and_bf16_kernel_gives_the_same_bits() {
    // int8: exact integer sums (u·w, or a·w already corrected for the zero point) finished in
    // one order, on weights of either code range. bf16: exact products added odd `k` first,
    // whether `vdpbf16ps`, widened FMAs or the portable loop adds them. The class a CPU falls
    // in must not change a result.
    let cases = [
        (Format::Int8, true),
        (Format::Int8, false),
        (Format::Bf16, false),
    ];
    for (format, narrow) in cases {
        // `k` pads the last slot with zeros; row tiles of every height from 12 down.
        for (m, k, n) in [(29, 198, 56), (7, 37, 64), (83, 531, 96)] {
            let (a, bt, shift, res) = (
                rand(m * k, 21),
                rand(n * k, 22),
                rand(n, 23),
                rand(m * n, 24),
            );
            let b = pack_coded(&bt, n, k, format, Layout::Panels, narrow);
            let (lanes, codes) = (
                int8::Lanes::Sixteen,
                int8::ActivationCodes::for_weights(narrow),
            );
            let slots = a_as_slots(&a, k, m, m, k, format, lanes, codes, 1);
            let (a_in, row_quant) = (&slots.data, slots.row_quant());
            let epi = Epilogue {
                shift: Some(&shift),
                residual: Some(&res),
                ..Default::default()
            };
            let mut first: Option<(Class, Vec<f32>)> = None;
            for class in Class::runnable() {
                let kernels = kernels_for(class, format).for_codes(narrow);
                // SAFETY: the kernels are ones this CPU runs; `a_in` and `row_quant` have
                // `m` rows.
                let c = unsafe { one_task(kernels, a_in, row_quant, &b, m, &epi) };
                match &first {
                    None => first = Some((class, c)),
                    Some((c0, want)) => assert_eq!(
                        &c, want,
                        "{format:?} {m}x{k}x{n}: {class:?} ({kernels:?}) against {c0:?}"
                    ),
                }
            }
        }
    }
}

#[test]
fn every_f32_simd_kernel_gives_the_same_bits() {
    // The same fused multiply-adds in the same order whatever the class, the tile height (the
    // AVX-512 kernel's hand-scheduled loops for 7 to 12 rows, its Rust loop below that) or
    // whether the AVX2 kernel packed `A`: only the portable kernel rounds differently.
    for (m, k, n) in [
        (7, 37, 64),
        (16, 260, 48),
        (29, 198, 56),
        (83, 531, 530),
        (29, 1024, 56),
    ] {
        let (a, bt, scale, res) = (
            rand(m * k, 31),
            rand(n * k, 32),
            rand(n, 33),
            rand(m * n, 34),
        );
        let b = pack(&bt, n, k, Format::F32, Layout::Panels);
        let epi = Epilogue {
            scale: Some(&scale),
            residual: Some(&res),
            relu: true,
            ..Default::default()
        };
        let mut first: Option<(Class, Vec<f32>)> = None;
        for class in Class::runnable() {
            let kernels = kernels_for(class, Format::F32);
            if kernels.narrow == Kernel::Portable {
                continue;
            }
            // SAFETY: the kernels are ones this CPU runs; `a` has `m` rows of `k` (f32: the
            // packed steps).
            let c = unsafe { one_task(kernels, &a, Default::default(), &b, m, &epi) };
            match &first {
                None => first = Some((class, c)),
                Some((c0, want)) => {
                    let same = c.iter().zip(want).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{m}x{k}x{n}: {class:?} ({kernels:?}) against {c0:?}");
                }
            }
        }
    }
}

#[test]
fn rows_4_kib_apart_give_the_same_bits_as_dense_rows() {
    // `A` with rows 1024 floats apart is copied with padded rows first; the result must be the
    // product of the same values.
    let (m, k, n, lda) = (37, 300, 70, 1024);
    let (a, bt) = (rand(m * lda, 41), rand(n * k, 42));
    let b = pack(&bt, n, k, Format::F32, Layout::Panels);
    let dense: Vec<f32> = a.chunks(lda).flat_map(|row| row[..k].to_vec()).collect();
    let epi = Epilogue::default();
    let (mut c1, mut c2) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
    matmul(&a, lda, m, &b, &mut c1, n, &epi, 2);
    matmul(&dense, k, m, &b, &mut c2, n, &epi, 2);
    let bits = |c: &[f32]| c.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&c1), bits(&c2));
}
