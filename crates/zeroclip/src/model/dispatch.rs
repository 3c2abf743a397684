//! Which micro-kernels a product runs: the CPU class (the widest the CPU has, or the narrower one
//! [`KERNEL_ENV`] names, so one machine tests and measures the classes it is not), and for each
//! storage [`Format`] the kernel of single panels and, where the CPU has one, the wider kernel of
//! pairs of panels. Extensions beyond a class — AVX-512 BF16 and VNNI, AVX-VNNI — are used only
//! when no class is named.

use super::microkernel::Kernel;
use super::{bf16, int8};
use crate::tensors::Precision;

/// The environment variable that restricts the kernels to a class of CPU (case-insensitive):
/// `native` (the default: everything the CPU has), `avx512` (AVX-512 F without its VNNI and BF16
/// extensions), `avx2` (AVX2 + FMA without AVX-VNNI) or `portable` (no SIMD). It lets one machine
/// measure and test the code paths of the CPUs it is not.
pub const KERNEL_ENV: &str = "ZEROCLIP_KERNEL";

/// Set once [`KERNEL_ENV`] is read and honoured or narrowed.
static FORCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Kernel {
    /// Every kernel this CPU runs, widest first (the portable one always).
    pub(super) fn supported() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::Avx512);
            }
            if avx2 {
                all.push(Kernel::Avx2Fma);
            }
        }
        all.push(Kernel::Portable);
        all
    }

    /// The kernel the products use: the widest this CPU runs, or the one [`KERNEL_ENV`] asks
    /// for. A name this CPU cannot run, or an unknown one, is reported once on standard error
    /// and the widest supported kernel no wider than the request is used.
    pub(super) fn selected() -> Kernel {
        static SELECTED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            let supported = Self::supported();
            let Ok(request) = std::env::var(KERNEL_ENV) else {
                return supported[0];
            };
            if request.trim().eq_ignore_ascii_case("native") {
                return supported[0];
            }
            FORCED.store(true, std::sync::atomic::Ordering::Relaxed);
            let (kernel, problem) = choose(&request, &supported);
            if let Some(problem) = problem {
                eprintln!(
                    "zeroclip: {KERNEL_ENV}={request:?}: {problem}; using {}",
                    kernel.name()
                );
            }
            kernel
        })
    }

    /// Whether [`KERNEL_ENV`] names a class (then the extensions beyond it — AVX-512 VNNI and
    /// BF16, AVX-VNNI — stay unused, so the class is measured as it is).
    pub(super) fn forced() -> bool {
        Self::selected();
        FORCED.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The kernel for a [`KERNEL_ENV`] value among `supported` (widest first), and why the request
/// was not honoured as given, if it was not.
fn choose(request: &str, supported: &[Kernel]) -> (Kernel, Option<String>) {
    const ORDER: [&str; 3] = ["avx512", "avx2", "portable"];
    let wanted = request.trim().to_ascii_lowercase();
    let Some(rank) = ORDER.iter().position(|n| *n == wanted) else {
        let problem = format!("unknown kernel (expected native, {})", ORDER.join(", "));
        return (supported[0], Some(problem));
    };
    let rank_of = |k: &Kernel| ORDER.iter().position(|n| *n == k.name()).unwrap_or(0);
    // `supported` always ends with the portable kernel, the narrowest.
    let kernel = *supported
        .iter()
        .find(|k| rank_of(k) >= rank)
        .unwrap_or(&Kernel::Portable);
    let problem = (rank_of(&kernel) != rank).then(|| "this CPU cannot run it".to_string());
    (kernel, problem)
}

/// How a packed matrix (`packed.rs`) stores its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// f32, as given.
    #[default]
    F32,
    /// Rounded to bf16 and stored as slots of two consecutive `k` (see `bf16.rs`); the
    /// left-hand side is rounded to bf16 for the product too, which accumulates in f32.
    Bf16,
    /// Symmetric int8 codes per column with a scale each, stored as slots of four consecutive
    /// `k` (see `int8.rs`); the left-hand side is quantized per row for each product.
    Int8,
}

impl From<Precision> for Format {
    fn from(p: Precision) -> Format {
        match p {
            Precision::Fp32 => Format::F32,
            Precision::Bf16 => Format::Bf16,
            Precision::Int8 => Format::Int8,
        }
    }
}

/// The kernel the products of `format` run with (their wide one where there is one).
pub fn kernel_name_for(format: Format) -> &'static str {
    let k = kernels_for(Kernel::selected(), format, !Kernel::forced());
    k.wide.unwrap_or(k.narrow).name()
}

/// The kernels of a product: one for single panels, and one for pairs of full panels where
/// the CPU has a wider one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Kernels {
    pub(super) narrow: Kernel,
    pub(super) wide: Option<Kernel>,
}

/// The kernels for `format` when the f32 products use `selected`, with the CPU's extensions
/// beyond the class (AVX-512 BF16 and VNNI, AVX-VNNI) where `extensions` allows.
pub(super) fn kernels_for(selected: Kernel, format: Format, extensions: bool) -> Kernels {
    let (narrow, wide) = match (selected, format) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::F32) => (Kernel::Avx2Fma, Some(Kernel::Avx512)),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Bf16) => {
            let native = bf16::native() && extensions;
            (Kernel::Bf16Avx2, native.then_some(Kernel::Bf16Avx512))
        }
        #[cfg(target_arch = "x86_64")]
        (_, Format::Bf16) if selected != Kernel::Portable => (Kernel::Bf16Avx2, None),
        (_, Format::Bf16) => (Kernel::Bf16Portable, None),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::vnni() && extensions => {
            (Kernel::Int8Vnni256, Some(Kernel::Int8Vnni512))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::avx512bw() => {
            (Kernel::Int8Avx2, Some(Kernel::Int8Avx512Bw))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2Fma, Format::Int8) if int8::avx_vnni() && extensions => {
            (Kernel::Int8AvxVnni, None)
        }
        #[cfg(target_arch = "x86_64")]
        (_, Format::Int8) if selected != Kernel::Portable => (Kernel::Int8Avx2, None),
        (_, Format::Int8) => (Kernel::Int8Portable, None),
        (other, Format::F32) => (other, None),
    };
    Kernels { narrow, wide }
}

/// The largest weight code of `format` (int8): ±63 where the products run on the plain AVX2
/// kernel (see `int8.rs`), else ±127.
pub(super) fn weight_code_max(format: Format) -> f32 {
    let kernels = kernels_for(Kernel::selected(), format, !Kernel::forced());
    int8_code_max(kernels)
}

/// [`weight_code_max`] for given kernels.
pub(super) fn int8_code_max(kernels: Kernels) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if kernels.narrow == Kernel::Int8Avx2 {
        return 63.0;
    }
    let _ = kernels;
    127.0
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_honoured_or_narrowed_never_widened() {
        let all = [Kernel::Avx512, Kernel::Avx2Fma, Kernel::Portable];
        assert_eq!(choose("avx2", &all), (Kernel::Avx2Fma, None));
        assert_eq!(choose(" AVX512 ", &all), (Kernel::Avx512, None));
        assert_eq!(choose("portable", &all), (Kernel::Portable, None));
        let avx2_only = [Kernel::Avx2Fma, Kernel::Portable];
        let (k, problem) = choose("avx512", &avx2_only);
        assert_eq!(k, Kernel::Avx2Fma);
        assert!(problem.unwrap().contains("cannot run"));
        let (k, problem) = choose("avx2", &[Kernel::Portable]);
        assert_eq!(k, Kernel::Portable);
        assert!(problem.is_some());
        let (k, problem) = choose("sse9", &all);
        assert_eq!(k, Kernel::Avx512);
        assert!(problem.unwrap().contains("native, avx512, avx2, portable"));
    }
}
