//! WeChat Pay API v2, Native payment "mode 2" (扫码支付模式二): signing, the flat `<xml>`
//! documents, the client (`unifiedorder`, `orderquery`, `closeorder`), notification
//! parsing, and `sim`, a simulator of WeChat's side for development, demos and tests.
//! See docs/payments.md.

pub mod client;
pub mod notify;
pub mod sign;
pub mod sim;
pub mod xml;

use std::collections::BTreeMap;

pub use client::{
    CloseOutcome, NativeOrder, PaidTrade, PaymentGateway, Prepay, TradeState, WxError, WxPayClient,
    WxPayConfig,
};

/// A flat WeChat message: field name → value, sorted by name (the order signing needs).
pub type Fields = BTreeMap<String, String>;

/// `sign_type`: which algorithm signs a message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
pub enum SignType {
    /// `MD5` (WeChat's default when `sign_type` is absent).
    #[value(name = "md5")]
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`, keyed with the API key.
    #[value(name = "hmac-sha256")]
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    /// The value of the `sign_type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    pub fn parse(raw: &str) -> Option<SignType> {
        match raw {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}
