//! The simulator's HTTP surface: the three XML APIs and the JSON `/sim/*` controls.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::json;

use super::api::{self, Api};
use super::{Faults, SimError, WxPaySim};

/// The project's envelope codes (as in `http::error::code`).
const CODE_OK: i32 = 20000;
const CODE_ERROR: i32 = 20001;
const CODE_REPEAT: i32 = 20005;

type Sim = State<Arc<WxPaySim>>;

pub(super) fn router(sim: &Arc<WxPaySim>) -> Router {
    Router::new()
        .route("/pay/unifiedorder", any(unifiedorder))
        .route("/pay/orderquery", any(orderquery))
        .route("/pay/closeorder", any(closeorder))
        .route("/sim/pay", post(pay))
        .route("/sim/faults", get(get_faults).post(set_faults))
        .route("/sim/orders/{out_trade_no}", get(order))
        .with_state(Arc::clone(sim))
}

async fn unifiedorder(State(sim): Sim, method: Method, body: Bytes) -> Response {
    api::handle(&sim, Api::UnifiedOrder, &method, &body).await
}

async fn orderquery(State(sim): Sim, method: Method, body: Bytes) -> Response {
    api::handle(&sim, Api::OrderQuery, &method, &body).await
}

async fn closeorder(State(sim): Sim, method: Method, body: Bytes) -> Response {
    api::handle(&sim, Api::CloseOrder, &method, &body).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayRequest {
    #[serde(alias = "out_trade_no")]
    out_trade_no: String,
}

/// `POST /sim/pay`: JSON `{"outTradeNo": ".."}` or form `out_trade_no=..`.
async fn pay(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Response {
    let Some(out_trade_no) = pay_target(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            CODE_ERROR,
            "expected JSON {\"outTradeNo\": \"..\"} or form out_trade_no=..",
        );
    };
    match sim.pay(&out_trade_no).await {
        Ok(payment) => axum::Json(json!({
            "flag": true,
            "code": CODE_OK,
            "message": "paid",
            "data": payment,
        }))
        .into_response(),
        Err(err) => {
            let status = match err {
                SimError::NotFound(_) => StatusCode::NOT_FOUND,
                SimError::AlreadyPaid(_) | SimError::Closed(_) | SimError::Expired(_) => {
                    StatusCode::CONFLICT
                }
            };
            let code = if status == StatusCode::CONFLICT {
                CODE_REPEAT
            } else {
                CODE_ERROR
            };
            error(status, code, &err.to_string())
        }
    }
}

fn pay_target(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let target = if content_type.contains("json") || looks_json {
        serde_json::from_slice::<PayRequest>(body)
            .ok()
            .map(|request| request.out_trade_no)
    } else {
        url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "out_trade_no" || name == "outTradeNo")
            .map(|(_, value)| value.into_owned())
    };
    target.filter(|target| !target.is_empty())
}

async fn get_faults(State(sim): Sim) -> Response {
    axum::Json(sim.faults()).into_response()
}

/// Replaces the whole fault set (fields left out are off) and answers it.
async fn set_faults(State(sim): Sim, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            sim.set_faults(faults.clone());
            axum::Json(faults).into_response()
        }
        Err(err) => error(
            StatusCode::BAD_REQUEST,
            CODE_ERROR,
            &format!("bad faults JSON: {err}"),
        ),
    }
}

async fn order(State(sim): Sim, Path(out_trade_no): Path<String>) -> Response {
    match sim.order(&out_trade_no) {
        Some(view) => axum::Json(view).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            CODE_ERROR,
            &SimError::NotFound(out_trade_no).to_string(),
        ),
    }
}

fn error(status: StatusCode, code: i32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "flag": false,
            "code": code,
            "message": message,
            "data": null,
        })),
    )
        .into_response()
}
