//! The label cache's storage: keys, packs, merging, the size bound, hostile files.

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zeroclip-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key() -> CacheKey {
    CacheKey {
        model: "abc".into(),
        templates: vec!["a photo of a {}.".into()],
        context_length: 77,
        truncate: false,
    }
}

fn names(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn round_trip_and_miss_on_every_key_part() {
    let dir = temp_dir("roundtrip");
    let cache = LabelCache::new(&dir);
    assert_eq!(cache.get(&key(), &names(&["dog"])), vec![None]);
    cache
        .put(
            &key(),
            &[("dog", &[1.0, -2.5, 3.25]), ("cat", &[0.5, 0.0, 1.0])],
        )
        .unwrap();
    assert_eq!(
        cache.get(&key(), &names(&["cat", "fish", "dog"])),
        vec![Some(vec![0.5, 0.0, 1.0]), None, Some(vec![1.0, -2.5, 3.25])]
    );
    let variants = [
        CacheKey {
            model: "abd".into(),
            ..key()
        },
        CacheKey {
            templates: vec!["a photo of the {}.".into()],
            ..key()
        },
        CacheKey {
            templates: vec!["a photo of a {}.".into(), "{}".into()],
            ..key()
        },
        CacheKey {
            context_length: 76,
            ..key()
        },
        CacheKey {
            truncate: true,
            ..key()
        },
    ];
    for v in &variants {
        assert_ne!(v.dir_name(), key().dir_name(), "{v:?}");
        assert_eq!(cache.get(v, &names(&["dog"])), vec![None], "{v:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_large_label_set_is_one_file() {
    let dir = temp_dir("one-file");
    let cache = LabelCache::new(&dir);
    let labels: Vec<String> = (0..20_000).map(|i| format!("label {i}")).collect();
    let rows: Vec<[f32; 4]> = (0..20_000).map(|i| [i as f32, 1.0, 2.0, 3.0]).collect();
    let entries: Vec<(&str, &[f32])> = labels
        .iter()
        .zip(&rows)
        .map(|(l, r)| (l.as_str(), r.as_slice()))
        .collect();
    cache.put(&key(), &entries).unwrap();
    assert_eq!(files_under(&dir).len(), 1);
    let got = cache.get(&key(), &labels);
    assert!(got
        .iter()
        .zip(&rows)
        .all(|(g, r)| g.as_deref() == Some(&r[..])));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn many_small_writes_are_merged_and_later_values_win() {
    let dir = temp_dir("merge");
    let cache = LabelCache::new(&dir);
    for i in 0..3 * MAX_PACKS {
        let label = format!("l{}", i % 5);
        cache.put(&key(), &[(&label, &[i as f32, 1.0])]).unwrap();
        assert!(list_packs(&cache.key_dir(&key())).len() <= MAX_PACKS);
    }
    let labels: Vec<String> = (0..5).map(|i| format!("l{i}")).collect();
    let got = cache.get(&key(), &labels);
    for (i, g) in got.iter().enumerate() {
        // The last write of label i was at the largest n < 3 * MAX_PACKS with n % 5 == i.
        let last = (0..3 * MAX_PACKS).filter(|n| n % 5 == i).max().unwrap();
        assert_eq!(g.as_deref(), Some(&[last as f32, 1.0][..]), "l{i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cache_stays_under_its_bound_dropping_the_oldest_keys() {
    let dir = temp_dir("bound");
    let row = [0.25f32; 256];
    let pack_len = pack::encode(&key().encoded(), 256, &[("x", &row)]).len() as u64;
    let cache = LabelCache::new(&dir).with_max_bytes(3 * pack_len + pack_len / 2);
    let keys: Vec<CacheKey> = (0..6)
        .map(|i| CacheKey {
            model: format!("m{i}"),
            ..key()
        })
        .collect();
    for k in &keys {
        cache.put(k, &[("x", &row)]).unwrap();
        let total: u64 = files_under(&dir)
            .iter()
            .map(|f| f.metadata().unwrap().len())
            .sum();
        assert!(
            total <= cache.max_bytes(),
            "{total} > {}",
            cache.max_bytes()
        );
    }
    let x = names(&["x"]);
    // The newest key is always kept; the oldest went first.
    assert!(cache.get(&keys[5], &x)[0].is_some());
    assert!(cache.get(&keys[0], &x)[0].is_none());
    // A single pack over the whole bound is refused, not written.
    let big = vec![1.0f32; 4096];
    let err = cache.put(&key(), &[("big", &big)]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_foreign_and_hostile_packs_read_as_misses() {
    let dir = temp_dir("damaged");
    let cache = LabelCache::new(&dir);
    cache.put(&key(), &[("dog", &[1.0, 2.0])]).unwrap();
    let key_dir = cache.key_dir(&key());
    let path = list_packs(&key_dir).pop().unwrap().path;
    let good = std::fs::read(&path).unwrap();
    let dog = names(&["dog"]);
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert_eq!(cache.get(&key(), &dog), vec![None]);
    let other = CacheKey {
        model: "other".into(),
        ..key()
    };
    std::fs::write(
        &path,
        pack::encode(&other.encoded(), 2, &[("dog", &[1.0, 2.0])]),
    )
    .unwrap();
    assert_eq!(cache.get(&key(), &dog), vec![None]);
    std::fs::remove_file(&path).unwrap();
    #[cfg(unix)]
    {
        // A device or a FIFO where a pack should be: skipped unread, without blocking.
        std::os::unix::fs::symlink("/dev/zero", key_dir.join("zero.pack")).unwrap();
        let fifo = key_dir.join("fifo.pack");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()));
        assert_eq!(cache.get(&key(), &dog), vec![None]);
        cache.put(&key(), &[("dog", &[3.0, 4.0])]).unwrap();
        assert_eq!(cache.get(&key(), &dog), vec![Some(vec![3.0, 4.0])]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn entries_of_the_one_file_per_label_layout_are_ignored() {
    let dir = temp_dir("old-layout");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{}.emb", "0".repeat(64))), b"ZCLE\x01junk").unwrap();
    let cache = LabelCache::new(&dir);
    assert_eq!(cache.get(&key(), &names(&["dog"])), vec![None]);
    cache.put(&key(), &[("dog", &[1.0])]).unwrap();
    assert_eq!(cache.get(&key(), &names(&["dog"])), vec![Some(vec![1.0])]);
    let _ = std::fs::remove_dir_all(&dir);
}
