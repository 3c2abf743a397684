//! CLIP's byte-level BPE tokenizer, reproducing OpenAI's `clip.simple_tokenizer` and `clip.tokenize`.

/// Tokenizer errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text has more tokens than the context holds, and truncation was not asked for.
    #[error("input {text:?} is too long for context length {context_length}: {tokens} tokens")]
    TooLong {
        text: String,
        tokens: usize,
        context_length: usize,
    },
}
