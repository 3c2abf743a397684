//! Fuzzes encode → decode and `tokenize` on arbitrary text: nothing may panic, every id is in
//! the vocabulary, rows are well formed, and decoding any id sequence is total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroclip_tokenizer::{Tokenizer, EOT, SOT, VOCAB_SIZE};

fuzz_target!(|data: &[u8]| {
    let t = Tokenizer::global();
    let text = String::from_utf8_lossy(data);
    let ids = t.encode(&text);
    assert!(ids.iter().all(|&id| (id as usize) < VOCAB_SIZE));
    let decoded = t.decode(&ids);
    // Re-encoding decoded text must not panic either (its ids may legitimately differ).
    let _ = t.encode(&decoded);
    let ctx = 1 + data.first().map_or(0, |&b| b as usize % 80);
    let batch = t
        .tokenize(&[text.as_ref()], ctx, true)
        .expect("truncation never fails");
    let row = batch.row(0);
    let used = (ids.len() + 2).min(ctx);
    assert_eq!(row[used - 1], EOT);
    assert!(ctx == 1 || row[0] == SOT);
    assert!(row[used..].iter().all(|&id| id == 0));
    // Raw bytes read as ids (4 bytes each, any value) must decode without panicking.
    let raw: Vec<u32> = data
        .chunks(4)
        .map(|c| c.iter().fold(0u32, |acc, &b| acc << 8 | b as u32))
        .collect();
    let _ = t.decode(&raw);
});
