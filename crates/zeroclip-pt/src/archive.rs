//! Zip checkpoints: TorchScript archives (`torch.jit.save`, OpenAI's released `.pt` files) and
//! `torch.save` files of PyTorch ≥ 1.6.
//!
//! Both hold `<folder>/data.pkl` with tensors as persistent ids `('storage', torch.HalfStorage,
//! key, location, numel)` whose bytes are the stored (uncompressed) entry `<folder>/data/<key>`.
//! The folder name is free (`archive`, the file stem, or OpenAI's `ViT-B-32`). TorchScript ones
//! also carry `code/` and `constants.pkl`. PyTorch 1.7 wrote no `byteorder` record; newer
//! versions write `little` or `big`, and big-endian storages are byte-swapped when read.

use crate::error::{format_fault, Error, Fault};
use crate::names;
use crate::pickle::unpickle;
use crate::tensor::{Bytes, Storage, TensorRecord};
use crate::{Checkpoint, Kind};
use memmap2::Mmap;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use zip::{CompressionMethod, ZipArchive};

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Reads a zip checkpoint whose bytes are `map`.
pub(crate) fn read(path: &Path, map: &Arc<Mmap>) -> Result<Checkpoint, Error> {
    read_inner(map).map_err(|f| f.at(path))
}

fn read_inner(map: &Arc<Mmap>) -> Result<Checkpoint, Fault> {
    let mut zip = ZipArchive::new(Cursor::new(&map[..])).map_err(|e| {
        // The end-of-central-directory record closes every zip; a cut-off download lacks it.
        let tail = &map[map.len().saturating_sub(65_557)..];
        if tail.windows(4).any(|w| w == b"PK\x05\x06") {
            format_fault!("unreadable zip archive: {e}")
        } else {
            Fault::Truncated(format!(
                "zip archive has no end-of-central-directory record ({e})"
            ))
        }
    })?;
    let index: HashMap<String, usize> = (0..zip.len())
        .filter_map(|i| Some((zip.name_for_index(i)?.ok()?.into_owned(), i)))
        .collect();
    let prefix = find_prefix(&index)?;
    let is_script = index.contains_key(&format!("{prefix}constants.pkl"))
        || index
            .keys()
            .any(|n| n.starts_with(&format!("{prefix}code/")));
    let big_endian = match index.get(&format!("{prefix}byteorder")) {
        None => false,
        Some(&i) => match read_entry(&mut zip, i, "byteorder")?.as_slice() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(format_fault!(
                    "byteorder record is {:?}",
                    String::from_utf8_lossy(other)
                ))
            }
        },
    };
    let pkl_index = index[&format!("{prefix}data.pkl")];
    let pkl = read_entry(&mut zip, pkl_index, "data.pkl")?;
    let (unpickled, _) = unpickle(&pkl, "data.pkl")?;
    let (kind, mut named) = if is_script {
        let named = names::tensors(&unpickled.arena, &unpickled.root)?;
        (Kind::TorchScript, named)
    } else {
        let root = names::state_dict_root(&unpickled.arena, &unpickled.root);
        (Kind::ZipStateDict, names::tensors(&unpickled.arena, &root)?)
    };
    if kind == Kind::ZipStateDict {
        names::strip_data_parallel(&mut named);
    }
    let mut storages: HashMap<String, Arc<Storage>> = HashMap::new();
    let mut tensors = Vec::with_capacity(named.len());
    for (name, t) in named {
        let storage = match storages.get(&t.storage.key) {
            Some(s) => s.clone(),
            None => {
                let entry = format!("{prefix}data/{}", t.storage.key);
                let &i = index.get(&entry).ok_or_else(|| {
                    format_fault!("tensor `{name}` needs storage entry `{entry}`, which is missing")
                })?;
                let s = Arc::new(Storage {
                    bytes: stored_range(&mut zip, i, &entry, map)?,
                    big_endian,
                });
                storages.insert(t.storage.key.clone(), s.clone());
                s
            }
        };
        tensors.push(TensorRecord::new(name, &t, storage)?);
    }
    Ok(Checkpoint { kind, tensors })
}

/// The archive's top folder, with its trailing slash: the one holding `data.pkl`.
fn find_prefix(index: &HashMap<String, usize>) -> Result<String, Fault> {
    let mut found: Vec<&str> = index
        .keys()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .filter(|p| p.ends_with('/') && p.matches('/').count() == 1)
        .collect();
    found.sort_unstable();
    match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format_fault!(
            "zip archive has no <folder>/data.pkl: not a PyTorch checkpoint"
        )),
        many => Err(format_fault!("zip archive has several data.pkl: {many:?}")),
    }
}

/// The largest pickle or record entry read into memory, decompressed. The pickle of OpenAI's
/// largest TorchScript file is well under a megabyte; a compressed entry that inflates past this
/// (a decompression bomb) is refused after reading this much, whatever size the zip declares.
pub(crate) const MAX_ENTRY_BYTES: u64 = 1 << 28;

/// A small entry read through the zip reader, which checks its CRC.
fn read_entry(zip: &mut Archive<'_>, i: usize, what: &str) -> Result<Vec<u8>, Fault> {
    let file = zip
        .by_index(i)
        .map_err(|e| format_fault!("zip entry {what}: {e}"))?;
    let mut out = Vec::new();
    let mut file = file.take(MAX_ENTRY_BYTES + 1);
    file.read_to_end(&mut out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Fault::Truncated(format!("zip entry {what} is cut short"))
        } else {
            format_fault!("zip entry {what}: {e}")
        }
    })?;
    if out.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format_fault!(
            "zip entry {what} inflates to more than {MAX_ENTRY_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// A storage entry as a range of the mapped file: PyTorch stores tensor data uncompressed.
/// Its CRC is not checked, so that only the pages a caller reads are ever touched.
fn stored_range(
    zip: &mut Archive<'_>,
    i: usize,
    entry: &str,
    map: &Arc<Mmap>,
) -> Result<Bytes, Fault> {
    let file = zip
        .by_index_raw(i)
        .map_err(|e| format_fault!("zip entry {entry}: {e}"))?;
    if file.compression() != CompressionMethod::Stored {
        return Err(format_fault!(
            "zip entry {entry} is compressed ({:?}); PyTorch writes storages uncompressed",
            file.compression()
        ));
    }
    let start = file
        .data_start()
        .ok_or_else(|| format_fault!("zip entry {entry}: no data offset"))?;
    let (start, len) = (usize::try_from(start), usize::try_from(file.size()));
    let (Ok(start), Ok(len)) = (start, len) else {
        return Err(format_fault!(
            "zip entry {entry}: offset does not fit in memory"
        ));
    };
    if start.checked_add(len).is_none_or(|end| end > map.len()) {
        return Err(Fault::Truncated(format!(
            "zip entry {entry} extends past the end of the file"
        )));
    }
    Ok(Bytes::Mapped {
        map: map.clone(),
        start,
        len,
    })
}
