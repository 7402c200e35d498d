//! The payment notification WeChat posts to `notify_url`: strict parsing, signature (with
//! or without a `sign_type` element), appid and mch_id; and WeChat's exact replies.

use super::client::{PaidTrade, WxError, paid_trade};
use super::{SignType, sign, xml};

/// The exact acknowledgement WeChat expects; anything else means "send it again".
pub const REPLY_SUCCESS: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// A refusal: WeChat will retry on its schedule.
pub fn reply_fail(reason: &str) -> String {
    let reason = reason.replace("]]>", "]]]]><![CDATA[>");
    format!(
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[{reason}]]></return_msg></xml>"
    )
}

/// A verified notification of a successful payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotice {
    pub out_trade_no: String,
    pub trade: PaidTrade,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("notification for another merchant (appid or mch_id)")]
    WrongMerchant,
    #[error("not a successful payment")]
    NotSuccess,
}

/// Parses and verifies a notification. The algorithm is the `sign_type` element when
/// present (it is then part of the signed string); without it, the signature's length
/// tells (32 hex → MD5, 64 → HMAC-SHA256), as WeChat sends HMAC notifications with and
/// without the element.
pub fn parse(
    body: &str,
    appid: &str,
    mch_id: &str,
    key: &str,
) -> Result<PaymentNotice, NotifyError> {
    let fields = xml::parse(body).map_err(|e| NotifyError::Malformed(e.to_string()))?;
    if fields.get("return_code").map(String::as_str) != Some("SUCCESS") {
        return Err(NotifyError::NotSuccess);
    }
    let sign_type = match fields.get("sign_type") {
        Some(t) => {
            SignType::parse(t).ok_or_else(|| NotifyError::Malformed(format!("sign_type `{t}`")))?
        }
        None => match fields.get("sign").map(String::len) {
            Some(64) => SignType::HmacSha256,
            _ => SignType::Md5,
        },
    };
    if !sign::verify(&fields, key, sign_type) {
        return Err(NotifyError::BadSignature);
    }
    if fields.get("appid").map(String::as_str) != Some(appid)
        || fields.get("mch_id").map(String::as_str) != Some(mch_id)
    {
        return Err(NotifyError::WrongMerchant);
    }
    if fields.get("result_code").map(String::as_str) != Some("SUCCESS") {
        return Err(NotifyError::NotSuccess);
    }
    let out_trade_no = fields
        .get("out_trade_no")
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| NotifyError::Malformed("no out_trade_no".into()))?;
    let trade = paid_trade(&fields).map_err(|e: WxError| NotifyError::Malformed(e.to_string()))?;
    Ok(PaymentNotice {
        out_trade_no,
        trade,
    })
}
