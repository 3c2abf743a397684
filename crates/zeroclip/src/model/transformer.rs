//! The transformer both towers share: `clip.model.Transformer` of `ResidualAttentionBlock`s
//! (pre-LayerNorm, `nn.MultiheadAttention` with a fused `in_proj`, MLP with QuickGELU), plus the
//! `Linear` and `LayerNorm` layers the rest of the model uses.
//!
//! Activations are batch-first `[n, tokens, width]` (the reference permutes to `[tokens, n,
//! width]` for `nn.MultiheadAttention`; the arithmetic is the same).

use super::config::Activation;
use super::{fused, gemm, ops};
use crate::error::Result;
use crate::tensors::{StoredTensor, Vb};
use candle_core::{DType, Device, Module, Tensor, D};
use std::cell::RefCell;
use std::sync::Arc;

/// `nn.Linear`: `x @ weight.T + bias`. On the CPU the weight is packed once at load for
/// [`gemm`] (and the stored `[out, in]` tensor dropped, so the model holds one copy); on other
/// devices it stays a tensor, read transposed by the matmul.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
    /// The checkpoint name of a layer whose precision follows the model's (for
    /// [`record_inputs`]); `None` for one that stays fp32.
    name: Option<Arc<str>>,
}

/// A named CPU [`Linear`]'s input during [`record_inputs`], with its weight and bias.
pub(super) struct Capture {
    pub(super) name: Arc<str>,
    pub(super) input: Tensor,
    pub(super) matrix: gemm::PackedMatrix,
    pub(super) bias: Option<Arc<[f32]>>,
}

thread_local! {
    /// The captures of a [`record_inputs`] running on this thread.
    static CAPTURES: RefCell<Option<Vec<Capture>>> = const { RefCell::new(None) };
}

/// Runs `f` (forwards on the CPU) and returns the input of every named CPU [`Linear`] it
/// applied, in order (the per-layer precision report, `layer_report.rs`). It runs on a worker
/// of the thread pool, where the forwards run their layers (`Clip::in_pool`).
pub(super) fn record_inputs(
    f: impl FnOnce() -> crate::Result<()> + Send,
) -> crate::Result<Vec<Capture>> {
    rayon::scope(|_| {
        CAPTURES.with(|c| *c.borrow_mut() = Some(Vec::new()));
        let result = f();
        let captures = CAPTURES.with(|c| c.borrow_mut().take()).unwrap_or_default();
        result.map(|()| captures)
    })
}

#[derive(Clone, Debug)]
enum LinearWeight {
    /// `weightᵀ` packed, with the bias values for the GEMM's epilogue.
    Packed {
        matrix: gemm::PackedMatrix,
        bias: Option<std::sync::Arc<[f32]>>,
    },
    Tensor(Tensor),
}

impl Linear {
    /// `weight` `[out, in]` and `bias` `[out]` under `vb`.
    pub fn new(vb: &Vb, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Linear::from_parts(
            vb.get_weight(&[out_dim, in_dim], "weight")?,
            Some(vb.get(&[out_dim], "bias")?),
            vb.precision().into(),
            codes(vb),
        )?
        .named(vb.prefix()))
    }

    /// The layer under its checkpoint name, one whose precision follows the model's.
    pub fn named(self, name: &str) -> Self {
        Linear {
            name: Some(name.into()),
            ..self
        }
    }

    /// From tensors already checked by the caller (`[out, in]`, `[out]`); the weight may be
    /// still in the mapped file or fp16 (packed straight from it on the CPU in `format`, int8
    /// codes as `codes` asks, widened to f32 elsewhere).
    pub fn from_parts(
        weight: StoredTensor,
        bias: Option<Tensor>,
        format: gemm::Format,
        codes: gemm::Codes,
    ) -> candle_core::Result<Self> {
        let weight = if weight.is_cpu() {
            let matrix = gemm::PackedMatrix::from_stored_transposed(weight, format, codes)?;
            let bias = match &bias {
                Some(b) => Some(gemm::with_f32(&b.to_dtype(DType::F32)?, |v| v.into())?),
                None => None,
            };
            LinearWeight::Packed { matrix, bias }
        } else {
            LinearWeight::Tensor(weight.into_tensor()?.to_dtype(DType::F32)?)
        };
        Ok(Linear {
            weight,
            bias,
            name: None,
        })
    }

    /// `[.., in]` → `[.., out]`, plus `residual` (shaped like the output) if given, added after
    /// the bias as the reference's `x + layer(y)` does.
    fn apply(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        gelu: bool,
    ) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.weight {
            LinearWeight::Packed { matrix, bias } => {
                if let Some(name) = &self.name {
                    CAPTURES.with(|c| {
                        if let Some(captures) = c.borrow_mut().as_mut() {
                            captures.push(Capture {
                                name: name.clone(),
                                input: x2.clone(),
                                matrix: matrix.clone(),
                                bias: bias.clone(),
                            });
                        }
                    });
                }
                let residual = match residual {
                    Some(r) => Some(r.reshape((rows, matrix.cols()))?),
                    None => None,
                };
                gemm::linear(&x2, matrix, bias.as_deref(), residual.as_ref(), gelu)?
            }
            LinearWeight::Tensor(w) => {
                let y = x2.matmul(&w.t()?)?;
                let y = match &self.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                };
                let y = match residual {
                    Some(r) => (r.reshape(y.dims())? + y)?,
                    None => y,
                };
                if gelu {
                    ops::quick_gelu(&y)?
                } else {
                    y
                }
            }
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().unwrap() = y.dim(1)?;
        y.reshape(out_dims)
    }

    /// `residual + self.forward(x)`, the addition fused into the GEMM on the CPU.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, Some(residual), false)
    }

    /// `quick_gelu(self.forward(x))`, the activation applied on the GEMM's tiles on the CPU.
    pub fn forward_quick_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, None, true)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.apply(x, None, false)
    }
}

/// LayerNorm in fp32 (`clip.model.LayerNorm`), two-pass.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Takes `weight` and `bias` of width `dim` from `vb`.
    pub fn new(vb: &Vb, dim: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get(&[dim], "weight")?,
            bias: vb.get(&[dim], "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// `nn.MultiheadAttention` (self-attention) with OpenAI's parameter names.
#[derive(Clone, Debug)]
pub struct MultiheadAttention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl MultiheadAttention {
    /// Takes `in_proj_weight`/`in_proj_bias` and `out_proj` of width `width` from `vb`.
    pub fn new(vb: &Vb, width: usize, heads: usize) -> Result<Self> {
        let in_proj = Linear::from_parts(
            vb.get_weight(&[3 * width, width], "in_proj_weight")?,
            Some(vb.get(&[3 * width], "in_proj_bias")?),
            vb.precision().into(),
            codes(vb),
        )?
        .named(&vb.path("in_proj"));
        Ok(MultiheadAttention {
            in_proj,
            out_proj: Linear::new(&vb.pp("out_proj"), width, width)?,
            heads,
        })
    }

    /// `residual + attention(x)` on the CPU for `x` `[rows, width]` holding the sequences
    /// `segments` (see [`fused::segment_attention`]); with `query`, only position `query[s]` of
    /// each sequence is computed after the keys and values (`residual` then has one row each).
    fn forward_rows_residual(
        &self,
        x: &Tensor,
        rows: &Rows,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let qkv = self.in_proj.forward(x)?;
        let heads =
            fused::segment_attention(&qkv, self.heads, rows.causal, &rows.segments, rows.query)?;
        self.out_proj.forward_residual(&heads, residual)
    }

    /// `x` `[n, t, width]`; `causal` applies [`causal_mask`].
    pub fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let (n, t, width) = x.dims3()?;
        let (h, d) = (self.heads, width / self.heads);
        // One copy puts q, k and v each contiguous as [n, heads, t, head_dim].
        let qkv = self
            .in_proj
            .forward(x)?
            .reshape((n, t, 3, h, d))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = (q.matmul(&k.t()?)? * (d as f64).powf(-0.5))?;
        let scores = if causal {
            scores.broadcast_add(&causal_mask(t, x.device())?)?
        } else {
            scores
        };
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((n, t, width))?;
        self.out_proj.forward(&out)
    }
}

/// `ResidualAttentionBlock`: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Clone, Debug)]
pub struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: MultiheadAttention,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    activation: Activation,
}

impl ResidualAttentionBlock {
    /// Takes `ln_1`, `attn`, `ln_2` and `mlp.c_fc`/`mlp.c_proj` (4× wide) from `vb`.
    pub fn new(vb: &Vb, width: usize, heads: usize, act: Activation, eps: f32) -> Result<Self> {
        let mlp = vb.pp("mlp");
        Ok(ResidualAttentionBlock {
            ln_1: LayerNorm::new(&vb.pp("ln_1"), width, eps)?,
            attn: MultiheadAttention::new(&vb.pp("attn"), width, heads)?,
            ln_2: LayerNorm::new(&vb.pp("ln_2"), width, eps)?,
            c_fc: Linear::new(&mlp.pp("c_fc"), width, 4 * width)?,
            c_proj: Linear::new(&mlp.pp("c_proj"), 4 * width, width)?,
            activation: act,
        })
    }

    /// `x` `[n, t, width]`, with candle's ops (any device).
    pub fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, causal)?)?;
        let h = self.mlp(&self.ln_2.forward(&x)?)?;
        x + self.c_proj.forward(&h)?
    }

    /// The CPU path: `x` `[rows, width]` holding `rows.segments`; with `rows.query`, only
    /// one position per sequence is computed after the keys and values → `[sequences, width]`.
    fn forward_rows(&self, x: &Tensor, rows: &Rows) -> candle_core::Result<Tensor> {
        let residual = match rows.query {
            Some(q) => {
                let at: Vec<u32> = (rows.segments.iter().zip(q))
                    .map(|(&(first, _), &i)| (first + i) as u32)
                    .collect();
                let n = at.len();
                x.index_select(&Tensor::from_vec(at, n, x.device())?, 0)?
            }
            None => x.clone(),
        };
        let x = self
            .attn
            .forward_rows_residual(&self.ln_1.forward(x)?, rows, &residual)?;
        let h = self.mlp(&self.ln_2.forward(&x)?)?;
        self.c_proj.forward_residual(&h, &x)
    }

    /// `c_fc` and the activation.
    fn mlp(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.activation {
            Activation::QuickGelu => self.c_fc.forward_quick_gelu(x),
            Activation::Gelu => self.c_fc.forward(x)?.gelu_erf(),
        }
    }
}

/// Sequences stacked as the rows of one `[rows, width]` matrix, for the CPU path.
struct Rows<'a> {
    /// `(first row, rows)` of each sequence, in order.
    segments: Vec<(usize, usize)>,
    causal: bool,
    /// The one position of each sequence the caller keeps, when only that is needed.
    query: Option<&'a [usize]>,
}

/// `clip.model.Transformer`: `layers` blocks under `resblocks.{i}`.
#[derive(Clone, Debug)]
pub struct Transformer {
    blocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    /// Takes `layers` blocks from `vb`'s `resblocks.{i}`.
    pub fn new(
        vb: &Vb,
        width: usize,
        layers: usize,
        heads: usize,
        act: Activation,
        eps: f32,
    ) -> Result<Self> {
        let vb = vb.pp("resblocks");
        let blocks = (0..layers)
            .map(|i| ResidualAttentionBlock::new(&vb.pp(i), width, heads, act, eps))
            .collect::<Result<_>>()?;
        Ok(Transformer { blocks })
    }

    /// The output at position `pick[b]` of each sequence of `x` `[n, t, width]` → `[n, width]`.
    pub fn forward_at(
        &self,
        x: &Tensor,
        causal: bool,
        pick: &[usize],
    ) -> candle_core::Result<Tensor> {
        let (n, t, width) = x.dims3()?;
        if pick.len() != n || pick.iter().any(|&i| i >= t) {
            candle_core::bail!("transformer: positions {pick:?} for {n} sequences of {t}");
        }
        if cpu_f32(x) {
            let segments: Vec<usize> = vec![t; n];
            return self.forward_segments_at(&x.reshape((n * t, width))?, &segments, causal, pick);
        }
        gather_rows(&self.forward(x, causal)?, pick)
    }

    /// Sequences of lengths `lengths`, stacked without padding as the rows of `x`
    /// `[Σ lengths, width]` (CPU, f32) → the output at position `pick[s]` of each, `[n, width]`.
    /// The last block computes only those rows (its keys and values still come from every
    /// position), as nothing else of it is used by the pooling that follows.
    pub fn forward_segments_at(
        &self,
        x: &Tensor,
        lengths: &[usize],
        causal: bool,
        pick: &[usize],
    ) -> candle_core::Result<Tensor> {
        if pick.len() != lengths.len() || pick.iter().zip(lengths).any(|(&i, &len)| i >= len) {
            candle_core::bail!("transformer: positions {pick:?} for sequences of {lengths:?}");
        }
        let mut segments = Vec::with_capacity(lengths.len());
        let mut first = 0;
        for &len in lengths {
            segments.push((first, len));
            first += len;
        }
        let Some((last, blocks)) = self.blocks.split_last() else {
            let at: Vec<u32> = (segments.iter().zip(pick))
                .map(|(&(f, _), &i)| (f + i) as u32)
                .collect();
            let n = at.len();
            return x.index_select(&Tensor::from_vec(at, n, x.device())?, 0);
        };
        let mut rows = Rows {
            segments,
            causal,
            query: None,
        };
        let mut x = x.clone();
        for block in blocks {
            x = block.forward_rows(&x, &rows)?;
        }
        rows.query = Some(pick);
        last.forward_rows(&x, &rows)
    }

    /// `x` `[n, t, width]`; `causal` masks each position from the ones after it.
    pub fn forward(&self, x: &Tensor, causal: bool) -> candle_core::Result<Tensor> {
        let (n, t, width) = x.dims3()?;
        if cpu_f32(x) {
            let rows = Rows {
                segments: (0..n).map(|b| (b * t, t)).collect(),
                causal,
                query: None,
            };
            let mut y = x.reshape((n * t, width))?;
            for block in &self.blocks {
                y = block.forward_rows(&y, &rows)?;
            }
            return y.reshape((n, t, width));
        }
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward(&x, causal)?;
        }
        Ok(x)
    }
}

/// The int8 weight codes of the layers under `vb` (full where the view asks for them).
fn codes(vb: &Vb) -> gemm::Codes {
    if vb.full_int8_codes() {
        gemm::Codes::Full
    } else {
        gemm::Codes::Fastest
    }
}

/// The additive causal mask of `CLIP.build_attention_mask`: 0 on and below the diagonal, -inf above.
pub fn causal_mask(t: usize, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// Rows scaled to unit L2 norm (`x / x.norm(dim=1, keepdim=True)`).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// Whether the fused CPU kernels apply.
fn cpu_f32(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// Row `pick[b]` of each sequence of `x` `[n, t, width]` → `[n, width]`.
fn gather_rows(x: &Tensor, pick: &[usize]) -> candle_core::Result<Tensor> {
    let (n, t, width) = x.dims3()?;
    let flat: Vec<u32> = pick
        .iter()
        .enumerate()
        .map(|(b, &i)| (b * t + i) as u32)
        .collect();
    let flat = Tensor::from_vec(flat, n, x.device())?;
    x.reshape((n * t, width))?.index_select(&flat, 0)
}
