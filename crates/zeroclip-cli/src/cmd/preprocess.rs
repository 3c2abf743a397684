//! `zeroclip preprocess` (placeholder until its issue lands).

use crate::Outcome;

/// Arguments of `zeroclip preprocess`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `zeroclip preprocess`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`zeroclip preprocess` is not built yet")
}
