//! `zeroclip tokenize` (placeholder until its issue lands).

use crate::Outcome;

/// Arguments of `zeroclip tokenize`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `zeroclip tokenize`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`zeroclip tokenize` is not built yet")
}
