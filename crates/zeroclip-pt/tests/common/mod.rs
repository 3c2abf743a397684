//! Shared helpers of the integration tests: fixture paths and scratch files.

use std::path::PathBuf;

/// Path of a fixture made by `scripts/make_pt_fixtures.py`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/pt"
    ))
    .join(name)
}

/// Fixture files (`.pt`) that the reader must accept.
pub const GOOD: &[&str] = &[
    "script_tree",
    "script_clip_pytorch17",
    "state_zip",
    "state_legacy",
    "state_big_endian",
    "train_ckpt_zip",
    "train_ckpt_legacy",
];

/// A scratch file path unique to this test process and `tag`.
#[allow(dead_code)] // not every test file writes scratch files
pub fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("zeroclip-pt-{}-{tag}.pt", std::process::id()))
}
