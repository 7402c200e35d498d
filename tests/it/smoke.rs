//! The newcomer's path: the binary, started in an empty folder with only `--demo`, comes up
//! on SQLite, lets `demo` log in, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::envelope;

/// The binary under test: `ORDERSAGA_SMOKE_BIN` (scripts/test.sh points it at the release
/// build) or the one cargo built with the tests.
fn binary() -> String {
    std::env::var("ORDERSAGA_SMOKE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ordersaga").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_demo_data_comes_up_on_sqlite_and_demo_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["--demo", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("no start-up line within 60 s; got {printed:?}")
            });
        printed.push(line.clone());
        if let Some(rest) = line.strip_prefix("ordersaga is up: ") {
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
        }
    };
    // The demo logins are printed.
    let mut logins = Vec::new();
    while logins.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("demo logins printed");
        if line.contains("demo login:") {
            logins.push(line);
        }
    }
    assert!(logins[0].contains("demo / demo-pass"), "{logins:?}");
    assert!(
        dir.path().join("data/ordersaga.db").exists(),
        "the default SQLite file under data/"
    );

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/api/user/login"))
        .json(&json!({"username":"demo","password":"demo-pass"}))
        .send()
        .await
        .unwrap();
    let (status, body) = envelope(resp).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();
    let resp = http
        .get(format!("{base}/api/address/user/list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (_, addresses) = envelope(resp).await;
    let list = addresses["data"].as_array().unwrap();
    assert!(
        list.len() >= 2 && list[0]["isDefault"] == "1",
        "{addresses}"
    );
    let page = http
        .get(format!("{base}/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.matches("加入购物车").count() >= 50,
        "at least 50 SKUs on the home page"
    );

    // SIGTERM: a graceful stop with exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < stop_deadline,
            "still running 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
}
