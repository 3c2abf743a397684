//! Batched inference over many images, as every front end runs it: each batch's images are
//! decoded and preprocessed in parallel on the rayon pool, the ones that decoded go through the
//! model once, and every input gets its own result — its output, its decoding error, or its
//! batch's inference error — in input order.
//!
//! Decoding and inference alternate, each on every core of the one pool, rather than decoding the
//! next batch while the model runs: the model's kernels already keep every worker busy, so a
//! decode running beside them only made their tasks wait for it (docs/PERFORMANCE.md, speed
//! round 3). The reference runs `preprocess` on one PIL image at a time and the model on whatever
//! batch the caller stacks; this module is that loop, in parallel, with no input dropped.

use crate::image::{Preprocess, RawImage};
use rayon::prelude::*;
use std::path::PathBuf;

/// One image to run: where its pixels come from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// A file, read and decoded.
    Path(PathBuf),
    /// An encoded file's bytes; `name` names it in errors.
    Bytes {
        /// How errors name the input.
        name: String,
        /// The encoded image.
        data: Vec<u8>,
    },
    /// Pixels already decoded, in a Pillow mode (see [`RawImage`]).
    Raw {
        /// How errors name the input.
        name: String,
        /// The Pillow mode.
        mode: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// `tobytes()` of the image.
        data: Vec<u8>,
        /// The RGB palette of a `P` image.
        palette: Option<Vec<u8>>,
    },
    /// Pixels already preprocessed: `[3, n, n]` float32, flattened.
    Pixels(Vec<f32>),
    /// An input that failed before it got here; its error is reported as its result.
    Failed(String),
}

impl ImageSource {
    /// The preprocessed `[3, n, n]` pixels, or the reason they cannot be had.
    pub fn preprocess(&self, preprocess: &Preprocess) -> Result<Vec<f32>, String> {
        let result = match self {
            ImageSource::Path(path) => preprocess.preprocess_path(path),
            ImageSource::Bytes { name, data } => preprocess.preprocess_bytes(data, name),
            ImageSource::Raw {
                name,
                mode,
                width,
                height,
                data,
                palette,
            } => {
                let raw = RawImage {
                    mode,
                    width: *width,
                    height: *height,
                    data,
                    palette: palette.as_deref(),
                };
                preprocess.preprocess_raw(&raw, name)
            }
            ImageSource::Pixels(pixels) => {
                let n = preprocess.resolution as usize;
                if pixels.len() == 3 * n * n {
                    return Ok(pixels.clone());
                }
                return Err(format!(
                    "expected {} preprocessed values ([3, {n}, {n}]), got {}",
                    3 * n * n,
                    pixels.len()
                ));
            }
            ImageSource::Failed(error) => return Err(error.clone()),
        };
        result.map_err(|e| e.to_string())
    }
}

/// Decodes `sources` in batches of `batch_size` (each batch in parallel), calls `infer` once per
/// batch on the pixels of the images that decoded, and hands each input's result to
/// `sink(index, result)` in input order. `sink` returns `false` to stop early (say, the reader of
/// the output went away); the return value is whether every input was handed over.
///
/// Decoding and `infer` run in `pool` (rayon's global pool when `None`). Call this from outside
/// the pool: its own thread only waits, and a pool thread waiting here would be one the work
/// cannot use (with a one-thread pool, none at all).
pub fn run_batches<T: Send, E: std::fmt::Display>(
    sources: &[ImageSource],
    preprocess: &Preprocess,
    batch_size: usize,
    pool: Option<&rayon::ThreadPool>,
    mut infer: impl FnMut(&[Vec<f32>]) -> Result<Vec<T>, E> + Send,
    mut sink: impl FnMut(usize, Result<T, String>) -> bool,
) -> bool {
    let batch_size = batch_size.max(1);
    let in_pool = |work: &mut (dyn FnMut() + Send)| match pool {
        Some(pool) => pool.install(work),
        None => work(),
    };
    for (b, chunk) in sources.chunks(batch_size).enumerate() {
        let mut decoded = Vec::new();
        in_pool(&mut || decoded = chunk.par_iter().map(|s| s.preprocess(preprocess)).collect());
        let mut results = Vec::new();
        in_pool(&mut || results = infer_decoded(std::mem::take(&mut decoded), &mut infer));
        for (i, result) in results.into_iter().enumerate() {
            if !sink(b * batch_size + i, result) {
                return false;
            }
        }
    }
    true
}

/// Runs `batch` once on the pixels of the items that decoded, and gives each item its own
/// result: its decoding error, its share of the output, or the batch's inference error.
pub fn infer_decoded<T, E: std::fmt::Display>(
    decoded: Vec<Result<Vec<f32>, String>>,
    batch: impl FnOnce(&[Vec<f32>]) -> Result<Vec<T>, E>,
) -> Vec<Result<T, String>> {
    let mut good = Vec::with_capacity(decoded.len());
    let status: Vec<Result<(), String>> = decoded
        .into_iter()
        .map(|d| d.map(|px| good.push(px)))
        .collect();
    let n_good = good.len();
    let mut outputs = if good.is_empty() {
        Ok(Vec::new().into_iter())
    } else {
        match batch(&good) {
            Ok(out) if out.len() == n_good => Ok(out.into_iter()),
            Ok(out) => Err(format!(
                "inference failed: the model returned {} results for {n_good} images",
                out.len()
            )),
            // `{:#}` shows the whole chain of an `anyhow::Error`; other errors print as usual.
            Err(e) => Err(format!("inference failed: {e:#}")),
        }
    };
    status
        .into_iter()
        .map(|s| match (s, &mut outputs) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(it)) => Ok(it.next().expect("one output per decoded image")),
            (Ok(()), Err(e)) => Err(e.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_1x1() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/model/tiny.png"
        ))
        .unwrap()
    }

    #[test]
    fn every_input_gets_its_result_in_order() {
        let p = Preprocess::openai(8);
        let good = ImageSource::Bytes {
            name: "good".into(),
            data: png_1x1(),
        };
        let sources = vec![
            good.clone(),
            ImageSource::Bytes {
                name: "junk".into(),
                data: b"not an image".to_vec(),
            },
            ImageSource::Failed("given up".into()),
            good.clone(),
            ImageSource::Pixels(vec![0.0; 3 * 8 * 8]),
            ImageSource::Pixels(vec![0.0; 5]),
            good,
        ];
        let mut calls = Vec::new();
        let mut got = Vec::new();
        let complete = run_batches(
            &sources,
            &p,
            3,
            None,
            |px| {
                calls.push(px.len());
                crate::Result::Ok(px.iter().map(|v| v.len()).collect())
            },
            |i, r| {
                got.push((i, r));
                true
            },
        );
        assert!(complete);
        assert_eq!(calls, vec![1, 2, 1]);
        let idx: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, (0..7).collect::<Vec<_>>());
        assert_eq!(got[0].1, Ok(192));
        assert!(got[1].1.as_ref().unwrap_err().contains("junk"));
        assert_eq!(got[2].1, Err("given up".into()));
        assert_eq!(got[4].1, Ok(192));
        assert!(got[5].1.as_ref().unwrap_err().contains("got 5"));
    }

    #[test]
    fn an_inference_error_fails_its_batch_only_and_sink_can_stop() {
        let p = Preprocess::openai(8);
        let sources = vec![ImageSource::Pixels(vec![0.0; 192]); 5];
        let mut batch = 0;
        let mut got = Vec::new();
        let complete = run_batches(
            &sources,
            &p,
            2,
            None,
            |px| {
                batch += 1;
                if batch == 2 {
                    Err(crate::Error::NoLabels)
                } else {
                    Ok(vec![batch; px.len()])
                }
            },
            |i, r| {
                got.push(r);
                i < 3
            },
        );
        assert!(!complete);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Ok(1));
        assert!(got[2].as_ref().unwrap_err().starts_with("inference failed"));
    }

    #[test]
    fn a_model_that_returns_too_few_rows_fails_the_batch() {
        let r = infer_decoded(vec![Ok(vec![0.0]), Ok(vec![1.0])], |_| {
            crate::Result::Ok(vec![7])
        });
        assert!(r
            .iter()
            .all(|x| x.as_ref().unwrap_err().contains("1 results for 2")));
    }
}
