use std::time::Instant;
use zeroclip::model::gemm::{matmul, Epilogue, PackedMatrix};
fn main() {
    let shapes = [
        (12544, 64, 64),
        (12544, 576, 64),
        (12544, 64, 256),
        (12544, 256, 64),
        (3136, 1152, 128),
        (3136, 256, 128),
        (784, 2304, 256),
        (784, 1024, 256),
        (784, 256, 1024),
        (196, 4608, 512),
        (196, 512, 2048),
        (196, 2048, 512),
        (50, 768, 2304),
        (800, 768, 2304),
    ];
    let threads: usize = std::env::var("T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let sc = vec![1.0f32; n];
        let fl = 2.0 * (m * k * n) as f64;
        let p = PackedMatrix::from_transposed(&w, n, k);
        let mut c = vec![0f32; m * n];
        let mut best = f64::MAX;
        let epi = Epilogue {
            scale: Some(&sc),
            shift: Some(&sc),
            residual: None,
            relu: true,
        };
        for _ in 0..9 {
            let t = Instant::now();
            matmul(&a, k, m, &p, &mut c, n, &epi, threads);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{m}x{k}x{n}: {:.1} GFLOP/s", fl / best / 1e9);
    }
}
