//! The legacy `torch.save` format (`_use_new_zipfile_serialization=False`, PyTorch < 1.6).
//!
//! The file is a sequence of pickles — magic number, protocol version, system info (endianness),
//! the object itself, the list of storage keys — followed by each storage in key order as an
//! 8-byte element count and the raw elements. Tensors refer to storages by key and may view a
//! part of one (old PyTorch wrote view metadata in the persistent id).

use crate::error::{format_fault, Error, Fault};
use crate::names;
use crate::pickle::unpickle;
use crate::tensor::{Bytes, Storage, TensorRecord};
use crate::value::Value;
use crate::{Checkpoint, DType, Kind};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// `torch.serialization.MAGIC_NUMBER`, 0x1950a86a20f9469cfc6c, as LONG1 little-endian bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Whether `data` starts with the legacy magic-number pickle.
pub(crate) fn is_legacy(data: &[u8]) -> bool {
    matches!(unpickle(data, "magic number"), Ok((u, _)) if matches!(&u.root, Value::BigInt(b) if **b == MAGIC))
}

/// Reads a legacy checkpoint whose bytes are `map`.
pub(crate) fn read(path: &Path, map: &Arc<Mmap>) -> Result<Checkpoint, Error> {
    read_inner(map).map_err(|f| f.at(path))
}

fn read_inner(map: &Arc<Mmap>) -> Result<Checkpoint, Fault> {
    let data: &[u8] = map;
    let (_, mut pos) = unpickle(data, "magic number")?;
    let (proto, used) = unpickle(&data[pos..], "protocol version")?;
    pos += used;
    if proto.root.as_int() != Some(PROTOCOL_VERSION) {
        return Err(format_fault!(
            "legacy protocol version {:?}, expected {PROTOCOL_VERSION}",
            proto.root
        ));
    }
    let (sys_info, used) = unpickle(&data[pos..], "sys_info")?;
    pos += used;
    let big_endian = sys_info
        .arena
        .dict_entries(&sys_info.root)
        .and_then(|e| {
            e.into_iter()
                .find(|(k, _)| k.as_str() == Some("little_endian"))
        })
        .is_some_and(|(_, v)| matches!(v, Value::Bool(false)));
    let (object, used) = unpickle(&data[pos..], "object pickle")?;
    pos += used;
    let (keys, used) = unpickle(&data[pos..], "storage key list")?;
    pos += used;
    let keys: Vec<String> = keys
        .arena
        .seq(&keys.root)
        .ok_or_else(|| format_fault!("storage key list is not a list"))?
        .iter()
        .map(|k| match k {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(format_fault!("storage key {other:?}")),
        })
        .collect::<Result<_, _>>()?;

    let dtypes: HashMap<&str, DType> = object
        .arena
        .storages()
        .map(|s| (s.key.as_str(), s.dtype))
        .collect();
    let mut storages = HashMap::new();
    for key in keys {
        let dtype = *dtypes
            .get(key.as_str())
            .ok_or_else(|| format_fault!("storage `{key}` is listed but never used"))?;
        let header: [u8; 8] = data
            .get(pos..pos + 8)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| Fault::Truncated(format!("file ends before storage `{key}`")))?;
        let count = if big_endian {
            u64::from_be_bytes(header)
        } else {
            u64::from_le_bytes(header)
        };
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size_in_bytes()));
        let start = pos + 8;
        let end = len.and_then(|l| start.checked_add(l));
        let Some(end) = end.filter(|&e| e <= data.len()) else {
            return Err(Fault::Truncated(format!(
                "storage `{key}` declares {count} elements of {}, past the end of the file",
                dtype.torch_name()
            )));
        };
        let storage = Storage {
            bytes: Bytes::Mapped {
                map: map.clone(),
                start,
                len: end - start,
            },
            big_endian,
        };
        storages.insert(key, Arc::new(storage));
        pos = end;
    }

    let root = names::state_dict_root(&object.arena, &object.root);
    let mut named = names::tensors(&object.arena, &root)?;
    names::strip_data_parallel(&mut named);
    let tensors = named
        .into_iter()
        .map(|(name, t)| {
            let storage = storages.get(&t.storage.key).cloned().ok_or_else(|| {
                format_fault!(
                    "tensor `{name}` uses storage `{}`, which is not in the file",
                    t.storage.key
                )
            })?;
            TensorRecord::new(name, &t, storage)
        })
        .collect::<Result<_, _>>()?;
    Ok(Checkpoint {
        kind: Kind::LegacyStateDict,
        tensors,
    })
}
