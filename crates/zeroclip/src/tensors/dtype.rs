//! Element types: checkpoint bytes to candle tensors, or to f32 rows as a weight is packed
//! straight from the mapped file, and fp16 widened to f32 when a layer takes a weight. Shared by
//! the readers (`weights/`) and the layers (`model/`), which never import each other's modules
//! for it.

use candle_core::{Device, Tensor};
use zeroclip_pt::DType;

/// A tensor from little-endian row-major bytes: fp16 kept as fp16 (half the memory until a layer
/// takes it, widening it then — [`super::Vb::get`] — or packing a GEMM weight straight from it),
/// every other type widened to f32 in one pass.
pub(crate) fn load_tensor(
    elem: DType,
    shape: &[usize],
    bytes: &[u8],
    device: &Device,
) -> candle_core::Result<Tensor> {
    if elem == DType::F16 {
        let numel: usize = shape.iter().product();
        if bytes.len() != 2 * numel {
            candle_core::bail!("{} bytes do not hold {numel} F16 elements", bytes.len());
        }
        // SAFETY: every bit pattern is a valid f16; `align_to` only yields the aligned middle.
        let (head, aligned, _) = unsafe { bytes.align_to::<half::f16>() };
        let halves: Vec<half::f16> = if cfg!(target_endian = "little") && head.is_empty() {
            aligned.to_vec()
        } else {
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        return Tensor::from_vec(halves, shape, device);
    }
    fn conv<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect()
    }
    let data: Vec<f32> = match elem {
        DType::F16 => unreachable!("kept as f16 above"),
        DType::BF16 => conv(bytes, |b| half::bf16::from_le_bytes(b).to_f32()),
        DType::F32 => conv(bytes, f32::from_le_bytes),
        DType::F64 => conv(bytes, |b| f64::from_le_bytes(b) as f32),
        DType::I64 => conv(bytes, |b| i64::from_le_bytes(b) as f32),
        DType::I32 => conv(bytes, |b| i32::from_le_bytes(b) as f32),
        DType::I16 => conv(bytes, |b| i16::from_le_bytes(b) as f32),
        DType::I8 => conv(bytes, |b: [u8; 1]| b[0] as i8 as f32),
        DType::U8 | DType::Bool => conv(bytes, |b: [u8; 1]| b[0] as f32),
    };
    let numel: usize = shape.iter().product();
    if data.len() != numel {
        candle_core::bail!(
            "{} bytes do not hold {numel} {elem:?} elements",
            bytes.len()
        );
    }
    Tensor::from_vec(data, shape, device)
}

/// fp16 values widened to f32, in parallel blocks, each converted with half's slice conversion
/// (F16C, eight values per instruction, where the CPU has it). OpenAI's files are fp16, so this
/// is ~150 million values for ViT-B/32; one value at a time on one thread it was about 40% of the
/// load time.
pub(crate) fn widen_f16(halves: &[half::f16]) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    let mut out = vec![0f32; halves.len()];
    out.par_chunks_mut(BLOCK)
        .zip(halves.par_chunks(BLOCK))
        .for_each(|(dst, src)| src.convert_to_f32_slice(dst));
    out
}

/// Little-endian f32, f16 or bf16 `bytes` widened into `dst`, one element each. Refuses bytes
/// that are not exactly `dst.len()` elements, and any other dtype.
pub(crate) fn widen_le_row(elem: DType, bytes: &[u8], dst: &mut [f32]) -> candle_core::Result<()> {
    use half::slice::HalfFloatSliceExt;
    let size = elem.size_in_bytes();
    if !matches!(elem, DType::F32 | DType::F16 | DType::BF16) {
        candle_core::bail!("{elem:?} is not a float type a weight is read from");
    }
    if dst.len().checked_mul(size) != Some(bytes.len()) {
        candle_core::bail!(
            "{} bytes do not hold {} {elem:?} elements",
            bytes.len(),
            dst.len()
        );
    }
    let two = |b: &[u8]| [b[0], b[1]];
    match elem {
        DType::F32 => match as_native::<f32>(bytes) {
            Some(values) => dst.copy_from_slice(values),
            None => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        },
        DType::F16 => match as_native::<half::f16>(bytes) {
            Some(values) => values.convert_to_f32_slice(dst),
            None => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes(two(b)).to_f32();
                }
            }
        },
        _ => match as_native::<half::bf16>(bytes) {
            Some(values) => values.convert_to_f32_slice(dst),
            None => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::bf16::from_le_bytes(two(b)).to_f32();
                }
            }
        },
    }
    Ok(())
}

/// Little-endian `bytes` as the float type `T` they hold, when the machine is little-endian and
/// they are aligned for `T` (a mapped file's weights nearly always are); `None` otherwise.
fn as_native<T: FloatBits>(bytes: &[u8]) -> Option<&[T]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: `T` is f32, f16 or bf16 (`FloatBits` is implemented for nothing else), for which
    // every bit pattern is a valid value; `align_to` only yields the aligned middle.
    let (head, values, tail) = unsafe { bytes.align_to::<T>() };
    (head.is_empty() && tail.is_empty()).then_some(values)
}

/// The float types [`as_native`] may view bytes as: plain data, valid for every bit pattern.
trait FloatBits: Copy {}
impl FloatBits for f32 {}
impl FloatBits for half::f16 {}
impl FloatBits for half::bf16 {}

/// [`widen_le_row`] for a whole tensor, in parallel blocks.
pub(crate) fn widen_le(elem: DType, bytes: &[u8], dst: &mut [f32]) -> candle_core::Result<()> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    let size = elem.size_in_bytes();
    if dst.len().checked_mul(size) != Some(bytes.len()) {
        // The same refusal, worded once.
        return widen_le_row(elem, bytes, dst);
    }
    dst.par_chunks_mut(BLOCK)
        .zip(bytes.par_chunks(BLOCK * size))
        .try_for_each(|(d, b)| widen_le_row(elem, b, d))
}

/// `t` as f32: fp16 CPU tensors through [`widen_f16`], anything else through candle.
pub(crate) fn to_f32(t: Tensor) -> candle_core::Result<Tensor> {
    if t.dtype() == candle_core::DType::F32 {
        return Ok(t);
    }
    if t.dtype() == candle_core::DType::F16 && matches!(t.device(), Device::Cpu) {
        let t = t.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(candle_core::CpuStorage::F16(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            let wide = widen_f16(&v[a..b]);
            return Tensor::from_vec(wide, t.dims(), &Device::Cpu);
        }
    }
    t.to_dtype(candle_core::DType::F32)
}
