//! One module per subcommand: its clap `Args` and its `run`.

pub mod classify;
pub mod embed;
pub mod models;
pub mod preprocess;
pub mod serve;
pub mod tokenize;
