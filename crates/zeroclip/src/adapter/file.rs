//! The adapter file: safetensors with the adapter's tensor (`prototypes` or `cache_keys`, f32),
//! its counts (`class_counts` or `cache_labels`, i64) and string metadata recording how it was
//! built: `format` (`zeroclip-adapter`), `version`, `model_sha256`, `labels` and `templates`
//! (JSON arrays), `method`, its hyper-parameters, `temperature` (when calibrated) and
//! `cv_accuracy`.

use super::{Adapter, Method};
use crate::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "zeroclip-adapter";
const VERSION: &str = "1";

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::AdapterFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The largest adapter file read: 1 GiB holds the support features of a million images at
/// width 256, far beyond any few-shot adapter.
pub const MAX_ADAPTER_BYTES: u64 = 1 << 30;

impl Adapter {
    fn tensor_names(&self) -> (&'static str, &'static str) {
        match self.method {
            Method::Prototype { .. } => ("prototypes", "class_counts"),
            Method::TipAdapter { .. } => ("cache_keys", "cache_labels"),
        }
    }

    /// Writes the adapter to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = |v: &[String]| serde_json::to_string(v).expect("strings serialize");
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            ("model_sha256".to_string(), self.model.clone()),
            ("labels".to_string(), json(&self.labels)),
            ("templates".to_string(), json(&self.templates)),
            ("method".to_string(), self.method.name().to_string()),
            ("cv_accuracy".to_string(), self.cv_accuracy.to_string()),
        ]);
        match self.method {
            Method::Prototype { mix } => {
                meta.insert("mix".into(), mix.to_string());
            }
            Method::TipAdapter { alpha, beta } => {
                meta.insert("alpha".into(), alpha.to_string());
                meta.insert("beta".into(), beta.to_string());
            }
        }
        if let Some(t) = self.temperature {
            meta.insert("temperature".into(), t.to_string());
        }
        let vectors: Vec<u8> = self.vectors.iter().flat_map(|v| v.to_le_bytes()).collect();
        let counts: Vec<u8> = self
            .counts
            .iter()
            .flat_map(|&c| i64::from(c).to_le_bytes())
            .collect();
        let rows = self.counts.len();
        let (vname, cname) = self.tensor_names();
        let views = [
            (
                vname,
                safetensors::tensor::TensorView::new(Dtype::F32, vec![rows, self.dim], &vectors),
            ),
            (
                cname,
                safetensors::tensor::TensorView::new(Dtype::I64, vec![rows], &counts),
            ),
        ]
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, e.to_string()))?;
        safetensors::tensor::serialize_to_file(views, Some(meta), path)
            .map_err(|e| bad(path, format!("cannot write: {e}")))
    }

    /// Reads an adapter written by [`Adapter::save`]: a regular file of at most 1 GiB
    /// (`MAX_ADAPTER_BYTES`).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            zeroclip_fs::read_capped(path, MAX_ADAPTER_BYTES).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key)
                .map(String::as_str)
                .ok_or_else(|| bad(path, format!("metadata has no `{key}`")))
        };
        if get("format").ok() != Some(FORMAT) {
            return Err(bad(path, "not a zeroclip adapter (metadata `format`)"));
        }
        if get("version")? != VERSION {
            return Err(bad(
                path,
                format!("adapter format version {}", get("version")?),
            ));
        }
        let number = |key: &str| -> Result<f64> {
            get(key)?
                .parse()
                .map_err(|_| bad(path, format!("metadata `{key}` is not a number")))
        };
        let list = |key: &str| -> Result<Vec<String>> {
            serde_json::from_str(get(key)?).map_err(|e| bad(path, format!("metadata `{key}`: {e}")))
        };
        let method = match get("method")? {
            "prototype" => Method::Prototype {
                mix: number("mix")?,
            },
            "tip-adapter" => Method::TipAdapter {
                alpha: number("alpha")?,
                beta: number("beta")?,
            },
            other => return Err(bad(path, format!("unknown method {other:?}"))),
        };
        let mut adapter = Adapter {
            model: get("model_sha256")?.to_string(),
            labels: list("labels")?,
            templates: list("templates")?,
            method,
            temperature: meta
                .contains_key("temperature")
                .then(|| number("temperature"))
                .transpose()?,
            cv_accuracy: number("cv_accuracy")?,
            dim: 0,
            vectors: Vec::new(),
            counts: Vec::new(),
        };
        let (vname, cname) = adapter.tensor_names();
        let tensor = |name: &str, dtype: Dtype, rank: usize| {
            let t = st
                .tensor(name)
                .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
            if t.dtype() != dtype || t.shape().len() != rank {
                return Err(bad(
                    path,
                    format!("tensor `{name}` is {:?} {:?}", t.dtype(), t.shape()),
                ));
            }
            Ok(t)
        };
        let v = tensor(vname, Dtype::F32, 2)?;
        let c = tensor(cname, Dtype::I64, 1)?;
        let (rows, dim) = (v.shape()[0], v.shape()[1]);
        adapter.dim = dim;
        adapter.vectors = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let classes = adapter.labels.len() as i64;
        adapter.counts = c
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .map(|x| u32::try_from(x).ok().filter(|_| x >= 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad(path, format!("tensor `{cname}` has negative values")))?;
        let expected_rows = match method {
            Method::Prototype { .. } => classes as usize,
            Method::TipAdapter { .. } => {
                if adapter.counts.iter().any(|&x| i64::from(x) >= classes) {
                    return Err(bad(
                        path,
                        format!("tensor `{cname}` names a class beyond the labels"),
                    ));
                }
                rows
            }
        };
        if rows != expected_rows || adapter.counts.len() != rows || dim == 0 {
            return Err(bad(
                path,
                format!(
                    "tensors `{vname}` {:?} and `{cname}` {:?} do not fit {classes} labels",
                    v.shape(),
                    c.shape()
                ),
            ));
        }
        Ok(adapter)
    }
}
