//! `WxPayClient`: the merchant's side of `unifiedorder`, `orderquery` and `closeorder`.
//! Every answer is checked in WeChat's order: `return_code` (protocol), then the
//! signature (with the request's sign type), appid and mch_id, then `result_code` and
//! `err_code`. Transport failures and `SYSTEMERROR` are retried a bounded number of times
//! with the very same request, as WeChat asks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use super::{Fields, SignType, sign, xml};

/// How to reach WeChat Pay and who we are there.
#[derive(Clone)]
pub struct WxPayConfig {
    /// `https://api.mch.weixin.qq.com` in production; the simulator's URL otherwise.
    pub base_url: String,
    pub appid: String,
    pub mch_id: String,
    /// The 32-character API key: signs everything. Never logged (see the Debug impl).
    pub key: String,
    pub sign_type: SignType,
    /// Where WeChat posts payment notifications: absolute, no query string.
    pub notify_url: String,
    /// `spbill_create_ip`: for Native payments, the IP of the machine calling the API.
    pub spbill_create_ip: String,
    /// `body`: the short description shown to the payer.
    pub body: String,
    /// How long one call may take (connecting included) before it counts as unanswered.
    pub timeout: Duration,
}

impl std::fmt::Debug for WxPayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxPayConfig")
            .field("base_url", &self.base_url)
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("key", &"***")
            .field("sign_type", &self.sign_type)
            .field("notify_url", &self.notify_url)
            .finish()
    }
}

/// A Native order to create: `out_trade_no` and `product_id` are the order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOrder {
    pub out_trade_no: String,
    pub total_fee: i64,
    /// The saga's payment deadline; WeChat refuses payment after it.
    pub time_expire: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepay {
    pub prepay_id: String,
    /// `weixin://wxpay/bizpayurl?...`, valid 2 h: what the QR code encodes.
    pub code_url: String,
}

/// A successful payment as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidTrade {
    pub transaction_id: String,
    pub total_fee: i64,
    pub paid_at_ms: i64,
}

/// `trade_state` of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    Success(PaidTrade),
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
    Accept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    /// `ORDERPAID`: cannot close; the order was paid (take the payment path).
    AlreadyPaid,
    /// `ORDERCLOSED`: closed before.
    AlreadyClosed,
    /// `ORDERNOTEXIST`: WeChat never created it.
    NotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WxError {
    /// No answer (connection, timeout) or an unreadable one: the outcome is unknown.
    #[error("WeChat Pay did not answer: {0}")]
    Transport(String),
    /// `return_code = FAIL`: the request itself was refused (signature, format).
    #[error("WeChat Pay refused the request: {0}")]
    Protocol(String),
    /// The answer's signature, appid or mch_id did not check out: it is not trusted.
    #[error("WeChat Pay's answer failed verification: {0}")]
    Untrusted(String),
    /// `result_code = FAIL` with this `err_code`.
    #[error("WeChat Pay: {code} ({description})")]
    Business { code: String, description: String },
}

impl WxError {
    /// Worth repeating with the same parameters (WeChat's advice for SYSTEMERROR).
    pub fn is_retryable(&self) -> bool {
        match self {
            WxError::Transport(_) => true,
            WxError::Business { code, .. } => code == "SYSTEMERROR",
            WxError::Protocol(_) | WxError::Untrusted(_) => false,
        }
    }

    pub fn err_code(&self) -> Option<&str> {
        match self {
            WxError::Business { code, .. } => Some(code),
            WxError::Transport(_) | WxError::Protocol(_) | WxError::Untrusted(_) => None,
        }
    }
}

/// The payment provider as the saga sees it.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Creates (or, with identical parameters, re-enters) the Native order.
    async fn create_native(&self, order: &NativeOrder) -> Result<Prepay, WxError>;
    async fn query(&self, out_trade_no: &str) -> Result<TradeState, WxError>;
    async fn close(&self, out_trade_no: &str) -> Result<CloseOutcome, WxError>;
}

#[derive(Clone)]
pub struct WxPayClient {
    http: reqwest::Client,
    config: Arc<WxPayConfig>,
    /// Attempts per call for retryable failures (1 = no retry).
    attempts: u32,
}

/// WeChat's timestamps are Beijing time, `yyyyMMddHHmmss`.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

pub fn to_wx_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

pub fn from_wx_time(raw: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(raw, "%Y%m%d%H%M%S").ok()?;
    beijing()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

impl WxPayClient {
    pub fn new(config: WxPayConfig) -> anyhow::Result<WxPayClient> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(2)))
            .build()?;
        Ok(WxPayClient {
            http,
            config: Arc::new(config),
            attempts: 3,
        })
    }

    pub fn config(&self) -> &WxPayConfig {
        &self.config
    }

    /// Signs and sends `fields` to `path`, retrying retryable failures with the same body.
    async fn call(&self, path: &str, mut fields: Fields) -> Result<Fields, WxError> {
        let cfg = &self.config;
        fields.insert("appid".into(), cfg.appid.clone());
        fields.insert("mch_id".into(), cfg.mch_id.clone());
        fields.insert(
            "nonce_str".into(),
            uuid::Uuid::new_v4().simple().to_string(),
        );
        if cfg.sign_type == SignType::HmacSha256 {
            fields.insert("sign_type".into(), cfg.sign_type.as_str().into());
        }
        let signature = sign::sign(&fields, &cfg.key, cfg.sign_type);
        fields.insert("sign".into(), signature);
        let body = xml::to_xml(&fields);
        let url = format!("{}{}", cfg.base_url.trim_end_matches('/'), path);
        let mut last = WxError::Transport("not attempted".into());
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 3u64.pow(attempt - 1))).await;
            }
            match self.send_once(&url, &body).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(path, attempt, error = %e, "WeChat Pay call failed; retrying with the same request");
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn send_once(&self, url: &str, body: &str) -> Result<Fields, WxError> {
        let cfg = &self.config;
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| WxError::Transport(e.to_string()))?;
        let text = resp
            .text()
            .await
            .map_err(|e| WxError::Transport(e.to_string()))?;
        let answer =
            xml::parse(&text).map_err(|e| WxError::Transport(format!("unreadable answer: {e}")))?;
        if answer.get("return_code").map(String::as_str) != Some("SUCCESS") {
            return Err(WxError::Protocol(
                answer.get("return_msg").cloned().unwrap_or_default(),
            ));
        }
        // Answers are signed with the request's sign type.
        if !sign::verify(&answer, &cfg.key, cfg.sign_type) {
            return Err(WxError::Untrusted("bad signature".into()));
        }
        if answer.get("appid") != Some(&cfg.appid) || answer.get("mch_id") != Some(&cfg.mch_id) {
            return Err(WxError::Untrusted("appid or mch_id differs".into()));
        }
        if answer.get("result_code").map(String::as_str) != Some("SUCCESS") {
            return Err(WxError::Business {
                code: answer
                    .get("err_code")
                    .cloned()
                    .unwrap_or_else(|| "UNKNOWN".into()),
                description: answer.get("err_code_des").cloned().unwrap_or_default(),
            });
        }
        Ok(answer)
    }
}

fn field(answer: &Fields, name: &str) -> Result<String, WxError> {
    answer
        .get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| WxError::Untrusted(format!("answer lacks `{name}`")))
}

/// The paid trade described by an orderquery answer or a notification.
pub fn paid_trade(fields: &Fields) -> Result<PaidTrade, WxError> {
    let total_fee = field(fields, "total_fee")?
        .parse::<i64>()
        .map_err(|_| WxError::Untrusted("total_fee is not an integer".into()))?;
    let time_end = field(fields, "time_end")?;
    let paid_at = from_wx_time(&time_end)
        .ok_or_else(|| WxError::Untrusted(format!("time_end `{time_end}`")))?;
    Ok(PaidTrade {
        transaction_id: field(fields, "transaction_id")?,
        total_fee,
        paid_at_ms: paid_at.timestamp_millis(),
    })
}

#[async_trait]
impl PaymentGateway for WxPayClient {
    async fn create_native(&self, order: &NativeOrder) -> Result<Prepay, WxError> {
        let cfg = &self.config;
        let fields: Fields = [
            ("body", cfg.body.clone()),
            ("out_trade_no", order.out_trade_no.clone()),
            ("product_id", order.out_trade_no.clone()),
            ("total_fee", order.total_fee.to_string()),
            ("spbill_create_ip", cfg.spbill_create_ip.clone()),
            ("notify_url", cfg.notify_url.clone()),
            ("trade_type", "NATIVE".into()),
            ("time_expire", to_wx_time(order.time_expire)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let answer = self.call("/pay/unifiedorder", fields).await?;
        Ok(Prepay {
            prepay_id: field(&answer, "prepay_id")?,
            code_url: field(&answer, "code_url")?,
        })
    }

    async fn query(&self, out_trade_no: &str) -> Result<TradeState, WxError> {
        let fields: Fields = [("out_trade_no".to_owned(), out_trade_no.to_owned())]
            .into_iter()
            .collect();
        let answer = self.call("/pay/orderquery", fields).await?;
        Ok(match field(&answer, "trade_state")?.as_str() {
            "SUCCESS" => TradeState::Success(paid_trade(&answer)?),
            "REFUND" => TradeState::Refund,
            "NOTPAY" => TradeState::NotPay,
            "CLOSED" => TradeState::Closed,
            "REVOKED" => TradeState::Revoked,
            "USERPAYING" => TradeState::UserPaying,
            "PAYERROR" => TradeState::PayError,
            "ACCEPT" => TradeState::Accept,
            other => return Err(WxError::Untrusted(format!("unknown trade_state `{other}`"))),
        })
    }

    async fn close(&self, out_trade_no: &str) -> Result<CloseOutcome, WxError> {
        let fields: Fields = [("out_trade_no".to_owned(), out_trade_no.to_owned())]
            .into_iter()
            .collect();
        match self.call("/pay/closeorder", fields).await {
            Ok(_) => Ok(CloseOutcome::Closed),
            Err(e) => match e.err_code() {
                Some("ORDERPAID") => Ok(CloseOutcome::AlreadyPaid),
                Some("ORDERCLOSED") => Ok(CloseOutcome::AlreadyClosed),
                Some("ORDERNOTEXIST") => Ok(CloseOutcome::NotExist),
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_times_are_beijing_time() {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 16, 30, 0).unwrap();
        assert_eq!(to_wx_time(t), "20261205003000");
        assert_eq!(from_wx_time("20261205003000"), Some(t));
        assert_eq!(from_wx_time("2026-12-05"), None);
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let cfg = WxPayConfig {
            base_url: "x".into(),
            appid: "a".into(),
            mch_id: "m".into(),
            key: "SECRET-KEY-SECRET-KEY-SECRET-KEY".into(),
            sign_type: SignType::Md5,
            notify_url: "n".into(),
            spbill_create_ip: "127.0.0.1".into(),
            body: "b".into(),
            timeout: Duration::from_secs(5),
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
    }
}
