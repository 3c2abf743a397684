//! The reference example of OpenAI's CLIP README, line for line in Rust:
//! `cargo run --release -p zeroclip --example reference_example -- [MODEL] [IMAGE]`
//! (defaults: `ViT-B/32` and `assets/CLIP.png`).

use candle_core::{Device, D};

fn main() -> zeroclip::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_name = args.next().unwrap_or_else(|| "ViT-B/32".into());
    let image_path = args.next().unwrap_or_else(|| "assets/CLIP.png".into());

    let device = Device::Cpu;
    let (model, preprocess) = zeroclip::load(&model_name, &device)?;

    let pixels = preprocess.preprocess_path(image_path.as_ref())?;
    let image =
        zeroclip::zeroshot::stack_pixels(&[pixels], preprocess.resolution as usize, &device)?;
    let text = zeroclip::tokenize(&["a diagram", "a dog", "a cat"], false)?.to_device(&device)?;

    let _image_features = model.encode_image(&image)?;
    let _text_features = model.encode_text(&text)?;

    let (logits_per_image, _logits_per_text) = model.forward(&image, &text)?;
    let probs = candle_nn::ops::softmax(&logits_per_image, D::Minus1)?.to_vec2::<f32>()?;

    println!("Label probs: {probs:?}");
    Ok(())
}
