//! `zeroclip serve` end to end: the binary binds a free port, prints where, and answers HTTP;
//! a model that cannot load is exit code 2. (The page and graceful SIGTERM are covered by
//! `scripts/ci_browser_test.sh`.)

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

fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("server accepts connections");
    // A server that stops answering fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serves_on_the_printed_address() {
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_zeroclip"))
            .args(["serve", "--model", MODEL, "--addr", "127.0.0.1:0"])
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
    let ready = http(
        &addr,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let body = r#"{"texts":["a dog"]}"#;
    let embed = http(
        &addr,
        &format!(
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    drop(server);
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains(MODEL), "readyz names the model: {ready}");
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
