//! `zeroclip serve` end to end: the binary binds a free port, prints where, and answers HTTP;
//! a model that cannot load is exit code 2; with `--adapter` it answers as `zeroclip classify
//! --adapter` does, bit for bit; SIGTERM lets every accepted request finish and exits 0. (The
//! page is covered by `scripts/ci_browser_test.sh`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server process, killed when the test ends however it ends (a failed assertion included).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/model/hf_real_vocab"
);

fn http(addr: &str, request: impl AsRef<[u8]>) -> String {
    let mut s = TcpStream::connect(addr).expect("server accepts connections");
    // A server that stops answering fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request.as_ref()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// Starts `zeroclip serve --model MODEL --addr 127.0.0.1:0 EXTRA...` and returns it with the
/// address it printed.
fn start(extra: &[&str]) -> (Server, String) {
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_zeroclip"))
            .args(["serve", "--model", MODEL, "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // If the server exits without printing, its stdout closes and the line is empty.
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (server, addr)
}

#[test]
fn serves_on_the_printed_address() {
    let (server, addr) = start(&[]);
    let ready = http(
        &addr,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let body = r#"{"texts":["a dog"]}"#;
    let embed = http(
        &addr,
        format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    drop(server);
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    // The model's name, not the absolute path of the machine it runs on.
    assert!(ready.contains(r#""model":"hf_real_vocab""#), "{ready}");
    assert!(!ready.contains(MODEL), "readyz shows a local path: {ready}");
    assert!(embed.starts_with("HTTP/1.1 200"), "{embed}");
    assert!(embed.contains("\"embedding\""), "{embed}");
}

#[test]
fn a_model_that_cannot_load_is_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .args([
            "serve",
            "--model",
            "/nonexistent/model.pt",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model.pt"), "{stderr}");
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// A multipart form with the fixture image and the given text fields.
fn form(fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "zeroclip-cli-test-3b9e";
    let mut body = Vec::new();
    let image = std::fs::read(format!("{FIXTURES}/model/tiny.png")).unwrap();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"tiny.png\"\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&image);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}").as_bytes(),
        );
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The head of a POST of `body` to `/v1/classify`.
fn post_head(content_type: &str, len: usize, extra: &str) -> String {
    format!("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
}

/// Splits a response into its status line and its body.
fn split(response: &str) -> (&str, &str) {
    let status = response.lines().next().unwrap_or("");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

fn zeroclip(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zeroclip"))
        .args(args)
        .env("ZEROCLIP_CACHE_DIR", cache)
        .output()
        .unwrap()
}

#[test]
fn with_an_adapter_it_answers_as_classify_with_the_adapter_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("a.safetensors");
    let a = adapter.to_str().unwrap();
    let folder = format!("{FIXTURES}/eval/images");
    // The fixture folder holds one unreadable image on purpose: exit 1, adapter written.
    let o = zeroclip(
        &[
            "adapt",
            &folder,
            "--model",
            MODEL,
            "--output",
            a,
            "--calibrate",
        ],
        dir.path(),
    );
    assert!(adapter.is_file(), "{}", String::from_utf8_lossy(&o.stderr));
    let tiny = format!("{FIXTURES}/model/tiny.png");
    let o = zeroclip(
        &[
            "classify",
            &tiny,
            "--model",
            MODEL,
            "--adapter",
            a,
            "--format",
            "json",
            "--top-k",
            "100",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cli = &cli[0]["predictions"];

    let (server, addr) = start(&["--adapter", a]);
    let (content_type, body) = form(&[]);
    let mut request = post_head(&content_type, body.len(), "").into_bytes();
    request.extend_from_slice(&body);
    let response = http(&addr, &request);
    let (content_type, body) = form(&[("labels", "x\ny")]);
    let mut other = post_head(&content_type, body.len(), "").into_bytes();
    other.extend_from_slice(&body);
    let refused = http(&addr, &other);
    drop(server);

    let (status, body) = split(&response);
    assert!(status.contains(" 200 "), "{response}");
    let served: serde_json::Value = serde_json::from_str(body).unwrap();
    let served = &served["results"][0]["predictions"];
    let pairs = |v: &serde_json::Value| -> Vec<(String, u32)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let score = p["score"].as_f64().unwrap() as f32;
                (p["label"].as_str().unwrap().to_string(), score.to_bits())
            })
            .collect()
    };
    assert_eq!(pairs(served), pairs(cli));
    assert_eq!(pairs(cli).len(), 6, "every class of the adapter: {cli}");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.contains("adapter_mismatch"), "{refused}");

    // Refused at start-up for another model: exit 2, naming why.
    let other = format!("{FIXTURES}/model/vit_jit.pt");
    let o = zeroclip(
        &[
            "serve",
            "--model",
            &other,
            "--adapter",
            a,
            "--addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("adapter") && stderr.contains("model sha256"),
        "{stderr}"
    );
}

#[test]
fn sigterm_finishes_every_accepted_request_and_exits_0() {
    let (mut server, addr) = start(&[]);
    let (content_type, body) = form(&[("labels", "a diagram\na dog\na cat")]);
    let clients = 6;
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go = std::sync::Arc::new(std::sync::Mutex::new(go_rx));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, content_type, body) = (addr.clone(), content_type.clone(), body.clone());
            let (accepted, go) = (accepted_tx.clone(), go.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let head = post_head(&content_type, body.len(), "Expect: 100-continue\r\n");
                s.write_all(head.as_bytes()).unwrap();
                // `100 Continue` comes when the handler reads the body: the request is accepted
                // and in flight.
                let mut interim = [0u8; 25];
                s.read_exact(&mut interim).unwrap();
                assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
                accepted.send(()).unwrap();
                // The body goes only after the server has been told to stop.
                go.lock().unwrap().recv().unwrap();
                s.write_all(&body).unwrap();
                let mut response = String::new();
                s.read_to_string(&mut response).unwrap();
                response
            })
        })
        .collect();
    for _ in 0..clients {
        accepted_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // Let the signal land before the bodies do (no assertion depends on how long this takes).
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..clients {
        go_tx.send(()).unwrap();
    }
    for h in handles {
        let response = h.join().unwrap();
        let (status, body) = split(&response);
        assert!(status.contains(" 200 "), "{response}");
        assert!(body.contains("\"predictions\""), "{response}");
    }
    let mut code = None;
    for _ in 0..600 {
        if let Some(status) = server.0.try_wait().unwrap() {
            code = Some(status.code());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        code,
        Some(Some(0)),
        "the server did not exit 0 after SIGTERM"
    );
}
