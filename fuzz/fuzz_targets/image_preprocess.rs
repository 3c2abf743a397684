//! Fuzzes `Preprocess::preprocess_bytes` on arbitrary bytes (every format the sniffer knows),
//! with a pixel limit small enough that a header claiming a large image is refused before
//! allocation: nothing may panic, and a success has exactly 3·n·n finite values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroclip_image::Preprocess;

fuzz_target!(|data: &[u8]| {
    let mut p = Preprocess::openai(16);
    p.max_pixels = 1 << 20;
    // The length's parity turns EXIF orientation on or off (the first bytes are the format's
    // magic number), so both paths are explored for every format.
    p.apply_exif_orientation = data.len() % 2 == 1;
    if let Ok(v) = p.preprocess_bytes(data, "fuzz") {
        assert_eq!(v.len(), 3 * 16 * 16);
        assert!(v.iter().all(|x| x.is_finite()));
    }
});
