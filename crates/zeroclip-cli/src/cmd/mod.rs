//! One module per subcommand: its clap `Args` and its `run`.

pub mod classify;
pub mod preprocess;
pub mod tokenize;
