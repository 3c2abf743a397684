//! CLIP's byte-level BPE tokenizer, reproducing OpenAI's `clip.simple_tokenizer` and `clip.tokenize`.
//!
//! `encode` runs the reference pipeline: `ftfy.fix_text`, `html.unescape` twice, whitespace
//! collapsing, `str.lower()`, the reference split pattern, then BPE over `bytes_to_unicode`
//! symbols with the reference merge ranks. [`Tokenizer::tokenize`] adds `<|startoftext|>` and
//! `<|endoftext|>` and pads or truncates to the context length exactly as `clip.tokenize`.
//!
//! Known difference: ftfy's mojibake repair (`fix_encoding`) is not reproduced, so text that
//! ftfy would re-decode from a wrong encoding (such as `"schÃ¶n"` → `"schön"`) is tokenized as
//! written. The test fixtures flag such texts and the tests check that they are the only ones
//! that differ.
//!
//! The vocabulary (`data/bpe_simple_vocab_16e6.txt.gz`, MIT, © OpenAI; see
//! `data/LICENSE-openai-clip.txt`) is compiled into the library.

#![forbid(unsafe_code)]

mod batch;
mod bpe;
mod clean;
mod html;
mod split;
mod tables;

pub use batch::TokenBatch;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Mutex, OnceLock};

/// Id of `<|startoftext|>`.
pub const SOT: u32 = 49406;
/// Id of `<|endoftext|>`.
pub const EOT: u32 = 49407;
/// The context length of every CLIP model.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// Number of ids in the vocabulary.
pub const VOCAB_SIZE: usize = 49408;

/// Word cache entries kept before the cache is emptied (bounds memory on unbounded input).
const CACHE_CAPACITY: usize = 1 << 16;

/// Tokenizer errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text has more tokens than the context holds, and truncation was not asked for.
    /// `text` is the input shortened to at most 60 characters.
    #[error("input {text:?} is too long for context length {context_length}: {tokens} tokens")]
    TooLong {
        /// The text, shortened to at most 60 characters.
        text: String,
        /// Its token count, start and end tokens included.
        tokens: usize,
        /// The context length it had to fit.
        context_length: usize,
    },
    /// A context length of 0 holds not even `<|endoftext|>`.
    #[error("context length must be at least 1, got {context_length}")]
    InvalidContextLength {
        /// The length asked for.
        context_length: usize,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

type WordCache = HashMap<Box<[u8]>, Box<[u32]>, BuildHasherDefault<bpe::PairHasher>>;

/// The CLIP tokenizer: vocabulary, merges and a word cache.
pub struct Tokenizer {
    bpe: bpe::Bpe,
    cache: Mutex<WordCache>,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from the embedded vocabulary (tens of milliseconds; prefer [`global`]).
    ///
    /// [`global`]: Tokenizer::global
    pub fn new() -> Tokenizer {
        Tokenizer {
            bpe: bpe::Bpe::load(),
            cache: Mutex::new(WordCache::with_capacity_and_hasher(
                4096,
                Default::default(),
            )),
        }
    }

    /// The process-wide tokenizer, built on first use.
    pub fn global() -> &'static Tokenizer {
        static GLOBAL: OnceLock<Tokenizer> = OnceLock::new();
        GLOBAL.get_or_init(Tokenizer::new)
    }

    /// BPE ids of `text` after cleaning, without `<|startoftext|>`/`<|endoftext|>`: the
    /// reference `SimpleTokenizer.encode`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, &mut ids);
        ids
    }

    /// Appends the ids of `text` (cleaned, split, BPE) to `out`.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let tables = tables::Tables::get();
        let cleaned = clean::clean(text, tables);
        // One lock per text; try_lock: under contention computing words again beats waiting.
        let mut cache = self.cache.try_lock().ok();
        split::split(&cleaned, tables, |token| {
            self.encode_token(token, cache.as_deref_mut(), out)
        });
    }

    fn encode_token(&self, token: &str, cache: Option<&mut WordCache>, out: &mut Vec<u32>) {
        match token {
            "<|startoftext|>" => return out.push(SOT),
            "<|endoftext|>" => return out.push(EOT),
            _ => {}
        }
        let bytes = token.as_bytes();
        let Some(cache) = cache else {
            return self.bpe.encode_word(bytes, out);
        };
        if let Some(ids) = cache.get(bytes) {
            return out.extend_from_slice(ids);
        }
        let start = out.len();
        self.bpe.encode_word(bytes, out);
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(bytes.into(), out[start..].into());
    }

    /// Text of `ids`, as the reference `decode`: bytes joined, invalid UTF-8 replaced by U+FFFD,
    /// every `</w>` turned into a space. Ids outside the vocabulary (a `KeyError` in the
    /// reference) decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.bpe.decode(ids)
    }

    /// One row of `clip.tokenize`: `<|startoftext|>`, the ids, `<|endoftext|>`, zero padding to
    /// `context_length`. Too long is an error unless `truncate`, which keeps the first
    /// `context_length` ids and overwrites the last with `<|endoftext|>`, as the reference.
    pub fn tokenize_one(
        &self,
        text: &str,
        context_length: usize,
        truncate: bool,
    ) -> Result<Vec<u32>> {
        let mut row = vec![0; context_length];
        self.fill_row(text, &mut row, truncate)?;
        Ok(row)
    }

    fn fill_row(&self, text: &str, row: &mut [u32], truncate: bool) -> Result<usize> {
        let context_length = row.len();
        if context_length == 0 {
            return Err(Error::InvalidContextLength { context_length });
        }
        let mut tokens = Vec::with_capacity(context_length);
        tokens.push(SOT);
        self.encode_into(text, &mut tokens);
        tokens.push(EOT);
        if tokens.len() > context_length {
            if !truncate {
                return Err(Error::TooLong {
                    text: shorten(text, MESSAGE_CHARS),
                    tokens: tokens.len(),
                    context_length,
                });
            }
            tokens.truncate(context_length);
            tokens[context_length - 1] = EOT;
        }
        row[..tokens.len()].copy_from_slice(&tokens);
        // The model pools at `text.argmax(-1)`: the first `<|endoftext|>`, which may be a
        // literal one inside the text.
        Ok(tokens
            .iter()
            .position(|&id| id == EOT)
            .unwrap_or(tokens.len() - 1))
    }

    /// `clip.tokenize(texts, context_length, truncate)`: an `[n, context_length]` batch. Fails on
    /// the first text that is too long (unless `truncate`), as the reference raises.
    pub fn tokenize(
        &self,
        texts: &[impl AsRef<str>],
        context_length: usize,
        truncate: bool,
    ) -> Result<TokenBatch> {
        if context_length == 0 {
            return Err(Error::InvalidContextLength { context_length });
        }
        let mut ids = vec![0u32; texts.len() * context_length];
        let mut eot_positions = Vec::with_capacity(texts.len());
        for (text, row) in texts.iter().zip(ids.chunks_mut(context_length)) {
            eot_positions.push(self.fill_row(text.as_ref(), row, truncate)?);
        }
        Ok(TokenBatch {
            ids,
            n: texts.len(),
            context_length,
            eot_positions,
        })
    }
}

/// `clip.tokenize` with the global tokenizer.
pub fn tokenize(
    texts: &[impl AsRef<str>],
    context_length: usize,
    truncate: bool,
) -> Result<TokenBatch> {
    Tokenizer::global().tokenize(texts, context_length, truncate)
}

/// How many characters of an input a message quotes: enough to recognize it, never a
/// 10,000-character label echoed in full.
pub const MESSAGE_CHARS: usize = 60;

/// At most `max` characters of `text`, with `…` when cut: how error messages quote user input.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_example_ids() {
        let t = Tokenizer::global();
        // clip.tokenize(["a diagram", "a dog", "a cat"]) rows start like this.
        assert_eq!(t.encode("a diagram"), [320, 22697]);
        assert_eq!(t.encode("a dog"), [320, 1929]);
        assert_eq!(t.encode("a cat"), [320, 2368]);
        assert_eq!(t.decode(&t.encode("A Dog!")), "a dog ! ");
    }

    #[test]
    fn overflow_and_truncation() {
        let t = Tokenizer::global();
        let long = "dog ".repeat(100);
        match t.tokenize(&[&long], 77, false) {
            Err(Error::TooLong {
                tokens,
                context_length,
                text,
            }) => {
                assert_eq!((tokens, context_length), (102, 77));
                assert_eq!(text.chars().count(), 61);
            }
            other => panic!("expected TooLong, got {:?}", other.map(|b| b.ids)),
        }
        let b = t.tokenize(&[long.as_str(), "a dog"], 77, true).unwrap();
        assert_eq!(b.row(0)[76], EOT);
        assert_eq!(b.row(0)[0], SOT);
        assert_eq!(b.eot_positions, [76, 3]);
        assert_eq!(b.row(1)[..5], [SOT, 320, 1929, EOT, 0]);
        assert!(matches!(
            t.tokenize(&["x"], 0, true),
            Err(Error::InvalidContextLength { .. })
        ));
        assert_eq!(t.tokenize_one("a dog", 1, true).unwrap(), [EOT]);
    }
}
