//! Small files that describe huge or deep object graphs: each is refused with an error naming
//! the file and the bound it passed, after bounded work and memory — never a stack overflow,
//! never an allocation of gigabytes.

use std::io::Write;
use zeroclip_pt::{read, Error};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zeroclip-pt-bomb-{}-{tag}.pt", std::process::id()))
}

/// Writes a `torch.save`-style zip whose `archive/data.pkl` is `pickle`.
fn zip_with_pickle(tag: &str, pickle: &[u8]) -> std::path::PathBuf {
    let path = scratch(tag);
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    z.start_file("archive/data.pkl", stored).unwrap();
    z.write_all(pickle).unwrap();
    z.start_file("archive/version", stored).unwrap();
    z.write_all(b"3\n").unwrap();
    z.finish().unwrap();
    path
}

/// A protocol-2 `BINUNICODE` string.
fn text(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
    out
}

/// `{'a': {'a': ... {} ...}}`, `depth` dicts deep, built with one SETITEM per level.
fn nested_dicts(depth: usize) -> Vec<u8> {
    let mut p = b"\x80\x02}".to_vec();
    for _ in 0..depth {
        p.extend(text("a"));
        p.push(b'}');
    }
    p.extend(std::iter::repeat_n(b's', depth));
    p.push(b'.');
    p
}

fn expect_format_error(path: &std::path::Path, needle: &str) {
    let result = read(path);
    std::fs::remove_file(path).unwrap();
    match result {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        }
        other => panic!("expected a format error about {needle:?}, got {other:?}"),
    }
}

#[test]
fn dicts_nested_20000_deep_are_an_error_not_a_stack_overflow() {
    let path = zip_with_pickle("deep", &nested_dicts(20_000));
    expect_format_error(&path, "nested deeper than");
}

#[test]
fn dicts_nested_like_a_real_state_dict_are_read() {
    let path = zip_with_pickle("shallow", &nested_dicts(40));
    let ckpt = read(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(ckpt.unwrap().tensors.is_empty());
}

#[test]
fn memo_shared_child_under_long_keys_is_bounded_by_names_built() {
    // Level i is a dict whose two long keys both hold level i-1 (fetched from the memo), so 19
    // levels spell 2^19 paths whose names are 19 keys of 200 bytes: 2 GB of names from a
    // pickle of 8 kB, with fewer than 2^20 containers to visit.
    let mut p = b"\x80\x02}q\x00".to_vec();
    let levels = 19u8;
    for level in 1..=levels {
        p.extend(b"}(");
        for side in ["l", "r"] {
            p.extend(text(&format!("{side}{}", "k".repeat(199))));
            p.extend([b'h', level - 1]);
        }
        p.extend([b'u', b'q', level]);
    }
    p.push(b'.');
    assert!(p.len() < 10_000);
    let path = zip_with_pickle("shared", &p);
    expect_format_error(&path, "too large to list");
}

#[test]
fn constructor_copying_a_shared_list_again_and_again_is_bounded() {
    // OrderedDict(pairs) REDUCEd 2,000 times on one memoized list of 2,000 pairs: 4 M entries
    // from a pickle of 20 kB.
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00](".to_vec();
    for _ in 0..2000 {
        p.extend(b"K\x01K\x02\x86");
    }
    p.extend(b"e\x85q\x01");
    for _ in 0..2000 {
        p.extend(b"h\x00h\x01R0");
    }
    p.extend(b"N.");
    let path = zip_with_pickle("copies", &p);
    expect_format_error(&path, "too large for a pickle of");
}

#[test]
fn compressed_pickle_entry_is_refused_so_no_decompression_bomb_inflates() {
    // PyTorch never compresses entries and the reader has no codec: mark data.pkl deflated
    // (method 8 in the local and central headers) and the reader refuses it unread.
    let path = zip_with_pickle("deflated", &nested_dicts(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let mut patched = 0;
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let method_at = if sig[2] == 3 { 8 } else { 10 };
        let starts: Vec<usize> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == sig)
            .map(|(i, _)| i)
            .collect();
        // The first entry is data.pkl.
        let at = starts[0] + method_at;
        bytes[at] = 8;
        patched += 1;
    }
    assert_eq!(patched, 2);
    std::fs::write(&path, &bytes).unwrap();
    let result = read(&path);
    std::fs::remove_file(&path).unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("data.pkl"), "{err}");
}
