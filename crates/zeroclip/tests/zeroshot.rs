//! The zero-shot classifier against a hand-made encoder: ensembling and scoring equal to a
//! computation by hand, and the label cache skipping the text tower on a hit and recomputing on
//! any key change.

use candle_core::{Device, Tensor};
use std::cell::Cell;
use std::path::PathBuf;
use zeroclip::zeroshot::{
    ClassifierOptions, LabelCache, Templates, ZeroShotClassifier, ZeroShotModel,
};
use zeroclip::Error;

const DIM: usize = 6;

/// A deterministic stand-in for CLIP: a prompt's embedding is a fixed function of its bytes
/// (with varying norms, so normalization matters); an image's is its first `DIM` pixels.
struct Fake {
    id: String,
    context_length: usize,
    scale: f32,
    text_calls: Cell<usize>,
    prompts_seen: Cell<usize>,
    precision: zeroclip::Precision,
}

impl Fake {
    fn new(id: &str) -> Self {
        Fake {
            id: id.into(),
            context_length: 77,
            scale: 100.0,
            text_calls: Cell::new(0),
            prompts_seen: Cell::new(0),
            precision: zeroclip::Precision::Fp32,
        }
    }

    fn text_embedding(prompt: &str) -> Vec<f32> {
        let bytes = prompt.as_bytes();
        (0..DIM)
            .map(|j| {
                let s: f32 = bytes
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| ((b as f32) * 0.37 + (i * (j + 1)) as f32 * 0.11).sin())
                    .sum();
                s * (1.0 + bytes.len() as f32 * 0.1)
            })
            .collect()
    }
}

impl ZeroShotModel for Fake {
    fn encode_image(&self, pixels: &Tensor) -> zeroclip::Result<Tensor> {
        let n = pixels.dim(0)?;
        Ok(pixels
            .flatten_from(1)?
            .narrow(1, 0, DIM)?
            .reshape((n, DIM))?)
    }
    fn encode_prompts(&self, prompts: &[String], _truncate: bool) -> zeroclip::Result<Tensor> {
        self.text_calls.set(self.text_calls.get() + 1);
        self.prompts_seen
            .set(self.prompts_seen.get() + prompts.len());
        if let Some(p) = prompts.iter().find(|p| p.contains("LONG")) {
            return Err(Error::Tokenizer(zeroclip::tokenizer::Error::TooLong {
                text: p.clone(),
                tokens: 99,
                context_length: 77,
            }));
        }
        let flat: Vec<f32> = prompts
            .iter()
            .flat_map(|p| Fake::text_embedding(p))
            .collect();
        Ok(Tensor::from_vec(flat, (prompts.len(), DIM), &Device::Cpu)?)
    }
    fn logit_scale(&self) -> f32 {
        self.scale
    }
    fn identity(&self) -> zeroclip::Result<String> {
        Ok(self.id.clone())
    }
    fn precision(&self) -> zeroclip::Precision {
        self.precision
    }
    fn context_length(&self) -> usize {
        self.context_length
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// OpenAI's notebook, by hand in f64: normalize each template embedding, mean, normalize.
fn by_hand_class_embedding(label: &str, templates: &[String]) -> Vec<f64> {
    let mut mean = vec![0f64; DIM];
    for t in templates {
        let prompt = t.replace("{}", label);
        let e: Vec<f64> = Fake::text_embedding(&prompt)
            .iter()
            .map(|&x| x as f64)
            .collect();
        for (m, x) in mean.iter_mut().zip(unit(&e)) {
            *m += x / templates.len() as f64;
        }
    }
    unit(&mean)
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zeroclip-zs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

#[test]
fn ensembling_equals_the_notebook_by_hand() {
    let model = Fake::new("m");
    let names = ["dog", "cat", "tench"];
    for templates in [
        Templates::ImageNet7,
        Templates::ImageNet80,
        Templates::Custom(vec!["a {}.".into(), "the {} here".into()]),
        Templates::default(),
    ] {
        let list = templates.list().unwrap();
        let clf = ZeroShotClassifier::new(&model, labels(&names), &templates).unwrap();
        let rows: Vec<Vec<f32>> = clf.class_embeddings().to_vec2().unwrap();
        for (row, name) in rows.iter().zip(names) {
            assert_close(row, &by_hand_class_embedding(name, &list), 1e-6);
        }
    }
}

#[test]
fn probabilities_are_softmax_of_scaled_cosines_sorted_with_top_k() {
    let model = Fake::new("m");
    let names = ["a diagram", "a dog", "a cat", "a dog"];
    let templates = Templates::Single("{}".into());
    let clf = ZeroShotClassifier::new(&model, labels(&names), &templates).unwrap();
    // Two images of resolution 2 (12 values each); the fake's image embedding is the first 6.
    let pixels: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
    let batch = Tensor::from_vec(pixels.clone(), (2, 3, 2, 2), &Device::Cpu).unwrap();
    let got = clf.classify_batch(&batch).unwrap();
    assert_eq!(got.len(), 2);
    for (img, preds) in got.iter().enumerate() {
        let feat: Vec<f64> = pixels[img * 12..img * 12 + DIM]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let feat = unit(&feat);
        let logits: Vec<f64> = names
            .iter()
            .map(|n| {
                let c = by_hand_class_embedding(n, &["{}".to_string()]);
                100.0 * feat.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        let mut want: Vec<(usize, f64)> = logits
            .iter()
            .map(|l| (l - max).exp() / z)
            .enumerate()
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(preds.len(), names.len());
        let total: f32 = preds.iter().map(|p| p.score).sum();
        assert!((total - 1.0).abs() < 1e-5);
        for (p, (i, w)) in preds.iter().zip(&want) {
            assert!((p.score as f64 - w).abs() < 1e-5, "{preds:?} vs {want:?}");
            assert_eq!(p.label, names[*i]);
        }
        assert!(preds.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // Single image, top-k.
    let clf = clf.with_top_k(Some(2));
    let one = batch.narrow(0, 1, 1).unwrap().squeeze(0).unwrap();
    let top = clf.classify(&one).unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top, got[1][..2].to_vec());
}

#[test]
fn cache_hit_skips_the_text_tower_and_any_key_change_misses() {
    let dir = temp_dir("cache");
    let names = labels(&["dog", "cat", "bird"]);
    let opts = ClassifierOptions {
        cache: Some(LabelCache::new(&dir)),
        ..Default::default()
    };
    let t7 = Templates::ImageNet7;

    let model = Fake::new("checkpoint-1");
    let first = ZeroShotClassifier::with_options(&model, names.clone(), &t7, &opts).unwrap();
    assert_eq!(first.cache_stats().misses, 3);
    assert_eq!(model.prompts_seen.get(), 3 * 7);
    let first_rows: Vec<Vec<f32>> = first.class_embeddings().to_vec2().unwrap();

    // Same everything: no text-tower call at all, same embeddings.
    let model = Fake::new("checkpoint-1");
    let second = ZeroShotClassifier::with_options(&model, names.clone(), &t7, &opts).unwrap();
    assert_eq!(model.text_calls.get(), 0);
    assert_eq!(second.cache_stats().hits, 3);
    assert_eq!(
        second.class_embeddings().to_vec2::<f32>().unwrap(),
        first_rows
    );

    // Each key part changed: the text tower runs again for the affected labels.
    let misses = |model: &Fake, names: Vec<String>, t: &Templates, truncate: bool| {
        let o = ClassifierOptions {
            truncate,
            ..opts.clone()
        };
        let c = ZeroShotClassifier::with_options(model, names, t, &o).unwrap();
        (c.cache_stats().misses, model.prompts_seen.get())
    };
    assert_eq!(
        misses(&Fake::new("checkpoint-2"), names.clone(), &t7, false),
        (3, 21)
    );
    assert_eq!(
        misses(
            &Fake::new("checkpoint-1"),
            names.clone(),
            &Templates::ImageNet80,
            false
        ),
        (3, 240)
    );
    assert_eq!(
        misses(&Fake::new("checkpoint-1"), names.clone(), &t7, true),
        (3, 21)
    );
    let mut short_ctx = Fake::new("checkpoint-1");
    short_ctx.context_length = 32;
    assert_eq!(misses(&short_ctx, names.clone(), &t7, false), (3, 21));
    // The same weights in another precision give other text embeddings.
    for precision in [zeroclip::Precision::Bf16, zeroclip::Precision::Int8] {
        let mut other = Fake::new("checkpoint-1");
        other.precision = precision;
        assert_eq!(
            misses(&other, names.clone(), &t7, false),
            (3, 21),
            "{precision}"
        );
    }
    let changed_label = labels(&["dog", "cat", "fish"]);
    assert_eq!(
        misses(&Fake::new("checkpoint-1"), changed_label, &t7, false),
        (1, 7)
    );
    // Template order is part of the key.
    let mut reversed = t7.list().unwrap();
    reversed.reverse();
    let custom = Templates::Custom(reversed);
    assert_eq!(
        misses(&Fake::new("checkpoint-1"), names.clone(), &custom, false),
        (3, 21)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_entries_are_what_the_classifier_reads() {
    // Proves the hit path really reads the file: a tampered entry changes the class embedding.
    let dir = temp_dir("tamper");
    let cache = LabelCache::new(&dir);
    let opts = ClassifierOptions {
        cache: Some(cache.clone()),
        ..Default::default()
    };
    let t = Templates::default();
    let model = Fake::new("m");
    ZeroShotClassifier::with_options(&model, labels(&["dog"]), &t, &opts).unwrap();
    let key = zeroclip::zeroshot::CacheKey {
        model: "m".into(),
        templates: t.list().unwrap(),
        context_length: 77,
        truncate: false,
    };
    let planted = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0];
    cache.put(&key, &[("dog", &planted)]).unwrap();
    let model = Fake::new("m");
    let clf = ZeroShotClassifier::with_options(&model, labels(&["dog"]), &t, &opts).unwrap();
    assert_eq!(model.text_calls.get(), 0);
    assert_eq!(
        clf.class_embeddings().to_vec2::<f32>().unwrap(),
        vec![planted.to_vec()]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_stores_its_labels_in_one_file_not_one_per_label() {
    let dir = temp_dir("few-files");
    let opts = ClassifierOptions {
        cache: Some(LabelCache::new(&dir)),
        ..Default::default()
    };
    let names: Vec<String> = (0..300).map(|i| format!("class {i}")).collect();
    let model = Fake::new("m");
    ZeroShotClassifier::with_options(&model, names.clone(), &Templates::default(), &opts).unwrap();
    let mut files = 0;
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                files += 1;
            }
        }
    }
    assert_eq!(files, 1);
    let model = Fake::new("m");
    let again =
        ZeroShotClassifier::with_options(&model, names, &Templates::default(), &opts).unwrap();
    assert_eq!(again.cache_stats().hits, 300);
    assert_eq!(model.text_calls.get(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unwritable_cache_is_not_fatal() {
    let file = temp_dir("notadir");
    std::fs::write(&file, b"a file where the cache dir should be").unwrap();
    let opts = ClassifierOptions {
        cache: Some(LabelCache::new(&file)),
        ..Default::default()
    };
    let model = Fake::new("m");
    let clf =
        ZeroShotClassifier::with_options(&model, labels(&["a", "b"]), &Templates::default(), &opts)
            .unwrap();
    assert_eq!(clf.cache_stats().write_errors, 2);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn errors_name_their_cause() {
    let model = Fake::new("m");
    let t = Templates::default();
    assert!(matches!(
        ZeroShotClassifier::new(&model, vec![], &t),
        Err(Error::NoLabels)
    ));
    let err = ZeroShotClassifier::new(&model, labels(&["ok", "so LONG", "fine"]), &t)
        .err()
        .unwrap();
    match &err {
        Error::Label { label, .. } => assert_eq!(label, "so LONG"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("so LONG"), "{err}");
    let bad = Templates::Single("no placeholder".into());
    assert!(matches!(
        ZeroShotClassifier::new(&model, labels(&["x"]), &bad),
        Err(Error::Template { .. })
    ));
}

#[test]
fn progress_counts_labels_through_the_text_tower() {
    let model = Fake::new("m");
    let names = labels(&["a", "b", "c", "d", "e"]);
    // 7 templates and batches of 14 prompts: 2 labels per text-tower call.
    let opts = ClassifierOptions {
        text_batch_size: 14,
        ..Default::default()
    };
    let mut seen = Vec::new();
    ZeroShotClassifier::with_progress(&model, names, &Templates::ImageNet7, &opts, &mut |d, t| {
        seen.push((d, t))
    })
    .unwrap();
    assert_eq!(seen, [(0, 5), (2, 5), (4, 5), (5, 5)]);
    assert_eq!(model.text_calls.get(), 3);
}
