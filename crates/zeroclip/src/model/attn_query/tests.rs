use super::*;

#[test]
fn every_class_of_query_loops_agrees() {
    // 50 keys (a part block), d = 72 (a whole block of 64 and an 8-value tail).
    let (len, d) = (50usize, 72);
    let stride = len.next_multiple_of(GROUP * LANES);
    let val = |i: usize| ((i * 7919 % 997) as f32 / 498.5 - 1.0) * 0.7;
    let mut kt = vec![0f32; d * stride];
    for dd in 0..d {
        for j in 0..len {
            kt[dd * stride + j] = val(dd * 131 + j * 17);
        }
    }
    let v: Vec<f32> = (0..len * d).map(|i| val(i + 5)).collect();
    let q: Vec<f32> = (0..d).map(|i| val(i * 3 + 1)).collect();
    let head = Head {
        kt: &kt,
        stride,
        v: &v,
        d,
    };
    let run = |f: &dyn Fn(&mut [f32], &mut [f32])| {
        let (mut p, mut o) = (vec![0f32; stride], vec![0f32; d]);
        f(&mut p, &mut o);
        o
    };
    for keys in [len, 17] {
        // SAFETY: the portable loops need no CPU feature.
        let portable =
            run(&|p, o| unsafe { query::<Portable>(&head, &q, 0.125, keys, p, o, false) });
        // Outside x86 there is no SIMD class to compare.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut simd: Vec<Vec<f32>> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                simd.push(run(&|p, o| unsafe {
                    query_avx2(&head, &q, 0.125, keys, p, o)
                }));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX-512 F and FMA.
                simd.push(run(&|p, o| unsafe {
                    query_avx512(&head, &q, 0.125, keys, p, o)
                }));
            }
        }
        for o in &simd {
            let bits = |o: &[f32]| o.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(o), bits(&simd[0]), "{keys} keys: SIMD classes differ");
            for (a, b) in o.iter().zip(&portable) {
                assert!((a - b).abs() < 1e-5, "{keys} keys: {a} vs portable {b}");
            }
        }
        // The output is a convex mix of value rows: bounded by them.
        assert!(portable.iter().all(|x| x.abs() <= 0.7), "{portable:?}");
    }
}

#[test]
fn four_queries_side_by_side_give_four_calls_bits() {
    // 50 keys, d = 72 (a whole block of 64 and a tail), on every class this CPU runs.
    let (len, d) = (50usize, 72);
    let stride = len.next_multiple_of(GROUP * LANES);
    let val = |i: usize| ((i * 7919 % 997) as f32 / 498.5 - 1.0) * 0.9;
    let kt: Vec<f32> = (0..d * stride)
        .map(|i| if i % stride < len { val(i * 3) } else { 0.0 })
        .collect();
    let v: Vec<f32> = (0..len * d).map(|i| val(i + 11)).collect();
    let qs: Vec<Vec<f32>> = (0..4)
        .map(|n| (0..d).map(|i| val(i * 5 + n * 101)).collect())
        .collect();
    let head = Head {
        kt: &kt,
        stride,
        v: &v,
        d,
    };
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut kernels = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx2Fma);
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            kernels.push(Kernel::Avx512);
        }
    }
    let bits = |o: &[f32]| o.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for kernel in kernels {
        let mut p = vec![0f32; 4 * stride];
        let mut one = vec![vec![0f32; d]; 4];
        for (q, o) in qs.iter().zip(one.iter_mut()) {
            query_for(kernel, &head, q, 0.125, len, &mut p, o);
        }
        let mut four = vec![vec![0f32; d]; 4];
        let [a, b, c, e] = &mut four[..] else {
            unreachable!()
        };
        let q = [0, 1, 2, 3].map(|n| &qs[n][..]);
        query4_for(kernel, &head, q, 0.125, len, &mut p, [a, b, c, e]);
        for (x, y) in four.iter().zip(&one) {
            assert_eq!(bits(x), bits(y), "{kernel:?}");
            assert!(x.iter().any(|v| *v != 0.0), "{kernel:?}");
        }
    }
}
