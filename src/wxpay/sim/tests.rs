use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::post;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::wxpay::{Fields, SignType, sign, xml};

const APPID: &str = "wxd930ea5d5a258f4f";
const MCH_ID: &str = "10000100";
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";
const MIN_CLOSE: Duration = Duration::from_millis(250);
const ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
const NACK: &str = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>";

fn sim() -> Arc<WxPaySim> {
    WxPaySim::new(SimConfig {
        min_close_interval: MIN_CLOSE,
        notify_time_scale: 0.001,
        ..SimConfig::default()
    })
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn order_fields(out_trade_no: &str, total_fee: &str, notify_url: &str) -> Fields {
    fields(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("body", "shop-product"),
        ("out_trade_no", out_trade_no),
        ("total_fee", total_fee),
        ("spbill_create_ip", "127.0.0.1"),
        ("notify_url", notify_url),
        ("trade_type", "NATIVE"),
        ("product_id", "sku-1"),
    ])
}

fn common(extra: &[(&str, &str)]) -> Fields {
    let mut f = fields(&[
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "abc123"),
    ]);
    f.extend(fields(extra));
    f
}

/// Signs (with `sign_type` in the fields when given) and serialises.
fn signed(mut f: Fields, sign_type: Option<SignType>) -> String {
    if let Some(sign_type) = sign_type {
        f.insert("sign_type".into(), sign_type.as_str().into());
    }
    let signature = sign::sign(&f, KEY, sign_type.unwrap_or(SignType::Md5));
    f.insert("sign".into(), signature);
    xml::to_xml(&f)
}

async fn raw(
    app: &Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> (StatusCode, String, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, content_type, body)
}

/// POSTs XML to an API and parses the XML answer.
async fn call(app: &Router, path: &str, body: impl Into<Body>) -> Fields {
    let (status, content_type, body) = raw(app, Method::POST, path, "text/xml", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/xml");
    xml::parse(std::str::from_utf8(&body).unwrap()).unwrap()
}

async fn json_call(app: &Router, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, body) = raw(app, method, path, "application/json", body.to_string()).await;
    (status, serde_json::from_slice(&body).unwrap())
}

fn get<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} in {f:?}"))
}

/// A `return_code SUCCESS` answer, correctly signed with `sign_type`.
fn assert_signed(answer: &Fields, sign_type: SignType) {
    assert_eq!(get(answer, "return_code"), "SUCCESS", "{answer:?}");
    assert!(!get(answer, "nonce_str").is_empty());
    assert!(
        sign::verify(answer, KEY, sign_type),
        "answer signature: {answer:?}"
    );
}

/// A signed answer for our merchant.
fn assert_ok(answer: &Fields, sign_type: SignType) {
    assert_signed(answer, sign_type);
    assert_eq!(get(answer, "appid"), APPID);
    assert_eq!(get(answer, "mch_id"), MCH_ID);
}

fn assert_biz_fail(answer: &Fields, err_code: &str) {
    assert_signed(answer, SignType::Md5);
    assert_eq!(get(answer, "result_code"), "FAIL", "{answer:?}");
    assert_eq!(get(answer, "err_code"), err_code, "{answer:?}");
    assert!(!get(answer, "err_code_des").is_empty());
}

async fn unifiedorder(
    app: &Router,
    out_trade_no: &str,
    notify_url: &str,
    sign_type: Option<SignType>,
) -> Fields {
    let answer = call(
        app,
        "/pay/unifiedorder",
        signed(order_fields(out_trade_no, "101", notify_url), sign_type),
    )
    .await;
    assert_ok(&answer, sign_type.unwrap_or(SignType::Md5));
    assert_eq!(get(&answer, "result_code"), "SUCCESS", "{answer:?}");
    answer
}

async fn orderquery(app: &Router, by: (&str, &str)) -> Fields {
    call(app, "/pay/orderquery", signed(common(&[by]), None)).await
}

async fn closeorder(app: &Router, out_trade_no: &str) -> Fields {
    call(
        app,
        "/pay/closeorder",
        signed(common(&[("out_trade_no", out_trade_no)]), None),
    )
    .await
}

/// Receives notifications on 127.0.0.1; answers from a script, then SUCCESS.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Fields>>>,
    replies: Arc<Mutex<VecDeque<&'static str>>>,
}

type ReceiverState = (Arc<Mutex<Vec<Fields>>>, Arc<Mutex<VecDeque<&'static str>>>);

async fn receive(State((got, replies)): State<ReceiverState>, body: String) -> String {
    got.lock().unwrap().push(xml::parse(&body).unwrap());
    replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(ACK)
        .to_owned()
}

impl Receiver {
    async fn start(replies: &[&'static str]) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(replies.iter().copied().collect::<VecDeque<_>>()));
        let app = Router::new()
            .route("/notify", post(receive))
            .with_state((got.clone(), replies.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got, replies }
    }

    /// Waits (≤5 s) until at least `n` notifications arrived.
    async fn wait_for(&self, n: usize) -> Vec<Fields> {
        for _ in 0..500 {
            if self.got.lock().unwrap().len() >= n {
                return self.got.lock().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} notifications, got {:?}",
            self.got.lock().unwrap()
        );
    }
}

/// Waits (≤5 s) until the order's notification is settled (acknowledged or given up).
async fn settled(sim: &WxPaySim, out_trade_no: &str) -> SimOrderView {
    for _ in 0..500 {
        let view = sim.order(out_trade_no).unwrap();
        if view.notification_status != "PENDING" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("notification still pending: {:?}", sim.order(out_trade_no));
}

#[tokio::test]
async fn unifiedorder_creates_and_reenters() {
    let sim = sim();
    let app = sim.router();
    let first = unifiedorder(&app, "T1001", "https://shop.example/notify", None).await;
    assert!(
        !first.contains_key("sign_type"),
        "MD5 request without sign_type: {first:?}"
    );
    assert_eq!(get(&first, "trade_type"), "NATIVE");
    assert!(get(&first, "prepay_id").starts_with("wx"));
    assert!(get(&first, "code_url").starts_with("weixin://wxpay/bizpayurl?pr="));

    let view = sim.order("T1001").unwrap();
    assert_eq!(view.state, "NOTPAY");
    assert_eq!(view.total_fee, 101);
    assert_eq!(view.sign_type, "MD5");
    assert_eq!(view.code_url, get(&first, "code_url"));

    // Same parameters, new nonce and IP: the same prepay session.
    let mut again = order_fields("T1001", "101", "https://shop.example/notify");
    again.insert("nonce_str".into(), "another".into());
    again.insert("spbill_create_ip".into(), "::1".into());
    let second = call(&app, "/pay/unifiedorder", signed(again, None)).await;
    assert_ok(&second, SignType::Md5);
    assert_eq!(get(&second, "result_code"), "SUCCESS");
    assert_eq!(get(&second, "code_url"), get(&first, "code_url"));
    assert_eq!(get(&second, "prepay_id"), get(&first, "prepay_id"));
    assert_ne!(get(&second, "nonce_str"), get(&first, "nonce_str"));

    // A different amount under the same out_trade_no is refused.
    let changed = call(
        &app,
        "/pay/unifiedorder",
        signed(
            order_fields("T1001", "102", "https://shop.example/notify"),
            None,
        ),
    )
    .await;
    assert_biz_fail(&changed, "INVALID_REQUEST");
    assert!(
        get(&changed, "err_code_des").contains("total_fee"),
        "{changed:?}"
    );
    assert_eq!(sim.order("T1001").unwrap().total_fee, 101);
}

#[tokio::test]
async fn unifiedorder_validates_parameters() {
    let sim = sim();
    let app = sim.router();
    let url = "https://shop.example/notify";
    let cases: Vec<(Fields, &str)> = vec![
        (order_fields("T1", "0", url), "INVALID_REQUEST"),
        (order_fields("T1", "1.5", url), "INVALID_REQUEST"),
        (
            order_fields("T1", "99999999999999999999999", url),
            "INVALID_REQUEST",
        ),
        (order_fields("T1/2", "1", url), "INVALID_REQUEST"),
        (order_fields(&"9".repeat(33), "1", url), "INVALID_REQUEST"),
        (
            order_fields("T1", "1", "https://shop.example/notify?id=1"),
            "INVALID_REQUEST",
        ),
        (order_fields("T1", "1", "/notify"), "INVALID_REQUEST"),
        (
            order_fields("T1", "1", "ftp://shop.example/notify"),
            "INVALID_REQUEST",
        ),
        {
            let mut f = order_fields("T1", "1", url);
            f.remove("body");
            (f, "LACK_PARAMS")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.remove("product_id");
            (f, "LACK_PARAMS")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.insert("trade_type".into(), "JSAPI".into());
            (f, "INVALID_REQUEST")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.insert("time_expire".into(), "20200101000000".into());
            (f, "INVALID_REQUEST")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.insert("time_expire".into(), "2099-01-01".into());
            (f, "INVALID_REQUEST")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.insert("appid".into(), "wx0000000000000000".into());
            (f, "APPID_NOT_EXIST")
        },
        {
            let mut f = order_fields("T1", "1", url);
            f.insert("mch_id".into(), "999".into());
            (f, "MCHID_NOT_EXIST")
        },
    ];
    for (request, err_code) in cases {
        let answer = call(&app, "/pay/unifiedorder", signed(request.clone(), None)).await;
        assert_biz_fail(&answer, err_code);
        if err_code.starts_with("APPID") {
            assert_eq!(
                answer.get("appid"),
                request.get("appid"),
                "the request's appid is echoed"
            );
        }
    }
    assert!(sim.order("T1").is_none());
}

#[tokio::test]
async fn protocol_failures_are_unsigned() {
    let sim = sim();
    let app = sim.router();
    let mut tampered = order_fields("T2", "101", "https://shop.example/notify");
    tampered.insert("sign".into(), sign::sign(&tampered, KEY, SignType::Md5));
    tampered.insert("total_fee".into(), "1".into());
    let cases: Vec<(Method, Vec<u8>, &str)> = vec![
        (
            Method::POST,
            xml::to_xml(&tampered).into_bytes(),
            "签名错误",
        ),
        (Method::POST, b"<xml><appid>".to_vec(), "XML_FORMAT_ERROR"),
        (Method::POST, b"{\"appid\": 1}".to_vec(), "XML_FORMAT_ERROR"),
        (Method::POST, Vec::new(), "POST_DATA_EMPTY"),
        (Method::POST, vec![0xff, 0xfe, b'<'], "NOT_UTF8"),
        (Method::GET, Vec::new(), "REQUIRE_POST_METHOD"),
    ];
    for (method, body, msg) in cases {
        for path in ["/pay/unifiedorder", "/pay/orderquery", "/pay/closeorder"] {
            let (status, _, answer) =
                raw(&app, method.clone(), path, "text/xml", body.clone()).await;
            assert_eq!(status, StatusCode::OK);
            let answer = xml::parse(std::str::from_utf8(&answer).unwrap()).unwrap();
            assert_eq!(
                answer,
                fields(&[("return_code", "FAIL"), ("return_msg", msg)]),
                "{path}"
            );
        }
    }
    // An unknown sign_type.
    let mut f = order_fields("T2", "101", "https://shop.example/notify");
    f.insert("sign_type".into(), "SHA1".into());
    f.insert("sign".into(), sign::sign(&f, KEY, SignType::Md5));
    let answer = call(&app, "/pay/unifiedorder", xml::to_xml(&f)).await;
    assert_eq!(get(&answer, "return_code"), "FAIL");
    assert!(!answer.contains_key("sign"));
    // MD5-signed but claiming HMAC-SHA256.
    let mut f = order_fields("T2", "101", "https://shop.example/notify");
    f.insert("sign_type".into(), "HMAC-SHA256".into());
    f.insert("sign".into(), sign::sign(&f, KEY, SignType::Md5));
    let answer = call(&app, "/pay/unifiedorder", xml::to_xml(&f)).await;
    assert_eq!(get(&answer, "return_msg"), "签名错误");
    assert!(sim.order("T2").is_none());
}

#[tokio::test]
async fn both_sign_types() {
    let sim = sim();
    let app = sim.router();
    let hmac = unifiedorder(
        &app,
        "H1",
        "https://shop.example/notify",
        Some(SignType::HmacSha256),
    )
    .await;
    assert_eq!(get(&hmac, "sign_type"), "HMAC-SHA256");
    assert_eq!(get(&hmac, "sign").len(), 64);
    assert!(!sign::verify(&hmac, KEY, SignType::Md5));
    assert_eq!(sim.order("H1").unwrap().sign_type, "HMAC-SHA256");

    let md5 = unifiedorder(
        &app,
        "M1",
        "https://shop.example/notify",
        Some(SignType::Md5),
    )
    .await;
    assert_eq!(get(&md5, "sign_type"), "MD5");
    assert_eq!(get(&md5, "sign").len(), 32);

    let query = call(
        &app,
        "/pay/orderquery",
        signed(
            common(&[("out_trade_no", "H1")]),
            Some(SignType::HmacSha256),
        ),
    )
    .await;
    assert_ok(&query, SignType::HmacSha256);
    assert_eq!(get(&query, "trade_state"), "NOTPAY");
    assert_eq!(get(&query, "out_trade_no"), "H1");
    assert!(!query.contains_key("transaction_id"));
}

#[tokio::test]
async fn closeorder_rules() {
    let sim = sim();
    let app = sim.router();
    unifiedorder(&app, "C1", "https://shop.example/notify", None).await;
    unifiedorder(&app, "C2", "https://shop.example/notify", None).await;

    let early = closeorder(&app, "C1").await;
    assert_biz_fail(&early, "SYSTEMERROR");
    assert_eq!(get(&early, "err_code_des"), "订单创建后0.25秒内不能关单");
    assert_eq!(sim.order("C1").unwrap().state, "NOTPAY");
    assert_biz_fail(&closeorder(&app, "nope").await, "ORDERNOTEXIST");

    tokio::time::sleep(MIN_CLOSE + Duration::from_millis(20)).await;
    let closed = closeorder(&app, "C1").await;
    assert_ok(&closed, SignType::Md5);
    assert_eq!(get(&closed, "result_code"), "SUCCESS", "{closed:?}");
    assert_biz_fail(&closeorder(&app, "C1").await, "ORDERCLOSED");
    let query = orderquery(&app, ("out_trade_no", "C1")).await;
    assert_eq!(get(&query, "trade_state"), "CLOSED");
    assert_eq!(sim.order("C1").unwrap().state, "CLOSED");

    // Closed: cannot be paid, re-entered or paid via HTTP.
    assert_eq!(sim.pay("C1").await, Err(SimError::Closed("C1".into())));
    let (status, answer) =
        json_call(&app, Method::POST, "/sim/pay", json!({"outTradeNo": "C1"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["flag"], false);
    let reentry = call(
        &app,
        "/pay/unifiedorder",
        signed(
            order_fields("C1", "101", "https://shop.example/notify"),
            None,
        ),
    )
    .await;
    assert_biz_fail(&reentry, "ORDERCLOSED");

    // Paid: ORDERPAID.
    sim.pay("C2").await.unwrap();
    assert_biz_fail(&closeorder(&app, "C2").await, "ORDERPAID");
    assert_eq!(sim.pay("C2").await, Err(SimError::AlreadyPaid("C2".into())));
    let reentry = call(
        &app,
        "/pay/unifiedorder",
        signed(
            order_fields("C2", "101", "https://shop.example/notify"),
            None,
        ),
    )
    .await;
    assert_biz_fail(&reentry, "ORDERPAID");
}

#[tokio::test]
async fn orderquery_after_payment() {
    let sim = sim();
    let app = sim.router();
    unifiedorder(&app, "Q1", "https://shop.example/notify", None).await;
    assert_biz_fail(
        &orderquery(&app, ("out_trade_no", "nope")).await,
        "ORDERNOTEXIST",
    );
    assert_biz_fail(
        &orderquery(&app, ("transaction_id", "4200")).await,
        "ORDERNOTEXIST",
    );

    let (status, paid) =
        json_call(&app, Method::POST, "/sim/pay", json!({"outTradeNo": "Q1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paid["flag"], true);
    assert_eq!(paid["code"], 20000);
    assert_eq!(paid["message"], "paid");
    let payment: SimPayment = serde_json::from_value(paid["data"].clone()).unwrap();
    assert_eq!(payment.total_fee, 101);

    for by in [
        ("out_trade_no", "Q1"),
        ("transaction_id", payment.transaction_id.as_str()),
    ] {
        let query = orderquery(&app, by).await;
        assert_ok(&query, SignType::Md5);
        assert_eq!(get(&query, "result_code"), "SUCCESS");
        assert_eq!(get(&query, "trade_state"), "SUCCESS");
        assert_eq!(get(&query, "out_trade_no"), "Q1");
        assert_eq!(get(&query, "transaction_id"), payment.transaction_id);
        assert_eq!(get(&query, "total_fee"), "101");
        assert_eq!(get(&query, "cash_fee"), "101");
        assert_eq!(get(&query, "fee_type"), "CNY");
        assert_eq!(get(&query, "trade_type"), "NATIVE");
        assert_eq!(get(&query, "bank_type"), "OTHERS");
        assert_eq!(get(&query, "is_subscribe"), "N");
        assert_eq!(get(&query, "time_end"), payment.time_end);
        assert!(get(&query, "openid").starts_with('o'));
    }
    let id = &payment.transaction_id;
    assert_eq!(id.len(), 28);
    assert!(id.starts_with("4200") && id.bytes().all(|b| b.is_ascii_digit()));
    assert!(parse_beijing(&payment.time_end).is_some());

    let view = sim.order("Q1").unwrap();
    assert_eq!(view.state, "SUCCESS");
    assert_eq!(view.transaction_id.as_deref(), Some(id.as_str()));
    let (status, json) = json_call(&app, Method::GET, "/sim/orders/Q1", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["state"], "SUCCESS");
    assert_eq!(json["transactionId"], id.as_str());
}

#[tokio::test]
async fn sim_pay_inputs() {
    let sim = sim();
    let app = sim.router();
    unifiedorder(&app, "P1", "https://shop.example/notify", None).await;
    let (status, _, body) = raw(
        &app,
        Method::POST,
        "/sim/pay",
        "application/x-www-form-urlencoded",
        "out_trade_no=P1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (status, answer) =
        json_call(&app, Method::POST, "/sim/pay", json!({"outTradeNo": "P9"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["flag"], false);
    let (status, _) = json_call(&app, Method::POST, "/sim/pay", json!({"other": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = json_call(&app, Method::GET, "/sim/orders/P9", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn time_expire_closes_unpaid_orders() {
    let sim = sim();
    let app = sim.router();
    let mut request = order_fields("E1", "101", "https://shop.example/notify");
    request.insert("time_expire".into(), "20991231235959".into());
    let answer = call(&app, "/pay/unifiedorder", signed(request, None)).await;
    assert_eq!(get(&answer, "result_code"), "SUCCESS", "{answer:?}");
    assert_eq!(
        sim.order("E1").unwrap().time_expire.as_deref(),
        Some("20991231235959")
    );
    // Let it expire.
    if let Some(order) = sim.lock().orders.get_mut("E1") {
        order.time_expire = Some((
            "20000101000000".into(),
            parse_beijing("20000101000000").unwrap(),
        ));
    }
    assert_eq!(sim.pay("E1").await, Err(SimError::Expired("E1".into())));
    let query = orderquery(&app, ("out_trade_no", "E1")).await;
    assert_eq!(get(&query, "trade_state"), "CLOSED");
    assert_eq!(sim.order("E1").unwrap().state, "CLOSED");
}

#[tokio::test]
async fn api_faults() {
    let sim = sim();
    let app = sim.router();
    unifiedorder(&app, "F1", "https://shop.example/notify", None).await;
    let (status, set) = json_call(
        &app,
        Method::POST,
        "/sim/faults",
        json!({"orderquery": "system_error", "closeorder": "system_error"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(set["orderquery"], "system_error");
    assert_eq!(sim.faults().orderquery, Some(ApiFault::SystemError));
    let (_, got) = json_call(&app, Method::GET, "/sim/faults", Value::Null).await;
    assert_eq!(got, set);

    assert_biz_fail(
        &orderquery(&app, ("out_trade_no", "F1")).await,
        "SYSTEMERROR",
    );
    tokio::time::sleep(MIN_CLOSE + Duration::from_millis(20)).await;
    assert_biz_fail(&closeorder(&app, "F1").await, "SYSTEMERROR");
    assert_eq!(sim.order("F1").unwrap().state, "NOTPAY");

    let (status, _) = json_call(
        &app,
        Method::POST,
        "/sim/faults",
        json!({"orderquery": "sometimes"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.set_faults(Faults {
        orderquery: Some(ApiFault::Timeout),
        ..Faults::default()
    });
    let timed_out = tokio::time::timeout(
        Duration::from_millis(100),
        orderquery(&app, ("out_trade_no", "F1")),
    )
    .await;
    assert!(timed_out.is_err(), "the timeout fault holds the answer");
    sim.set_faults(Faults::default());
    assert_eq!(
        get(
            &orderquery(&app, ("out_trade_no", "F1")).await,
            "result_code"
        ),
        "SUCCESS"
    );
}

#[tokio::test]
async fn notification_md5_delivered_and_signed() {
    let sim = sim();
    let app = sim.router();
    let receiver = Receiver::start(&[]).await;
    unifiedorder(&app, "N1", &receiver.url, None).await;
    let payment = sim.pay("N1").await.unwrap();
    let got = receiver.wait_for(1).await;
    let notification = &got[0];
    assert!(
        sign::verify(notification, KEY, SignType::Md5),
        "{notification:?}"
    );
    assert!(!notification.contains_key("sign_type"));
    for (name, value) in [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("out_trade_no", "N1"),
        ("transaction_id", payment.transaction_id.as_str()),
        ("time_end", payment.time_end.as_str()),
        ("total_fee", "101"),
        ("cash_fee", "101"),
        ("fee_type", "CNY"),
        ("trade_type", "NATIVE"),
        ("bank_type", "OTHERS"),
        ("is_subscribe", "N"),
    ] {
        assert_eq!(get(notification, name), value, "{name}");
    }
    assert!(!get(notification, "openid").is_empty());
    assert!(!get(notification, "nonce_str").is_empty());
    let view = settled(&sim, "N1").await;
    assert_eq!(view.notification_status, "ACKNOWLEDGED");
    assert_eq!(
        (
            view.notifications_attempted,
            view.notifications_acknowledged
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn notification_hmac_with_and_without_sign_type() {
    let sim = sim();
    let app = sim.router();
    let receiver = Receiver::start(&[]).await;
    unifiedorder(&app, "N2", &receiver.url, Some(SignType::HmacSha256)).await;
    unifiedorder(&app, "N3", &receiver.url, Some(SignType::HmacSha256)).await;

    sim.pay("N2").await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(get(&got[0], "sign_type"), "HMAC-SHA256");
    assert_eq!(get(&got[0], "sign").len(), 64);
    assert!(sign::verify(&got[0], KEY, SignType::HmacSha256));
    settled(&sim, "N2").await;

    sim.set_faults(Faults {
        omit_sign_type: true,
        ..Faults::default()
    });
    sim.pay("N3").await.unwrap();
    let got = receiver.wait_for(2).await;
    assert_eq!(get(&got[1], "out_trade_no"), "N3");
    assert!(!got[1].contains_key("sign_type"));
    assert_eq!(get(&got[1], "sign").len(), 64);
    assert!(sign::verify(&got[1], KEY, SignType::HmacSha256));
}

#[tokio::test]
async fn notification_retried_after_fail_answer() {
    let sim = sim();
    let app = sim.router();
    let receiver = Receiver::start(&[NACK, "not xml at all"]).await;
    unifiedorder(&app, "R1", &receiver.url, None).await;
    sim.pay("R1").await.unwrap();
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|n| get(n, "out_trade_no") == "R1"));
    let view = settled(&sim, "R1").await;
    assert_eq!(view.notification_status, "ACKNOWLEDGED");
    assert_eq!(
        (
            view.notifications_attempted,
            view.notifications_acknowledged
        ),
        (3, 1)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        receiver.got.lock().unwrap().len(),
        3,
        "no delivery after the acknowledgement"
    );
    assert!(receiver.replies.lock().unwrap().is_empty());
}

#[tokio::test]
async fn notification_dropped_then_retried() {
    let sim = sim();
    let app = sim.router();
    let receiver = Receiver::start(&[]).await;
    unifiedorder(&app, "D1", &receiver.url, None).await;
    sim.set_faults(Faults {
        drop_next_notifications: 2,
        notification_delay_ms: 5,
        ..Faults::default()
    });
    sim.pay("D1").await.unwrap();
    receiver.wait_for(1).await;
    let view = settled(&sim, "D1").await;
    assert_eq!(
        (
            view.notifications_attempted,
            view.notifications_acknowledged
        ),
        (3, 1)
    );
    assert_eq!(sim.faults().drop_next_notifications, 0);
    assert_eq!(receiver.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn notification_drop_all_gives_up() {
    let sim = WxPaySim::new(SimConfig {
        notify_time_scale: 0.0,
        ..SimConfig::default()
    });
    let app = sim.router();
    let receiver = Receiver::start(&[]).await;
    unifiedorder(&app, "G1", &receiver.url, None).await;
    sim.set_faults(Faults {
        drop_all_notifications: true,
        ..Faults::default()
    });
    sim.pay("G1").await.unwrap();
    let view = settled(&sim, "G1").await;
    assert_eq!(view.notification_status, "GAVE_UP");
    assert_eq!(
        view.notifications_attempted,
        1 + notify::RETRY_SCHEDULE_SECS.len() as u32
    );
    assert_eq!(view.notifications_acknowledged, 0);
    assert!(receiver.got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn notification_duplicated() {
    let sim = sim();
    let app = sim.router();
    let receiver = Receiver::start(&[]).await;
    unifiedorder(&app, "U1", &receiver.url, None).await;
    sim.set_faults(Faults {
        duplicate_notifications: true,
        ..Faults::default()
    });
    sim.pay("U1").await.unwrap();
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0], got[1], "the same notification twice");
    let view = settled(&sim, "U1").await;
    assert_eq!(
        (
            view.notifications_attempted,
            view.notifications_acknowledged
        ),
        (2, 2)
    );
}

#[tokio::test]
async fn notification_to_nowhere_is_retried() {
    let sim = WxPaySim::new(SimConfig {
        notify_time_scale: 0.0,
        ..SimConfig::default()
    });
    let app = sim.router();
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    drop(listener);
    unifiedorder(&app, "Z1", &url, None).await;
    sim.pay("Z1").await.unwrap();
    let view = settled(&sim, "Z1").await;
    assert_eq!(view.notification_status, "GAVE_UP");
    assert_eq!(view.notifications_attempted, 16);
}

#[test]
fn intervals_and_scaling() {
    assert_eq!(api::describe_interval(Duration::from_secs(300)), "5分钟");
    assert_eq!(api::describe_interval(Duration::from_millis(1500)), "1.5秒");
    let total: u64 = notify::RETRY_SCHEDULE_SECS.iter().sum();
    assert_eq!(total, 24 * 3600 + 4 * 60);
    assert_eq!(notify::scaled(15, 0.001), Duration::from_millis(15));
    assert_eq!(notify::scaled(15, f64::NAN), Duration::from_secs(15));
    assert_eq!(notify::scaled(15, -1.0), Duration::from_secs(15));
    assert_eq!(notify::scaled(15, f64::MAX), Duration::MAX);
}
