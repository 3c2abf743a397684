//! The ResNet image tower, `clip.model.ModifiedResNet`: a 3-convolution stem with an average pool,
//! four stages of anti-aliased `Bottleneck`s (a stride-`s` block average-pools after its 3×3
//! convolution and before its downsampling 1×1 convolution instead of striding), and
//! `AttentionPool2d`, multi-head attention whose query is the mean of the final feature map.
//!
//! The trunk's activations are channels-last (`[n, h, w, c]`; the reference is NCHW, the
//! arithmetic is the same): every convolution is then one GEMM over the batch's pixels
//! (`conv.rs`). BatchNorm (eval mode) is applied as PyTorch's CPU kernel applies it, `y·α + β`
//! per channel with `α = γ / √(σ² + ε)` and `β = b − μ·α` precomputed, together with the
//! residual addition and ReLU, on each GEMM tile as it is finished. (Folding `α` into the convolution weights would save that pass but moves the result
//! measurably further from the reference on deep random ResNets; see docs/FIDELITY.md.)

use super::config::ClipConfig;
use super::conv;
use super::gemm;
use super::transformer::Linear;
use crate::error::Result;
use crate::tensors::Vb;
use candle_core::{Module, Tensor, D};

/// The reference's `nn.BatchNorm2d` epsilon.
const BN_EPS: f64 = 1e-5;

/// Images run through the stem and the first stage together (see [`ModifiedResNet::forward`]).
const IMAGES_PER_PASS: usize = 8;
/// Images run through the later stages together on the CPU.
const IMAGES_PER_LATE_PASS: usize = 16;

/// A bias-free convolution followed by an eval-mode BatchNorm, on channels-last activations.
#[derive(Clone, Debug)]
struct ConvBn(conv::ConvAffine);

impl ConvBn {
    /// `conv` names the convolution (`{conv}.weight`), `bn` the BatchNorm module.
    fn new(
        conv: &Vb,
        bn: &Vb,
        (c_in, c_out): (usize, usize),
        kernel: usize,
        stride: usize,
    ) -> Result<Self> {
        let w = conv.get_weight(&[c_out, c_in, kernel, kernel], "weight")?;
        let gamma = bn.get(&[c_out], "weight")?;
        let bias = bn.get(&[c_out], "bias")?;
        let mean = bn.get(&[c_out], "running_mean")?;
        let var = bn.get(&[c_out], "running_var")?;
        // Part of the state_dict (and of OpenAI's files), unused in eval mode.
        bn.get_optional(&[], "num_batches_tracked")?;
        let alpha = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
        let beta = bias.sub(&mean.mul(&alpha)?)?;
        Ok(ConvBn(conv::ConvAffine::new(w, alpha, beta, stride)?))
    }

    /// `bn(conv(x))`, followed by a ReLU if `relu`.
    fn forward(&self, x: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
        self.0.forward(x, None, relu)
    }

    /// `relu(bn(conv(x)) + residual)`.
    fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x, Some(residual), true)
    }
}

/// `[n, h, w, c]` of a channels-last activation.
type Dims = (usize, usize, usize, usize);

fn len((n, h, w, c): Dims) -> usize {
    n * h * w * c
}

/// The first `len` values of `v`, grown (never shrunk) as needed.
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `src` (dims `d`) average-pooled by `s` into `buf` — or `src` itself when `s` is 1 — and the
/// result's dims.
fn pooled<'a>(src: &'a [f32], d: Dims, s: usize, buf: &'a mut Vec<f32>) -> (&'a [f32], Dims) {
    if s == 1 {
        return (src, d);
    }
    let dp = (d.0, d.1 / s, d.2 / s, d.3);
    conv::avg_pool_into(src, d, s, sized(buf, len(dp)));
    (&buf[..len(dp)], dp)
}

/// The CPU trunk's activations, reused from op to op and from call to call: every op writes
/// its whole output, so nothing is cleared, and no fresh pages are mapped and faulted in for
/// each of the trunk's ~70 activations (26 MB each for 8 images at stage 1).
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    y: Vec<f32>,
    t1: Vec<f32>,
    t2: Vec<f32>,
    t3: Vec<f32>,
    xp: Vec<f32>,
    id: Vec<f32>,
    conv: conv::ConvScratch,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// `Bottleneck` (expansion 4): 1×1, 3×3, [avgpool], 1×1, plus the (avgpool + 1×1) shortcut.
#[derive(Clone, Debug)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
    stride: usize,
}

impl Bottleneck {
    fn new(vb: &Vb, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride > 1 || inplanes != out {
            let ds = vb.pp("downsample");
            Some(ConvBn::new(&ds.pp(0), &ds.pp(1), (inplanes, out), 1, 1)?)
        } else {
            None
        };
        Ok(Bottleneck {
            conv1: ConvBn::new(&vb.pp("conv1"), &vb.pp("bn1"), (inplanes, planes), 1, 1)?,
            conv2: ConvBn::new(&vb.pp("conv2"), &vb.pp("bn2"), (planes, planes), 3, 1)?,
            conv3: ConvBn::new(&vb.pp("conv3"), &vb.pp("bn3"), (planes, out), 1, 1)?,
            downsample,
            stride,
        })
    }

    /// [`Self::forward`] on the CPU trunk's buffers: reads `s.x` (`[n, h, w, c]`), leaves the
    /// result in `s.x` and returns its dims.
    fn run_cpu(&self, s: &mut Scratch, (n, h, w, c): Dims) -> candle_core::Result<Dims> {
        let (conv1, conv2, conv3) = (&self.conv1.0, &self.conv2.0, &self.conv3.0);
        let st = self.stride;
        let x = &s.x[..n * h * w * c];
        let d1 = conv1.out_dims((n, h, w));
        conv1.run(
            x,
            (n, h, w),
            sized(&mut s.t1, len(d1)),
            None,
            true,
            &mut s.conv,
        )?;
        let d2 = conv2.out_dims((n, d1.1, d1.2));
        let t1 = &s.t1[..len(d1)];
        conv2.run(
            t1,
            (n, d1.1, d1.2),
            sized(&mut s.t2, len(d2)),
            None,
            true,
            &mut s.conv,
        )?;
        let (main, dm) = pooled(&s.t2[..len(d2)], d2, st, &mut s.t3);
        let identity = match &self.downsample {
            Some(ds) => {
                let (src, di) = pooled(x, (n, h, w, c), st, &mut s.xp);
                let dd = ds.0.out_dims((n, di.1, di.2));
                ds.0.run(
                    src,
                    (n, di.1, di.2),
                    sized(&mut s.id, len(dd)),
                    None,
                    false,
                    &mut s.conv,
                )?;
                &s.id[..len(dd)]
            }
            None => x,
        };
        let d3 = conv3.out_dims((n, dm.1, dm.2));
        let y = sized(&mut s.y, len(d3));
        conv3.run(main, (n, dm.1, dm.2), y, Some(identity), true, &mut s.conv)?;
        std::mem::swap(&mut s.x, &mut s.y);
        Ok(d3)
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let pool = |t: Tensor| conv::avg_pool(&t, self.stride);
        let out = self.conv1.forward(x, true)?;
        let out = pool(self.conv2.forward(&out, true)?)?;
        let identity = match &self.downsample {
            Some(ds) => ds.forward(&pool(x.clone())?, false)?,
            None => x.clone(),
        };
        self.conv3.forward_add_relu(&out, &identity)
    }
}

/// `AttentionPool2d`: attention over the flattened feature map, of which only the query of the
/// prepended mean token is kept (`x[0]`), so only that query is computed.
///
/// With one query per head, the key and value projections fold into it: head `h`'s score of
/// token `t` is `q_h·(W_k,h x_t + b_k,h) = (W_k,hᵀ q_h)·x_t + q_h·b_k,h`, and the last term is
/// the same for every token, so softmax cancels it; its output is
/// `Σ_t a_t (W_v,h x_t + b_v,h) = W_v,h (Σ_t a_t x_t) + b_v,h` since the weights `a_t` sum to 1.
/// The same function as the reference's, with two `[c, c]` products per image instead of one
/// per token for each projection (50 tokens for a 7×7 map); the rounding differs only as any
/// reordered sum does (measured against float64 in docs/FIDELITY.md). `k_proj` and `v_proj` are
/// therefore not low-precision layers in any mode.
#[derive(Clone, Debug)]
struct AttentionPool2d {
    positional_embedding: Tensor,
    q_proj: Linear,
    /// `k_proj.weight` as `[heads, head_dim, c]` (its bias cancels in the softmax).
    k_weight: Tensor,
    /// `v_proj.weight` per head, transposed: `[heads, c, head_dim]`.
    v_weight_t: Tensor,
    v_bias: Tensor,
    c_proj: Linear,
    heads: usize,
}

impl AttentionPool2d {
    fn new(vb: &Vb, spacial: usize, embed: usize, heads: usize, out: usize) -> Result<Self> {
        let d = embed / heads;
        let per_head = |name: &str| -> Result<Tensor> {
            let w = vb.pp(name).get(&[embed, embed], "weight")?;
            Ok(w.reshape((heads, d, embed))?)
        };
        // Part of the checkpoint (read, so loading stays strict); it cancels in the softmax.
        vb.pp("k_proj").get(&[embed], "bias")?;
        Ok(AttentionPool2d {
            positional_embedding: vb
                .get(&[spacial * spacial + 1, embed], "positional_embedding")?,
            q_proj: Linear::new(&vb.pp("q_proj"), embed, embed)?,
            k_weight: per_head("k_proj")?,
            v_weight_t: per_head("v_proj")?.transpose(1, 2)?.contiguous()?,
            v_bias: vb.pp("v_proj").get(&[embed], "bias")?,
            c_proj: Linear::new(&vb.pp("c_proj"), embed, out)?,
            heads,
        })
    }

    /// `x` channels-last, `[n, h, w, c]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let x = x.reshape((n, h * w, c))?;
        let mean = x.mean_keepdim(1)?;
        let x = Tensor::cat(&[&mean, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let (heads, d) = (self.heads, c / self.heads);
        // [heads, n, d] · [heads, d, c]: each head's query carried back through W_k.
        let q = self.q_proj.forward(&x.narrow(1, 0, 1)?)?;
        let q = q.reshape((n, heads, d))?.transpose(0, 1)?.contiguous()?;
        let qk = q.matmul(&self.k_weight)?.transpose(0, 1)?.contiguous()?; // [n, heads, c]
        let scores = (qk.matmul(&x.t()?)? * (d as f64).powf(-0.5))?; // [n, heads, t]
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let mixed = attn.matmul(&x)?.transpose(0, 1)?.contiguous()?; // [heads, n, c]
        let out = mixed.matmul(&self.v_weight_t)?; // [heads, n, d]
        let out = out
            .transpose(0, 1)?
            .reshape((n, c))?
            .broadcast_add(&self.v_bias)?;
        self.c_proj.forward(&out)
    }
}

/// `ModifiedResNet`.
#[derive(Clone, Debug)]
pub struct ModifiedResNet {
    stem: [ConvBn; 3],
    stages: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool2d,
    /// The CPU trunk's buffers between calls (a concurrent call makes its own).
    scratch: std::sync::Arc<std::sync::Mutex<Option<Scratch>>>,
}

impl ModifiedResNet {
    /// Reads the tower under `visual.` (the caller passes `vb.pp("visual")`).
    pub fn new(
        vb: &Vb,
        cfg: &ClipConfig,
        layers: [usize; 4],
        width: usize,
        heads: usize,
    ) -> Result<Self> {
        let half = width / 2;
        let stem = [
            ConvBn::new(&vb.pp("conv1"), &vb.pp("bn1"), (3, half), 3, 2)?,
            ConvBn::new(&vb.pp("conv2"), &vb.pp("bn2"), (half, half), 3, 1)?,
            ConvBn::new(&vb.pp("conv3"), &vb.pp("bn3"), (half, width), 3, 1)?,
        ];
        let mut inplanes = width;
        let mut stages = Vec::with_capacity(4);
        for (i, &blocks) in layers.iter().enumerate() {
            let planes = width << i;
            let stride = if i == 0 { 1 } else { 2 };
            let stage_vb = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let s = if b == 0 { stride } else { 1 };
                stage.push(Bottleneck::new(&stage_vb.pp(b), inplanes, planes, s)?);
                inplanes = planes * 4;
            }
            stages.push(stage);
        }
        let attnpool = AttentionPool2d::new(
            &vb.pp("attnpool"),
            cfg.image_resolution / 32,
            width * 32,
            heads,
            cfg.embed_dim,
        )?;
        Ok(ModifiedResNet {
            stem,
            stages,
            attnpool,
            scratch: Default::default(),
        })
    }

    /// `pixels` `[n, 3, r, r]` f32 (shape checked by the caller) → `[n, embed_dim]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let cpu = matches!(pixels.device(), candle_core::Device::Cpu)
            && pixels.dtype() == candle_core::DType::F32
            && self.stem[0].0.is_packed();
        let features = if cpu {
            self.trunk_cpu(pixels)?
        } else {
            self.trunk(pixels)?
        };
        Ok(self.attnpool.forward(&features)?)
    }

    /// The convolutional trunk with tensor ops (any device): `[n, 3, r, r]` → `[n, g, g, c]`.
    fn trunk(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let n = pixels.dim(0)?;
        let mut features = Vec::with_capacity(n.div_ceil(IMAGES_PER_PASS));
        for start in (0..n).step_by(IMAGES_PER_PASS) {
            let images = pixels.narrow(0, start, IMAGES_PER_PASS.min(n - start))?;
            let mut x = images.permute((0, 2, 3, 1))?.contiguous()?;
            for conv in &self.stem {
                x = conv.forward(&x, true)?;
            }
            x = conv::avg_pool(&x, 2)?;
            for stage in &self.stages {
                for block in stage {
                    x = block.forward(&x)?;
                }
            }
            features.push(x);
        }
        Tensor::cat(&features, 0)
    }

    /// The trunk on the CPU, on reused buffers ([`Scratch`]): the stem and the first stage
    /// (112×112 and 56×56 activations) [`IMAGES_PER_PASS`] images at a time, the later stages
    /// [`IMAGES_PER_LATE_PASS`] at a time, so their GEMMs (196 or 49 rows per image) get more
    /// rows for the same buffer sizes (8 and 16 measured 6 % faster than 4 for all stages).
    fn trunk_cpu(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let n = pixels.dim(0)?;
        let taken = self.scratch.lock().ok().and_then(|mut s| s.take());
        let mut s = taken.unwrap_or_default();
        let (early, late) = self.stages.split_at(1.min(self.stages.len()));
        let mut mid = Vec::new();
        let mut d = (0, 0, 0, 0);
        for start in (0..n).step_by(IMAGES_PER_PASS) {
            let images = pixels.narrow(0, start, IMAGES_PER_PASS.min(n - start))?;
            let (b, c, r, _) = images.dims4()?;
            let nhwc = images.permute((0, 2, 3, 1))?;
            gemm::with_f32(&nhwc, |v| sized(&mut s.x, v.len()).copy_from_slice(v))?;
            d = (b, r, r, c);
            for conv in &self.stem {
                let out = conv.0.out_dims((d.0, d.1, d.2));
                let y = sized(&mut s.y, len(out));
                conv.0
                    .run(&s.x[..len(d)], (d.0, d.1, d.2), y, None, true, &mut s.conv)?;
                std::mem::swap(&mut s.x, &mut s.y);
                d = out;
            }
            let pooled = (d.0, d.1 / 2, d.2 / 2, d.3);
            conv::avg_pool_into(&s.x[..len(d)], d, 2, sized(&mut s.y, len(pooled)));
            std::mem::swap(&mut s.x, &mut s.y);
            d = pooled;
            for block in early.iter().flatten() {
                d = block.run_cpu(&mut s, d)?;
            }
            mid.extend_from_slice(&s.x[..len(d)]);
        }
        let per_image = len((1, d.1, d.2, d.3));
        let mut features = Vec::new();
        let mut dims = d;
        for start in (0..n).step_by(IMAGES_PER_LATE_PASS) {
            let b = IMAGES_PER_LATE_PASS.min(n - start);
            let part = &mid[start * per_image..(start + b) * per_image];
            sized(&mut s.x, part.len()).copy_from_slice(part);
            let mut d = (b, d.1, d.2, d.3);
            for block in late.iter().flatten() {
                d = block.run_cpu(&mut s, d)?;
            }
            features.extend_from_slice(&s.x[..len(d)]);
            dims = d;
        }
        if let Ok(mut slot) = self.scratch.lock() {
            *slot = Some(s);
        }
        Tensor::from_vec(
            features,
            (n, dims.1, dims.2, dims.3),
            &candle_core::Device::Cpu,
        )
    }
}
