//! Properties that hold for every input, checked on strings from a small deterministic generator
//! (no proptest: the generator is a few lines and the run is reproducible).

use zeroclip_tokenizer::{Tokenizer, EOT, SOT, VOCAB_SIZE};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A string mixing ASCII, the characters the cleaning steps touch, and any code point.
    fn string(&mut self) -> String {
        const SPECIAL: &[&str] = &[
            "&amp;",
            "&",
            "<",
            "<|endoftext|>",
            "'s",
            "'",
            "\u{1b}[",
            "\r\n",
            "Σ",
            "İ",
            "ﬃ",
            "\u{345}",
            "\u{301}",
            "Ａ",
            "\u{85}",
            "\u{3000}",
            "</w>",
            "&#",
            ";",
            "\u{feff}",
            "ſ",
        ];
        let len = self.below(40);
        let mut s = String::new();
        for _ in 0..len {
            match self.below(6) {
                0 | 1 => s.push((b' ' + self.below(95) as u8) as char),
                2 => s.push_str(SPECIAL[self.below(SPECIAL.len() as u64) as usize]),
                3 => s.push(char::from_u32(0x80 + self.below(0x3000) as u32).unwrap_or('x')),
                _ => s.push(char::from_u32(self.below(0x110000) as u32).unwrap_or('y')),
            }
        }
        s
    }
}

#[test]
fn any_string_encodes_to_vocabulary_ids_and_well_formed_rows() {
    let t = Tokenizer::global();
    let mut rng = Rng(0x5EED_CAFE);
    for _ in 0..20_000 {
        let s = rng.string();
        let ids = t.encode(&s);
        assert!(ids.iter().all(|&id| (id as usize) < VOCAB_SIZE), "{s:?}");
        let _ = t.decode(&ids);
        let ctx = 1 + rng.below(20) as usize;
        let batch = t
            .tokenize(&[&s], ctx, true)
            .expect("truncation never fails");
        let row = batch.row(0);
        let used = (ids.len() + 2).min(ctx);
        assert_eq!(row.len(), ctx);
        assert!(row[used..].iter().all(|&id| id == 0), "{s:?}: padding");
        assert_eq!(row[used - 1], EOT, "{s:?}");
        if ctx > 1 {
            assert_eq!(row[0], SOT);
            assert_eq!(row[1..used - 1], ids[..used - 2]);
        }
        assert_eq!(
            batch.eot_positions[0],
            row.iter().position(|&id| id == EOT).unwrap()
        );
        let untruncated = t.tokenize(&[&s], ctx, false);
        assert_eq!(untruncated.is_ok(), ids.len() + 2 <= ctx, "{s:?}");
    }
}

#[test]
fn decoded_text_encodes_back_to_the_same_ids() {
    // Holds whenever cleaning is idempotent: without `&` (a second round of unescaping),
    // without `<` (which turns ftfy's unescaping off and lets `</w>` appear in tokens) and
    // without `İ`, whose lowercase `i\u{307}` can leave a combining sequence out of canonical
    // order, so the second cleaning's NFC reorders it (the reference does the same).
    let t = Tokenizer::global();
    let mut rng = Rng(0xD1CE);
    for _ in 0..20_000 {
        let s = rng.string().replace(['&', '<', 'İ'], " ");
        let ids = t.encode(&s);
        let decoded = t.decode(&ids);
        assert_eq!(t.encode(&decoded), ids, "{s:?} decoded as {decoded:?}");
    }
}

#[test]
fn lowercase_words_decode_to_themselves_with_a_space_each() {
    let t = Tokenizer::global();
    let mut rng = Rng(42);
    for _ in 0..2_000 {
        let words: Vec<String> = (0..1 + rng.below(6))
            .map(|_| {
                (0..1 + rng.below(12))
                    .map(|_| (b'a' + rng.below(26) as u8) as char)
                    .collect()
            })
            .collect();
        let text = words.join(" ");
        assert_eq!(t.decode(&t.encode(&text)), format!("{text} "));
    }
}
