//! `zeroclip tokenize`: prints each text's padded ids, one JSON array per line, as
//! `clip.tokenize(texts, context_length, truncate)[i].tolist()`.
//!
//! Texts come from the arguments, then from `--file` (one per line). A text that fails (not
//! UTF-8, too long without `--truncate`) still gets its line: `{"error": "..."}`, so output line
//! `i` always belongs to input `i`; the error is also reported on stderr and the exit code is 1.

use crate::Outcome;
use anyhow::Context;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use zeroclip::tokenizer::{Tokenizer, DEFAULT_CONTEXT_LENGTH};

/// Arguments of `zeroclip tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// Cut texts longer than the context (the last kept id becomes <|endoftext|>) instead of
    /// failing them.
    #[arg(long)]
    truncate: bool,
    /// Ids per row, <|startoftext|> and <|endoftext|> included.
    #[arg(long, default_value_t = DEFAULT_CONTEXT_LENGTH as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    context_length: u64,
    /// Also read texts from this file, one per line ("-" reads standard input).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Texts to tokenize.
    #[arg(value_name = "TEXT")]
    texts: Vec<OsString>,
}

/// Largest texts file (or standard input) read, in bytes: far more texts than anyone tokenizes
/// in one run, far less than memory.
const MAX_TEXTS_BYTES: u64 = 256 << 20;

/// One input: where it came from (for messages) and its text, or why it has none.
struct Input {
    origin: String,
    text: Result<String, String>,
}

/// Runs `zeroclip tokenize`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut inputs: Vec<Input> = args
        .texts
        .into_iter()
        .enumerate()
        .map(|(i, arg)| Input {
            origin: format!("argument {}", i + 1),
            text: arg
                .into_string()
                .map_err(|_| "text is not valid UTF-8".to_owned()),
        })
        .collect();
    if let Some(path) = &args.file {
        inputs.extend(read_lines(path)?);
    }
    if inputs.is_empty() {
        anyhow::bail!("no texts given: pass TEXT arguments or --file PATH");
    }

    let tokenizer = Tokenizer::global();
    let context_length = args.context_length as usize;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for input in inputs {
        let result = input.text.and_then(|text| {
            tokenizer
                .tokenize_one(&text, context_length, args.truncate)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(row) => {
                let json = serde_json::to_string(&row).context("encoding ids as JSON")?;
                writeln!(out, "{json}")
            }
            Err(reason) => {
                failed = true;
                let message = format!("{}: {reason}", input.origin);
                eprintln!("zeroclip: error: {message}");
                writeln!(out, "{}", serde_json::json!({ "error": message }))
            }
        }
        .context("writing to standard output")?;
    }
    out.flush().context("writing to standard output")?;
    Ok(if failed {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

/// The lines of `path` (a trailing `\r` dropped, a final empty line ignored), each decoded
/// on its own so one bad line does not hide the others.
fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<Input>> {
    let shown = path.display();
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_TEXTS_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        if bytes.len() as u64 > MAX_TEXTS_BYTES {
            anyhow::bail!("standard input holds more than {MAX_TEXTS_BYTES} bytes of texts");
        }
    } else {
        // A FIFO nobody writes or `/dev/zero` is an error at once, not a hang or a heap of zeros.
        bytes = zeroclip_fs::read_capped(path, MAX_TEXTS_BYTES)
            .with_context(|| format!("cannot read {shown}"))?;
    }
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Input {
                origin: format!("{shown}:{}", i + 1),
                text: String::from_utf8(line.to_vec()).map_err(|e| {
                    format!(
                        "text is not valid UTF-8 (bad byte at column {})",
                        e.utf8_error().valid_up_to() + 1
                    )
                }),
            }
        })
        .collect())
}
