//! `WxPaySim`: WeChat Pay's side of API v2 Native "mode 2", for development, demos and
//! tests (there is no official sandbox for Native any more; see
//! `shared/WECHATPAY-V2.md` §9).
//!
//! - `POST /pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder`: the real paths, fields,
//!   signatures (MD5 and HMAC-SHA256) and error codes, XML in and out ([`api`]).
//! - `POST /sim/pay`: the shopper scans the QR code and pays; the payment notification is
//!   then POSTed to the order's `notify_url` on WeChat's retry schedule ([`notify`]).
//! - `GET`/`POST /sim/faults`: switch on failures (dropped, duplicated, delayed or
//!   `sign_type`-less notifications, `SYSTEMERROR`s and timeouts from the query APIs).
//! - `GET /sim/orders/{out_trade_no}`: what the simulator knows about an order.
//!
//! All state is in memory behind one `std::sync::Mutex`, never held across an `.await`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ordersaga::wxpay::sim::{SimConfig, WxPaySim};
//! let sim = WxPaySim::new(SimConfig::default());
//! // The client's base URL is then http://127.0.0.1:8090/wxpay (…/wxpay/pay/unifiedorder).
//! let app = axum::Router::new().nest("/wxpay", sim.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod api;
mod notify;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chrono::NaiveDateTime;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use super::{Fields, SignType};

/// What the simulated WeChat Pay knows about its one merchant, and how fast it runs.
#[derive(Clone)]
pub struct SimConfig {
    pub appid: String,
    pub mch_id: String,
    /// The merchant's API key, which signs everything in both directions.
    pub key: String,
    /// closeorder refuses to close an order younger than this (WeChat: 5 minutes)
    pub min_close_interval: std::time::Duration,
    /// multiplies the notification retry delays (1.0 = WeChat's real schedule; tests use e.g. 0.001)
    pub notify_time_scale: f64,
}

impl Default for SimConfig {
    /// The identifiers and key of WeChat's published signature example, the real 5-minute
    /// close rule and the real retry schedule.
    fn default() -> Self {
        SimConfig {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            key: "192006250b4c09247ec02edce69f6a2d".into(),
            min_close_interval: Duration::from_secs(5 * 60),
            notify_time_scale: 1.0,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("key", &"<redacted>")
            .field("min_close_interval", &self.min_close_interval)
            .field("notify_time_scale", &self.notify_time_scale)
            .finish()
    }
}

/// Failures to inject. Every field defaults to "off"; `POST /sim/faults` replaces the
/// whole set (fields left out are off).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// The next N notification deliveries (over all orders) are silently not sent; each
    /// counts as one attempt and the retry schedule goes on.
    pub drop_next_notifications: u32,
    /// No notification is sent while this is on (each delivery still counts as an attempt).
    pub drop_all_notifications: bool,
    /// Each delivery is POSTed twice at once, as from two WeChat servers.
    pub duplicate_notifications: bool,
    /// Waited before each delivery.
    pub notification_delay_ms: u64,
    /// Notifications of HMAC-SHA256 orders leave `sign_type` out (and the signature is
    /// computed without it), as WeChat sometimes does.
    pub omit_sign_type: bool,
    pub orderquery: Option<ApiFault>,
    pub closeorder: Option<ApiFault>,
}

/// How an API call fails while the fault is set.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApiFault {
    /// `result_code FAIL`, `err_code SYSTEMERROR` (signed answer; nothing changes).
    SystemError,
    /// Sleep 30 s before handling the call (the client times out first; a client that
    /// hangs up never gets the call handled).
    Timeout,
}

/// A payment made with [`WxPaySim::pay`] or `POST /sim/pay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimPayment {
    pub transaction_id: String,
    pub total_fee: i64,
    /// `yyyyMMddHHmmss`, Beijing time.
    pub time_end: String,
}

/// Why the shopper could not pay.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no order with out_trade_no `{0}`")]
    NotFound(String),
    #[error("order `{0}` is already paid")]
    AlreadyPaid(String),
    #[error("order `{0}` is closed")]
    Closed(String),
    #[error("order `{0}` is past its time_expire")]
    Expired(String),
}

/// What the simulator knows about an order (`GET /sim/orders/{out_trade_no}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimOrderView {
    pub out_trade_no: String,
    pub total_fee: i64,
    /// `NOTPAY`, `SUCCESS` or `CLOSED` (the orderquery `trade_state`).
    pub state: String,
    pub transaction_id: Option<String>,
    pub time_end: Option<String>,
    /// The `sign_type` of the unifiedorder that created the order (`MD5` or
    /// `HMAC-SHA256`): it signs the notifications.
    pub sign_type: String,
    pub prepay_id: String,
    pub code_url: String,
    pub notify_url: String,
    pub time_expire: Option<String>,
    /// Notification POSTs made (a dropped delivery counts as one; a duplicated one as two).
    pub notifications_attempted: u32,
    /// Notification POSTs answered with `return_code SUCCESS`.
    pub notifications_acknowledged: u32,
    /// `NONE` (not paid), `PENDING` (delivering or waiting to retry), `ACKNOWLEDGED`,
    /// `GAVE_UP` (the schedule ran out).
    pub notification_status: String,
}

/// WeChat Pay's side of API v2 Native mode 2. See the module docs.
pub struct WxPaySim {
    config: SimConfig,
    state: Mutex<State>,
    /// `None` only if the HTTP client could not be built; notifications then fail.
    http: Option<reqwest::Client>,
    me: Weak<WxPaySim>,
}

impl WxPaySim {
    pub fn new(config: SimConfig) -> Arc<WxPaySim> {
        let http = reqwest::Client::builder()
            .timeout(notify::TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|err| tracing::error!(%err, "wxpay sim: cannot build the HTTP client"))
            .ok();
        Arc::new_cyclic(|me| WxPaySim {
            config,
            state: Mutex::new(State::default()),
            http,
            me: me.clone(),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Routes relative to where it is mounted: POST /pay/unifiedorder, /pay/orderquery,
    /// /pay/closeorder (XML in, XML out), POST /sim/pay (JSON `{"outTradeNo": ".."}` or
    /// form `out_trade_no=..`) = the shopper scans and pays, GET/POST /sim/faults (JSON),
    /// GET /sim/orders/{out_trade_no} (JSON [`SimOrderView`]).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self)
    }

    /// The shopper pays the order (same as `POST /sim/pay`); the notification is then
    /// delivered in a background task.
    pub async fn pay(&self, out_trade_no: &str) -> Result<SimPayment, SimError> {
        let payment = self.settle(out_trade_no)?;
        match self.me.upgrade() {
            Some(me) => {
                tokio::spawn(notify::deliver(
                    Arc::downgrade(&me),
                    out_trade_no.to_owned(),
                ));
            }
            None => tracing::warn!("wxpay sim: dropped while paying; no notification"),
        }
        Ok(payment)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// The order as the simulator sees it (an unpaid order past its `time_expire` shows as
    /// closed).
    pub fn order(&self, out_trade_no: &str) -> Option<SimOrderView> {
        let mut state = self.lock();
        let order = state.orders.get_mut(out_trade_no)?;
        order.expire_if_due(beijing_now());
        Some(order.view())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the order paid.
    fn settle(&self, out_trade_no: &str) -> Result<SimPayment, SimError> {
        let now = beijing_now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(order) = state.orders.get_mut(out_trade_no) else {
            return Err(SimError::NotFound(out_trade_no.to_owned()));
        };
        order.expire_if_due(now);
        match order.state {
            TradeState::Success => return Err(SimError::AlreadyPaid(out_trade_no.to_owned())),
            TradeState::Closed(CloseReason::Expired) => {
                return Err(SimError::Expired(out_trade_no.to_owned()));
            }
            TradeState::Closed(CloseReason::CloseOrder) => {
                return Err(SimError::Closed(out_trade_no.to_owned()));
            }
            TradeState::NotPay => {}
        }
        let paid = Paid {
            transaction_id: transaction_id(now),
            time_end: format_beijing(now),
            openid: format!("o{}", random_alnum(27)),
        };
        let payment = SimPayment {
            transaction_id: paid.transaction_id.clone(),
            total_fee: order.total_fee,
            time_end: paid.time_end.clone(),
        };
        state
            .by_transaction
            .insert(paid.transaction_id.clone(), out_trade_no.to_owned());
        order.state = TradeState::Success;
        order.paid = Some(paid);
        order.notify_status = NotifyStatus::Pending;
        Ok(payment)
    }
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Order>,
    /// transaction_id → out_trade_no
    by_transaction: HashMap<String, String>,
    faults: Faults,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TradeState {
    NotPay,
    Success,
    Closed(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    CloseOrder,
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotifyStatus {
    None,
    Pending,
    Acknowledged,
    GaveUp,
}

struct Paid {
    transaction_id: String,
    time_end: String,
    openid: String,
}

struct Order {
    out_trade_no: String,
    /// The unifiedorder's business parameters (everything but the envelope: appid, mch_id,
    /// nonce_str, sign, sign_type, spbill_create_ip), compared on re-entry.
    business: Fields,
    total_fee: i64,
    notify_url: String,
    attach: Option<String>,
    device_info: Option<String>,
    sign_type: SignType,
    prepay_id: String,
    code_url: String,
    created: tokio::time::Instant,
    /// As sent, and as Beijing local time.
    time_expire: Option<(String, NaiveDateTime)>,
    state: TradeState,
    paid: Option<Paid>,
    notifications_attempted: u32,
    notifications_acknowledged: u32,
    notify_status: NotifyStatus,
}

impl Order {
    /// Closes the order if it is unpaid and its `time_expire` has come.
    fn expire_if_due(&mut self, beijing_now: NaiveDateTime) {
        if self.state == TradeState::NotPay
            && self
                .time_expire
                .as_ref()
                .is_some_and(|(_, at)| beijing_now >= *at)
        {
            self.state = TradeState::Closed(CloseReason::Expired);
        }
    }

    fn view(&self) -> SimOrderView {
        SimOrderView {
            out_trade_no: self.out_trade_no.clone(),
            total_fee: self.total_fee,
            state: self.state.trade_state().to_owned(),
            transaction_id: self.paid.as_ref().map(|p| p.transaction_id.clone()),
            time_end: self.paid.as_ref().map(|p| p.time_end.clone()),
            sign_type: self.sign_type.as_str().to_owned(),
            prepay_id: self.prepay_id.clone(),
            code_url: self.code_url.clone(),
            notify_url: self.notify_url.clone(),
            time_expire: self.time_expire.as_ref().map(|(raw, _)| raw.clone()),
            notifications_attempted: self.notifications_attempted,
            notifications_acknowledged: self.notifications_acknowledged,
            notification_status: match self.notify_status {
                NotifyStatus::None => "NONE",
                NotifyStatus::Pending => "PENDING",
                NotifyStatus::Acknowledged => "ACKNOWLEDGED",
                NotifyStatus::GaveUp => "GAVE_UP",
            }
            .to_owned(),
        }
    }
}

impl TradeState {
    fn trade_state(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Closed(_) => "CLOSED",
        }
    }

    fn trade_state_desc(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Closed(_) => "订单已关闭",
        }
    }
}

const TIMESTAMP_FORMAT: &str = "%Y%m%d%H%M%S";

/// The wall clock in Beijing (UTC+8), without offset: what `time_end`/`time_expire` mean.
fn beijing_now() -> NaiveDateTime {
    (chrono::Utc::now() + chrono::TimeDelta::hours(8)).naive_utc()
}

fn format_beijing(at: NaiveDateTime) -> String {
    at.format(TIMESTAMP_FORMAT).to_string()
}

/// A `yyyyMMddHHmmss` timestamp (exactly 14 digits).
fn parse_beijing(raw: &str) -> Option<NaiveDateTime> {
    if raw.len() != 14 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(raw, TIMESTAMP_FORMAT).ok()
}

fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// 28 digits like WeChat's: `4200`, 6 digits, the Beijing date, 10 digits.
fn transaction_id(beijing_now: NaiveDateTime) -> String {
    format!(
        "4200{}{}{}",
        random_digits(6),
        beijing_now.format("%Y%m%d"),
        random_digits(10)
    )
}
