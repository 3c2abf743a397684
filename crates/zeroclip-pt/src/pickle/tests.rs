//! Unit tests of the pickle VM on hand-made pickles and on damaged fixture pickles.

use super::*;

fn run(bytes: &[u8]) -> Result<(Unpickled, usize), Fault> {
    unpickle(bytes, "test.pkl")
}

#[test]
fn memoized_dict_sees_later_setitems() {
    // {'a': 1} built after BINPUT, then fetched back from the memo inside a list.
    let p = b"\x80\x02]q\x00}q\x01(X\x01\x00\x00\x00aK\x01ua h\x01a.";
    let p: Vec<u8> = p.iter().copied().filter(|&b| b != b' ').collect();
    let (u, used) = run(&p).unwrap();
    assert_eq!(used, p.len());
    let items = u.arena.seq(&u.root).unwrap();
    assert_eq!(items.len(), 2);
    for d in items {
        let entries = u.arena.dict_entries(d).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].1.as_int(), Some(1));
    }
}

#[test]
fn long1_decodes_negative_and_wide() {
    assert!(matches!(long_value(&[0xff]), Value::Int(-1)));
    assert!(matches!(long_value(&[0x00, 0x01]), Value::Int(256)));
    assert!(matches!(long_value(&[0; 10]), Value::BigInt(_)));
    assert!(matches!(long_value(&[]), Value::Int(0)));
}

#[test]
fn refuses_os_system_before_calling_it() {
    let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
    match run(p) {
        Err(Fault::Global { module, name }) => {
            assert_eq!((module.as_str(), name.as_str()), ("os", "system"))
        }
        Err(other) => panic!("wrong fault {other:?}"),
        Ok(_) => panic!("os.system accepted"),
    }
}

#[test]
fn truncated_and_underflow_are_faults() {
    assert!(matches!(
        run(b"\x80\x02X\x05\x00\x00\x00ab"),
        Err(Fault::Truncated(_))
    ));
    assert!(matches!(run(b"\x80\x02a."), Err(Fault::Format(_))));
    assert!(matches!(run(b"\x80\x02u."), Err(Fault::Format(_))));
    assert!(matches!(run(b""), Err(Fault::Truncated(_))));
    assert!(matches!(run(b"\x80\x09."), Err(Fault::Format(_))));
}

/// Damaged `data.pkl` bytes, below the zip CRC check that would refuse them first.
#[test]
fn damaged_module_pickles_are_faults_not_panics() {
    use std::io::Read;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/pt/script_clip_pytorch17.pt"
    );
    let file = std::fs::File::open(path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut pkl = Vec::new();
    zip.by_name("ViT-B-32/data.pkl")
        .unwrap()
        .read_to_end(&mut pkl)
        .unwrap();
    let (good, _) = run(&pkl).unwrap();
    assert!(
        crate::names::tensors(&good.arena, &good.root)
            .unwrap()
            .len()
            > 20
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for cut in 0..pkl.len() {
        assert!(run(&pkl[..cut]).is_err(), "prefix {cut} accepted");
    }
    for _ in 0..20_000 {
        let mut bytes = pkl.clone();
        for _ in 0..1 + next() % 4 {
            let r = next();
            let at = (r % bytes.len() as u64) as usize;
            bytes[at] = (r >> 32) as u8;
        }
        if let Ok((u, _)) = run(&bytes) {
            let _ = crate::names::tensors(&u.arena, &u.root);
        }
    }
}

#[test]
fn claimed_lengths_past_the_input_are_truncation_before_any_allocation() {
    // BINBYTES8 / BINUNICODE8 claiming 2^62 bytes, BINUNICODE claiming 4 GiB, in a 20-byte pickle.
    for p in [
        &b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x40."[..],
        b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40.",
        b"\x80\x02X\xff\xff\xff\xffab.",
    ] {
        assert!(matches!(run(p), Err(Fault::Truncated(_))), "{p:?}");
    }
}
