//! The allowlist of Python globals and what each means as a data constructor.
//!
//! PyTorch pickles rebuild tensors by calling `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, ...)` on storages loaded by persistent id, wrap them with
//! `_rebuild_parameter`, and keep state dicts in `collections.OrderedDict`. TorchScript archives
//! pickle modules as `__torch__.*` classes created with `NEWOBJ` and filled with `BUILD`. Those
//! names, and nothing else, are accepted; each is interpreted here as pure data, so no pickle can
//! make this reader import or execute anything.

use crate::error::{format_fault, Fault};
use crate::value::{Arena, Global, Node, StorageRef, TensorRef, Value};
use crate::DType;

/// Maps a pickle `GLOBAL` to an allowlisted constructor, or refuses it.
pub(crate) fn resolve(module: &str, name: &str) -> Result<Global, Fault> {
    let global = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            Global::RebuildParameter
        }
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromType,
        ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Global::TensorClass,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "Size") => Global::Size,
        (
            "torch.jit._pickle",
            "restore_type_tag" | "build_intlist" | "build_doublelist" | "build_boollist"
            | "build_tensorlist",
        ) => Global::Identity,
        ("torch", storage) if storage.ends_with("Storage") => match storage_dtype(storage) {
            Some(dtype) => Global::Storage(dtype),
            None => return Err(Fault::DType(format!("torch.{storage}"))),
        },
        (m, _) if m == "__torch__" || m.starts_with("__torch__.") => {
            Global::ScriptClass(format!("{module}.{name}"))
        }
        _ => {
            return Err(Fault::Global {
                module: module.to_owned(),
                name: name.to_owned(),
            })
        }
    };
    Ok(global)
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

fn global_of(arena: &Arena, v: &Value) -> Option<Global> {
    match arena.get(v)? {
        Node::Global(g) => Some(g.clone()),
        _ => None,
    }
}

fn int_list(arena: &Arena, v: &Value, what: &str) -> Result<Vec<usize>, Fault> {
    arena
        .seq(v)
        .ok_or_else(|| format_fault!("tensor {what} is not a tuple"))?
        .iter()
        .map(|x| {
            x.as_usize()
                .ok_or_else(|| format_fault!("tensor {what} holds a non-size value {x:?}"))
        })
        .collect()
}

/// `REDUCE`: calls an allowlisted global on an argument tuple.
pub(crate) fn reduce(arena: &mut Arena, func: &Value, args: &Value) -> Result<Value, Fault> {
    let global = global_of(arena, func).ok_or_else(|| format_fault!("REDUCE of a non-global"))?;
    // No constructor reads more than 7 arguments; copying a longer (memo-shared) tuple on every
    // call would cost time quadratic in the pickle's length.
    let args: Vec<Value> = arena
        .seq(args)
        .ok_or_else(|| format_fault!("REDUCE arguments are not a tuple"))?
        .iter()
        .take(8)
        .cloned()
        .collect();
    match global {
        Global::RebuildTensor => rebuild_tensor(arena, &args),
        Global::RebuildParameter => match args.first() {
            Some(t) if matches!(arena.get(t), Some(Node::Tensor(_))) => Ok(t.clone()),
            _ => Err(format_fault!("_rebuild_parameter without a tensor")),
        },
        Global::RebuildFromType => {
            let [inner, class, inner_args, ..] = args.as_slice() else {
                return Err(format_fault!("_rebuild_from_type_v2 needs 4 arguments"));
            };
            if global_of(arena, class) != Some(Global::TensorClass) {
                return Err(format_fault!("_rebuild_from_type_v2 to a non-tensor class"));
            }
            match global_of(arena, inner) {
                Some(Global::RebuildTensor | Global::RebuildParameter) => {
                    reduce(arena, inner, inner_args)
                }
                _ => Err(format_fault!(
                    "_rebuild_from_type_v2 of an unknown reconstructor"
                )),
            }
        }
        Global::OrderedDict => {
            let mut entries = Vec::new();
            if let Some(pairs) = args.first().and_then(|a| arena.seq(a)) {
                for pair in pairs {
                    match arena.seq(pair) {
                        Some([k, v]) => entries.push((k.clone(), v.clone())),
                        _ => return Err(format_fault!("OrderedDict item is not a pair")),
                    }
                }
            }
            Ok(arena.push(Node::Dict(entries)))
        }
        Global::Size => {
            let items = args
                .first()
                .and_then(|a| arena.seq(a))
                .ok_or_else(|| format_fault!("torch.Size of a non-sequence"))?
                .to_vec();
            Ok(arena.push(Node::Tuple(items)))
        }
        Global::Identity => args
            .first()
            .cloned()
            .ok_or_else(|| format_fault!("torch.jit._pickle call without arguments")),
        Global::TensorClass | Global::Storage(_) | Global::ScriptClass(_) => Err(format_fault!(
            "REDUCE of {global:?} is not a data constructor"
        )),
    }
}

fn rebuild_tensor(arena: &mut Arena, args: &[Value]) -> Result<Value, Fault> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format_fault!("_rebuild_tensor_v2 needs 4 arguments"));
    };
    let Some(Node::Storage(storage)) = arena.get(storage) else {
        return Err(format_fault!("_rebuild_tensor_v2 without a storage"));
    };
    let storage = storage.clone();
    let offset = offset
        .as_usize()
        .ok_or_else(|| format_fault!("tensor storage offset {offset:?}"))?;
    let shape = int_list(arena, size, "size")?;
    let strides = int_list(arena, stride, "stride")?;
    if shape.len() != strides.len() {
        return Err(format_fault!(
            "tensor size {shape:?} and stride {strides:?} differ in rank"
        ));
    }
    Ok(arena.push(Node::Tensor(TensorRef {
        storage,
        offset,
        shape,
        strides,
    })))
}

/// `NEWOBJ`/`INST`/`OBJ`: instantiates an allowlisted class.
pub(crate) fn new_obj(arena: &mut Arena, class: &Value, _args: &Value) -> Result<Value, Fault> {
    match global_of(arena, class) {
        Some(Global::ScriptClass(class)) => Ok(arena.push(Node::Object { class, state: None })),
        Some(Global::OrderedDict) => Ok(arena.push(Node::Dict(Vec::new()))),
        other => Err(format_fault!("cannot instantiate {other:?}")),
    }
}

/// `BUILD`: sets an object's state. Dict and tensor states (`_metadata`, hooks) are not needed.
pub(crate) fn build(arena: &mut Arena, obj: &Value, state: Value) -> Result<(), Fault> {
    match arena.get_mut(obj) {
        Some(Node::Object { state: s, .. }) => {
            *s = Some(state);
            Ok(())
        }
        Some(Node::Dict(_) | Node::Tensor(_)) => Ok(()),
        _ => Err(format_fault!("BUILD on a value that has no state")),
    }
}

/// `BINPERSID`: a `('storage', StorageClass, key, location, numel[, view])` id names raw bytes
/// stored outside the pickle.
pub(crate) fn persistent_load(arena: &mut Arena, pid: &Value) -> Result<Value, Fault> {
    let items: Vec<Value> = arena
        .seq(pid)
        .ok_or_else(|| format_fault!("persistent id is not a tuple"))?
        .iter()
        .take(7)
        .cloned()
        .collect();
    let [kind, class, key, _location, numel, rest @ ..] = items.as_slice() else {
        return Err(format_fault!("persistent id has {} fields", items.len()));
    };
    if kind.as_str() != Some("storage") {
        return Err(format_fault!("persistent id of kind {kind:?}"));
    }
    let Some(Global::Storage(dtype)) = global_of(arena, class) else {
        return Err(format_fault!("persistent id without a storage class"));
    };
    let key = match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        other => return Err(format_fault!("storage key {other:?}")),
    };
    let mut storage = StorageRef {
        key,
        dtype,
        numel: numel
            .as_usize()
            .ok_or_else(|| format_fault!("storage size {numel:?}"))?,
        view_offset: 0,
    };
    // Legacy files of old PyTorch describe storage views as (view_key, offset, size) in elements.
    if let Some(view) = rest.first().filter(|v| !matches!(v, Value::None)) {
        match arena.seq(view) {
            Some([_, offset, size]) => {
                storage.view_offset = offset
                    .as_usize()
                    .ok_or_else(|| format_fault!("storage view offset {offset:?}"))?;
                storage.numel = size
                    .as_usize()
                    .ok_or_else(|| format_fault!("storage view size {size:?}"))?;
            }
            _ => return Err(format_fault!("malformed storage view metadata")),
        }
    }
    Ok(arena.push(Node::Storage(storage)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_accepts_torch_names_and_refuses_others() {
        assert_eq!(
            resolve("torch._utils", "_rebuild_tensor_v2").unwrap(),
            Global::RebuildTensor
        );
        assert_eq!(
            resolve("torch", "HalfStorage").unwrap(),
            Global::Storage(DType::F16)
        );
        assert!(matches!(
            resolve("__torch__.clip.model", "CLIP").unwrap(),
            Global::ScriptClass(_)
        ));
        for (m, n) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("torch", "load"),
            ("__torch_evil__", "x"),
            ("posix", "system"),
        ] {
            assert!(
                matches!(resolve(m, n), Err(Fault::Global { .. })),
                "{m}.{n}"
            );
        }
        assert!(matches!(
            resolve("torch", "ComplexFloatStorage"),
            Err(Fault::DType(_))
        ));
    }
}
