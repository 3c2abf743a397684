//! Bounded loopback load test of `zeroclip serve`: N concurrent keep-alive clients POST
//! classification requests for a fixed time; reports throughput, latency percentiles, status
//! counts and the server's batch sizes. Exits 1 on any unexpected error (anything but 200, and
//! 503 `overloaded` which is the server shedding load as designed).
//!
//! In-process server on the fixture model:
//!   cargo run --release -p zeroclip-server --example load_test -- --model tests/fixtures/model/hf_real_vocab
//! Against a running server:
//!   cargo run --release -p zeroclip-server --example load_test -- --url 127.0.0.1:8080
//! Options: --clients 32 --seconds 30 --image PATH --labels "a diagram,a dog,a cat"
//!          --payload native|hf --max-batch 32 --max-wait-ms 5 --queue 256

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use zeroclip_server::{AppState, BatchConfig, LoadedModel, ServerConfig};

struct Options {
    url: Option<String>,
    model: String,
    clients: usize,
    seconds: u64,
    image: String,
    labels: Vec<String>,
    payload: String,
    batch: BatchConfig,
}

fn parse_args() -> Options {
    let mut o = Options {
        url: None,
        model: "tests/fixtures/model/hf_real_vocab".into(),
        clients: 32,
        seconds: 30,
        image: "tests/fixtures/model/tiny.png".into(),
        labels: vec!["a diagram".into(), "a dog".into(), "a cat".into()],
        payload: "native".into(),
        batch: BatchConfig::default(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let number = || value.parse::<u64>().unwrap_or_else(|_| usage(&args[i]));
        match args[i].as_str() {
            "--url" => {
                o.url = Some(
                    value
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                        .into(),
                )
            }
            "--model" => o.model = value.clone(),
            "--clients" => o.clients = number() as usize,
            "--seconds" => o.seconds = number(),
            "--image" => o.image = value.clone(),
            "--labels" => o.labels = value.split(',').map(|s| s.trim().to_string()).collect(),
            "--payload" => o.payload = value.clone(),
            "--max-batch" => o.batch.max_batch = number() as usize,
            "--max-wait-ms" => o.batch.max_wait = Duration::from_millis(number()),
            "--queue" => o.batch.queue_capacity = number() as usize,
            other => usage(other),
        }
        i += 2;
    }
    o
}

fn usage(arg: &str) -> ! {
    eprintln!("load_test: bad argument {arg:?}; see the header of bench/load_test.rs");
    std::process::exit(2)
}

/// One keep-alive HTTP/1.1 exchange; the server always sends Content-Length.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    conn.get_mut().write_all(request).await?;
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::other("connection closed"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("response without Content-Length"))?;
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((status, body))
}

fn post(addr: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    io_errors: u64,
}

async fn client(addr: String, request: Vec<u8>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn = None;
    while Instant::now() < until {
        if conn.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => conn = Some(BufReader::new(s)),
                Err(_) => {
                    tally.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let started = Instant::now();
        match exchange(conn.as_mut().unwrap(), &request).await {
            Ok((status, _)) => {
                tally.latencies.push(started.elapsed());
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                tally.io_errors += 1;
                conn = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn scrape(addr: &str, name: &str) -> Option<f64> {
    let mut conn = BufReader::new(TcpStream::connect(addr).await.ok()?);
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (_, body) = exchange(&mut conn, req.as_bytes()).await.ok()?;
    let text = String::from_utf8(body).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::main]
async fn main() {
    let o = parse_args();
    let image = std::fs::read(&o.image).unwrap_or_else(|e| {
        eprintln!("load_test: cannot read {}: {e}", o.image);
        std::process::exit(2)
    });
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
    let (path, body) = match o.payload.as_str() {
        "hf" => (
            "/",
            serde_json::json!({"inputs": b64, "parameters": {"candidate_labels": o.labels}}),
        ),
        _ => (
            "/v1/classify",
            serde_json::json!({"image": b64, "labels": o.labels}),
        ),
    };
    let addr = match &o.url {
        Some(url) => url.clone(),
        None => {
            let model = LoadedModel::load(&o.model).unwrap_or_else(|e| {
                eprintln!("load_test: cannot load {}: {e}", o.model);
                std::process::exit(2)
            });
            let config = ServerConfig {
                batch: o.batch.clone(),
                model_name: o.model.clone(),
                ..ServerConfig::default()
            };
            let state = AppState::start(model, config);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            tokio::spawn(zeroclip_server::serve(
                listener,
                state,
                std::future::pending(),
            ));
            addr
        }
    };
    let request = post(&addr, path, &serde_json::to_vec(&body).unwrap());
    // Warm the label cache and the allocator, outside the measurement.
    let mut warm = BufReader::new(TcpStream::connect(&addr).await.expect("server reachable"));
    let (status, answer) = exchange(&mut warm, &request)
        .await
        .expect("warm-up request");
    if status != 200 {
        eprintln!(
            "load_test: warm-up got {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        std::process::exit(1);
    }
    let batches_before = scrape(&addr, "zeroclip_image_batch_size_count").await;
    let images_before = scrape(&addr, "zeroclip_image_batch_size_sum").await;
    let started = Instant::now();
    let until = started + Duration::from_secs(o.seconds);
    let tasks: Vec<_> = (0..o.clients)
        .map(|_| tokio::spawn(client(addr.clone(), request.clone(), until)))
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.unwrap();
        all.latencies.extend(t.latencies);
        all.io_errors += t.io_errors;
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies.sort();
    let ok = all.statuses.get(&200).copied().unwrap_or(0);
    let shed = all.statuses.get(&503).copied().unwrap_or(0);
    let unexpected: u64 = all
        .statuses
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 503)
        .map(|(_, n)| n)
        .sum::<u64>()
        + all.io_errors;
    println!(
        "load test: {} clients, {:.1} s, payload {} to {path}, image {}",
        o.clients, elapsed, o.payload, o.image
    );
    println!(
        "requests: {} ({ok} ok, {shed} shed with 503, {unexpected} unexpected errors)",
        all.latencies.len()
    );
    println!(
        "statuses: {:?}; connection errors: {}",
        all.statuses, all.io_errors
    );
    println!("throughput: {:.1} requests/s", ok as f64 / elapsed);
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&all.latencies, 50.0),
        percentile(&all.latencies, 90.0),
        percentile(&all.latencies, 99.0),
        percentile(&all.latencies, 100.0)
    );
    if let (Some(b0), Some(i0), Some(b1), Some(i1)) = (
        batches_before,
        images_before,
        scrape(&addr, "zeroclip_image_batch_size_count").await,
        scrape(&addr, "zeroclip_image_batch_size_sum").await,
    ) {
        let passes = b1 - b0;
        println!(
            "server: {passes} image forward passes, mean batch {:.2} images",
            (i1 - i0) / passes.max(1.0)
        );
    }
    if unexpected > 0 {
        std::process::exit(1);
    }
}
