//! Payment notifications: POSTed to the order's `notify_url` until the merchant answers
//! `return_code SUCCESS`, on WeChat's schedule (scaled by `notify_time_scale`), with the
//! notification faults applied at each delivery.

use std::sync::Weak;
use std::time::Duration;

use axum::http::header;

use super::{NotifyStatus, Order, WxPaySim, random_alnum};
use crate::wxpay::{Fields, SignType, sign, xml};

/// How long WeChat waits for the merchant's answer.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

/// The waits before each retry after the first delivery (15 retries, 24 h 4 min in all).
pub(super) const RETRY_SCHEDULE_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// Delivers the order's notification: at once, then after each wait of the schedule until
/// acknowledged; stops if the simulator is dropped.
pub(super) async fn deliver(sim: Weak<WxPaySim>, out_trade_no: String) {
    for round in 0..=RETRY_SCHEDULE_SECS.len() {
        if round > 0 {
            let Some(scale) = sim.upgrade().map(|sim| sim.config.notify_time_scale) else {
                return;
            };
            tokio::time::sleep(scaled(RETRY_SCHEDULE_SECS[round - 1], scale)).await;
        }
        let Some(sim) = sim.upgrade() else { return };
        match deliver_once(&sim, &out_trade_no).await {
            Some(true) => {
                set_status(&sim, &out_trade_no, NotifyStatus::Acknowledged);
                return;
            }
            Some(false) => {}
            None => return,
        }
    }
    if let Some(sim) = sim.upgrade() {
        tracing::warn!(
            out_trade_no,
            "wxpay sim: notification never acknowledged; giving up"
        );
        set_status(&sim, &out_trade_no, NotifyStatus::GaveUp);
    }
}

/// `secs × scale`; a nonsensical scale counts as 1.
pub(super) fn scaled(secs: u64, scale: f64) -> Duration {
    let scale = if scale.is_finite() && scale >= 0.0 {
        scale
    } else {
        1.0
    };
    Duration::try_from_secs_f64(secs as f64 * scale).unwrap_or(Duration::MAX)
}

fn set_status(sim: &WxPaySim, out_trade_no: &str, status: NotifyStatus) {
    if let Some(order) = sim.lock().orders.get_mut(out_trade_no) {
        order.notify_status = status;
    }
}

/// One delivery. `Some(acknowledged)`, or `None` if the order is gone or unpaid.
async fn deliver_once(sim: &WxPaySim, out_trade_no: &str) -> Option<bool> {
    let delay = sim.lock().faults.notification_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (url, body, copies) = {
        let mut guard = sim.lock();
        let state = &mut *guard;
        let faults = state.faults.clone();
        let order = state.orders.get_mut(out_trade_no)?;
        let fields = notification(sim, order, faults.omit_sign_type)?;
        let dropped = if faults.drop_all_notifications {
            true
        } else if state.faults.drop_next_notifications > 0 {
            state.faults.drop_next_notifications -= 1;
            true
        } else {
            false
        };
        if dropped {
            order.notifications_attempted += 1;
            tracing::info!(out_trade_no, "wxpay sim: notification dropped (fault)");
            return Some(false);
        }
        let copies: u32 = if faults.duplicate_notifications { 2 } else { 1 };
        order.notifications_attempted += copies;
        (order.notify_url.clone(), xml::to_xml(&fields), copies)
    };
    let acks = if copies == 2 {
        let (a, b) = tokio::join!(post(sim, &url, &body), post(sim, &url, &body));
        u32::from(a) + u32::from(b)
    } else {
        u32::from(post(sim, &url, &body).await)
    };
    if let Some(order) = sim.lock().orders.get_mut(out_trade_no) {
        order.notifications_acknowledged += acks;
    }
    Some(acks > 0)
}

/// The signed notification of a paid order.
fn notification(sim: &WxPaySim, order: &Order, omit_sign_type: bool) -> Option<Fields> {
    let paid = order.paid.as_ref()?;
    let total_fee = order.total_fee.to_string();
    let mut fields: Fields = [
        ("return_code", "SUCCESS"),
        ("appid", sim.config.appid.as_str()),
        ("mch_id", sim.config.mch_id.as_str()),
        ("result_code", "SUCCESS"),
        ("openid", paid.openid.as_str()),
        ("is_subscribe", "N"),
        ("trade_type", "NATIVE"),
        ("bank_type", "OTHERS"),
        ("total_fee", total_fee.as_str()),
        ("fee_type", "CNY"),
        ("cash_fee", total_fee.as_str()),
        ("transaction_id", paid.transaction_id.as_str()),
        ("out_trade_no", order.out_trade_no.as_str()),
        ("time_end", paid.time_end.as_str()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    fields.insert("nonce_str".into(), random_alnum(32));
    if let Some(attach) = &order.attach {
        fields.insert("attach".into(), attach.clone());
    }
    if let Some(device_info) = &order.device_info {
        fields.insert("device_info".into(), device_info.clone());
    }
    if order.sign_type == SignType::HmacSha256 && !omit_sign_type {
        fields.insert("sign_type".into(), order.sign_type.as_str().into());
    }
    let signature = sign::sign(&fields, &sim.config.key, order.sign_type);
    fields.insert("sign".into(), signature);
    Some(fields)
}

/// One POST; whether the merchant answered XML with `return_code SUCCESS`.
async fn post(sim: &WxPaySim, url: &str, body: &str) -> bool {
    let Some(http) = &sim.http else { return false };
    let response = http
        .post(url)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(body.to_owned())
        .send()
        .await;
    let mut response = match response {
        Ok(response) => response,
        Err(err) => {
            tracing::info!(url, %err, "wxpay sim: notification not delivered");
            return false;
        }
    };
    let mut answer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                answer.extend_from_slice(&chunk);
                if answer.len() > xml::MAX_XML_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(err) => {
                tracing::info!(url, %err, "wxpay sim: notification answer unreadable");
                return false;
            }
        }
    }
    let acknowledged = std::str::from_utf8(&answer)
        .ok()
        .and_then(|text| xml::parse(text).ok())
        .is_some_and(|fields| {
            fields
                .get("return_code")
                .is_some_and(|code| code == "SUCCESS")
        });
    if !acknowledged {
        tracing::info!(url, answer = %String::from_utf8_lossy(&answer), "wxpay sim: notification refused");
    }
    acknowledged
}
