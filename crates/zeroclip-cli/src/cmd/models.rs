//! `zeroclip models`: the cache of OpenAI's 9 checkpoints — list them (cached or not, size,
//! checksum), download them, verify them. Same names as `clip.available_models()` and the same
//! cache as `clip.load` (`~/.cache/clip`, or `$ZEROCLIP_CACHE`, or `--cache-dir`).

use crate::Outcome;
use std::io::Write;
use std::path::PathBuf;
use zeroclip::hub::{self, HubOptions};

/// Arguments of `zeroclip models`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Cache directory [default: $ZEROCLIP_CACHE, else ~/.cache/clip].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Download from this host (a mirror) instead of OpenAI's; the path stays the reference's.
    #[arg(long, global = true, value_name = "URL")]
    base_url: Option<String>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// List the 9 models: cached or not, size and checksum (the default).
    List {
        /// Do not hash the cached files (fast; the checksum column says "not checked").
        #[arg(long)]
        no_verify: bool,
    },
    /// Download models into the cache; a cached file with the right checksum is kept.
    Download {
        /// Model names, e.g. ViT-B/32.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Check the SHA-256 of cached models; exit code 1 if any is wrong or missing.
    Verify {
        /// Model names; all cached models when none is given.
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
}

/// Runs `zeroclip models`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let opts = HubOptions {
        cache_dir: args.cache_dir,
        base_url: args.base_url,
        ..Default::default()
    };
    match args.command.unwrap_or(Sub::List { no_verify: false }) {
        Sub::List { no_verify } => list(&opts, !no_verify),
        Sub::Download { names } => download(&opts, &names),
        Sub::Verify { names } => verify(&opts, &names),
    }
}

/// `println!` that hands the write error back (a closed pipe ends the run quietly, see `main`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn list(opts: &HubOptions, verify_checksums: bool) -> anyhow::Result<Outcome> {
    let dir = hub::cache_dir(opts);
    let cached = hub::scan_cache(opts, verify_checksums);
    say!("cache: {}", dir.display());
    say!("{:<16} {:<6} {:>10}  SHA-256", "NAME", "CACHED", "SIZE");
    for model in hub::MODELS {
        match cached.iter().find(|c| c.name == model.name) {
            Some(c) => {
                let status = match c.sha256_ok {
                    Some(true) => "ok",
                    Some(false) => "MISMATCH",
                    None if verify_checksums => "unreadable",
                    None => "not checked",
                };
                let size = human_size(c.size);
                say!("{:<16} {:<6} {size:>10}  {status}", model.name, "yes");
            }
            None => say!("{:<16} {:<6} {:>10}  -", model.name, "no", "-"),
        }
    }
    Ok(Outcome::Success)
}

fn unknown(name: &str) -> String {
    format!(
        "`{name}` is not one of OpenAI's models; available models = {:?}",
        hub::available_models()
    )
}

fn download(opts: &HubOptions, names: &[String]) -> anyhow::Result<Outcome> {
    let mut failed = false;
    for name in names {
        let Some(model) = hub::find_model(name) else {
            say!("{name}: error: {}", unknown(name));
            failed = true;
            continue;
        };
        match hub::resolve(model.name, opts) {
            Ok(r) => say!("{name}: ok {}", r.path.display()),
            Err(e) => {
                say!("{name}: error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

fn verify(opts: &HubOptions, names: &[String]) -> anyhow::Result<Outcome> {
    let dir = hub::cache_dir(opts);
    let models: Vec<Result<&hub::OpenAiModel, &String>> = if names.is_empty() {
        let cached = hub::scan_cache(opts, false);
        if cached.is_empty() {
            say!("no OpenAI models cached in {}", dir.display());
            return Ok(Outcome::Success);
        }
        cached
            .iter()
            .filter_map(|c| hub::find_model(c.name))
            .map(Ok)
            .collect()
    } else {
        names.iter().map(|n| hub::find_model(n).ok_or(n)).collect()
    };
    let mut failed = false;
    for model in models {
        let model = match model {
            Ok(m) => m,
            Err(name) => {
                say!("{name}: error: {}", unknown(name));
                failed = true;
                continue;
            }
        };
        let path = dir.join(model.file_name);
        if !path.is_file() {
            say!(
                "{}: error: not cached (no file {})",
                model.name,
                path.display()
            );
            failed = true;
            continue;
        }
        match hub::sha256_file(&path) {
            Ok(actual) if actual == model.sha256 => {
                say!("{}: ok {}", model.name, path.display())
            }
            Ok(actual) => {
                say!(
                    "{}: error: {} has SHA-256 {actual}, expected {}; \
                     `zeroclip models download {}` fetches it again",
                    model.name,
                    path.display(),
                    model.sha256,
                    model.name
                );
                failed = true;
            }
            Err(e) => {
                say!("{}: error: {e}", model.name);
                failed = true;
            }
        }
    }
    Ok(if failed {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    })
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(351_000_000), "334.7 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
