//! The three XML APIs: `unifiedorder`, `orderquery`, `closeorder`.
//!
//! Every call goes through the same gate: POST only, a UTF-8 `<xml>` body, a known
//! `sign_type`, a valid signature (else `return_code FAIL`, unsigned), then appid/mch_id.
//! Business outcomes are `return_code SUCCESS` answers with `result_code` SUCCESS/FAIL,
//! signed with the request's sign type (`sign_type` echoed only if the request had it).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::{
    CloseReason, NotifyStatus, Order, TradeState, WxPaySim, beijing_now, format_beijing,
    parse_beijing, random_alnum,
};
use crate::wxpay::sim::ApiFault;
use crate::wxpay::{Fields, SignType, sign, xml};

/// How long an [`ApiFault::Timeout`] holds the call.
pub(super) const FAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Api {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
}

/// A business failure: `result_code FAIL` with this `err_code`/`err_code_des`.
struct BizError {
    code: &'static str,
    des: String,
}

fn biz(code: &'static str, des: impl Into<String>) -> BizError {
    BizError {
        code,
        des: des.into(),
    }
}

/// What a successful (signed) answer needs from the request.
struct Envelope {
    appid: String,
    mch_id: String,
    sign_type: SignType,
    echo_sign_type: bool,
    device_info: Option<String>,
}

/// Handles one API call.
pub(super) async fn handle(sim: &WxPaySim, api: Api, method: &Method, body: &[u8]) -> Response {
    if method != Method::POST {
        return protocol_fail("REQUIRE_POST_METHOD");
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return protocol_fail("POST_DATA_EMPTY");
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return protocol_fail("NOT_UTF8");
    };
    let Ok(fields) = xml::parse(text) else {
        return protocol_fail("XML_FORMAT_ERROR");
    };
    let sign_type = match value(&fields, "sign_type") {
        None => SignType::Md5,
        Some(raw) => match SignType::parse(raw) {
            Some(sign_type) => sign_type,
            None => return protocol_fail("sign_type参数格式错误"),
        },
    };
    if !sign::verify(&fields, &sim.config.key, sign_type) {
        return protocol_fail("签名错误");
    }
    let envelope = Envelope {
        appid: value(&fields, "appid")
            .unwrap_or(&sim.config.appid)
            .to_owned(),
        mch_id: value(&fields, "mch_id")
            .unwrap_or(&sim.config.mch_id)
            .to_owned(),
        sign_type,
        echo_sign_type: value(&fields, "sign_type").is_some(),
        device_info: value(&fields, "device_info").map(str::to_owned),
    };
    let outcome = match check_merchant(sim, &fields) {
        Err(err) => Err(err),
        Ok(()) => match api {
            Api::UnifiedOrder => unifiedorder(sim, &fields, sign_type),
            Api::OrderQuery => match fault(sim, api).await {
                Some(err) => Err(err),
                None => orderquery(sim, &fields),
            },
            Api::CloseOrder => match fault(sim, api).await {
                Some(err) => Err(err),
                None => closeorder(sim, &fields),
            },
        },
    };
    answer(sim, &envelope, outcome)
}

/// Applies the API's fault, if one is set: a `SYSTEMERROR`, or a 30 s wait before the
/// call is handled.
async fn fault(sim: &WxPaySim, api: Api) -> Option<BizError> {
    let fault = {
        let state = sim.lock();
        match api {
            Api::OrderQuery => state.faults.orderquery,
            Api::CloseOrder => state.faults.closeorder,
            Api::UnifiedOrder => None,
        }
    };
    match fault? {
        ApiFault::SystemError => Some(biz("SYSTEMERROR", "系统错误 (simulated fault)")),
        ApiFault::Timeout => {
            tokio::time::sleep(FAULT_TIMEOUT).await;
            None
        }
    }
}

/// The common fields, then appid/mch_id against the configured merchant.
fn check_merchant(sim: &WxPaySim, fields: &Fields) -> Result<(), BizError> {
    require(fields, &["appid", "mch_id", "nonce_str"])?;
    let appid_ok = value(fields, "appid") == Some(sim.config.appid.as_str());
    let mch_ok = value(fields, "mch_id") == Some(sim.config.mch_id.as_str());
    match (appid_ok, mch_ok) {
        (true, true) => Ok(()),
        (false, true) => Err(biz("APPID_NOT_EXIST", "APPID不存在")),
        (true, false) => Err(biz("MCHID_NOT_EXIST", "MCHID不存在")),
        (false, false) => Err(biz("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")),
    }
}

fn unifiedorder(sim: &WxPaySim, fields: &Fields, sign_type: SignType) -> Result<Fields, BizError> {
    require(
        fields,
        &[
            "body",
            "out_trade_no",
            "total_fee",
            "spbill_create_ip",
            "notify_url",
            "trade_type",
        ],
    )?;
    let get = |name: &str| value(fields, name).unwrap_or_default();
    let out_trade_no = get("out_trade_no");
    check_out_trade_no(out_trade_no)?;
    check_len(fields, "body", 127)?;
    let total_fee = match get("total_fee") {
        raw if raw.bytes().all(|b| b.is_ascii_digit()) => raw.parse::<i64>().ok(),
        _ => None,
    }
    .filter(|fee| *fee > 0)
    .ok_or_else(|| biz("INVALID_REQUEST", "total_fee 必须是正整数 (分)"))?;
    if get("spbill_create_ip").parse::<IpAddr>().is_err() {
        return Err(biz("INVALID_REQUEST", "spbill_create_ip 不是合法的IP地址"));
    }
    check_notify_url(get("notify_url"))?;
    if get("trade_type") != "NATIVE" {
        return Err(biz(
            "INVALID_REQUEST",
            "trade_type 参数错误: the simulator supports only NATIVE",
        ));
    }
    require(fields, &["product_id"])?;
    check_len(fields, "product_id", 32)?;
    check_len(fields, "attach", 127)?;
    check_len(fields, "device_info", 32)?;
    check_len(fields, "detail", 6144)?;
    if value(fields, "fee_type").is_some_and(|fee_type| fee_type != "CNY") {
        return Err(biz("INVALID_REQUEST", "fee_type 参数错误: only CNY"));
    }
    let time_expire = match value(fields, "time_expire") {
        None => None,
        Some(raw) => Some((
            raw.to_owned(),
            parse_beijing(raw)
                .ok_or_else(|| biz("INVALID_REQUEST", "time_expire 格式错误: yyyyMMddHHmmss"))?,
        )),
    };
    for name in ["time_start"] {
        if value(fields, name).is_some_and(|raw| parse_beijing(raw).is_none()) {
            return Err(biz(
                "INVALID_REQUEST",
                format!("{name} 格式错误: yyyyMMddHHmmss"),
            ));
        }
    }
    let business: Fields = fields
        .iter()
        .filter(|(name, value)| !value.is_empty() && !ENVELOPE_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();

    let now = beijing_now();
    let mut state = sim.lock();
    if let Some(order) = state.orders.get_mut(out_trade_no) {
        order.expire_if_due(now);
        return match order.state {
            TradeState::Success => Err(biz("ORDERPAID", "该订单已支付")),
            TradeState::Closed(_) => Err(biz("ORDERCLOSED", "该订单已关闭")),
            TradeState::NotPay if order.business != business => {
                let changed: Vec<&str> = order
                    .business
                    .keys()
                    .chain(business.keys())
                    .filter(|name| order.business.get(*name) != business.get(*name))
                    .map(String::as_str)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                Err(biz(
                    "INVALID_REQUEST",
                    format!(
                        "201 商户订单号重复: 订单重入时，要求参数值与原请求一致 (changed: {})",
                        changed.join(", ")
                    ),
                ))
            }
            TradeState::NotPay => Ok(prepay_answer(order)),
        };
    }
    if let Some((_, at)) = &time_expire
        && *at <= now
    {
        return Err(biz("INVALID_REQUEST", "time_expire时间过短: 已过期"));
    }
    let order = Order {
        out_trade_no: out_trade_no.to_owned(),
        total_fee,
        notify_url: get("notify_url").to_owned(),
        attach: value(fields, "attach").map(str::to_owned),
        device_info: value(fields, "device_info").map(str::to_owned),
        sign_type,
        prepay_id: format!(
            "wx{}{}",
            format_beijing(now),
            random_alnum(18).to_lowercase()
        ),
        code_url: format!("weixin://wxpay/bizpayurl?pr={}", random_alnum(7)),
        created: tokio::time::Instant::now(),
        time_expire,
        state: TradeState::NotPay,
        paid: None,
        business,
        notifications_attempted: 0,
        notifications_acknowledged: 0,
        notify_status: NotifyStatus::None,
    };
    let answer = prepay_answer(&order);
    state.orders.insert(out_trade_no.to_owned(), order);
    Ok(answer)
}

/// Request fields that are not business parameters (may change on re-entry).
const ENVELOPE_FIELDS: [&str; 6] = [
    "appid",
    "mch_id",
    "nonce_str",
    "sign",
    "sign_type",
    "spbill_create_ip",
];

fn prepay_answer(order: &Order) -> Fields {
    build([
        ("trade_type", "NATIVE"),
        ("prepay_id", &order.prepay_id),
        ("code_url", &order.code_url),
    ])
}

fn orderquery(sim: &WxPaySim, fields: &Fields) -> Result<Fields, BizError> {
    let now = beijing_now();
    let mut guard = sim.lock();
    let state = &mut *guard;
    let key = match (
        value(fields, "transaction_id"),
        value(fields, "out_trade_no"),
    ) {
        (Some(transaction_id), _) => state.by_transaction.get(transaction_id).cloned(),
        (None, Some(out_trade_no)) => Some(out_trade_no.to_owned()),
        (None, None) => {
            return Err(biz(
                "LACK_PARAMS",
                "缺少参数: transaction_id 或 out_trade_no",
            ));
        }
    };
    let order = key
        .and_then(|key| state.orders.get_mut(&key))
        .ok_or_else(|| biz("ORDERNOTEXIST", "此交易订单号不存在"))?;
    order.expire_if_due(now);
    let mut answer = build([
        ("trade_state", order.state.trade_state()),
        ("trade_state_desc", order.state.trade_state_desc()),
        ("out_trade_no", &order.out_trade_no),
    ]);
    if let Some(attach) = &order.attach {
        answer.insert("attach".into(), attach.clone());
    }
    if let (TradeState::Success, Some(paid)) = (order.state, &order.paid) {
        let total_fee = order.total_fee.to_string();
        answer.extend(build([
            ("openid", paid.openid.as_str()),
            ("is_subscribe", "N"),
            ("trade_type", "NATIVE"),
            ("bank_type", "OTHERS"),
            ("total_fee", &total_fee),
            ("fee_type", "CNY"),
            ("cash_fee", &total_fee),
            ("cash_fee_type", "CNY"),
            ("transaction_id", &paid.transaction_id),
            ("time_end", &paid.time_end),
        ]));
    }
    Ok(answer)
}

fn closeorder(sim: &WxPaySim, fields: &Fields) -> Result<Fields, BizError> {
    require(fields, &["out_trade_no"])?;
    let out_trade_no = value(fields, "out_trade_no").unwrap_or_default();
    let now = beijing_now();
    let mut state = sim.lock();
    let order = state
        .orders
        .get_mut(out_trade_no)
        .ok_or_else(|| biz("ORDERNOTEXIST", "订单不存在"))?;
    order.expire_if_due(now);
    match order.state {
        TradeState::Success => Err(biz("ORDERPAID", "订单已支付，不能发起关单")),
        TradeState::Closed(_) => Err(biz("ORDERCLOSED", "订单已关闭，无法重复关闭")),
        TradeState::NotPay if order.created.elapsed() < sim.config.min_close_interval => Err(biz(
            "SYSTEMERROR",
            format!(
                "订单创建后{}内不能关单",
                describe_interval(sim.config.min_close_interval)
            ),
        )),
        TradeState::NotPay => {
            order.state = TradeState::Closed(CloseReason::CloseOrder);
            Ok(build([("result_msg", "OK")]))
        }
    }
}

/// "5分钟" for whole minutes, else seconds ("0.2秒").
pub(super) fn describe_interval(interval: Duration) -> String {
    let secs = interval.as_secs();
    if interval.subsec_nanos() == 0 && secs.is_multiple_of(60) && secs > 0 {
        format!("{}分钟", secs / 60)
    } else {
        format!("{}秒", interval.as_secs_f64())
    }
}

/// A signed `return_code SUCCESS` answer.
fn answer(sim: &WxPaySim, envelope: &Envelope, outcome: Result<Fields, BizError>) -> Response {
    let mut answer = build([
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", &envelope.appid),
        ("mch_id", &envelope.mch_id),
    ]);
    answer.insert("nonce_str".into(), random_alnum(32));
    if let Some(device_info) = &envelope.device_info {
        answer.insert("device_info".into(), device_info.clone());
    }
    match outcome {
        Ok(extra) => {
            answer.insert("result_code".into(), "SUCCESS".into());
            answer.extend(extra);
        }
        Err(err) => {
            answer.insert("result_code".into(), "FAIL".into());
            answer.insert("err_code".into(), err.code.into());
            answer.insert("err_code_des".into(), err.des);
        }
    }
    if envelope.echo_sign_type {
        answer.insert("sign_type".into(), envelope.sign_type.as_str().into());
    }
    let signature = sign::sign(&answer, &sim.config.key, envelope.sign_type);
    answer.insert("sign".into(), signature);
    xml_response(&answer)
}

/// A `return_code FAIL` answer: unsigned, only `return_msg`.
fn protocol_fail(msg: &str) -> Response {
    xml_response(&build([("return_code", "FAIL"), ("return_msg", msg)]))
}

fn xml_response(fields: &Fields) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], xml::to_xml(fields)).into_response()
}

fn build<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Fields {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// A field's value; empty counts as absent (as in signing).
fn value<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

fn require(fields: &Fields, names: &[&str]) -> Result<(), BizError> {
    match names.iter().find(|name| value(fields, name).is_none()) {
        Some(name) => Err(biz("LACK_PARAMS", format!("缺少参数{name}"))),
        None => Ok(()),
    }
}

/// At most `max` characters (when present).
fn check_len(fields: &Fields, name: &str, max: usize) -> Result<(), BizError> {
    match value(fields, name) {
        Some(raw) if raw.chars().count() > max => Err(biz(
            "INVALID_REQUEST",
            format!("{name} 字段长度超过限制 ({max})"),
        )),
        _ => Ok(()),
    }
}

/// ≤32 characters of `[0-9A-Za-z_\-|*]`.
fn check_out_trade_no(raw: &str) -> Result<(), BizError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '|' | '*');
    if raw.len() > 32 || !raw.chars().all(allowed) {
        return Err(biz(
            "INVALID_REQUEST",
            "out_trade_no 参数格式错误: 32个字符以内，只能是数字、大小写字母_-|*",
        ));
    }
    Ok(())
}

/// An absolute http(s) URL without query string (or fragment), ≤256 characters.
fn check_notify_url(raw: &str) -> Result<(), BizError> {
    let ok = raw.len() <= 256
        && url::Url::parse(raw).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && url.fragment().is_none()
        });
    if ok {
        Ok(())
    } else {
        Err(biz(
            "INVALID_REQUEST",
            "notify_url 参数错误: 必须是完整的http(s)地址，不能携带参数",
        ))
    }
}
