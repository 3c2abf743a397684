//! Which micro-kernels a product runs: the CPU class (the widest the CPU has, or the narrower one
//! [`KERNEL_ENV`] names, so one machine tests and measures the classes it is not), and for each
//! storage [`Format`] the kernel of single panels and, where the CPU has one, the wider kernel of
//! pairs of panels; for int8 the matrix's weight codes (±63 or ±127, see `int8.rs`) pick among
//! the `vpmaddubsw` kernels of the classes without VNNI (`Kernels::for_codes`). Extensions beyond
//! a class — AVX-512 BF16 and VNNI, AVX-VNNI — are used only when no class is named. Where only
//! the portable kernel runs and the CPU is not x86 (aarch64), the f32 products go through the
//! `gemm` crate instead (candle's CPU matmul, which has NEON kernels; `fallback.rs`); on x86
//! without AVX2 the portable loops stay, measured faster there than that crate's scalar kernels
//! (docs/PERFORMANCE.md, speed round 3).

#[cfg(target_arch = "x86_64")]
use super::bf16;
use super::microkernel::Kernel;
use super::{amx, int8};
use crate::tensors::Precision;

/// The environment variable that holds the kernels to a class of CPU (case-insensitive; see
/// [`Class`]): `native` (the default: everything the CPU has), `avx512-vnni`, `avx512`,
/// `avx2-vnni`, `avx2`, `portable` or `candle`. It lets one machine measure and test the code
/// paths of the CPUs it is not.
pub const KERNEL_ENV: &str = "ZEROCLIP_KERNEL";

/// A class of CPU the products can be held to, widest first. Each names what its kernels may
/// use, so a machine with more stands in for one with less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Everything this CPU has, AMX tiles included.
    Native,
    /// AVX-512 with VNNI (and BF16 where present), no AMX: Ice Lake to Zen 4.
    Avx512Vnni,
    /// AVX-512 F, BW and VL without VNNI and BF16: Skylake-SP.
    Avx512,
    /// AVX2 + FMA with AVX-VNNI, no AVX-512: Alder Lake and later client CPUs.
    Avx2Vnni,
    /// AVX2 + FMA alone: Haswell to Zen 3.
    Avx2,
    /// No SIMD of ours: the portable loops (and every CPU other than x86-64, f32 aside: see
    /// [`Class::f32_through_gemm_crate`]).
    Portable,
    /// The portable loops for bf16 and int8, the `gemm` crate (candle's matmul) for f32: what a
    /// CPU other than x86 runs by default, forced anywhere.
    Candle,
}

/// What a class's products may use beyond its f32 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extensions {
    /// AVX-512 VNNI's `vpdpbusd` and AVX-512 BF16's `vdpbf16ps`.
    pub(super) avx512_vnni_bf16: bool,
    /// AVX-VNNI's `vpdpbusd` on 256-bit registers.
    pub(super) avx_vnni: bool,
    /// AMX tiles for int8 and bf16 products (where the CPU and the OS allow them).
    pub(super) amx: bool,
}

impl Class {
    const ALL: [Class; 7] = [
        Class::Native,
        Class::Avx512Vnni,
        Class::Avx512,
        Class::Avx2Vnni,
        Class::Avx2,
        Class::Portable,
        Class::Candle,
    ];

    /// The class's name, as [`KERNEL_ENV`] spells it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Class::Native => "native",
            Class::Avx512Vnni => "avx512-vnni",
            Class::Avx512 => "avx512",
            Class::Avx2Vnni => "avx2-vnni",
            Class::Avx2 => "avx2",
            Class::Portable => "portable",
            Class::Candle => "candle",
        }
    }

    /// The next narrower class a request falls back to when this CPU cannot run it.
    fn narrower(self) -> Class {
        match self {
            Class::Native | Class::Avx512Vnni => Class::Avx512,
            Class::Avx512 | Class::Avx2Vnni => Class::Avx2,
            Class::Avx2 | Class::Portable | Class::Candle => Class::Portable,
        }
    }

    /// Whether this CPU runs the class.
    pub(super) fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            let avx512 = avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512vl");
            match self {
                Class::Native | Class::Portable | Class::Candle => true,
                Class::Avx512Vnni => avx512 && int8::vnni(),
                Class::Avx512 => avx512,
                Class::Avx2Vnni => avx2 && int8::avx_vnni(),
                Class::Avx2 => avx2,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            matches!(self, Class::Native | Class::Portable | Class::Candle)
        }
    }

    /// Every class this CPU can stand in for, widest first.
    #[cfg(test)]
    pub(super) fn runnable() -> Vec<Class> {
        Self::ALL.into_iter().filter(|c| c.runs_here()).collect()
    }

    /// The class the products use: [`Class::Native`], or the one [`KERNEL_ENV`] asks for. A
    /// name this CPU cannot run, or an unknown one, is reported once on standard error and the
    /// next narrower class it runs is used — never a wider one.
    pub(super) fn selected() -> Class {
        static SELECTED: std::sync::OnceLock<Class> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            let Ok(request) = std::env::var(KERNEL_ENV) else {
                return Class::Native;
            };
            let (class, problem) = choose(&request, Class::runs_here);
            if let Some(problem) = problem {
                eprintln!(
                    "zeroclip: {KERNEL_ENV}={request:?}: {problem}; using {}",
                    class.name()
                );
            }
            class
        })
    }

    /// The f32 kernel of the class on this CPU.
    pub(super) fn kernel(self) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            match self {
                Class::Native if avx2 && has!("avx512f") => Kernel::Avx512,
                Class::Avx512Vnni | Class::Avx512 => Kernel::Avx512,
                Class::Native | Class::Avx2Vnni | Class::Avx2 if avx2 => Kernel::Avx2Fma,
                _ => Kernel::Portable,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Kernel::Portable
        }
    }

    /// Whether the class's f32 products go through the `gemm` crate (`fallback.rs`): for
    /// [`Class::Candle`], and natively where only the portable kernel runs on a CPU other than
    /// x86. On x86 without FMA that crate runs scalar kernels, which the portable loops beat.
    pub(super) fn f32_through_gemm_crate(self) -> bool {
        match self {
            Class::Candle => true,
            Class::Native => self.kernel() == Kernel::Portable && !cfg!(target_arch = "x86_64"),
            _ => false,
        }
    }

    /// The extensions the class allows that this CPU has.
    pub(super) fn extensions(self) -> Extensions {
        let (vnni, avx_vnni, tiles) = match self {
            Class::Native => (true, true, true),
            Class::Avx512Vnni => (true, false, false),
            Class::Avx2Vnni => (false, true, false),
            Class::Avx512 | Class::Avx2 | Class::Portable | Class::Candle => (false, false, false),
        };
        Extensions {
            avx512_vnni_bf16: vnni,
            avx_vnni: avx_vnni && int8::avx_vnni(),
            amx: tiles && amx::usable(),
        }
    }
}

/// The class for a [`KERNEL_ENV`] value, given which classes this CPU runs, and why the request
/// was not honoured as given, if it was not.
fn choose(request: &str, runs: impl Fn(Class) -> bool) -> (Class, Option<String>) {
    let wanted = request.trim().to_ascii_lowercase();
    let Some(mut class) = Class::ALL.into_iter().find(|c| c.name() == wanted) else {
        let names: Vec<_> = Class::ALL.iter().map(|c| c.name()).collect();
        let problem = format!("unknown kernel class (expected {})", names.join(", "));
        return (Class::Native, Some(problem));
    };
    let asked = class;
    while !runs(class) {
        class = class.narrower();
    }
    let problem = (class != asked).then(|| "this CPU cannot run it".to_string());
    (class, problem)
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

/// The kernel the products of `format` run with (their widest).
pub fn kernel_name_for(format: Format) -> &'static str {
    if format == Format::F32 && Class::selected().f32_through_gemm_crate() {
        return "candle (gemm crate)";
    }
    let k = kernels_for(Class::selected(), format);
    if k.amx {
        return match format {
            Format::Int8 => "amx-int8",
            _ => "amx-bf16",
        };
    }
    k.wide.unwrap_or(k.narrow).name()
}

/// The kernels of a product: one for single panels, one for pairs of full panels where the CPU
/// has a wider one, and whether AMX tiles take the products whose `k` fills whole tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Kernels {
    pub(super) narrow: Kernel,
    pub(super) wide: Option<Kernel>,
    pub(super) amx: bool,
}

impl Kernels {
    /// Whether these kernels need int8 weight codes within ±63 (see `int8.rs`).
    pub(super) fn need_narrow_codes(self) -> bool {
        self.for_codes(false) != self
    }

    /// The vectors these kernels' class quantizes activations with.
    pub(super) fn lanes(self) -> int8::Lanes {
        match (self.wide, self.narrow) {
            (Some(_), _) => int8::Lanes::Sixteen,
            (None, Kernel::Portable | Kernel::Bf16Portable | Kernel::Int8Portable) => {
                int8::Lanes::Scalar
            }
            // Outside x86 every kernel is a portable one.
            #[cfg_attr(not(target_arch = "x86_64"), allow(unreachable_patterns))]
            _ => int8::Lanes::Eight,
        }
    }

    /// The kernels for a matrix: those of full (±127) int8 codes unless `narrow_codes`.
    pub(super) fn for_codes(self, narrow_codes: bool) -> Kernels {
        if narrow_codes {
            return self;
        }
        Kernels {
            narrow: self.narrow.for_full_codes(),
            wide: self.wide.map(Kernel::for_full_codes),
            ..self
        }
    }
}

/// Whether int8 weights the throughput depends on are quantized to ±63 for `class`: where its
/// products run on `vpmaddubsw` (plain AVX2, AVX-512 without VNNI), whose i16 pair sums of
/// unsigned activations and ±127 codes would saturate (see `int8.rs`).
pub(super) fn narrow_int8_codes(class: Class) -> bool {
    kernels_for(class, Format::Int8).need_narrow_codes()
}

/// The kernels for `format` in `class` on this CPU.
pub(super) fn kernels_for(class: Class, format: Format) -> Kernels {
    let selected = class.kernel();
    let ext = class.extensions();
    let (narrow, wide) = match (selected, format) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::F32) => (Kernel::Avx2Fma, Some(Kernel::Avx512)),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Bf16) => {
            let native = bf16::native() && ext.avx512_vnni_bf16;
            (Kernel::Bf16Avx2, native.then_some(Kernel::Bf16Avx512))
        }
        #[cfg(target_arch = "x86_64")]
        (_, Format::Bf16) if selected != Kernel::Portable => (Kernel::Bf16Avx2, None),
        (_, Format::Bf16) => (Kernel::Bf16Portable, None),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::vnni() && ext.avx512_vnni_bf16 => {
            (Kernel::Int8Vnni256, Some(Kernel::Int8Vnni512))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, Format::Int8) if int8::avx512bw() => {
            (Kernel::Int8Avx2, Some(Kernel::Int8Avx512Bw))
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2Fma, Format::Int8) if ext.avx_vnni => (Kernel::Int8AvxVnni, None),
        #[cfg(target_arch = "x86_64")]
        (_, Format::Int8) if selected != Kernel::Portable => (Kernel::Int8Avx2, None),
        (_, Format::Int8) => (Kernel::Int8Portable, None),
        (other, Format::F32) => (other, None),
    };
    let amx = ext.amx
        && match format {
            Format::F32 => false,
            Format::Bf16 => amx::bf16(),
            Format::Int8 => amx::int8(),
        };
    Kernels { narrow, wide, amx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_honoured_or_narrowed_never_widened() {
        let everything = |_: Class| true;
        assert_eq!(choose("avx2", everything), (Class::Avx2, None));
        assert_eq!(
            choose(" AVX512-VNNI ", everything),
            (Class::Avx512Vnni, None)
        );
        assert_eq!(choose("portable", everything), (Class::Portable, None));
        assert_eq!(choose("native", everything), (Class::Native, None));
        // An AVX2-only CPU (with AVX-VNNI, an Alder Lake).
        let alder = |c: Class| {
            matches!(
                c,
                Class::Native | Class::Avx2Vnni | Class::Avx2 | Class::Portable
            )
        };
        let (c, problem) = choose("avx512-vnni", alder);
        assert_eq!(
            c,
            Class::Avx2,
            "AVX-512 VNNI falls to the plain classes, not AVX-VNNI"
        );
        assert!(problem.unwrap().contains("cannot run"));
        assert_eq!(choose("avx2-vnni", alder), (Class::Avx2Vnni, None));
        // A Skylake-SP: AVX-512 without VNNI.
        let skylake = |c: Class| !matches!(c, Class::Avx512Vnni | Class::Avx2Vnni);
        assert_eq!(choose("avx512-vnni", skylake).0, Class::Avx512);
        assert_eq!(choose("avx2-vnni", skylake).0, Class::Avx2);
        let (c, problem) = choose("avx2", |c| matches!(c, Class::Native | Class::Portable));
        assert_eq!(c, Class::Portable);
        assert!(problem.is_some());
        let (c, problem) = choose("sse9", everything);
        assert_eq!(c, Class::Native);
        let problem = problem.unwrap();
        assert!(problem.contains("native, avx512-vnni, avx512, avx2-vnni, avx2, portable, candle"));
        assert_eq!(choose("Candle", everything), (Class::Candle, None));
        assert_eq!(choose("candle", |c| c == Class::Candle).0, Class::Candle);
    }

    #[test]
    fn the_gemm_crate_takes_the_f32_products_only_where_asked_or_outside_x86() {
        assert!(Class::Candle.f32_through_gemm_crate());
        assert_eq!(Class::Candle.kernel(), Kernel::Portable);
        for class in [
            Class::Avx512Vnni,
            Class::Avx512,
            Class::Avx2Vnni,
            Class::Avx2,
        ] {
            assert!(!class.f32_through_gemm_crate(), "{class:?}");
        }
        assert!(!Class::Portable.f32_through_gemm_crate());
        // Natively: only where the CPU is not x86 (there the f32 kernel is the portable one).
        let outside_x86 = !cfg!(target_arch = "x86_64");
        assert_eq!(Class::Native.f32_through_gemm_crate(), outside_x86);
    }

    #[test]
    fn a_class_uses_no_extension_beyond_it() {
        for class in [Class::Avx512, Class::Avx2, Class::Portable, Class::Candle] {
            let ext = class.extensions();
            assert!(
                !ext.avx512_vnni_bf16 && !ext.avx_vnni && !ext.amx,
                "{class:?}"
            );
        }
        assert!(!Class::Avx512Vnni.extensions().amx);
        assert!(!Class::Avx2Vnni.extensions().avx512_vnni_bf16);
        for format in [Format::F32, Format::Bf16, Format::Int8] {
            for class in Class::runnable() {
                let k = kernels_for(class, format);
                if class != Class::Native {
                    assert!(!k.amx, "{class:?} {format:?}");
                }
                if matches!(
                    class,
                    Class::Avx2 | Class::Avx2Vnni | Class::Portable | Class::Candle
                ) {
                    assert!(k.wide.is_none(), "{class:?} {format:?}: no 512-bit kernel");
                }
            }
        }
    }
}
