//! A tiny HTTP/1.1 server on 127.0.0.1 for the download tests: each route answers one scripted
//! way (a file, a lie about its length, a 404, a stall, a Hub file honouring `Range`), and every
//! request is logged so tests can tell a cache hit from a download.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with the body and its Content-Length.
    Body(Vec<u8>),
    /// 200 with the body, no Content-Length; the end is the connection closing.
    BodyNoLength(Vec<u8>),
    /// Announces `claimed` bytes, sends `body`, closes.
    Truncated { body: Vec<u8>, claimed: u64 },
    /// Announces the whole body, sends `sent` bytes of it, then goes silent for `stall`.
    StallMidBody {
        body: Vec<u8>,
        sent: usize,
        stall: Duration,
    },
    /// Accepts the request and says nothing for `stall`.
    StallBeforeHeaders(Duration),
    /// A Hugging Face `resolve` URL: honours `Range`, sends `ETag` and `X-Repo-Commit`.
    HfFile { body: Vec<u8>, commit: String },
}

/// The running server; it lives until the test process exits.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, l) = (routes.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, l) = (r.clone(), l.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &r, &l);
                });
            }
        });
        Server { base, routes, log }
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|p| *p == path).count()
    }
}

fn serve(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(path.clone());
    let reply = routes.lock().unwrap().get(&path).cloned();
    let mut out = stream;
    let head = |status: &str, len: Option<u64>, extra: &str| {
        let len = len
            .map(|n| format!("Content-Length: {n}\r\n"))
            .unwrap_or_default();
        format!("HTTP/1.1 {status}\r\n{len}{extra}Connection: close\r\n\r\n")
    };
    match reply {
        None => {
            out.write_all(head("404 Not Found", Some(9), "").as_bytes())?;
            out.write_all(b"not found")?;
        }
        Some(Reply::Body(body)) => {
            out.write_all(head("200 OK", Some(body.len() as u64), "").as_bytes())?;
            out.write_all(&body)?;
        }
        Some(Reply::BodyNoLength(body)) => {
            out.write_all(head("200 OK", None, "").as_bytes())?;
            out.write_all(&body)?;
        }
        Some(Reply::Truncated { body, claimed }) => {
            out.write_all(head("200 OK", Some(claimed), "").as_bytes())?;
            out.write_all(&body)?;
        }
        Some(Reply::StallMidBody { body, sent, stall }) => {
            out.write_all(head("200 OK", Some(body.len() as u64), "").as_bytes())?;
            out.write_all(&body[..sent])?;
            out.flush()?;
            std::thread::sleep(stall);
        }
        Some(Reply::StallBeforeHeaders(stall)) => std::thread::sleep(stall),
        Some(Reply::HfFile { body, commit }) => {
            let len = body.len() as u64;
            let (start, end) = parse_range(range.as_deref(), len);
            let etag = format!("\"etag-{}-{len}\"", path.len());
            let extra = format!(
                "ETag: {etag}\r\nX-Repo-Commit: {commit}\r\nContent-Range: bytes {start}-{end}/{len}\r\n"
            );
            let part = &body[start as usize..=end as usize];
            out.write_all(head("206 Partial Content", Some(part.len() as u64), &extra).as_bytes())?;
            out.write_all(part)?;
        }
    }
    out.flush()
}

/// `bytes=a-b` or `bytes=a-` → inclusive (a, b); the whole body without a header.
fn parse_range(range: Option<&str>, len: u64) -> (u64, u64) {
    let last = len.saturating_sub(1);
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return (0, last);
    };
    let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
    let start = a.parse().unwrap_or(0);
    let end = b.parse().unwrap_or(last).min(last);
    (start, end)
}

/// A base URL nothing listens on: connecting is refused, as when offline.
pub fn dead_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Deterministic pseudo-random bytes (xorshift), so fixtures are generated, not stored.
pub fn fixture_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    zeroclip_hub::sha256_reader(bytes).unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zeroclip-hub-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Names of the entries in the directory, sorted (hidden temporary files included).
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
