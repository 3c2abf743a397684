//! `zeroclip serve`: the HTTP server (`zeroclip-server`) on an address, until Ctrl-C or SIGTERM,
//! after which the requests in flight finish.

use crate::Outcome;
use anyhow::Context;
use std::io::Write;
use std::time::Duration;
use zeroclip_server::{AppState, BatchConfig, Limits, LoadedModel, ServerConfig};

/// Arguments of `zeroclip serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Model name (e.g. ViT-B/32) or checkpoint path.
    #[arg(long, default_value = "ViT-B/32")]
    model: String,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Most images in one forward pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long a request waits for others to share its forward pass, in ms.
    #[arg(long, default_value_t = 5)]
    max_wait_ms: u64,
    /// Most requests waiting for the model; more get 503.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Request timeout in seconds (504 after it).
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 16)]
    max_body_mib: usize,
    /// Largest image in pixels (width × height).
    #[arg(long, default_value_t = 40_000_000)]
    max_pixels: u64,
    /// Most images (or texts) per request.
    #[arg(long, default_value_t = 32)]
    max_inputs: usize,
    /// Most candidate labels per request.
    #[arg(long, default_value_t = 1000)]
    max_labels: usize,
    /// Longest label in characters.
    #[arg(long, default_value_t = 300)]
    max_label_chars: usize,
    /// Most POST requests handled at once; more get 503.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Label embeddings kept in the LRU cache.
    #[arg(long, default_value_t = 16384)]
    cache_size: usize,
}

/// Runs `zeroclip serve`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let model = LoadedModel::load(&args.model)
        .with_context(|| format!("cannot load model {}", args.model))?;
    let config = ServerConfig {
        limits: Limits {
            max_body_bytes: args.max_body_mib * 1024 * 1024,
            max_image_pixels: args.max_pixels,
            max_inputs: args.max_inputs,
            max_labels: args.max_labels,
            max_label_chars: args.max_label_chars,
            request_timeout: Duration::from_secs(args.timeout_s),
            max_in_flight: args.max_in_flight,
            ..Limits::default()
        },
        batch: BatchConfig {
            max_batch: args.max_batch,
            max_wait: Duration::from_millis(args.max_wait_ms),
            queue_capacity: args.queue,
            ..BatchConfig::default()
        },
        label_cache_capacity: args.cache_size,
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
        eprintln!(
            "zeroclip: serving {} on http://{addr} (Ctrl-C to stop)",
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
