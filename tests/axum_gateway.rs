//! Runs `examples/axum_gateway.rs` on a loopback port and checks what an HTTP client sees:
//! statuses, `Retry-After`, and the rate-limit headers on admitted and refused responses.

#![cfg(feature = "full")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example's binary: `cargo test` builds examples beside the test binaries; when only
/// this test was asked for, it is built here.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let binary = profile
        .join("examples")
        .join(format!("axum_gateway{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "axum_gateway"])
            .status()
            .unwrap();
        assert!(status.success(), "building the example failed");
    }
    binary
}

/// The running example; killed when dropped, whatever the test's outcome.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(example_binary())
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET, read to the end (the connection is closed by request).
fn get(server: &Server, path: &str) -> Reply {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let head = response.split("\r\n\r\n").next().unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    Reply {
        status: status.parse().unwrap(),
        headers: lines
            .filter_map(|line| line.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect(),
    }
}

#[test]
fn statuses_and_rate_limit_headers_over_http() {
    let server = start();

    let ok = get(&server, "/v1/complete?user=ann&prompt=hi&tokens=300");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("ratelimit-policy"),
        Some(r#""requests";q=5;w=60, "tokens";q=1000;w=60"#)
    );
    assert_eq!(ok.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(ok.header("x-ratelimit-remaining-tokens"), Some("700"));
    assert!(
        ok.header("ratelimit")
            .is_some_and(|v| v.starts_with(r#""requests";r=4;"#)),
        "{:?}",
        ok.header("ratelimit")
    );
    assert_eq!(ok.header("retry-after"), None, "admitted: no Retry-After");

    // Over ann's tokens: 429 with Retry-After; the refusal spent neither budget.
    let refused = get(&server, "/v1/complete?user=ann&prompt=hi&tokens=800");
    assert_eq!(refused.status, 429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("4"));
    assert_eq!(refused.header("x-ratelimit-remaining-tokens"), Some("700"));

    // The model's own failure is the application's 502; three in a row open the circuit.
    for _ in 0..3 {
        assert_eq!(
            get(&server, "/v1/complete?user=bob&prompt=fail&tokens=1").status,
            502
        );
    }
    let shed = get(&server, "/v1/complete?user=cy&prompt=hi&tokens=1");
    assert_eq!(shed.status, 503, "circuit open");
    let wait: u64 = shed.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
}
