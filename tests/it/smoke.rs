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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_runs_on_its_own_and_speaks_wechat_xml() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["wxpay-sim", "--bind", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let process = Process::start_until(dir.path(), &args, "WeChat Pay simulator is up: ");
    let http = reqwest::Client::new();
    // An unsigned request is refused the way WeChat refuses it: return_code FAIL, in XML.
    let resp = http
        .post(format!("{}/pay/orderquery", process.base))
        .body("<xml><out_trade_no>1</out_trade_no></xml>")
        .send()
        .await
        .unwrap();
    let fields = ordersaga::wxpay::xml::parse(&resp.text().await.unwrap()).unwrap();
    assert_eq!(fields["return_code"], "FAIL");
    let faults: serde_json::Value = http
        .get(format!("{}/sim/faults", process.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["dropAllNotifications"], false, "{faults}");
    assert!(process.terminate().await.success());
}

/// The load generator runs end to end (tiny sizes): every checkout answered and paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_runs_on_both_backends() {
    let out = tokio::process::Command::new(crate::support::binary())
        .args([
            "bench",
            "--orders",
            "20",
            "--concurrency",
            "4",
            "--pg-admin-url",
            &crate::support::pg_admin_url(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for backend in ["postgres", "sqlite"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(backend))
            .unwrap_or_else(|| panic!("no {backend} row: {stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (cols[1], cols[2]),
            ("20", "20"),
            "all checkouts answered 200: {row}"
        );
    }
    assert!(stdout.contains("ratio postgres/sqlite"), "{stdout}");
}
