//! Hub ids through hf-hub against a loopback endpoint: both checkpoint layouts, the weight-file
//! fallbacks, revisions, reuse of the cache when offline, and failures.

mod common;

use common::{dead_base_url, fixture_bytes, Reply, Server, TempDir};
use std::path::Path;
use std::time::Duration;
use zeroclip_hub::{resolve, Error, HubOptions, Resolved, Source};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn opts(hf_cache: &TempDir, endpoint: &str) -> HubOptions {
    HubOptions {
        progress: false,
        hf_endpoint: Some(endpoint.to_string()),
        hf_cache_dir: Some(hf_cache.path().to_path_buf()),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Serves `files` of `repo` at `revision`; returns their contents by name.
fn serve_repo(
    server: &Server,
    repo: &str,
    revision: &str,
    files: &[&str],
) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let body = fixture_bytes(1_000 + 777 * i, 100 + i as u64);
            server.route(
                &format!("/{repo}/resolve/{revision}/{f}"),
                Reply::HfFile {
                    body: body.clone(),
                    commit: COMMIT.into(),
                },
            );
            (f.to_string(), body)
        })
        .collect()
}

fn assert_snapshot(r: &Resolved, cache: &Path, files: &[(String, Vec<u8>)], absent: &[&str]) {
    assert!(r.path.starts_with(cache), "{}", r.path.display());
    assert!(
        r.path.ends_with(format!("snapshots/{COMMIT}")),
        "{}",
        r.path.display()
    );
    for (name, body) in files {
        assert_eq!(&std::fs::read(r.path.join(name)).unwrap(), body, "{name}");
    }
    for name in absent {
        assert!(!r.path.join(name).exists(), "{name} should not be fetched");
    }
}

#[test]
fn transformers_layout_is_fetched_then_reused_offline() {
    let server = Server::start();
    let files = serve_repo(
        &server,
        "openai/tiny-clip",
        "main",
        &["config.json", "model.safetensors"],
    );
    let cache = TempDir::new("hf-tf");
    let r = resolve("openai/tiny-clip", &opts(&cache, &server.base)).unwrap();
    assert_eq!(
        r.source,
        Source::HuggingFace {
            repo: "openai/tiny-clip".into(),
            revision: "main".into()
        }
    );
    assert_snapshot(&r, cache.path(), &files, &["pytorch_model.bin"]);

    // Offline afterwards: the complete layout in the cache is enough.
    let again = resolve("openai/tiny-clip", &opts(&cache, &dead_base_url())).unwrap();
    assert_eq!(again.path, r.path);
}

#[test]
fn pytorch_bin_is_the_fallback_weight_file() {
    let server = Server::start();
    let files = serve_repo(
        &server,
        "me/clip-bin",
        "main",
        &["config.json", "pytorch_model.bin"],
    );
    let cache = TempDir::new("hf-bin");
    let r = resolve("me/clip-bin", &opts(&cache, &server.base)).unwrap();
    assert_snapshot(&r, cache.path(), &files, &["model.safetensors"]);
    assert!(server
        .requests()
        .contains(&"/me/clip-bin/resolve/main/model.safetensors".to_string()));
}

#[test]
fn open_clip_layout_and_revision() {
    let server = Server::start();
    let files = serve_repo(
        &server,
        "laion/tiny-open-clip",
        "v1.0",
        &["open_clip_config.json", "open_clip_pytorch_model.bin"],
    );
    let cache = TempDir::new("hf-oc");
    let r = resolve("laion/tiny-open-clip@v1.0", &opts(&cache, &server.base)).unwrap();
    assert_eq!(
        r.source,
        Source::HuggingFace {
            repo: "laion/tiny-open-clip".into(),
            revision: "v1.0".into()
        }
    );
    assert_snapshot(&r, cache.path(), &files, &["config.json"]);
}

#[test]
fn repo_without_weights_is_an_error_naming_what_was_tried() {
    let server = Server::start();
    serve_repo(&server, "me/only-config", "main", &["config.json"]);
    let cache = TempDir::new("hf-none");
    match resolve("me/only-config", &opts(&cache, &server.base)) {
        Err(e @ Error::HubNoCheckpoint { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("me/only-config"), "{msg}");
            assert!(msg.contains("open_clip_pytorch_model.bin"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn offline_hub_id_is_a_clear_error() {
    let cache = TempDir::new("hf-offline");
    let endpoint = dead_base_url();
    let err = resolve("openai/clip-vit-base-patch32", &opts(&cache, &endpoint)).unwrap_err();
    match &err {
        Error::HuggingFace {
            repo, file, url, ..
        } => {
            assert_eq!(repo, "openai/clip-vit-base-patch32");
            assert_eq!(file, "config.json");
            assert_eq!(
                url,
                &format!("{endpoint}/openai/clip-vit-base-patch32/resolve/main/config.json")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("--model /path/to/clip-vit-base-patch32/"),
        "{err}"
    );
}

#[test]
fn snapshot_named_by_commit_is_used_offline() {
    // The layout huggingface_hub leaves for `revision=<commit>`: a snapshot, no `refs/` entry.
    let cache = TempDir::new("hf-commit");
    let dir = cache
        .path()
        .join("models--openai--tiny-clip")
        .join("snapshots")
        .join(COMMIT);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
    let id = format!("openai/tiny-clip@{COMMIT}");
    let r = resolve(&id, &opts(&cache, &dead_base_url())).unwrap();
    assert_eq!(r.path, dir);
    // Without the weights the snapshot is incomplete, so the (dead) endpoint is asked.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = resolve(&id, &opts(&cache, &dead_base_url())).unwrap_err();
    assert!(matches!(err, Error::HuggingFace { .. }), "{err:?}");
}
