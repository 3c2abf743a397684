//! zeroclip's side of the model benchmark (`bench/run.sh`): the same measurements as
//! `bench/model_torch.py`, on the same inputs, printed as one JSON object per line.
//!
//! ```text
//! bench_model image --model ViT-B-32.pt --pixels pixels_224x16.f32 [--batch 1 16] [--warmup 2] [--runs 5] [--dump DIR]
//! bench_model text  --model ViT-B-32.pt --prompts prompts_short.txt [--truncate] [--warmup 2] [--runs 5] [--dump DIR]
//! bench_model load  --model ViT-B-32.pt
//! bench_model forever --model ViT-B-32.pt --pixels pixels_224x16.f32 --batch 16 --runs N   (for perf record)
//! bench_model matmul [--runs 9] [--shape MxKxN ...]   (GFLOP/s on ViT-B/32's Linear shapes, or those given; no model)
//! bench_model layers --model NAME|PATH [--images IMG ...] [--prompts FILE]
//! ```
//!
//! `matmul` also times the `gemm` crate's scalar kernels (what candle's matmul runs on x86
//! without FMA); `ZEROCLIP_KERNEL` picks zeroclip's side (`candle`: the `gemm` crate too). Its
//! packed GEMM is reported from the median call and, as `gflops_packed_best`, from the best (on
//! a shared machine the best calls are the ones the host left alone; `bench/ort_matmul.py`
//! reports both for ONNX Runtime).
//! `layers` prints, per layer type and tower, the cosine of each linear layer's output in bf16
//! and in int8 to fp32's on the same fp32 input (captured from an fp32 forward on the images and
//! prompts; defaults: the repository's test images and CIFAR-10's labels as "a photo of a
//! {label}."), as a Markdown table (docs/FIDELITY.md); any checkpoint `--model` of the CLI
//! takes.
//!
//! Threads: `--threads N` (default 2) sets `RAYON_NUM_THREADS`/`CANDLE_NUM_THREADS` before candle
//! first reads them (candle 0.11's CPU matmul asks `candle_core::utils::get_num_threads`, which
//! reads `RAYON_NUM_THREADS`, else the physical core count) and sizes rayon's global pool.
//! Timing: `warmup` untimed calls, then `runs` timed calls; the median is reported.

use candle_core::{Device, Tensor};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use zeroclip::Clip;

const RES: usize = 224;

struct Args {
    task: String,
    model: PathBuf,
    pixels: Option<PathBuf>,
    prompts: Option<PathBuf>,
    images: Vec<PathBuf>,
    truncate: bool,
    batches: Vec<usize>,
    warmup: usize,
    runs: usize,
    threads: usize,
    precision: zeroclip::Precision,
    dump: Option<PathBuf>,
    shapes: Vec<(usize, usize, usize)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1).peekable();
    let task = it
        .next()
        .ok_or("usage: bench_model image|text|load|forever --model PATH ...")?;
    let mut a = Args {
        task,
        model: PathBuf::new(),
        pixels: None,
        prompts: None,
        images: Vec::new(),
        truncate: false,
        batches: vec![1, 16],
        warmup: 2,
        runs: 5,
        threads: 2,
        precision: zeroclip::Precision::Fp32,
        dump: None,
        shapes: Vec::new(),
    };
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--model" => a.model = it.next().ok_or("--model needs a path")?.into(),
            "--pixels" => a.pixels = Some(it.next().ok_or("--pixels needs a path")?.into()),
            "--prompts" => a.prompts = Some(it.next().ok_or("--prompts needs a path")?.into()),
            "--dump" => a.dump = Some(it.next().ok_or("--dump needs a folder")?.into()),
            "--truncate" => a.truncate = true,
            "--shape" => {
                let v = it.next().ok_or("--shape needs MxKxN")?;
                let dims: Result<Vec<usize>, _> = v.split('x').map(str::parse).collect();
                match dims.as_deref() {
                    Ok(&[m, k, n]) => a.shapes.push((m, k, n)),
                    _ => return Err(format!("--shape: {v:?} is not MxKxN")),
                }
            }
            "--warmup" => a.warmup = num(it.next(), "--warmup")?,
            "--runs" => a.runs = num(it.next(), "--runs")?,
            "--threads" => a.threads = num(it.next(), "--threads")?,
            "--precision" => {
                a.precision = it
                    .next()
                    .ok_or("--precision needs a value")?
                    .parse()
                    .map_err(|e| format!("--precision: {e}"))?
            }
            "--images" => {
                while it.peek().is_some_and(|v| !v.starts_with("--")) {
                    a.images.extend(it.next().map(PathBuf::from));
                }
            }
            "--batch" => {
                a.batches.clear();
                while it.peek().is_some_and(|v| !v.starts_with("--")) {
                    a.batches.push(num(it.next(), "--batch")?);
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.model.as_os_str().is_empty() && a.task != "matmul" {
        return Err("--model is required".into());
    }
    Ok(a)
}

/// Current and peak resident set size (VmRSS, VmHWM) in MB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

type BoxErr = Box<dyn std::error::Error>;

struct Stats {
    median_s: f64,
    min_s: f64,
    times_s: Vec<f64>,
}

fn time_calls<T>(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<T, BoxErr>,
) -> Result<Stats, BoxErr> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times_s = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        times_s.push(t0.elapsed().as_secs_f64());
    }
    let mut sorted = times_s.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median_s = if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Ok(Stats {
        median_s,
        min_s: sorted.first().copied().unwrap_or(f64::NAN),
        times_s,
    })
}

fn dump(dir: &Option<PathBuf>, name: &str, t: &Tensor) -> Result<(), BoxErr> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn pixels(path: &Option<PathBuf>, batch: usize) -> Result<Tensor, BoxErr> {
    let path = path.as_ref().ok_or("--pixels is required")?;
    let bytes = std::fs::read(path)?;
    let per_image = 3 * RES * RES;
    if bytes.len() < batch * per_image * 4 {
        return Err(format!("{}: fewer than {batch} images", path.display()).into());
    }
    let values: Vec<f32> = bytes[..batch * per_image * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Tensor::from_vec(
        values,
        (batch, 3, RES, RES),
        &Device::Cpu,
    )?)
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_model: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("bench_model: {e}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> Result<(), BoxErr> {
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        std::env::set_var(var, a.threads.to_string());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()?;
    let stem = a
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = serde_json::json!({
        "framework": "zeroclip",
        "model": stem,
        "task": a.task,
        "version": env!("CARGO_PKG_VERSION"),
        "threads": candle_core::utils::get_num_threads(),
        "precision": a.precision.name(),
        "kernel": zeroclip::model::gemm::kernel_name_for(a.precision.into()),
    });
    let with = |extra: serde_json::Value| {
        let mut v = base.clone();
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    };

    if a.task == "matmul" {
        return matmul_shapes(a.runs.max(1), a.precision, &a.shapes, &base);
    }
    if a.task == "layers" {
        return layer_report(&a);
    }
    let (rss_before, _) = rss_mb();
    let t0 = Instant::now();
    let options = zeroclip::LoadOptions::with_precision(a.precision);
    let clip = Clip::load_with(&a.model, &Device::Cpu, &options)?;
    let load_s = t0.elapsed().as_secs_f64();
    match a.task.as_str() {
        "load" => {
            let (rss, peak) = rss_mb();
            emit(with(serde_json::json!({
                "load_s": load_s, "rss_before_mb": rss_before, "rss_mb": rss, "peak_rss_mb": peak,
            })));
        }
        "image" => {
            let max_batch = a.batches.iter().copied().max().unwrap_or(1);
            for &batch in &a.batches {
                let x = pixels(&a.pixels, batch)?;
                let s = time_calls(a.warmup, a.runs, || Ok(clip.encode_image(&x)?))?;
                if batch == max_batch {
                    dump(
                        &a.dump,
                        &format!("zeroclip_{stem}_image_b{batch}.f32"),
                        &clip.encode_image(&x)?,
                    )?;
                }
                emit(with(serde_json::json!({
                    "batch": batch, "items_per_s": batch as f64 / s.median_s,
                    "median_s": s.median_s, "min_s": s.min_s, "runs": a.runs, "times_s": s.times_s,
                })));
            }
        }
        "text" => {
            let path = a.prompts.as_ref().ok_or("--prompts is required")?;
            let prompts: Vec<String> = std::fs::read_to_string(path)?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let encode = || -> Result<Tensor, BoxErr> {
                Ok(clip.encode_text(&zeroclip::tokenize(&prompts, a.truncate)?)?)
            };
            let s = time_calls(a.warmup, a.runs, encode)?;
            let kind = if a.truncate { "long" } else { "short" };
            dump(
                &a.dump,
                &format!("zeroclip_{stem}_text_{kind}.f32"),
                &encode()?,
            )?;
            emit(with(serde_json::json!({
                "kind": kind, "batch": prompts.len(),
                "items_per_s": prompts.len() as f64 / s.median_s,
                "median_s": s.median_s, "min_s": s.min_s, "runs": a.runs, "times_s": s.times_s,
            })));
        }
        "forever" => {
            let batch = a.batches.first().copied().unwrap_or(16);
            let x = pixels(&a.pixels, batch)?;
            let s = time_calls(0, a.runs, || Ok(clip.encode_image(&x)?))?;
            emit(with(
                serde_json::json!({"batch": batch, "median_s": s.median_s}),
            ));
        }
        other => return Err(format!("unknown task {other:?}").into()),
    }
    Ok(())
}

/// The Linear layers of ViT-B/32: zeroclip's GEMM with the weight packed at load (what the model
/// does), against candle's matmul reading the weight `w [n, k]` transposed as stored.
fn matmul_shapes(
    runs: usize,
    precision: zeroclip::Precision,
    custom: &[(usize, usize, usize)],
    base: &serde_json::Value,
) -> Result<(), BoxErr> {
    let vit = [
        ("in_proj b16", 800, 768, 2304),
        ("out_proj b16", 800, 768, 768),
        ("c_fc b16", 800, 768, 3072),
        ("c_proj b16", 800, 3072, 768),
        ("in_proj b1", 50, 768, 2304),
        ("c_fc b1", 50, 768, 3072),
        ("c_proj b1", 50, 3072, 768),
        ("text c_fc 16 short prompts", 128, 512, 2048),
    ];
    let shapes: Vec<(&str, usize, usize, usize)> = match custom {
        [] => vit.to_vec(),
        _ => custom
            .iter()
            .map(|&(m, k, n)| ("--shape", m, k, n))
            .collect(),
    };
    for (name, m, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?;
        let flops = 2.0 * (m * k * n) as f64;
        let stored = time_calls(2, runs, || Ok(x.matmul(&w.t()?)?))?;
        // The int8 codes each tower packs its weights in (the text tower keeps ±127).
        let codes = if name.starts_with("text") {
            zeroclip::model::gemm::Codes::Full
        } else {
            zeroclip::model::gemm::Codes::Fastest
        };
        let packed = zeroclip::model::gemm::PackedMatrix::from_transposed_coded(
            &w.flatten_all()?.to_vec1::<f32>()?,
            n,
            k,
            precision.into(),
            codes,
        );
        let a = x.flatten_all()?.to_vec1::<f32>()?;
        let mut c = vec![0f32; m * n];
        let threads = candle_core::utils::get_num_threads();
        let w_values = w.flatten_all()?.to_vec1::<f32>()?;
        let scalar = time_calls(1, runs.min(3), || {
            gemm_scalar(&a, &w_values, &mut c, (m, k, n), threads);
            Ok(())
        })?;
        let epi = zeroclip::model::gemm::Epilogue::default();
        let ours = time_calls(2, runs, || {
            zeroclip::model::gemm::matmul(&a, k, m, &packed, &mut c, n, &epi, threads);
            Ok(())
        })?;
        let mut v = base.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "shape".into(),
                serde_json::json!(format!("{name}: {m}x{k}x{n}")),
            );
            o.insert(
                "gflops_weight_as_stored".into(),
                serde_json::json!(flops / stored.median_s / 1e9),
            );
            o.insert(
                "gflops_packed".into(),
                serde_json::json!(flops / ours.median_s / 1e9),
            );
            o.insert(
                "gflops_packed_best".into(),
                serde_json::json!(flops / ours.min_s / 1e9),
            );
            o.insert(
                "gflops_gemm_scalar".into(),
                serde_json::json!(flops / scalar.median_s / 1e9),
            );
        }
        emit(v);
    }
    Ok(())
}

/// The `layers` task: the per-layer cosine table of `zeroclip::model::layer_report`.
fn layer_report(a: &Args) -> Result<(), BoxErr> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let model = a.model.to_string_lossy();
    let (clip, preprocess) = zeroclip::load_with(&model, &Device::Cpu, &Default::default())?;
    let mut images = a.images.clone();
    if images.is_empty() {
        let dir = root.join("tests/fixtures/image/inputs");
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                images.push(path);
            }
        }
        images.sort();
        images.push(root.join("assets/CLIP.png"));
    }
    let prompts: Vec<String> = match &a.prompts {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        None => std::fs::read_to_string(root.join("crates/zeroclip/data/cifar10.txt"))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("a photo of a {}.", l.trim_end()))
            .collect(),
    };
    let mut values = Vec::new();
    for path in &images {
        values.extend(preprocess.preprocess_path(path)?);
    }
    let r = clip.config().image_resolution;
    let pixels = Tensor::from_vec(values, (images.len(), 3, r, r), &Device::Cpu)?;
    let ids = zeroclip::tokenize(&prompts, true)?;
    let report = zeroclip::model::layer_report::layer_cosines(&clip, &pixels, &ids)?;
    println!(
        "{}: {} images, {} prompts; kernels: bf16 {}, int8 {}",
        model,
        images.len(),
        prompts.len(),
        zeroclip::model::gemm::kernel_name_for(zeroclip::Precision::Bf16.into()),
        zeroclip::model::gemm::kernel_name_for(zeroclip::Precision::Int8.into()),
    );
    println!("\n| tower | layer | precision | layers | rows | min cosine | mean cosine |");
    println!("|---|---|---|---|---|---|---|");
    for r in report {
        println!(
            "| {} | {} | {} | {} | {} | {:.6} | {:.6} |",
            r.tower,
            r.layer,
            r.precision.name(),
            r.layers,
            r.rows,
            r.min,
            r.mean
        );
    }
    Ok(())
}

/// `c = a · wᵀ` (`a` `[m, k]`, `w` `[n, k]`) with the `gemm` crate's scalar kernels: what candle's
/// matmul runs on an x86 CPU without FMA, where its dispatch (CPUID, no switch) picks them.
fn gemm_scalar(
    a: &[f32],
    w: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    threads: usize,
) {
    use gemm_f32::microkernel::scalar::f32 as ukr;
    let par = if threads > 1 {
        gemm_common::Parallelism::Rayon(threads)
    } else {
        gemm_common::Parallelism::None
    };
    assert!(a.len() >= m * k && w.len() >= n * k && c.len() >= m * n);
    // SAFETY: the strides address `a` `[m, k]`, `w` read as `[k, n]` column-major and `c`
    // `[m, n]`, all within the slices checked above; the scalar kernels need no CPU feature.
    unsafe {
        gemm_common::gemm::gemm_basic_generic::<
            _,
            f32,
            1,
            { ukr::MR_DIV_N },
            { ukr::NR },
            { ukr::MR_DIV_N },
            { ukr::H_M },
            { ukr::H_N },
        >(
            gemm_common::simd::Scalar,
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
            |x, y, z| x * y + z,
            &ukr::UKR,
            &ukr::H_UKR,
            false,
            par,
        )
    }
}
