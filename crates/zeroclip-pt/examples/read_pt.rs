//! Reads a PyTorch checkpoint and reports what it holds and how long reading took.
//!
//! `cargo run --release -p zeroclip-pt --example read_pt -- FILE.pt`
//!
//! Times `zeroclip_pt::read` (open, map, unpickle, name the tensors) and then one
//! `contiguous_bytes` pass over every tensor (which touches every page of the file), and prints
//! a checksum so the work cannot be skipped.

use std::time::Instant;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: read_pt FILE.pt");
        std::process::exit(2);
    };
    let path = std::path::PathBuf::from(path);
    let start = Instant::now();
    let ckpt = match zeroclip_pt::read(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let read = start.elapsed();
    let start = Instant::now();
    let (mut bytes, mut sum, mut copied) = (0usize, 0u64, 0usize);
    for t in &ckpt.tensors {
        let b = t.contiguous_bytes();
        if matches!(b, std::borrow::Cow::Owned(_)) {
            copied += 1;
        }
        bytes += b.len();
        sum = b
            .chunks(4096)
            .fold(sum, |s, c| s.wrapping_add(u64::from(c[0])));
    }
    let touch = start.elapsed();
    println!(
        "{}: {:?}, {} tensors, {bytes} bytes ({copied} gathered), read {:.2} ms, \
         contiguous_bytes over all {:.2} ms, checksum {sum}",
        path.display(),
        ckpt.kind,
        ckpt.tensors.len(),
        read.as_secs_f64() * 1e3,
        touch.as_secs_f64() * 1e3
    );
}
