//! `zeroclip classify` (placeholder until its issue lands).

use crate::Outcome;

/// Arguments of `zeroclip classify`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `zeroclip classify`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`zeroclip classify` is not built yet")
}
