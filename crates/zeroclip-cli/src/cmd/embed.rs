//! `zeroclip embed`: image or text embeddings (`model.encode_image` / `model.encode_text`,
//! optionally L2-normalized) written as `.npy`, `.safetensors` or JSON lines.
//!
//! Rows follow the input order. With `.npy`/`.safetensors` an input that fails has no row, so a
//! JSON-lines index goes to stdout (`{"input", "row"}` or `{"input", "error"}`) and, in
//! safetensors, the row names go into the metadata.

use super::shared::{progress_bar, ModelArgs};
use crate::inputs::{self, Item};
use crate::Outcome;
use anyhow::Context;
use candle_core::Tensor;
use std::io::Write;
use std::path::PathBuf;
use zeroclip::zeroshot::{normalize, stack_pixels};

/// Arguments of `zeroclip embed`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["inputs", "text", "texts_file"])))]
pub struct Args {
    /// Images: files, directories (recursive), glob patterns, or `-` for paths on stdin.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Texts to embed instead of images.
    #[arg(long, num_args = 1.., value_name = "TEXT", conflicts_with = "inputs")]
    pub text: Vec<String>,
    /// A file with one text per line to embed instead of images.
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    pub texts_file: Option<PathBuf>,
    /// Output file; `-` writes JSON lines to stdout.
    #[arg(short, long, default_value = "-", value_name = "PATH")]
    pub output: PathBuf,
    /// Output format (default: from the output's extension, JSON lines otherwise).
    #[arg(long, value_enum)]
    pub format: Option<EmbedFormat>,
    /// L2-normalize each embedding, as the classifier does before the cosine.
    #[arg(long)]
    pub normalize: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// An embedding file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedFormat {
    /// NumPy `.npy`, float32 `[rows, embed]`.
    Npy,
    /// safetensors with one float32 tensor `embeddings` `[rows, embed]`.
    Safetensors,
    /// One JSON object per input: `{"input"|"text", "embedding"}` or `{"input", "error"}`.
    Jsonl,
}

/// One line of JSON output; absent fields are left out.
#[derive(serde::Serialize, Default)]
struct JsonLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> JsonLine<'a> {
    fn named(name: &'a str, is_text: bool) -> Self {
        if is_text {
            JsonLine {
                text: Some(name),
                ..Default::default()
            }
        } else {
            JsonLine {
                input: Some(name),
                ..Default::default()
            }
        }
    }
}

/// One input's embedding or error.
struct Row {
    name: String,
    result: Result<Vec<f32>, String>,
}

/// Runs `zeroclip embed`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let format = match args.format {
        Some(f) => f,
        None => match args.output.extension().and_then(|e| e.to_str()) {
            Some("npy") => EmbedFormat::Npy,
            Some("safetensors") => EmbedFormat::Safetensors,
            _ => EmbedFormat::Jsonl,
        },
    };
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && format != EmbedFormat::Jsonl {
        anyhow::bail!("{format:?} output needs a file: pass --output PATH");
    }
    let texts = match &args.texts_file {
        Some(path) => Some(zeroclip::zeroshot::read_labels_file(path)?),
        None if !args.text.is_empty() => Some(args.text.clone()),
        None => None,
    };
    let items = match &texts {
        Some(_) => Vec::new(),
        None => inputs::expand(&args.inputs, &mut std::io::stdin().lock())
            .context("cannot read input paths from stdin")?,
    };
    let (model, preprocess) = args.model.load()?;
    let rows = match &texts {
        Some(texts) => embed_texts(&model, texts, &args)?,
        None => embed_images(&model, &preprocess, &items, &args)?,
    };
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    let is_text = texts.is_some();
    let dim = model.config().embed_dim;
    match format {
        EmbedFormat::Jsonl => {
            let mut out: Box<dyn Write> = if to_stdout {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::io::BufWriter::new(create(&args.output)?))
            };
            for row in &rows {
                let mut line = JsonLine::named(&row.name, is_text);
                match &row.result {
                    Ok(e) => line.embedding = Some(e),
                    Err(e) => line.error = Some(e),
                }
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            }
            out.flush()?;
        }
        EmbedFormat::Npy | EmbedFormat::Safetensors => {
            let good: Vec<&Row> = rows.iter().filter(|r| r.result.is_ok()).collect();
            let flat: Vec<f32> = good
                .iter()
                .flat_map(|r| r.result.as_ref().expect("filtered").iter().copied())
                .collect();
            let bytes = if format == EmbedFormat::Npy {
                npy(&flat, good.len(), dim)
            } else {
                let names: Vec<&str> = good.iter().map(|r| r.name.as_str()).collect();
                let meta = serde_json::json!({
                    "rows": serde_json::to_string(&names)?,
                    "kind": if is_text { "text" } else { "image" },
                    "normalized": args.normalize.to_string(),
                    "model": args.model.model,
                });
                safetensors(&flat, good.len(), dim, &meta)
            };
            create(&args.output)?
                .write_all(&bytes)
                .with_context(|| format!("cannot write {}", args.output.display()))?;
            let mut out = std::io::stdout().lock();
            let mut next_row = 0;
            for row in &rows {
                let mut line = JsonLine::named(&row.name, is_text);
                match &row.result {
                    Ok(_) => {
                        line.row = Some(next_row);
                        next_row += 1;
                    }
                    Err(e) => line.error = Some(e),
                }
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            }
        }
    }
    if failed > 0 {
        eprintln!("zeroclip: {failed} of {} inputs failed", rows.len());
        return Ok(Outcome::SomeFailed);
    }
    Ok(Outcome::Success)
}

fn create(path: &PathBuf) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

fn finish(t: Tensor, normalized: bool) -> anyhow::Result<Vec<Vec<f32>>> {
    let t = t.to_dtype(candle_core::DType::F32)?;
    let t = if normalized { normalize(&t)? } else { t };
    Ok(t.to_vec2()?)
}

fn embed_texts(model: &zeroclip::Clip, texts: &[String], args: &Args) -> anyhow::Result<Vec<Row>> {
    let ctx = model.config().context_length;
    let truncate = args.model.truncate;
    // Tokenize one by one, so that a text too long fails alone.
    let tokenized: Vec<Result<Vec<u32>, String>> = texts
        .iter()
        .map(|t| {
            zeroclip::tokenizer::tokenize(&[t], ctx, truncate)
                .map(|b| b.ids)
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut rows: Vec<Row> = Vec::with_capacity(texts.len());
    let batch = args.model.batch_size as usize;
    for (chunk_texts, chunk_ids) in texts.chunks(batch).zip(tokenized.chunks(batch)) {
        let ids: Vec<u32> = chunk_ids.iter().flatten().flatten().copied().collect();
        let n = ids.len() / ctx;
        let mut embedded = if n == 0 {
            Vec::new().into_iter()
        } else {
            let ids = Tensor::from_vec(ids, (n, ctx), model.device())?;
            finish(model.encode_text(&ids)?, args.normalize)?.into_iter()
        };
        for (text, tok) in chunk_texts.iter().zip(chunk_ids) {
            let result = match tok {
                Ok(_) => Ok(embedded.next().expect("one embedding per text")),
                Err(e) => Err(e.clone()),
            };
            rows.push(Row {
                name: text.clone(),
                result,
            });
        }
    }
    Ok(rows)
}

/// Image embeddings `[n][embed]` of preprocessed images, unit rows if `normalized`.
pub(crate) fn encode_images(
    model: &zeroclip::Clip,
    images: &[Vec<f32>],
    resolution: usize,
    normalized: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let pixels = stack_pixels(images, resolution, model.device())?;
    finish(model.encode_image(&pixels)?, normalized)
}

fn embed_images(
    model: &zeroclip::Clip,
    preprocess: &zeroclip::image::Preprocess,
    items: &[Item],
    args: &Args,
) -> anyhow::Result<Vec<Row>> {
    let bar = progress_bar(items.len());
    bar.set_message("images");
    let resolution = preprocess.resolution as usize;
    let mut rows = Vec::with_capacity(items.len());
    let sources: Vec<_> = items.iter().map(Item::source).collect();
    zeroclip::batch::run_batches(
        &sources,
        preprocess,
        args.model.batch_size as usize,
        None,
        |good| encode_images(model, good, resolution, args.normalize),
        |i, result| {
            rows.push(Row {
                name: items[i].name.clone(),
                result,
            });
            bar.inc(1);
            true
        },
    );
    bar.finish_and_clear();
    Ok(rows)
}

/// A NumPy v1.0 `.npy` file of little-endian float32 `[rows, dim]`.
fn npy(data: &[f32], rows: usize, dim: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline, as NumPy writes it.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A safetensors file with one float32 tensor `embeddings` `[rows, dim]` and string metadata.
fn safetensors(data: &[f32], rows: usize, dim: usize, meta: &serde_json::Value) -> Vec<u8> {
    let header = serde_json::json!({
        "__metadata__": meta,
        "embeddings": {"dtype": "F32", "shape": [rows, dim], "data_offsets": [0, 4 * data.len()]},
    });
    let mut header = header.to_string();
    // The data starts 8-byte aligned.
    header.push_str(&" ".repeat((8 - header.len() % 8) % 8));
    let mut out = Vec::with_capacity(8 + header.len() + 4 * data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
