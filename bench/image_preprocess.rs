//! Benchmark: decode + preprocess (zeroclip-image), one image at a time and as a parallel batch.
//! Run through `bench/image_compare.sh`, which runs the Pillow + torchvision reference beside it:
//!
//! `cargo bench -p zeroclip-image --bench image_preprocess -- [--runs N] [--batch K] FILE...`
//!
//! Prints one line per file: the median wall time of `preprocess_path` (file read, decode,
//! resize, crop, normalize) over N runs, then the throughput of `preprocess_batch` over K copies.

use std::path::PathBuf;
use std::time::Instant;
use zeroclip_image::Preprocess;

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut runs = 15usize;
    let mut batch = 16usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--batch" => batch = args.next().and_then(|v| v.parse().ok()).expect("--batch K"),
            "--bench" => {}
            f => files.push(PathBuf::from(f)),
        }
    }
    let pre = Preprocess::default();
    println!(
        "zeroclip-image, {} rayon threads",
        rayon::current_num_threads()
    );
    for f in &files {
        pre.preprocess_path(f).expect("preprocess"); // warm-up
        let times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(pre.preprocess_path(f).expect("preprocess"));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let paths = vec![f.clone(); batch];
        let t = Instant::now();
        let out = pre.preprocess_batch(&paths);
        let batch_s = t.elapsed().as_secs_f64();
        assert!(out.iter().all(|r| r.is_ok()));
        println!(
            "{}: single median {:.1} ms (n={runs}); batch of {batch}: {:.1} images/s",
            f.display(),
            median_ms(times),
            batch as f64 / batch_s
        );
    }
}
