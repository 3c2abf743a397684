//! `zeroclip`: the command-line tool. Argument parsing and output only; all work is in the library.
//!
//! Exit codes, as ripgrep: 0 everything succeeded, 1 some inputs failed (each one still appears in
//! the output with its error), 2 usage error or a fatal error (model, arguments). A closed
//! standard output (`zeroclip tokenize ... | head -1`) ends the run quietly with 0, as ripgrep
//! does: the reader has all it wanted.

#![forbid(unsafe_code)]

mod cmd;
mod inputs;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "zeroclip",
    version,
    about = "OpenAI CLIP zero-shot image classification"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the token ids of each text, as `clip.tokenize(...)[i].tolist()`.
    Tokenize(cmd::tokenize::Args),
    /// Write an image's preprocessed float32 [3, n, n] tensor, as the reference `preprocess(img)`.
    Preprocess(cmd::preprocess::Args),
    /// Classify images against labels, zero-shot.
    Classify(cmd::classify::Args),
    /// Measure accuracy on labelled images (ImageFolder or manifest): CLIP_benchmark's metrics,
    /// per-class metrics, confusion matrix, calibration.
    Eval(cmd::eval::Args),
    /// Build a few-shot class adapter from a few labelled images per class, training-free.
    Adapt(cmd::adapt::Args),
    /// Write image or text embeddings as .npy, .safetensors or JSON lines.
    Embed(cmd::embed::Args),
    /// List, download and verify the 9 OpenAI checkpoints in the cache.
    Models(cmd::models::Args),
    /// Serve zero-shot classification over HTTP, with dynamic batching and a web page.
    Serve(cmd::serve::Args),
}

/// How a command that ran to its end went.
pub enum Outcome {
    /// Every input succeeded.
    Success,
    /// At least one input failed; its error was reported in the output.
    SomeFailed,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Tokenize(args) => cmd::tokenize::run(args),
        Command::Preprocess(args) => cmd::preprocess::run(args),
        Command::Classify(args) => cmd::classify::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Adapt(args) => cmd::adapt::run(args),
        Command::Embed(args) => cmd::embed::run(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::SomeFailed) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zeroclip: error: {}", message(&e));
            ExitCode::from(2)
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has gone. JSON writers wrap the I/O
/// error in their own type, which does not give it back as a source, so both are looked for.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, `: `-separated, each cause said once: library errors often print
/// their source in their own message too, which `{:#}` would repeat ("Is a directory (os error
/// 21): Is a directory (os error 21)").
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let e = anyhow::Error::new(zeroclip::Error::Io {
            path: "labels".into(),
            source: io,
        })
        .context("cannot read labels");
        assert_eq!(
            message(&e),
            "cannot read labels: labels: Is a directory (os error 21)"
        );
    }
}
