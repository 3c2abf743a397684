//! The text tower, `CLIP.encode_text`: token + positional embeddings, the causal transformer,
//! `ln_final`, pooling at the EOT token (the argmax of each row's ids, as the reference takes it)
//! and `text_projection`.
//!
//! Positions after a row's EOT cannot influence any earlier position under the causal mask, so
//! by default each row is computed only up to its own EOT — on the CPU the rows are stacked
//! without padding (`Transformer::forward_segments_at`), on other devices up to the batch's last
//! EOT; the result is the same as the reference's full `context_length` run (tested against
//! [`TextTransformer::forward_full`]).

use super::config::ClipConfig;
use super::int8;
use super::transformer::{LayerNorm, Transformer};
use crate::error::{Error, Result};
use crate::tensors::{Precision, StoredTensor, Vb};
use candle_core::{DType, Device, Module, Tensor};
use rayon::prelude::*;

/// Token ids of a batch on the host, validated, with each row's pooling position.
struct Ids {
    rows: Vec<Vec<u32>>,
    eot: Vec<usize>,
}

/// The token embedding table: f32, or in int8 precision one byte per value with a scale per
/// token (symmetric, as the linear layers' weights), widened on lookup — the largest tensor left
/// once the linear layers are int8, so the precision's memory saving reaches the whole model.
#[derive(Clone, Debug)]
enum TokenTable {
    F32(Tensor),
    /// Codes offset by [`int8::ZERO_POINT`] (candle has no signed byte type), and the scales.
    Int8 {
        codes: Tensor,
        scales: Tensor,
    },
}

impl TokenTable {
    /// `table` `[vocab, width]`; in int8 on the CPU each token's row is quantized as it is read
    /// (from the mapped file when the table is still there), so no f32 copy of it is made.
    fn new(table: StoredTensor, precision: Precision) -> candle_core::Result<Self> {
        if precision != Precision::Int8 || !table.is_cpu() {
            return Ok(TokenTable::F32(table.into_f32_tensor()?));
        }
        let &[vocab, width] = table.dims() else {
            candle_core::bail!("token table of shape {:?}", table.dims());
        };
        let mut codes = vec![0u8; vocab * width];
        let mut scales = vec![0f32; vocab];
        let quantize = |(q, src, dst, s): (&mut [i8], &[f32], &mut [u8], &mut f32)| {
            *s = int8::quantize(src, 127.0, q);
            for (d, q) in dst.iter_mut().zip(q.iter()) {
                *d = (*q as i32 + int8::ZERO_POINT) as u8;
            }
        };
        // Millions of values at load, quantized per token in parallel.
        let w = width.max(1);
        let rows = codes
            .par_chunks_mut(w)
            .zip(scales.par_iter_mut())
            .enumerate();
        match table.le_rows() {
            Some(file) => {
                let file = file?;
                rows.for_each_init(
                    || (vec![0i8; width], vec![0f32; width]),
                    |(q, wide), (r, (dst, s))| {
                        file.widen(r, wide);
                        quantize((q, wide, dst, s));
                    },
                );
            }
            None => {
                let table = table.into_f32_tensor()?;
                super::ops::with_f32(&table, |values| {
                    rows.for_each_init(
                        || vec![0i8; width],
                        |q, (r, (dst, s))| quantize((q, &values[r * w..][..width], dst, s)),
                    )
                })?;
            }
        }
        Ok(TokenTable::Int8 {
            codes: Tensor::from_vec(codes, (vocab, width), &Device::Cpu)?,
            scales: Tensor::from_vec(scales, (vocab, 1), &Device::Cpu)?,
        })
    }

    /// The rows of `ids` (a 1-D u32 tensor), `[len, width]` f32.
    fn lookup(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            TokenTable::F32(t) => t.index_select(ids, 0),
            TokenTable::Int8 { codes, scales } => {
                let codes = codes.index_select(ids, 0)?.to_dtype(DType::F32)?;
                let centred = (codes - int8::ZERO_POINT as f64)?;
                centred.broadcast_mul(&scales.index_select(ids, 0)?)
            }
        }
    }
}

/// `CLIP`'s text tower.
#[derive(Clone, Debug)]
pub struct TextTransformer {
    token_embedding: TokenTable,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
    vocab_size: usize,
    context_length: usize,
}

impl TextTransformer {
    /// Reads the tower from the root of the canonical names.
    pub fn new(vb: &Vb, cfg: &ClipConfig) -> Result<Self> {
        let w = cfg.text_width;
        Ok(TextTransformer {
            token_embedding: TokenTable::new(
                vb.get_weight(&[cfg.vocab_size, w], "token_embedding.weight")?,
                vb.precision(),
            )?,
            positional_embedding: vb.get(&[cfg.context_length, w], "positional_embedding")?,
            transformer: Transformer::new(
                &vb.pp("transformer"),
                w,
                cfg.text_layers,
                cfg.text_heads,
                cfg.activation,
                cfg.layer_norm_eps,
            )?,
            ln_final: LayerNorm::new(&vb.pp("ln_final"), w, cfg.layer_norm_eps)?,
            text_projection: vb.get(&[w, cfg.embed_dim], "text_projection")?,
            vocab_size: cfg.vocab_size,
            context_length: cfg.context_length,
        })
    }

    /// `ids` `[n, ctx]` (u32, i64 or any integer type) → `[n, embed_dim]`, computing each
    /// sequence only up to its own EOT on the CPU (sequences stacked without padding; the causal
    /// mask makes the later positions irrelevant), up to the batch's last EOT elsewhere.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = self.read_ids(ids)?;
        let device = self.positional_embedding.device();
        if !matches!(device, Device::Cpu) || ids.rows.is_empty() {
            let positions = ids.eot.iter().max().map_or(0, |m| m + 1);
            return self.run(&ids, positions);
        }
        let lengths: Vec<usize> = ids.eot.iter().map(|&e| e + 1).collect();
        let (mut flat, mut pos) = (Vec::new(), Vec::new());
        for (row, &len) in ids.rows.iter().zip(&lengths) {
            flat.extend_from_slice(&row[..len]);
            pos.extend(0..len as u32);
        }
        let total = flat.len();
        let x = self
            .token_embedding
            .lookup(&Tensor::from_vec(flat, total, device)?)?
            .add(
                &self
                    .positional_embedding
                    .index_select(&Tensor::from_vec(pos, total, device)?, 0)?,
            )?;
        let pooled = self
            .transformer
            .forward_segments_at(&x, &lengths, true, &ids.eot)?;
        self.project(&pooled)
    }

    /// The token embedding rows of `ids` up to each row's EOT, as stored (f32) and as the int8
    /// precision stores them; `None` unless the table is f32 on the CPU (the per-layer precision
    /// report, `layer_report.rs`).
    pub(super) fn token_rows_f32_and_int8(&self, ids: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let TokenTable::F32(table) = &self.token_embedding else {
            return Ok(None);
        };
        if !matches!(table.device(), Device::Cpu) {
            return Ok(None);
        }
        let ids = self.read_ids(ids)?;
        let flat: Vec<u32> = (ids.rows.iter().zip(&ids.eot))
            .flat_map(|(row, &eot)| row[..=eot].to_vec())
            .collect();
        let n = flat.len();
        let flat = Tensor::from_vec(flat, n, table.device())?;
        let int8 = TokenTable::new(table.clone().into(), Precision::Int8)?;
        Ok(Some((table.index_select(&flat, 0)?, int8.lookup(&flat)?)))
    }

    /// `ln_final` and the projection of the pooled rows (`ln_final` acts per position, so it
    /// is applied to those rows only).
    fn project(&self, pooled: &Tensor) -> Result<Tensor> {
        let pooled = self.ln_final.forward(pooled)?;
        Ok(pooled.matmul(&self.text_projection)?)
    }

    /// The reference's computation over every position of `ids`; equal to [`Self::forward`].
    pub fn forward_full(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = self.read_ids(ids)?;
        let positions = ids.rows.first().map_or(0, Vec::len);
        self.run(&ids, positions)
    }

    fn run(&self, ids: &Ids, positions: usize) -> Result<Tensor> {
        let n = ids.rows.len();
        let device = self.positional_embedding.device();
        let embed_dim = self.text_projection.dim(1)?;
        if n == 0 {
            return Ok(Tensor::zeros((0, embed_dim), DType::F32, device)?);
        }
        let width = self.positional_embedding.dim(1)?;
        let flat: Vec<u32> = ids
            .rows
            .iter()
            .flat_map(|r| r[..positions].iter().copied())
            .collect();
        let flat = Tensor::from_vec(flat, n * positions, device)?;
        let x = self
            .token_embedding
            .lookup(&flat)?
            .reshape((n, positions, width))?
            .broadcast_add(&self.positional_embedding.narrow(0, 0, positions)?)?;
        let pooled = self.transformer.forward_at(&x, true, &ids.eot)?;
        self.project(&pooled)
    }

    fn read_ids(&self, ids: &Tensor) -> Result<Ids> {
        let bad = |reason: String| Error::ModelInput {
            input: "token ids".into(),
            reason,
        };
        let (n, ctx) = ids
            .dims2()
            .map_err(|_| bad(format!("expected shape [n, context], got {:?}", ids.dims())))?;
        if ctx == 0 || ctx > self.context_length {
            return Err(bad(format!(
                "rows have {ctx} positions; the model takes 1 to {}",
                self.context_length
            )));
        }
        let values: Vec<i64> = match ids.dtype() {
            DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64 => {
                ids.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?
            }
            other => return Err(bad(format!("expected an integer tensor, got {other:?}"))),
        };
        let mut rows = Vec::with_capacity(n);
        let mut eot = Vec::with_capacity(n);
        for (r, row) in values.chunks(ctx).enumerate() {
            let mut ids_row = Vec::with_capacity(ctx);
            for &v in row {
                if v < 0 || v as usize >= self.vocab_size {
                    return Err(bad(format!(
                        "row {r} has token id {v}, outside the vocabulary of {}",
                        self.vocab_size
                    )));
                }
                ids_row.push(v as u32);
            }
            // torch.argmax: the first position holding the maximum.
            let (pos, _) =
                ids_row.iter().enumerate().fold(
                    (0, 0u32),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                );
            rows.push(ids_row);
            eot.push(pos);
        }
        Ok(Ids { rows, eot })
    }
}
