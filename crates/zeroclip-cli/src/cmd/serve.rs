//! `zeroclip serve`: the HTTP server (`zeroclip-server`) on an address, until Ctrl-C or SIGTERM,
//! after which the requests in flight finish.

use crate::Outcome;
use anyhow::Context;
use std::io::Write;
use std::time::Duration;
use zeroclip_server::{AppState, BatchConfig, Limits, LoadedModel, ServerConfig};

/// Arguments of `zeroclip serve`. Every number has a range: 0 (or an absurd size) would start
/// a server that refuses everything or could be exhausted by one request.
#[derive(clap::Args)]
pub struct Args {
    /// Model name (e.g. ViT-B/32) or checkpoint path.
    #[arg(long, default_value = "ViT-B/32")]
    model: String,
    /// Arithmetic of the transformer's linear layers: fp32 (the reference's), bf16 or int8.
    #[arg(long, default_value = "fp32", value_name = "fp32|bf16|int8")]
    precision: zeroclip::Precision,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Most images in one forward pass (1-1024).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_batch: u64,
    /// How long a request waits for others to share its forward pass, in ms (0-10000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    max_wait_ms: u64,
    /// Most requests waiting for the model; more get 503 (1-65536).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    queue: u64,
    /// Request timeout in seconds, queueing included; 504 after it (1-3600).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_s: u64,
    /// Longest a connection may take to send a request's headers, and longest it may stay idle
    /// between requests, in seconds (1-3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_s: u64,
    /// Most connections open at once (1-65536); keep it under the open-file limit.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_connections: u64,
    /// Largest request body in MiB (1-1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_body_mib: u64,
    /// Largest image in pixels, width × height (1-2^32).
    #[arg(long, default_value_t = 40_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    max_pixels: u64,
    /// Most images (or texts) per request (1-1024).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_inputs: u64,
    /// Most candidate labels per request (1-100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_labels: u64,
    /// Most texts one request may send through the text tower: labels × templates (1-1000000).
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_texts: u64,
    /// Longest label in characters (1-10000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_label_chars: u64,
    /// Most POST requests handled at once; more get 503 (1-65536).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_in_flight: u64,
    /// A few-shot adapter made by `zeroclip adapt` for this model: requests are classified
    /// against its classes with its scores (labels may be left out; given ones must be its own).
    #[arg(long, value_name = "FILE")]
    adapter: Option<std::path::PathBuf>,
    /// Label embeddings kept in the LRU cache; 0 disables it (0-10000000).
    #[arg(long, default_value_t = 16384,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    cache_size: u64,
}

/// File descriptors kept free of connections: the listener, the model and label files, stdio,
/// the runtime's own.
const RESERVED_FILES: u64 = 64;

/// The soft limit on open files, where the system tells it (Linux's `/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `--max-connections`, lowered to what the open-file limit allows: at the cap the server stops
/// accepting (clients wait in the backlog) instead of failing `accept` for every client.
fn connection_cap(asked: u64) -> u64 {
    match open_file_limit() {
        Some(limit) if asked + RESERVED_FILES > limit => {
            let cap = limit.saturating_sub(RESERVED_FILES).max(1);
            eprintln!(
                "zeroclip: at most {cap} connections: the open-file limit is {limit} (raise it with `ulimit -n` for more)"
            );
            cap
        }
        _ => asked,
    }
}

/// Runs `zeroclip serve`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let adapter = super::shared::load_adapter(args.adapter.as_deref())?;
    let options = zeroclip::LoadOptions::with_precision(args.precision);
    let model = LoadedModel::load_with(&args.model, &options)
        .with_context(|| format!("cannot load model {}", args.model))?;
    let model = match adapter {
        Some(adapter) => model
            .with_adapter(adapter)
            .context("cannot use the adapter")?,
        None => model,
    };
    let config = ServerConfig {
        limits: Limits {
            max_body_bytes: args.max_body_mib as usize * 1024 * 1024,
            max_image_pixels: args.max_pixels,
            max_inputs: args.max_inputs as usize,
            max_labels: args.max_labels as usize,
            max_texts: args.max_texts as usize,
            max_label_chars: args.max_label_chars as usize,
            request_timeout: Duration::from_secs(args.timeout_s),
            header_timeout: Duration::from_secs(args.header_timeout_s),
            max_connections: connection_cap(args.max_connections) as usize,
            max_in_flight: args.max_in_flight as usize,
            ..Limits::default()
        },
        batch: BatchConfig {
            max_batch: args.max_batch as usize,
            max_wait: Duration::from_millis(args.max_wait_ms),
            queue_capacity: args.queue as usize,
            ..BatchConfig::default()
        },
        label_cache_capacity: args.cache_size as usize,
        model_name: args.model.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        let state = AppState::start(model, config);
        // Scripts read this line to learn the port when --addr ends in :0.
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        let with = match &args.adapter {
            Some(path) => format!(" with the adapter {}", path.display()),
            None => String::new(),
        };
        eprintln!(
            "zeroclip: serving {}{with} on http://{addr} (Ctrl-C to stop)",
            args.model
        );
        zeroclip_server::serve(listener, state, zeroclip_server::shutdown_signal())
            .await
            .context("server failed")?;
        eprintln!("zeroclip: stopped");
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}
