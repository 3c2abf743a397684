//! The int8 operands: codes, packing, and every path's exact sums at the extremes.

use super::*;

#[test]
fn codes_round_half_to_even_and_stay_in_range() {
    let mut q = [0i8; 7];
    let s = quantize(&[127.0, -127.0, 2.5, 3.5, -2.5, 0.0, 0.4], 127.0, &mut q);
    assert_eq!(s, 1.0);
    assert_eq!(q, [127, -127, 2, 4, -2, 0, 0]);
    let mut z = [5i8; 3];
    assert_eq!(quantize(&[0.0; 3], 63.0, &mut z), 0.0);
    assert_eq!(z, [0; 3]);
}

#[test]
fn activations_pack_into_unsigned_quads_with_a_zero_pad() {
    let src = [2.0f32, -2.0, 1.0, 0.0, 0.5];
    let mut dst = [f32::NAN; 2];
    let full = ActivationCodes::for_weights(false);
    let got = pack_activations(&src, &mut dst, Lanes::Sixteen, full);
    assert_eq!(got, (2.0 / 127.0, 128));
    assert_eq!(unslot(dst[0]), [255, 1, 192, 128]);
    assert_eq!(unslot(dst[1]), [160, 0, 0, 0]);
    // 7-bit codes for narrow weights, 1 to 127 over the row's range with 0 in it: here
    // symmetric, so around 64 (1 · 31.499998, the f32 inverse of the scale, rounds to 31).
    let narrow = ActivationCodes::for_weights(true);
    let got = pack_activations(&src, &mut dst, Lanes::Sixteen, narrow);
    assert_eq!(got, (4.0 / 126.0, 64));
    assert_eq!(unslot(dst[0]), [127, 1, 95, 64]);
    assert_eq!(unslot(dst[1]), [80, 0, 0, 0]);
    // A one-sided row keeps every code: zero at 1 (or at 127 for a negative row).
    let mut one = [f32::NAN; 1];
    let got = pack_activations(&[0.0, 1.0, 2.0, 3.0], &mut one, Lanes::Sixteen, narrow);
    assert_eq!((got, unslot(one[0])), ((3.0 / 126.0, 1), [1, 43, 85, 127]));
    let got = pack_activations(&[-1.0, -0.5, 0.0], &mut one, Lanes::Sixteen, narrow);
    assert_eq!((got, unslot(one[0])), ((1.0 / 126.0, 127), [1, 64, 127, 0]));
}

#[test]
fn every_path_packs_the_same_codes() {
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let rows = [1usize, 15, 16, 17, 40, 100].into_iter().flat_map(|k| {
        let src: Vec<f32> = (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
            .collect();
        // One-sided too, as QuickGELU's output is (a zero point of its own in 7 bits).
        let one_sided = src.iter().map(|v| v.abs() - 0.1).collect::<Vec<_>>();
        // The row as it is, then with a NaN (after its largest value, in the same lane),
        // then with each other special value, at the start of a later vector.
        let with = move |at: usize, v: f32| {
            let mut row = src.clone();
            if at < row.len() {
                row[at] = v;
            }
            row
        };
        [with(k, 0.0), with(16, f32::NAN), one_sided]
            .into_iter()
            .chain(special.map(|v| with(8, v)))
    });
    // Whole rows of one kind, long enough for the vector loops: zeros, negative zeros, NaN,
    // negative values, and a finite span that overflows f32.
    let uniform = [0.0, -0.0, f32::NAN, -0.7].map(|v| vec![v; 19]);
    let wide = (0..19)
        .map(|i| if i % 2 == 0 { 2e38 } else { -2e38 })
        .collect();
    for src in rows.chain(uniform).chain([wide]) {
        let k = src.len();
        for codes in [false, true].map(ActivationCodes::for_weights) {
            let mut slow = vec![f32::NAN; k.div_ceil(4)];
            let (min, max) = min_max(&src, 0.0, 0.0);
            let row = codes.row(min, max);
            pack_coded(&src, &mut slow, row);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // AVX-512 and AVX2 where the CPU has them, and the loops, as a class asks.
            for lanes in [Lanes::Sixteen, Lanes::Eight, Lanes::Scalar] {
                let mut fast = vec![f32::NAN; k.div_ceil(4)];
                let got = pack_activations(&src, &mut fast, lanes, codes);
                let what = format!("{src:?} {lanes:?} {codes:?}");
                let want = (row.scale.to_bits(), row.zero_point);
                assert_eq!((got.0.to_bits(), got.1), want, "{what}");
                assert_eq!(bits(&fast), bits(&slow), "{what}");
            }
            // The codes stay in range (7 bits for narrow weights), and finite values come
            // back within half a step (where the span fits in f32).
            let top = if codes == ActivationCodes::Narrow {
                127
            } else {
                255
            };
            let bytes = slow.iter().flat_map(|&q| unslot(q)).take(k);
            for (u, &x) in bytes.zip(&src) {
                assert!((1..=top).contains(&u), "{src:?} {codes:?}: code {u}");
                let back = (u as i32 - row.zero_point) as f32 * row.scale;
                if x.is_finite() && (max - min).is_finite() {
                    let err = (back - x).abs();
                    assert!(err <= 0.5001 * row.scale, "{x} → {u} → {back} {codes:?}");
                }
            }
        }
    }
}

#[test]
fn the_portable_sums_are_exact_at_the_extremes() {
    let a = slot([255; 4]);
    let b = slot([(-127i8) as u8; 4]);
    let acc = dot_portable(f32::from_bits(0), a, b);
    assert_eq!(acc.to_bits() as i32, -4 * 255 * 127);
    assert_eq!(
        dequant_portable(acc, f32::from_bits((-125i32) as u32), 8, 0.5),
        -64270.0
    );
}
