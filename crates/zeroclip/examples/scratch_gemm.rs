use std::time::Instant;
use zeroclip::model::gemm::{matmul, Epilogue, PackedMatrix};
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let (m, k, n, reps) = (args[0], args[1], args[2], args[3]);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.01).collect();
    let p = PackedMatrix::from_transposed(&w, n, k);
    let mut wt = vec![0f32; k * n];
    for j in 0..n {
        for kk in 0..k {
            wt[kk * n + j] = w[j * k + kk];
        }
    }
    let mut c = vec![0f32; m * n];
    let fl = 2.0 * (m * k * n * reps) as f64;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..reps {
            matmul(&a, k, m, &p, &mut c, n, &Epilogue::default(), 2);
        }
        let ours = fl / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in 0..reps {
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    wt.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(2),
                );
            }
        }
        let theirs = fl / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in 0..reps {
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(2),
                );
            }
        }
        let stored = fl / t.elapsed().as_secs_f64() / 1e9;
        println!("{m}x{k}x{n} round {round}: ours {ours:.1}  gemm[K,N] {theirs:.1}  gemm[N,K]ᵀ {stored:.1}");
    }
}
