//! One file of the label cache: the class embeddings of many labels under one [`CacheKey`].
//!
//! Layout (little-endian): the magic `ZCLP\x02`, the key's JSON (length-prefixed, `u32`), the
//! embedding width and label count (`u32` each), then per label its UTF-8 text (length-prefixed)
//! and `width` `f32`s. The key is stored in full, so a hash collision of directory names or a file
//! copied from another set reads as foreign; a damaged file (any length or value out of place, a
//! non-finite value) is ignored as a whole.
//!
//! [`CacheKey`]: super::CacheKey

const MAGIC: &[u8; 5] = b"ZCLP\x02";

/// Encodes `entries` (label, embedding) of width `dim` under the encoded key `key`.
pub(super) fn encode(key: &[u8], dim: usize, entries: &[(&str, &[f32])]) -> Vec<u8> {
    let per_label: usize = entries.iter().map(|(l, _)| 4 + l.len() + 4 * dim).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + key.len() + per_label);
    out.extend_from_slice(MAGIC);
    put_len(&mut out, key.len());
    out.extend_from_slice(key);
    put_len(&mut out, dim);
    put_len(&mut out, entries.len());
    for (label, embedding) in entries {
        debug_assert_eq!(embedding.len(), dim);
        put_len(&mut out, label.len());
        out.extend_from_slice(label.as_bytes());
        for v in *embedding {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The entries of a pack stored under `expected_key`; `None` if it is foreign or damaged.
pub(super) fn decode(bytes: &[u8], expected_key: &[u8]) -> Option<Vec<(String, Vec<f32>)>> {
    let mut r = Reader(bytes.strip_prefix(MAGIC.as_slice())?);
    if r.bytes()? != expected_key {
        return None;
    }
    let dim = r.len()?;
    let count = r.len()?;
    if dim == 0 {
        return None;
    }
    // Each entry takes at least 4 + 4 * dim bytes: a count the file cannot hold is damage, and
    // is refused before anything is allocated for it.
    if count > r.0.len() / (4 + 4 * dim) {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let label = std::str::from_utf8(r.bytes()?).ok()?.to_owned();
        let values: Vec<f32> = r
            .take(4 * dim)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if !values.iter().all(|v| v.is_finite()) {
            return None;
        }
        out.push((label, values));
    }
    r.0.is_empty().then_some(out)
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("cache packs hold lengths below 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damage_is_a_miss() {
        let entries: [(&str, &[f32]); 2] = [("dog", &[1.0, -2.5]), ("hot dog", &[0.0, 3.25])];
        let good = encode(b"key", 2, &entries);
        let back = decode(&good, b"key").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], ("hot dog".to_string(), vec![0.0, 3.25]));
        assert!(decode(&good, b"other key").is_none());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], b"key").is_none(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer, b"key").is_none());
        let nan = encode(b"key", 1, &[("x", &[f32::NAN])]);
        assert!(decode(&nan, b"key").is_none());
        // A count of 2^32 - 1 labels in a small file: refused before allocating.
        let mut huge = encode(b"key", 2, &[]);
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge, b"key").is_none());
    }
}
