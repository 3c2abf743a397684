//! The `[n, context_length]` id matrix `clip.tokenize` returns, with each row's EOT position.

/// Token ids of a batch of texts, row-major `[n, context_length]`, zero-padded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major ids, `n * context_length` of them.
    pub ids: Vec<u32>,
    /// Number of rows (texts).
    pub n: usize,
    /// Ids per row.
    pub context_length: usize,
    /// Per row, the index of its first `<|endoftext|>`: the reference model's
    /// `text.argmax(dim=-1)`, where the text features are read.
    pub eot_positions: Vec<usize>,
}

impl TokenBatch {
    /// Row `i`. Panics when `i >= n`, like slice indexing.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[i * self.context_length..(i + 1) * self.context_length]
    }

    /// The rows, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[u32]> {
        self.ids.chunks(self.context_length.max(1)).take(self.n)
    }
}
