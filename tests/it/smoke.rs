//! The newcomer's path: the binary, started in an empty folder with only `--demo`, comes up
//! on SQLite, lets `demo` log in, and stops cleanly on SIGTERM.

use std::time::Duration;

use serde_json::json;

use crate::support::{Process, envelope};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_demo_data_comes_up_on_sqlite_and_demo_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(
        dir.path(),
        &["--demo".into(), "--bind".into(), "127.0.0.1:0".into()],
    );
    let base = process.base.clone();
    // The demo logins are printed.
    let mut logins = Vec::new();
    while logins.len() < 2 {
        let line = process
            .lines
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

    let exit = process.terminate().await;
    assert!(
        exit.success(),
        "SIGTERM ends with a clean exit, got {exit:?}"
    );
}
