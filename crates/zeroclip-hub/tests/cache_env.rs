//! The cache directory's environment overrides. One test in its own binary: it changes the
//! process environment, which must not race with other threads reading it.

use std::path::PathBuf;
use zeroclip_hub::{cache_dir, default_cache_dir, hf_cache_dir, HubOptions, CACHE_ENV};

#[test]
fn environment_and_option_choose_the_cache() {
    // This binary runs no other test, so no thread reads the environment meanwhile. The home
    // folder is made up: only the paths derived from it matter.
    let home = std::env::temp_dir().join("zeroclip-made-up-home");
    std::env::set_var("HOME", &home);
    std::env::remove_var(CACHE_ENV);
    assert_eq!(default_cache_dir(), home.join(".cache/clip"));

    std::env::set_var(CACHE_ENV, "");
    assert_eq!(
        default_cache_dir(),
        home.join(".cache/clip"),
        "an empty variable counts as unset"
    );

    std::env::set_var(CACHE_ENV, "/data/clip-cache");
    assert_eq!(default_cache_dir(), PathBuf::from("/data/clip-cache"));
    assert_eq!(
        cache_dir(&HubOptions::default()),
        PathBuf::from("/data/clip-cache")
    );

    let opts = HubOptions {
        cache_dir: Some(PathBuf::from("/explicit")),
        ..Default::default()
    };
    assert_eq!(
        cache_dir(&opts),
        PathBuf::from("/explicit"),
        "the option wins"
    );

    // The Hub cache follows huggingface_hub's variables.
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HF_HOME");
    assert_eq!(
        hf_cache_dir(&HubOptions::default()),
        home.join(".cache/huggingface/hub")
    );
    std::env::set_var("HF_HOME", "/hf");
    assert_eq!(
        hf_cache_dir(&HubOptions::default()),
        PathBuf::from("/hf/hub")
    );
    std::env::set_var("HF_HUB_CACHE", "/hub-cache");
    assert_eq!(
        hf_cache_dir(&HubOptions::default()),
        PathBuf::from("/hub-cache")
    );
}
