//! Times `tokenize` over a corpus, for `bench/tokenizer.py` (which runs the reference beside it).
//!
//! Usage: `tokenize_bench CORPUS.jsonl REPEATS` where each line is a JSON string. Prints one JSON
//! object: build time, cold pass (empty word cache), best warm pass, and an id checksum the
//! driver compares with the reference's.

use std::io::BufRead;
use std::time::Instant;
use zeroclip_tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: tokenize_bench CORPUS.jsonl REPEATS");
    let repeats: usize = args
        .next()
        .map_or(20, |r| r.parse().expect("REPEATS is a number"));
    let file = std::fs::File::open(&path).expect("corpus file");
    let texts: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("a JSON string per line"))
        .collect();

    let start = Instant::now();
    let tokenizer = Tokenizer::new();
    let build_s = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let batch = tokenizer
        .tokenize(&texts, DEFAULT_CONTEXT_LENGTH, true)
        .expect("tokenize");
    let cold_s = start.elapsed().as_secs_f64();

    let mut warm_s = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        let b = tokenizer
            .tokenize(&texts, DEFAULT_CONTEXT_LENGTH, true)
            .expect("tokenize");
        warm_s = warm_s.min(start.elapsed().as_secs_f64());
        assert_eq!(b, batch);
    }
    let checksum = batch.ids.iter().enumerate().fold(0u64, |acc, (i, &id)| {
        acc.wrapping_add((i as u64 + 1).wrapping_mul(id as u64))
    });
    println!(
        "{{\"n\": {}, \"build_s\": {build_s}, \"cold_s\": {cold_s}, \"warm_s\": {warm_s}, \"checksum\": {checksum}}}",
        texts.len()
    );
}
