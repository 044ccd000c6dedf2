//! `backstop-load run plan.toml` against a loopback HTTP server the test starts.
#![cfg(feature = "cli")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use backstop_load::LoadReport;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Answers every tenth request 503, the others 200 `ok`; counts requests by method.
fn start_server() -> (SocketAddr, Arc<AtomicU64>) {
    let posts = Arc::new(AtomicU64::new(0));
    let counted = posts.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let served = Arc::new(AtomicU64::new(0));
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let served = served.clone();
                let posts = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let served = served.clone();
                        let posts = posts.clone();
                        async move {
                            let post = req.method() == http::Method::POST
                                && req.headers()["x-test"] == "yes";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            if post && body.is_ok_and(|b| b == "hello") {
                                posts.fetch_add(1, Ordering::SeqCst);
                            }
                            let n = served.fetch_add(1, Ordering::SeqCst);
                            let status = if n % 10 == 9 {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            };
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), posts)
}

fn plan(addr: SocketAddr, error_rate: f64) -> String {
    format!(
        r#"
[target]
url = "http://{addr}/chat"
method = "POST"
headers = {{ x-test = "yes" }}
body = "hello"

[run]
arrivals = "constant"
timeout = "2s"
drain_timeout = "5s"

[[stage]]
name = "steady"
duration = "1s"
rate = 100
slo = {{ p99 = "1s", error_rate = {error_rate} }}
"#
    )
}

fn run(dir: &Path, plan_text: &str, extra: &[&str]) -> Output {
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, plan_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_backstop-load"))
        .arg("run")
        .arg(&plan)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_cli_loads_a_loopback_server_and_writes_every_report() {
    let (addr, posts) = start_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let csv = dir.path().join("run.csv");
    let out = run(
        dir.path(),
        &plan(addr, 0.2),
        &[
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stage steady") && stdout.contains("overall: PASS"),
        "{stdout}"
    );
    let report = LoadReport::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stage = report.stage("steady").unwrap();
    // Open loop, constant arrivals: exactly rate x duration, each one a POST the server saw.
    assert_eq!(stage.sent, 100);
    assert_eq!(posts.load(Ordering::SeqCst), 100);
    assert_eq!((stage.ok, stage.rejected, stage.errors), (90, 10, 0));
    assert!(
        stage
            .outcomes
            .iter()
            .any(|o| o.class == "rejected:unavailable" && o.count == 10)
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("stage,class,count,"), "{csv}");
    assert!(csv.contains("steady,ok,90,"), "{csv}");

    // The same run against the saved one: compared, and the SLO now too strict breaks.
    let again = run(
        dir.path(),
        &plan(addr, 0.05),
        &["--baseline", json.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("regression: "), "{stdout}");
    assert!(
        stdout.contains("BROKEN") && stdout.contains("overall: FAIL"),
        "{stdout}"
    );
    assert_eq!(again.status.code(), Some(1), "{stdout}");
}

#[test]
fn a_bad_plan_is_a_message_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = run(
        dir.path(),
        "[target]\nurl = \"http://127.0.0.1:1/\"\nspeed = 3\n",
        &[],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("speed"));
    let https = "[target]\nurl = \"https://example.com/\"\n[[stage]]\nname = \"s\"\nduration = \"1s\"\nrate = 1\n";
    let tls = run(dir.path(), https, &[]);
    assert_eq!(tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tls.stderr).contains("http://host"));
    let zero = "[target]\nurl = \"http://127.0.0.1:1/\"\n[[stage]]\nname = \"s\"\nduration = \"1s\"\nrate = -1\n";
    let negative = run(dir.path(), zero, &[]);
    assert_eq!(negative.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&negative.stderr).contains("stages.0.pattern"));
}
