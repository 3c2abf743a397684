//! Quick timing probe for the model's speed work (docs/PERFORMANCE.md, "Speed round 1"):
//! per call, the wall time and the CPU time of all the process's threads (from
//! `/proc/self/task/*/schedstat`), so that a change can be judged on a machine shared with other
//! jobs, where wall times swing by 2× but the CPU time a call needs stays put.
//!
//! ```text
//! speed_probe MODEL.pt image BATCH [RUNS]
//! speed_probe MODEL.pt text  BATCH [RUNS]    (BATCH prompts of 7 to 9 tokens, like "a photo of a {class}")
//! ```
//! Threads: `RAYON_NUM_THREADS` (candle's matmul reads it too). Prints the minimum and median of
//! each over `RUNS` calls (default 10) after two warm-up calls.

use candle_core::{Device, Tensor};
use std::time::Instant;
use zeroclip::Clip;

type BoxErr = Box<dyn std::error::Error>;

/// CPU time consumed so far by every thread of this process, in seconds.
fn cpu_seconds() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 * 1e-9
}

fn main() -> Result<(), BoxErr> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: speed_probe MODEL image|text BATCH [RUNS]".into());
    }
    let runs: usize = args.get(3).map_or(Ok(10), |v| v.parse())?;
    let batch: usize = args[2].parse()?;
    let t = Instant::now();
    let model = Clip::load(args[0].as_ref(), &Device::Cpu)?;
    println!("load {:.3} s", t.elapsed().as_secs_f64());
    let r = model.config().image_resolution;
    let call: Box<dyn Fn() -> Result<(), BoxErr>> = match args[1].as_str() {
        "image" => {
            let n = batch * 3 * r * r;
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let pixels = Tensor::from_vec(v, (batch, 3, r, r), &Device::Cpu)?;
            Box::new(move || {
                model.encode_image(&pixels)?;
                Ok(())
            })
        }
        "text" => {
            let ctx = model.config().context_length;
            let mut ids = vec![0u32; batch * ctx];
            for (b, row) in ids.chunks_mut(ctx).enumerate() {
                let len = 7 + b % 3;
                row[0] = 49406;
                for (i, id) in row[1..len].iter_mut().enumerate() {
                    *id = 320 + ((b * 31 + i * 17) % 40000) as u32;
                }
                row[len] = 49407;
            }
            let ids = Tensor::from_vec(ids, (batch, ctx), &Device::Cpu)?;
            Box::new(move || {
                model.encode_text(&ids)?;
                Ok(())
            })
        }
        other => return Err(format!("unknown task {other:?}").into()),
    };
    for _ in 0..2 {
        call()?;
    }
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_seconds());
        call()?;
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
    }
    for v in [&mut wall, &mut cpu] {
        v.sort_by(f64::total_cmp);
    }
    let per = |s: f64| batch as f64 / s;
    println!(
        "{} batch {batch}: wall min {:.1} ms ({:.1}/s) median {:.1} ms | cpu min {:.1} ms median {:.1} ms",
        args[1],
        wall[0] * 1e3,
        per(wall[0]),
        wall[runs / 2] * 1e3,
        cpu[0] * 1e3,
        cpu[runs / 2] * 1e3
    );
    Ok(())
}
