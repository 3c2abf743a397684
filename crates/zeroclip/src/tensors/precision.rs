//! How the model stores the weights of its matrix products: fp32 as the reference computes,
//! bf16 (`--precision bf16`: half the memory and, on CPUs with AVX-512 BF16, twice the
//! multiply-adds per instruction), or int8 (`--precision int8`: a quarter of the memory, dynamic
//! quantization of the activations, four times the multiply-adds with AVX-512 VNNI). LayerNorm, softmax, attention, the patch embedding and the
//! ResNet's convolutions stay fp32 whatever the precision.

use std::fmt;
use std::str::FromStr;

/// The arithmetic of the transformer's linear layers (both towers, and the ResNet's attention
/// pool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Precision {
    /// fp32 weights and products, as the reference.
    #[default]
    Fp32,
    /// Weights stored bf16; the products take bf16 operands and accumulate in fp32.
    Bf16,
    /// Weights int8 per output channel; activations quantized per row as each product runs
    /// (dynamic quantization); exact integer sums, dequantized to fp32.
    Int8,
}

impl Precision {
    /// Every precision, as [`FromStr`] spells them.
    pub const NAMES: [&'static str; 3] = ["fp32", "bf16", "int8"];

    /// The name [`FromStr`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Precision::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPrecision(pub String);

impl fmt::Display for UnknownPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown precision {:?} (expected one of {})",
            self.0,
            Precision::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownPrecision {}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "qint8" => Ok(Precision::Int8),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for name in Precision::NAMES {
            assert_eq!(name.parse::<Precision>().unwrap().name(), name);
        }
        assert_eq!(" BF16 ".parse::<Precision>(), Ok(Precision::Bf16));
        let err = "int4".parse::<Precision>().unwrap_err().to_string();
        assert!(
            err.contains("\"int4\"") && err.contains("fp32, bf16, int8"),
            "{err}"
        );
    }
}
