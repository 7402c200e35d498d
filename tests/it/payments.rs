//! Paying with WeChat Pay v2 Native, end to end against the simulator over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use ordersaga::domain::{OrderId, SkuStatus};
use ordersaga::wxpay::sim::Faults;
use ordersaga::wxpay::{Fields, SignType, sign, xml};
use serde_json::Value;

use crate::invariants::{assert_invariants, stock_snapshot};
use crate::support::{Backend, TestApp, wait_until};

async fn checkout_one(app: &TestApp, name: &str, price: i64) -> (String, OrderId) {
    let (user, token) = app.shopper(name).await;
    let sku = app
        .add_sku(8000 + price, price, 10, SkuStatus::OnSale)
        .await;
    app.fill_cart(&user, sku, 1).await;
    let (status, body) = app.checkout(&token).await;
    assert_eq!(status, 200, "{body}");
    (
        token,
        body["data"]["orderId"].as_str().unwrap().parse().unwrap(),
    )
}

async fn state_of(app: &TestApp, order: OrderId) -> String {
    app.db()
        .load_saga(order)
        .await
        .unwrap()
        .unwrap()
        .state
        .phase
        .name()
        .to_owned()
}

async fn native(app: &TestApp, token: &str, order: OrderId) -> Value {
    let (status, body) = app
        .get(&format!("/api/pay/native?orderId={order}"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn sim(app: &TestApp) -> Arc<ordersaga::wxpay::sim::WxPaySim> {
    app.state
        .wxpay_sim
        .clone()
        .expect("tests run with the embedded simulator")
}

/// A notification as WeChat would send it for `order`, signed with the merchant key.
fn notification(app: &TestApp, order: OrderId, total_fee: i64, transaction_id: &str) -> Fields {
    let cfg = &app.state.wxpay;
    let mut f: Fields = [
        ("return_code", "SUCCESS".to_owned()),
        ("appid", cfg.appid.clone()),
        ("mch_id", cfg.mch_id.clone()),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".into()),
        ("result_code", "SUCCESS".into()),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into()),
        ("is_subscribe", "N".into()),
        ("trade_type", "NATIVE".into()),
        ("bank_type", "CMC".into()),
        ("total_fee", total_fee.to_string()),
        ("fee_type", "CNY".into()),
        ("cash_fee", total_fee.to_string()),
        ("transaction_id", transaction_id.into()),
        ("out_trade_no", order.to_string()),
        ("time_end", "20261204120000".into()),
        ("sign_type", "HMAC-SHA256".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let s = sign::sign(&f, &cfg.key, SignType::HmacSha256);
    f.insert("sign".into(), s);
    f
}

async fn post_notification(app: &TestApp, body: String) -> (u16, Fields) {
    let resp = app
        .http
        .post(app.url("/api/pay/notify/wechat"))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        xml::parse(&text).unwrap_or_else(|e| panic!("the reply must be WeChat XML ({e}): {text}")),
    )
}

on_both_backends! {
    async fn a_shopper_pays_by_scanning_and_the_notification_completes_the_order(app) {
        let initial = stock_snapshot(app.db()).await;
        let (token, order) = checkout_one(&app, "payer", 12_300).await;
        let first = native(&app, &token, order).await;
        assert!(first["codeUrl"].as_str().unwrap().starts_with("weixin://wxpay/bizpayurl"), "{first}");
        assert_eq!(first["totalFee"], 12_300);
        assert_eq!(first["outTradeNo"], order.to_string());
        // The same code_url every time: the WeChat order is created once.
        assert_eq!(native(&app, &token, order).await["codeUrl"], first["codeUrl"]);
        let svg = app.http.get(app.url(&format!("/api/pay/qrcode?orderId={order}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(svg.headers()["content-type"], "image/svg+xml");
        assert!(svg.text().await.unwrap().contains("<svg"));
        let (_, other) = app.shopper("stranger").await;
        let (s, _) = app.get(&format!("/api/pay/native?orderId={order}"), &other).await;
        assert_eq!(s, 404, "only the owner");

        let paid = sim(&app).pay(&order.to_string()).await.unwrap();
        wait_until(Duration::from_secs(15), "order completed by the notification", || async { state_of(&app, order).await == "completed" }).await;
        let (_, shown) = app.get(&format!("/api/order/{order}"), &token).await;
        let o = &shown["data"]["order"];
        assert_eq!(o["payStatus"], "1");
        assert_eq!(o["transactionId"], paid.transaction_id.as_str());
        assert!(o["payTime"].is_string());
        let (_, status) = app.get(&format!("/api/pay/status?orderId={order}"), &token).await;
        assert_eq!(status["data"]["paid"], true);
        let view = sim(&app).order(&order.to_string()).unwrap();
        assert!(view.notifications_acknowledged >= 1, "our reply was WeChat's SUCCESS");
        assert_invariants(app.db(), &initial, 10).await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn duplicate_and_concurrent_notifications_record_one_payment(app) {
        let initial = stock_snapshot(app.db()).await;
        let (token, order) = checkout_one(&app, "dup", 5_000).await;
        native(&app, &token, order).await;
        sim(&app).set_faults(Faults { duplicate_notifications: true, ..Faults::default() });
        sim(&app).pay(&order.to_string()).await.unwrap();
        // And five more copies of one notification at once.
        let body = xml::to_xml(&notification(&app, order, 5_000, "4200000000000000000000000001"));
        let app = Arc::new(app);
        let tasks: Vec<_> = (0..5).map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { post_notification(&app, body).await })
        }).collect();
        for t in tasks {
            let (status, reply) = t.await.unwrap();
            assert_eq!((status, reply.get("return_code").map(String::as_str)), (200, Some("SUCCESS")));
        }
        wait_until(Duration::from_secs(15), "completed", || async { state_of(&app, order).await == "completed" }).await;
        let (paid_rows,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM tb_order WHERE id = $1 AND pay_status = '1'").bind(order.to_string()).fetch_one(pool).await.unwrap()
        });
        assert_eq!(paid_rows, 1);
        // The simulator's transaction won or ours did: either way one payment, and the
        // other transaction id is a duplicate-payment alert at most.
        let sold = app.db().sku(ordersaga::domain::SkuId::new(8000 + 5_000).unwrap()).await.unwrap().unwrap().sale_num;
        assert_eq!(sold, 1, "stock committed once");
        assert_invariants(app.db(), &initial, 10).await;
        Arc::into_inner(app).unwrap().stop().await;
    }
}

on_both_backends! {
    async fn forged_tampered_and_foreign_notifications_change_nothing(app) {
        let (_, order) = checkout_one(&app, "forge", 8_800).await;
        let good = notification(&app, order, 8_800, "4200000000000000000000000002");
        let mut tampered = good.clone();
        tampered.insert("total_fee".into(), "1".into());
        let mut resigned_with_wrong_key = good.clone();
        let s = sign::sign(&resigned_with_wrong_key, "not-the-merchant-key-000000000000", SignType::HmacSha256);
        resigned_with_wrong_key.insert("sign".into(), s);
        let mut foreign = good.clone();
        foreign.insert("mch_id".into(), "999".into());
        let s = sign::sign(&foreign, &app.state.wxpay.key, SignType::HmacSha256);
        foreign.insert("sign".into(), s);
        let mut unsigned = good.clone();
        unsigned.remove("sign");
        let duplicated_field = xml::to_xml(&good).replace("</xml>", "<total_fee>1</total_fee></xml>");
        for (what, body) in [
            ("tampered", xml::to_xml(&tampered)),
            ("wrong key", xml::to_xml(&resigned_with_wrong_key)),
            ("other merchant", xml::to_xml(&foreign)),
            ("unsigned", xml::to_xml(&unsigned)),
            ("duplicated field", duplicated_field),
            ("not xml", "{\"return_code\":\"SUCCESS\"}".into()),
            ("entity", "<!DOCTYPE x [<!ENTITY e 'x'>]><xml><a>&e;</a></xml>".into()),
        ] {
            let (status, reply) = post_notification(&app, body).await;
            assert_eq!(reply.get("return_code").map(String::as_str), Some("FAIL"), "{what}");
            assert!(status >= 400, "{what}: {status}");
        }
        assert_eq!(state_of(&app, order).await, "awaiting_payment");
        let (alerts,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM saga_alert").fetch_one(pool).await.unwrap()
        });
        assert_eq!(alerts, 0, "nothing forged reaches the saga");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_signed_notification_with_the_wrong_amount_is_an_alert_not_a_payment(app) {
        let (_, order) = checkout_one(&app, "short", 9_900).await;
        let body = xml::to_xml(&notification(&app, order, 9_800, "4200000000000000000000000003"));
        let (status, reply) = post_notification(&app, body.clone()).await;
        assert_eq!((status, reply["return_code"].as_str()), (200, "SUCCESS"), "recorded: WeChat may stop sending");
        post_notification(&app, body).await;
        assert_eq!(state_of(&app, order).await, "awaiting_payment");
        let alerts: Vec<(String,)> = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT kind FROM saga_alert WHERE order_id = $1").bind(order.to_string()).fetch_all(pool).await.unwrap()
        });
        assert_eq!(alerts, vec![("wrong_amount".to_owned(),)], "recorded once");
        app.stop().await;
    }
}

on_both_backends! {
    async fn a_cancelled_order_closes_its_wechat_order_first_and_a_late_payment_is_an_alert(app) {
        let initial = stock_snapshot(app.db()).await;
        let (token, order) = checkout_one(&app, "late", 4_400).await;
        native(&app, &token, order).await;
        let (s, _) = app.post(&format!("/api/order/{order}/cancel"), &token).await;
        assert_eq!(s, 200);
        wait_until(Duration::from_secs(15), "compensated", || async { state_of(&app, order).await == "compensated" }).await;
        assert_eq!(sim(&app).order(&order.to_string()).unwrap().state, "CLOSED", "closed at WeChat");
        // The QR code can no longer be paid, and a (forged-by-us, correctly signed) late
        // notification only raises an alert.
        assert!(sim(&app).pay(&order.to_string()).await.is_err());
        let body = xml::to_xml(&notification(&app, order, 4_400, "4200000000000000000000000004"));
        let (_, reply) = post_notification(&app, body).await;
        assert_eq!(reply["return_code"], "SUCCESS");
        assert_eq!(state_of(&app, order).await, "compensated");
        let (alerts,): (i64,) = ordersaga::on_pool!(app.db(), |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM saga_alert WHERE order_id = $1 AND kind = 'paid_after_close'").bind(order.to_string()).fetch_one(pool).await.unwrap()
        });
        assert_eq!(alerts, 1);
        assert_invariants(app.db(), &initial, 10).await;
        app.stop().await;
    }
}

/// Notifications lost, then the deadline: closing finds the order paid (ORDERPAID), and
/// the saga takes the payment path instead of undoing it.
async fn deadline_finds_it_paid(backend: Backend) {
    let app = TestApp::spawn_with(backend, |a| a.pay_timeout = Duration::from_secs(2)).await;
    let initial = stock_snapshot(app.db()).await;
    let (token, order) = checkout_one(&app, "silent", 3_300).await;
    native(&app, &token, order).await;
    sim(&app).set_faults(Faults {
        drop_all_notifications: true,
        ..Faults::default()
    });
    sim(&app).pay(&order.to_string()).await.unwrap();
    // Paid at WeChat, but nobody told us: the order waits.
    tokio::task::yield_now().await;
    assert_eq!(state_of(&app, order).await, "awaiting_payment");
    wait_until(
        Duration::from_secs(20),
        "completed through the close",
        || async { state_of(&app, order).await == "completed" },
    )
    .await;
    let saga = app.db().load_saga(order).await.unwrap().unwrap();
    assert!(saga.state.end_reason.is_none());
    let kinds: Vec<(String,)> = ordersaga::on_pool!(app.db(), |pool| {
        sqlx::query_as("SELECT kind FROM saga_event WHERE order_id = $1 ORDER BY seq")
            .bind(order.to_string())
            .fetch_all(pool)
            .await
            .unwrap()
    });
    let kinds: Vec<&str> = kinds.iter().map(|(k,)| k.as_str()).collect();
    assert!(
        kinds.ends_with(&["deadline_reached", "wx_order_paid", "payment_recorded"]),
        "{kinds:?}"
    );
    assert_invariants(app.db(), &initial, 10).await;
    app.stop().await;
}

each_backend!(
    a_deadline_that_finds_the_order_paid_completes_it,
    deadline_finds_it_paid
);

/// The client and the simulator agree on the protocol, with either sign type.
async fn client_against_simulator(sign_type: SignType) {
    // Longer than the client's own retries of SYSTEMERROR (~0.8 s), so "too early" shows.
    let app = TestApp::spawn_with(Backend::Sqlite, |a| {
        a.wxpay.min_close_interval = Duration::from_secs(2)
    })
    .await;
    let mut cfg = (*app.state.wxpay).clone();
    cfg.sign_type = sign_type;
    let client = ordersaga::wxpay::WxPayClient::new(cfg.clone()).unwrap();
    use ordersaga::wxpay::{CloseOutcome, NativeOrder, PaymentGateway, TradeState};
    let order = NativeOrder {
        out_trade_no: format!("T{}", uuid::Uuid::new_v4().simple())
            .chars()
            .take(32)
            .collect(),
        total_fee: 101,
        time_expire: chrono::Utc::now() + chrono::Duration::minutes(30),
    };
    let first = client.create_native(&order).await.unwrap();
    assert!(first.code_url.starts_with("weixin://"));
    assert_eq!(
        client.create_native(&order).await.unwrap(),
        first,
        "a re-entry with the same parameters"
    );
    let changed = NativeOrder {
        total_fee: 102,
        ..order.clone()
    };
    let err = client.create_native(&changed).await.unwrap_err();
    assert!(
        matches!(
            err.err_code(),
            Some("INVALID_REQUEST" | "OUT_TRADE_NO_USED")
        ),
        "{err}"
    );
    assert_eq!(
        client.query(&order.out_trade_no).await.unwrap(),
        TradeState::NotPay
    );
    let early = client.close(&order.out_trade_no).await.unwrap_err();
    assert!(early.is_retryable(), "too early to close: {early}");
    // Once the minimum interval has passed, the close goes through.
    wait_until(Duration::from_secs(10), "close accepted", || async {
        matches!(
            client.close(&order.out_trade_no).await,
            Ok(CloseOutcome::Closed)
        )
    })
    .await;
    assert_eq!(
        client.query(&order.out_trade_no).await.unwrap(),
        TradeState::Closed
    );
    assert_eq!(
        client.close(&order.out_trade_no).await.unwrap(),
        CloseOutcome::AlreadyClosed
    );
    assert_eq!(
        client.close("NOSUCHORDER123").await.unwrap(),
        CloseOutcome::NotExist
    );
    assert_eq!(
        client.query("NOSUCHORDER123").await.unwrap_err().err_code(),
        Some("ORDERNOTEXIST")
    );

    // Paid orders: query reports the trade; close says ORDERPAID.
    let paid = NativeOrder {
        out_trade_no: format!("{}P", &order.out_trade_no[..30]),
        ..order.clone()
    };
    client.create_native(&paid).await.unwrap();
    let p = sim(&app).pay(&paid.out_trade_no).await.unwrap();
    match client.query(&paid.out_trade_no).await.unwrap() {
        TradeState::Success(t) => {
            assert_eq!((t.transaction_id, t.total_fee), (p.transaction_id, 101));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.close(&paid.out_trade_no).await.unwrap(),
        CloseOutcome::AlreadyPaid
    );

    // A client with the wrong key is refused by WeChat (return_code FAIL).
    let mut wrong = cfg.clone();
    wrong.key = "0123456789abcdef0123456789abcdef".into();
    let err = ordersaga::wxpay::WxPayClient::new(wrong)
        .unwrap()
        .query(&order.out_trade_no)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ordersaga::wxpay::WxError::Protocol(_)),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_the_simulator_agree_with_md5() {
    client_against_simulator(SignType::Md5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_and_the_simulator_agree_with_hmac_sha256() {
    client_against_simulator(SignType::HmacSha256).await;
}

on_both_backends! {
    /// HMAC-SHA256 notifications arrive with and without `sign_type`: both verify.
    async fn a_notification_without_sign_type_still_verifies(app) {
        let (token, order) = checkout_one(&app, "nosigntype", 7_700).await;
        native(&app, &token, order).await;
        sim(&app).set_faults(Faults { omit_sign_type: true, ..Faults::default() });
        sim(&app).pay(&order.to_string()).await.unwrap();
        wait_until(Duration::from_secs(15), "completed", || async { state_of(&app, order).await == "completed" }).await;
        app.stop().await;
    }
}

on_both_backends! {
    /// closeorder failing with SYSTEMERROR: the saga keeps retrying and finishes the undo
    /// once WeChat answers; nothing is given back before the WeChat order is closed.
    async fn a_failing_closeorder_is_retried_before_anything_is_given_back(app) {
        use ordersaga::wxpay::sim::ApiFault;
        let initial = stock_snapshot(app.db()).await;
        let (token, order) = checkout_one(&app, "closefail", 2_200).await;
        native(&app, &token, order).await;
        sim(&app).set_faults(Faults { closeorder: Some(ApiFault::SystemError), ..Faults::default() });
        app.post(&format!("/api/order/{order}/cancel"), &token).await;
        wait_until(Duration::from_secs(15), "a failed close recorded", || async {
            app.db().load_saga(order).await.unwrap().unwrap().state.attempts >= 1
        })
        .await;
        let saga = app.db().load_saga(order).await.unwrap().unwrap();
        assert_eq!(saga.state.phase.name(), "compensating");
        assert!(saga.state.last_error.unwrap().starts_with("SAGA-WX-001"));
        assert_eq!(app.db().points(&"closefail".parse_user()).await.unwrap(), Some(10), "points not yet revoked");
        sim(&app).set_faults(Faults::default());
        wait_until(Duration::from_secs(30), "compensated", || async { state_of(&app, order).await == "compensated" }).await;
        assert_eq!(sim(&app).order(&order.to_string()).unwrap().state, "CLOSED");
        assert_invariants(app.db(), &initial, 10).await;
        app.stop().await;
    }
}

on_both_backends! {
    async fn the_pay_page_shows_the_qr_code_amount_and_simulator_button(app) {
        let (token, order) = checkout_one(&app, "pagepay", 1_990).await;
        let cookie = format!("Authorization={token}");
        let page = app.http.get(app.url(&format!("/pay?orderId={order}"))).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains(&format!("/api/pay/qrcode?orderId={order}")), "QR image");
        assert!(html.contains("¥19.90"), "amount");
        assert!(html.contains("simulate-pay"), "simulator button");
        assert!(html.contains("countdown"));
        sim(&app).pay(&order.to_string()).await.unwrap();
        wait_until(Duration::from_secs(15), "completed", || async { state_of(&app, order).await == "completed" }).await;
        // Paid: the pay page sends the shopper to the success page.
        let resp = app.http.get(app.url(&format!("/pay?orderId={order}"))).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        let success = app.http.get(app.url(&format!("/pay/success?orderId={order}"))).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        assert!(success.contains("支付成功"));
        app.stop().await;
    }
}

trait ParseUser {
    fn parse_user(&self) -> ordersaga::domain::Username;
}
impl ParseUser for str {
    fn parse_user(&self) -> ordersaga::domain::Username {
        ordersaga::domain::Username::parse(self).unwrap()
    }
}
