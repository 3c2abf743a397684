//! Downloads against a loopback server: a good file, a wrong checksum, a truncated transfer, a
//! 404, a stalled server, offline, and the cache (hits, stale files, atomic replacement).

mod common;

use common::{dead_base_url, fixture_bytes, sha256_hex, Reply, Server, TempDir};
use std::time::Duration;
use zeroclip_hub::{
    cached_models, fetch_verified, find_model, resolve, scan_cache, verify, Error, HubOptions,
    Source,
};

fn opts(cache: &TempDir, server_base: &str) -> HubOptions {
    HubOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        progress: false,
        base_url: Some(server_base.to_string()),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

#[test]
fn good_file_is_downloaded_verified_and_then_reused() {
    let server = Server::start();
    let body = fixture_bytes(300_000, 1);
    let sha = sha256_hex(&body);
    server.route("/good.pt", Reply::Body(body.clone()));
    let cache = TempDir::new("good");
    let o = opts(&cache, &server.base);
    let target = cache.path().join("good.pt");
    let url = format!("{}/good.pt", server.base);

    let path = fetch_verified(&url, &sha, &target, &o).unwrap();
    assert_eq!(path, target);
    assert_eq!(std::fs::read(&target).unwrap(), body);
    assert_eq!(cache.entries(), ["good.pt"], "no temporary file left");
    assert!(verify(&target, &sha).unwrap());
    assert!(verify(&target, &sha.to_ascii_uppercase()).unwrap());

    // A verified cached file is used without asking the server again.
    fetch_verified(&url, &sha, &target, &o).unwrap();
    assert_eq!(server.hits("/good.pt"), 1);
}

#[test]
fn body_without_content_length_is_accepted_on_checksum() {
    let server = Server::start();
    let body = fixture_bytes(70_000, 2);
    server.route("/chunk.pt", Reply::BodyNoLength(body.clone()));
    let cache = TempDir::new("nolen");
    let target = cache.path().join("chunk.pt");
    let url = format!("{}/chunk.pt", server.base);
    fetch_verified(
        &url,
        &sha256_hex(&body),
        &target,
        &opts(&cache, &server.base),
    )
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), body);
}

#[test]
fn wrong_checksum_is_an_error_and_nothing_is_kept() {
    let server = Server::start();
    let body = fixture_bytes(50_000, 3);
    server.route("/bad.pt", Reply::Body(body.clone()));
    let cache = TempDir::new("badsum");
    let target = cache.path().join("bad.pt");
    let url = format!("{}/bad.pt", server.base);
    let expected = sha256_hex(b"something else");
    match fetch_verified(&url, &expected, &target, &opts(&cache, &server.base)) {
        Err(Error::ChecksumMismatch {
            url: u,
            expected: e,
            actual,
            ..
        }) => {
            assert_eq!(u, url);
            assert_eq!(e, expected);
            assert_eq!(actual, sha256_hex(&body));
        }
        other => panic!("{other:?}"),
    }
    assert!(cache.entries().is_empty(), "{:?}", cache.entries());
}

#[test]
fn truncated_transfer_is_caught_and_nothing_is_kept() {
    let server = Server::start();
    let body = fixture_bytes(40_000, 4);
    server.route(
        "/short.pt",
        Reply::Truncated {
            body: body.clone(),
            claimed: 100_000,
        },
    );
    let cache = TempDir::new("trunc");
    let target = cache.path().join("short.pt");
    let url = format!("{}/short.pt", server.base);
    // The checksum of the bytes actually sent: only the length check can catch this.
    let err = fetch_verified(
        &url,
        &sha256_hex(&body),
        &target,
        &opts(&cache, &server.base),
    )
    .unwrap_err();
    match &err {
        Error::Truncated {
            url: u,
            received,
            expected,
            ..
        } => {
            assert_eq!(u, &url);
            assert_eq!(*expected, 100_000);
            assert!(*received <= 40_000, "{received}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("--model /path/to/short.pt"),
        "{err}"
    );
    assert!(cache.entries().is_empty(), "{:?}", cache.entries());
}

#[test]
fn not_found_names_the_url_and_the_way_out() {
    let server = Server::start();
    let cache = TempDir::new("404");
    let target = cache.path().join("ViT-B-32.pt");
    let url = format!("{}/missing.pt", server.base);
    let err =
        fetch_verified(&url, &"0".repeat(64), &target, &opts(&cache, &server.base)).unwrap_err();
    assert!(
        matches!(&err, Error::HttpStatus { status: 404, url: u, .. } if *u == url),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("--model /path/to/ViT-B-32.pt"), "{msg}");
    assert!(msg.contains(&target.display().to_string()), "{msg}");
    assert!(cache.entries().is_empty());
}

#[test]
fn stalled_server_hits_the_read_timeout() {
    let server = Server::start();
    let body = fixture_bytes(20_000, 5);
    let stall = Duration::from_secs(30);
    server.route(
        "/stall-body.pt",
        Reply::StallMidBody {
            body: body.clone(),
            sent: 5_000,
            stall,
        },
    );
    server.route("/stall-head.pt", Reply::StallBeforeHeaders(stall));
    let cache = TempDir::new("stall");
    let o = opts(&cache, &server.base);
    for name in ["stall-body.pt", "stall-head.pt"] {
        let url = format!("{}/{name}", server.base);
        let target = cache.path().join(name);
        match fetch_verified(&url, &sha256_hex(&body), &target, &o) {
            Err(Error::Download { url: u, reason, .. }) => {
                assert_eq!(u, url);
                assert!(reason.contains("read timeout"), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(cache.entries().is_empty(), "{:?}", cache.entries());
}

#[test]
fn offline_is_a_clear_error() {
    let cache = TempDir::new("offline");
    let base = dead_base_url();
    let err = resolve("ViT-B/32", &opts(&cache, &base)).unwrap_err();
    let model = find_model("ViT-B/32").unwrap();
    let url = model.url_with_base(Some(&base));
    match &err {
        Error::Download { url: u, reason, .. } => {
            assert_eq!(u, &url);
            assert!(reason.contains("offline"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("--model /path/to/ViT-B-32.pt"), "{msg}");
    assert!(cache.entries().is_empty());
}

#[test]
fn openai_names_use_the_reference_path_and_checksum() {
    let server = Server::start();
    let model = find_model("ViT-B/32").unwrap();
    let path = format!("/clip/models/{}/ViT-B-32.pt", model.sha256);
    // No file here has OpenAI's checksum, so the download must be refused.
    server.route(&path, Reply::Body(fixture_bytes(10_000, 6)));
    let cache = TempDir::new("openai");
    match resolve("ViT-B/32", &opts(&cache, &server.base)) {
        Err(Error::ChecksumMismatch { expected, url, .. }) => {
            assert_eq!(expected, model.sha256);
            assert_eq!(url, format!("{}{path}", server.base));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests(), [path]);
    assert!(cache.entries().is_empty());
}

#[test]
fn cached_file_with_wrong_checksum_is_downloaded_again() {
    let server = Server::start();
    let body = fixture_bytes(120_000, 7);
    let sha = sha256_hex(&body);
    server.route("/model.pt", Reply::Body(body.clone()));
    let cache = TempDir::new("stale");
    let target = cache.path().join("model.pt");
    std::fs::write(&target, b"corrupt or outdated").unwrap();
    let url = format!("{}/model.pt", server.base);
    fetch_verified(&url, &sha, &target, &opts(&cache, &server.base)).unwrap();
    assert_eq!(server.hits("/model.pt"), 1);
    assert_eq!(std::fs::read(&target).unwrap(), body);
    assert_eq!(cache.entries(), ["model.pt"]);
}

#[test]
fn stale_cached_file_is_never_returned_and_a_failed_download_leaves_it_whole() {
    let server = Server::start();
    let stale = b"stale bytes".to_vec();
    server.route(
        "/model.pt",
        Reply::Truncated {
            body: fixture_bytes(1_000, 8),
            claimed: 5_000,
        },
    );
    let cache = TempDir::new("stale-fail");
    let target = cache.path().join("model.pt");
    std::fs::write(&target, &stale).unwrap();
    let url = format!("{}/model.pt", server.base);
    let err = fetch_verified(
        &url,
        &sha256_hex(b"wanted"),
        &target,
        &opts(&cache, &server.base),
    );
    assert!(matches!(err, Err(Error::Truncated { .. })), "{err:?}");
    // Atomic replacement: the old file is untouched, no partial download beside it.
    assert_eq!(std::fs::read(&target).unwrap(), stale);
    assert_eq!(cache.entries(), ["model.pt"]);
}

#[test]
fn cache_entry_that_is_not_a_file_is_refused() {
    let cache = TempDir::new("notfile");
    let target = cache.path().join("RN50.pt");
    std::fs::create_dir(&target).unwrap();
    let err = fetch_verified(
        "http://127.0.0.1:9/x",
        &"0".repeat(64),
        &target,
        &HubOptions {
            progress: false,
            ..Default::default()
        },
    );
    assert!(matches!(err, Err(Error::NotAFile { path }) if path == target));
}

#[test]
fn cached_models_reports_size_and_checksum() {
    let cache = TempDir::new("list");
    let o = HubOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    assert!(cached_models(&o).is_empty());
    std::fs::write(cache.path().join("RN50.pt"), vec![7u8; 1234]).unwrap();
    std::fs::write(cache.path().join(".RN101.pt.1.0.part"), b"partial").unwrap();
    let listed = cached_models(&o);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, "RN50");
    assert_eq!(listed[0].size, 1234);
    assert_eq!(listed[0].path, cache.path().join("RN50.pt"));
    assert_eq!(listed[0].sha256_ok, Some(false));
    assert_eq!(scan_cache(&o, false)[0].sha256_ok, None);
}

#[test]
fn existing_local_file_is_used_as_is() {
    let cache = TempDir::new("local");
    let file = cache.path().join("my.pt");
    std::fs::write(&file, b"x").unwrap();
    let r = resolve(file.to_str().unwrap(), &HubOptions::default()).unwrap();
    assert_eq!(r.source, Source::LocalPath);
    assert_eq!(r.path, file);
}
