//! Strict tensor lookup for building the model: every tensor the model asks for must exist with the
//! expected shape, and after building, every tensor in the checkpoint must have been asked for —
//! `load_state_dict(strict=True)` in the reference. Names are the canonical (OpenAI) ones.

use super::{Precision, StoredTensor};
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;

/// Keys OpenAI's archives carry besides the weights; `build_model` deletes them before loading.
pub const IGNORED_KEYS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

/// The checkpoint's tensors not yet taken by the model. A lookup moves the tensor out, so a
/// layer that converts its weight (the CPU GEMM's packed layout) frees the original at once
/// instead of keeping both until loading ends; a weight still in the mapped file is packed
/// from the file's bytes.
pub struct TensorStore {
    tensors: RefCell<HashMap<String, StoredTensor>>,
    precision: Precision,
}

impl TensorStore {
    /// A store of `tensors`, under canonical (OpenAI) names.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self::from_stored(tensors.into_iter().map(|(k, t)| (k, t.into())).collect())
    }

    /// A store of tensors as the readers leave them (some still in a mapped file).
    pub fn from_stored(tensors: HashMap<String, StoredTensor>) -> Self {
        TensorStore {
            tensors: RefCell::new(tensors),
            precision: Precision::default(),
        }
    }

    /// The same store, for layers built in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        TensorStore { precision, ..self }
    }

    /// A view with no name prefix.
    pub fn root(&self) -> Vb<'_> {
        Vb {
            store: self,
            prefix: String::new(),
            full_int8_codes: false,
        }
    }

    /// Fails on the (alphabetically first) tensor nothing asked for, ignoring [`IGNORED_KEYS`].
    pub fn finish(self) -> Result<()> {
        let left = self.tensors.into_inner();
        let mut unused: Vec<&String> = left
            .keys()
            .filter(|k| !IGNORED_KEYS.contains(&k.as_str()))
            .collect();
        unused.sort();
        match unused.first() {
            Some(name) => Err(Error::UnexpectedTensor {
                name: (*name).clone(),
            }),
            None => Ok(()),
        }
    }
}

/// A prefix into a [`TensorStore`], in the style of candle's `VarBuilder`: layers call
/// `vb.pp("ln_1").get(&[width], "weight")`.
#[derive(Clone)]
pub struct Vb<'a> {
    store: &'a TensorStore,
    prefix: String,
    full_int8_codes: bool,
}

impl<'a> Vb<'a> {
    /// The same store under `prefix.name`.
    pub fn pp(&self, name: impl Display) -> Vb<'a> {
        Vb {
            store: self.store,
            prefix: self.path(name),
            full_int8_codes: self.full_int8_codes,
        }
    }

    /// The same view, its int8 layers keeping full (±127) weight codes on every CPU class
    /// rather than the narrower ones a class without VNNI runs fastest (`model/int8.rs`).
    pub fn with_full_int8_codes(&self) -> Vb<'a> {
        Vb {
            full_int8_codes: true,
            ..self.clone()
        }
    }

    /// Whether int8 layers under this view keep full weight codes.
    pub fn full_int8_codes(&self) -> bool {
        self.full_int8_codes
    }

    /// The precision the layers' matrix products are built in.
    pub fn precision(&self) -> Precision {
        self.store.precision
    }

    /// The prefix itself (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `name` under this prefix.
    pub fn path(&self, name: impl Display) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The tensor `name` in f32, which must exist and have exactly `shape`.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        Ok(self.get_weight(shape, name)?.into_f32_tensor()?)
    }

    /// The tensor `name` as the checkpoint stores it (fp16 or f32).
    pub fn get_stored(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        Ok(self.get_weight(shape, name)?.into_tensor()?)
    }

    /// The tensor `name` as the reader left it, for a layer that converts it anyway: the CPU
    /// GEMM packs its weights straight from the mapped file's bytes, or from fp16.
    pub fn get_weight(&self, shape: &[usize], name: &str) -> Result<StoredTensor> {
        let full = self.path(name);
        self.get_with(name, |got| got == shape, shape)?
            .ok_or(Error::MissingTensor { name: full })
    }

    /// The tensor `name` in f32 if present (it must then have `shape`).
    pub fn get_optional(&self, shape: &[usize], name: &str) -> Result<Option<Tensor>> {
        let t = self.get_with(name, |got| got == shape, shape)?;
        Ok(t.map(StoredTensor::into_f32_tensor).transpose()?)
    }

    /// A scalar stored as `[]` (OpenAI) or `[1]` (some open_clip checkpoints).
    pub fn get_scalar(&self, name: &str) -> Result<f32> {
        let full = self.path(name);
        let t = self
            .get_with(
                name,
                |got| got.iter().product::<usize>() == 1 && got.len() <= 1,
                &[],
            )?
            .ok_or(Error::MissingTensor { name: full })?;
        Ok(t.into_f32_tensor()?.flatten_all()?.to_vec1::<f32>()?[0])
    }

    fn get_with(
        &self,
        name: &str,
        accept: impl Fn(&[usize]) -> bool,
        expected: &[usize],
    ) -> Result<Option<StoredTensor>> {
        let full = self.path(name);
        let mut tensors = self.store.tensors.borrow_mut();
        let Some(t) = tensors.get(&full) else {
            return Ok(None);
        };
        if !accept(t.dims()) {
            return Err(Error::ShapeMismatch {
                name: full,
                expected: expected.to_vec(),
                got: t.dims().to_vec(),
            });
        }
        Ok(tensors.remove(&full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use candle_core::{DType, Device};

    fn store(names: &[(&str, &[usize])]) -> TensorStore {
        let t = names
            .iter()
            .map(|(n, s)| {
                let t = Tensor::zeros(*s, DType::F32, &Device::Cpu).unwrap();
                (n.to_string(), t)
            })
            .collect();
        TensorStore::new(t)
    }

    #[test]
    fn lookups_are_strict_about_names_shapes_and_leftovers() {
        let s = store(&[("a.w", &[2, 3]), ("b", &[]), ("vocab_size", &[])]);
        let vb = s.root();
        assert!(matches!(
            vb.pp("a").get(&[3, 2], "w"),
            Err(Error::ShapeMismatch { name, .. }) if name == "a.w"
        ));
        assert!(matches!(
            vb.get(&[1], "c"),
            Err(Error::MissingTensor { name }) if name == "c"
        ));
        vb.pp("a").get(&[2, 3], "w").unwrap();
        assert!(matches!(
            s.finish(),
            Err(Error::UnexpectedTensor { name }) if name == "b"
        ));
    }

    #[test]
    fn full_int8_codes_carry_down_a_view_and_only_that_view() {
        let store = TensorStore::new(HashMap::new());
        let root = store.root();
        assert!(!root.full_int8_codes());
        let text = root.with_full_int8_codes();
        assert!(text.pp("transformer").pp("resblocks.0").full_int8_codes());
        assert!(!root.pp("visual").full_int8_codes());
    }
}
