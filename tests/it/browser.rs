//! Real-browser tests in headless Chromium (Debian's `chromium` + `chromium-driver`, which
//! scripts/test.sh installs when absent), driven over WebDriver. Each step saves a
//! screenshot under `target/e2e/`.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use ordersaga::domain::{Role, SkuStatus};
use serde_json::json;

use crate::support::{Backend, TestApp, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = std::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("start {chromedriver} (scripts/test.sh installs chromium-driver): {e}")
        });
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    wait_until(Duration::from_secs(20), "chromedriver ready", || async {
        reqwest::get(&status)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Driver { child, url }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn path_of(client: &Client) -> String {
    let url = client.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn wait_path(client: &Client, what: &str, pred: impl Fn(&str) -> bool) {
    wait_until(WAIT, what, || async { pred(&path_of(client).await) }).await;
}

async fn login(client: &Client, user: &str, password: &str) {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    client
        .find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The seed's whole journey in a real browser: login from the checkout page, back to it,
/// the default address and the cart, submit, the QR code, pay in the simulator, success;
/// then an operator finds the saga completed and opens its timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_checks_out_and_pays_and_an_operator_sees_the_saga_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let shopper = app.create_user("alice", "alice-pass", &[Role::User]).await;
    app.create_user("root", "root-pass", &[Role::User, Role::Admin])
        .await;
    app.add_address(&shopper, "Alice Home", false).await;
    let default = app.add_address(&shopper, "Alice Office", true).await;
    let phone = app.add_sku(9701, 199_900, 10, SkuStatus::OnSale).await;
    let case = app.add_sku(9702, 4_990, 10, SkuStatus::OnSale).await;
    app.fill_cart(&shopper, phone, 1).await;
    app.fill_cart(&shopper, case, 2).await;

    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let result = async {
        client.goto(&app.url("/order")).await.unwrap();
        wait_path(&client, "sent to the login page", |p| {
            p == "/login?from=%2Forder"
        })
        .await;
        screenshot(&client, "01-login").await;
        login(&client, "alice", "alice-pass").await;
        wait_path(&client, "back on /order", |p| p == "/order").await;

        let radio = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!("#address-{default}")))
            .await
            .unwrap();
        assert!(
            radio.is_selected().await.unwrap(),
            "the default address is preselected"
        );
        let lines = client.find_all(Locator::Css("[data-sku]")).await.unwrap();
        assert_eq!(lines.len(), 2, "the cart's lines");
        let total = client
            .find(Locator::Css("#total-money"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            total.contains("2,098.80") || total.contains("2098.80"),
            "total {total}"
        );
        screenshot(&client, "02-order").await;

        client
            .find(Locator::Css("#submit-order"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&client, "on the pay page", |p| {
            p.starts_with("/pay?orderId=")
        })
        .await;
        let qr = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#qrcode"))
            .await
            .unwrap();
        assert!(
            qr.attr("src")
                .await
                .unwrap()
                .unwrap()
                .contains("/api/pay/qrcode")
        );
        wait_until(WAIT, "the QR code loaded", || async {
            client
                .execute(
                    "return document.getElementById('qrcode').naturalWidth",
                    vec![],
                )
                .await
                .unwrap()
                .as_u64()
                .unwrap_or(0)
                > 0
        })
        .await;
        let order_id = path_of(&client)
            .await
            .trim_start_matches("/pay?orderId=")
            .to_owned();
        screenshot(&client, "03-pay").await;

        client
            .find(Locator::Css("#simulate-pay"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&client, "on the success page", |p| {
            p.starts_with("/pay/success")
        })
        .await;
        let heading = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#success"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(heading.contains("支付成功"));
        screenshot(&client, "04-success").await;

        // The operator, in the same browser after logging out.
        client.delete_all_cookies().await.unwrap();
        client.goto(&app.url("/admin")).await.unwrap();
        wait_path(&client, "sent to the login page", |p| {
            p == "/login?from=%2Fadmin"
        })
        .await;
        login(&client, "root", "root-pass").await;
        wait_path(&client, "on the dashboard", |p| p == "/admin").await;
        let row = client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!("tr[data-order='{order_id}']")))
            .await
            .unwrap();
        assert_eq!(
            row.attr("data-state").await.unwrap().as_deref(),
            Some("completed")
        );
        screenshot(&client, "05-admin").await;
        client
            .find(Locator::Css(&format!("a[href='/admin/sagas/{order_id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_path(&client, "on the saga's page", |p| {
            p == format!("/admin/sagas/{order_id}")
        })
        .await;
        client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#timeline li[data-kind='payment_recorded']"))
            .await
            .unwrap();
        let state = client
            .find(Locator::Css("#saga-state"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(state, "completed");
        screenshot(&client, "06-admin-saga").await;
    }
    .await;
    client.close().await.unwrap();
    let () = result;
    app.stop().await;
}
