//! Fuzzes the model loader on a directory of a safetensors file and its JSON configuration:
//! input byte 0 picks the layout (Hugging Face `config.json` + `model.safetensors`, or open_clip
//! `open_clip_config.json` + `open_clip_model.safetensors`), bytes 1-2 the configuration's
//! length, then the configuration, then the weights. Nothing may panic; a directory that loads
//! must build a model, or fail with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let [layout, a, b, rest @ ..] = data else {
        return;
    };
    let config_len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
    let (config, weights) = rest.split_at(config_len);
    let (config_name, weights_name) = if layout & 1 == 0 {
        ("config.json", "model.safetensors")
    } else {
        ("open_clip_config.json", "open_clip_model.safetensors")
    };
    let dir = scratch::path("weights");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch dir");
    std::fs::write(dir.join(config_name), config).expect("config");
    std::fs::write(dir.join(weights_name), weights).expect("weights");
    let _ = zeroclip::Clip::load(dir, &candle_core::Device::Cpu);
});
