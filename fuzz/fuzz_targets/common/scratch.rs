//! A scratch path per fuzzing process, in memory (`/dev/shm`) where there is one: the readers
//! under test take paths, and the fuzzer runs them thousands of times a second.

use std::path::PathBuf;
use std::sync::OnceLock;

/// `/dev/shm/zeroclip-fuzz-<tag>-<pid>` (or under the temporary directory), the same each call.
pub fn path(tag: &str) -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("zeroclip-fuzz-{tag}-{}", std::process::id()))
    })
}
