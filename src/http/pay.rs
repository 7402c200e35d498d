//! Paying an order: the WeChat Native order behind the pay page, its QR code, the status
//! the page polls, and WeChat's payment notification.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, QueryParams, ok};
use crate::actors::{NativeError, NativeInfo};
use crate::auth::Principal;
use crate::domain::{Money, OrderId};
use crate::workflows::checkout::{Event, Outcome, Payment, SagaState};
use crate::wxpay::notify::{self, REPLY_SUCCESS, reply_fail};
use crate::wxpay::xml::MAX_XML_BYTES;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/pay/native", get(native))
        .route("/api/pay/qrcode", get(qrcode))
        .route("/api/pay/status", get(status))
        .route(
            "/api/pay/notify/wechat",
            post(notify_wechat).layer(DefaultBodyLimit::max(MAX_XML_BYTES)),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderParam {
    order_id: Option<String>,
}

/// The order named by `?orderId=`, if the caller owns it (404 otherwise).
pub async fn owned(
    app: &AppState,
    user: &Principal,
    raw: Option<&str>,
) -> Result<SagaState, ApiError> {
    let order: OrderId = raw
        .ok_or_else(|| ApiError::invalid("orderId", "missing"))?
        .parse()?;
    match app.db.load_saga(order).await? {
        Some(s) if s.state.request.username == user.username.as_str() => Ok(s.state),
        _ => Err(ApiError::NotFound(format!("no order {order}"))),
    }
}

/// Creates the WeChat order on first use; the same `code_url` afterwards.
pub async fn native_info(app: &AppState, order: OrderId) -> Result<NativeInfo, ApiError> {
    match app.sagas.native(order).await? {
        Ok(info) => Ok(info),
        Err(NativeError::NotPayable(state)) => Err(ApiError::Conflict(format!(
            "order {order} cannot be paid: it is {state}"
        ))),
        Err(NativeError::Gateway(e)) => Err(ApiError::Remote(e.to_string())),
    }
}

async fn native(
    State(app): State<AppState>,
    user: Principal,
    QueryParams(p): QueryParams<OrderParam>,
) -> Result<Response, ApiError> {
    let saga = owned(&app, &user, p.order_id.as_deref()).await?;
    let info = native_info(&app, saga.request.order_id).await?;
    Ok(ok(
        "WeChat Native order ready",
        serde_json::json!({
            "codeUrl": info.code_url,
            "outTradeNo": info.out_trade_no,
            "totalFee": info.total_fee,
            "payDeadline": crate::store::orders::ms_to_time(info.deadline_at_ms).to_rfc3339(),
        }),
    ))
}

/// The `code_url` as an SVG QR code.
async fn qrcode(
    State(app): State<AppState>,
    user: Principal,
    QueryParams(p): QueryParams<OrderParam>,
) -> Result<Response, ApiError> {
    let saga = owned(&app, &user, p.order_id.as_deref()).await?;
    let info = native_info(&app, saga.request.order_id).await?;
    let code = qrcode::QrCode::new(info.code_url.as_bytes())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        svg,
    )
        .into_response())
}

async fn status(
    State(app): State<AppState>,
    user: Principal,
    QueryParams(p): QueryParams<OrderParam>,
) -> Result<Response, ApiError> {
    let saga = owned(&app, &user, p.order_id.as_deref()).await?;
    Ok(ok("query succeeded", status_view(&saga)))
}

pub fn status_view(saga: &SagaState) -> serde_json::Value {
    serde_json::json!({
        "orderId": saga.request.order_id,
        "state": saga.phase.name(),
        "paid": saga.payment.is_some() && !matches!(saga.phase, crate::workflows::checkout::Phase::Compensated),
        "payMoney": saga.pay_money(),
        "payDeadline": crate::store::orders::ms_to_time(saga.deadline_at_ms()).to_rfc3339(),
        "transactionId": saga.payment.as_ref().map(|p| p.transaction_id.clone()),
    })
}

/// WeChat has 5 s for our answer; the saga gets 4 of them.
const NOTIFY_BUDGET: Duration = Duration::from_secs(4);

/// `POST /api/pay/notify/wechat`. Only a verified notification reaches the saga, which
/// checks the amount and the order's state (a wrong amount or a closed order becomes an
/// operator alert). SUCCESS is answered once the saga has recorded what it did, so a
/// duplicate is harmless and a crash before that makes WeChat send it again.
async fn notify_wechat(State(app): State<AppState>, body: Bytes) -> Response {
    let xml_reply = |status: StatusCode, body: String| {
        crate::metrics::notification(if status == StatusCode::OK {
            "accepted"
        } else {
            "rejected"
        });
        (
            status,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            body,
        )
            .into_response()
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return xml_reply(StatusCode::BAD_REQUEST, reply_fail("NOT_UTF8"));
    };
    let cfg = &app.wxpay;
    let notice = match notify::parse(text, &cfg.appid, &cfg.mch_id, &cfg.key) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "payment notification refused");
            return xml_reply(StatusCode::BAD_REQUEST, reply_fail(&e.to_string()));
        }
    };
    let Ok(order) = notice.out_trade_no.parse::<OrderId>() else {
        return xml_reply(StatusCode::NOT_FOUND, reply_fail("unknown out_trade_no"));
    };
    match app.db.saga_owner(order).await {
        Ok(Some(_)) => {}
        Ok(None) => return xml_reply(StatusCode::NOT_FOUND, reply_fail("unknown out_trade_no")),
        Err(e) => {
            tracing::error!(error = ?e, "notification: store unavailable");
            return xml_reply(StatusCode::SERVICE_UNAVAILABLE, reply_fail("try again"));
        }
    }
    let payment = Payment {
        transaction_id: notice.trade.transaction_id.clone(),
        amount: Money::from_fen(notice.trade.total_fee),
        paid_at_ms: notice.trade.paid_at_ms,
    };
    match tokio::time::timeout(
        NOTIFY_BUDGET,
        app.sagas
            .deliver(order, Event::PaymentConfirmed { payment }),
    )
    .await
    {
        Ok(Ok(outcome)) => {
            if outcome == Outcome::Alerted {
                tracing::warn!(%order, transaction_id = %notice.trade.transaction_id, "payment notification recorded as an operator alert");
            }
            xml_reply(StatusCode::OK, REPLY_SUCCESS.to_owned())
        }
        Ok(Err(e)) => {
            tracing::error!(%order, error = ?e, "notification not delivered to the saga");
            xml_reply(StatusCode::SERVICE_UNAVAILABLE, reply_fail("try again"))
        }
        Err(_) => xml_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            reply_fail("busy, try again"),
        ),
    }
}
