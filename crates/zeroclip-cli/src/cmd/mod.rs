//! One module per subcommand: its clap `Args` and its `run`.

pub mod adapt;
pub mod classify;
pub mod embed;
pub mod eval;
mod eval_plot;
mod eval_report;
mod labelled;
pub mod models;
pub mod preprocess;
pub mod serve;
mod shared;
pub mod tokenize;
