//! Orders: `POST /api/order` starts a checkout saga; reading and cancelling orders.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, Envelope, JsonBody, QueryParams, code, ok};
use crate::auth::Principal;
use crate::domain::{Money, OrderId, SkuId};
use crate::store::sagas::Created;
use crate::workflows::checkout::{
    CheckoutRequest, EndReason, Event, Outcome, Phase, RequestedLine, Requester, SagaState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/order", post(submit))
        .route("/api/order/list", get(list))
        .route("/api/order/{id}", get(show))
        .route("/api/order/{id}/cancel", post(cancel))
}

/// The checkout page's form, with the seed's Order field names.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmitOrder {
    address_id: Option<i64>,
    receiver_contact: Option<String>,
    receiver_mobile: Option<String>,
    receiver_address: Option<String>,
    pay_type: Option<String>,
    buyer_message: Option<String>,
    /// Check out only these cart lines; all of them when absent.
    sku_ids: Option<Vec<i64>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SagaSummary {
    order_id: OrderId,
    state: &'static str,
    pay_money: Option<Money>,
    total_num: Option<i64>,
    pay_deadline: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<EndReason>,
}

fn summary(state: &SagaState) -> SagaSummary {
    SagaSummary {
        order_id: state.request.order_id,
        state: state.phase.name(),
        pay_money: state.pay_money(),
        total_num: state.priced.as_ref().map(|p| p.total_num),
        pay_deadline: crate::store::orders::ms_to_time(state.deadline_at_ms()).to_rfc3339(),
        end_reason: state.end_reason.clone(),
    }
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn submit(
    State(app): State<AppState>,
    user: Principal,
    headers: HeaderMap,
    JsonBody(form): JsonBody<SubmitOrder>,
) -> Result<Response, ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
            if k.is_empty() || k.len() > 100 {
                return Err(ApiError::invalid("Idempotency-Key", "1 to 100 characters"));
            }
            Some(k.to_owned())
        }
        None => None,
    };
    // A repeated submit answers with the first one's order, before looking at the cart
    // (which that first checkout has emptied).
    if let Some(k) = &key
        && let Some(earlier) = app
            .db
            .saga_by_idempotency_key(user.username.as_str(), k)
            .await?
    {
        return respond(&app, earlier).await;
    }
    let pay_type = form.pay_type.clone().unwrap_or_else(|| "1".into());
    if !matches!(pay_type.as_str(), "0" | "1") {
        return Err(ApiError::invalid(
            "payType",
            "1 (online) or 0 (cash on delivery)",
        ));
    }
    let buyer_message = form.buyer_message.clone().unwrap_or_default();
    if buyer_message.chars().count() > 1000 {
        return Err(ApiError::invalid("buyerMessage", "at most 1000 characters"));
    }
    let (contact, mobile, address) = receiver(&app, &user, &form).await?;
    let lines = lines_to_order(&app, &user, form.sku_ids.as_deref()).await?;

    let now = app.clock.now().timestamp_millis();
    let order_id = OrderId::new(app.ids.next_id(now))?;
    let request = CheckoutRequest {
        order_id,
        username: user.username.to_string(),
        lines,
        receiver_contact: contact,
        receiver_mobile: mobile,
        receiver_address: address,
        pay_type,
        buyer_message,
        points: app.checkout.points_per_order,
        created_at_ms: now,
        deadline_at_ms: now + app.checkout.pay_timeout.as_millis() as i64,
        wx_min_close_ms: app.checkout.wx_min_close_interval.as_millis() as i64,
    };
    let order_id = match app
        .db
        .create_saga(&SagaState::new(request), key.as_deref(), now)
        .await?
    {
        Created::New => {
            crate::metrics::saga_started();
            order_id
        }
        Created::Existing(earlier) => earlier,
    };
    respond(&app, order_id).await
}

/// Waits (up to the checkout wait) for the saga to leave its forward steps and answers
/// with what it became.
async fn respond(app: &AppState, order_id: OrderId) -> Result<Response, ApiError> {
    let state = wait_for(app, order_id, app.checkout.wait, |s| !s.phase.is_forward()).await?;
    match state.phase {
        Phase::AwaitingPayment | Phase::Paying | Phase::Completed => {
            Ok(ok("order submitted", summary(&state)))
        }
        Phase::Failed => match &state.end_reason {
            Some(EndReason::OutOfStock { skus }) => Err(ApiError::OutOfStock(skus.clone())),
            Some(EndReason::EmptyCheckout) => {
                Err(ApiError::invalid("cart", "nothing to check out"))
            }
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "saga {order_id} failed: {:?}",
                state.end_reason
            ))),
        },
        Phase::Compensating(_) | Phase::Compensated | Phase::Stuck(_) => Err(ApiError::Internal(
            anyhow::anyhow!("saga {order_id} is undone: {:?}", state.end_reason),
        )),
        Phase::Started
        | Phase::StockReserved
        | Phase::OrderWritten
        | Phase::PointsAwarded
        | Phase::CartCleared => Ok((
            StatusCode::ACCEPTED,
            axum::Json(Envelope {
                flag: true,
                code: code::OK,
                message: "order accepted; still being processed".into(),
                data: Some(summary(&state)),
            }),
        )
            .into_response()),
    }
}

/// Who receives the parcel: one of the caller's addresses, or the fields given.
async fn receiver(
    app: &AppState,
    user: &Principal,
    form: &SubmitOrder,
) -> Result<(String, String, String), ApiError> {
    if let Some(id) = form.address_id {
        let addresses = app.db.addresses(&user.username).await?;
        let a = addresses
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::invalid("addressId", "not one of your addresses"))?;
        return Ok((
            a.contact.unwrap_or_default(),
            a.phone.unwrap_or_default(),
            a.address.unwrap_or_default(),
        ));
    }
    let field = |v: &Option<String>, name: &'static str, max: usize| -> Result<String, ApiError> {
        let v = v.as_deref().map(str::trim).unwrap_or_default();
        if v.is_empty() {
            return Err(ApiError::invalid(
                name,
                "required when no addressId is given",
            ));
        }
        if v.chars().count() > max {
            return Err(ApiError::invalid(name, format!("at most {max} characters")));
        }
        Ok(v.to_owned())
    };
    Ok((
        field(&form.receiver_contact, "receiverContact", 50)?,
        field(&form.receiver_mobile, "receiverMobile", 12)?,
        field(&form.receiver_address, "receiverAddress", 200)?,
    ))
}

/// The cart lines to order, in SKU id order; 400 when there are none.
async fn lines_to_order(
    app: &AppState,
    user: &Principal,
    only: Option<&[i64]>,
) -> Result<Vec<RequestedLine>, ApiError> {
    let entries = app.cart.entries(&user.username).await?;
    let chosen: Vec<RequestedLine> = match only {
        None => entries
            .iter()
            .map(|e| RequestedLine {
                sku_id: e.sku_id,
                num: e.num,
            })
            .collect(),
        Some(ids) => {
            let mut lines = Vec::new();
            for raw in ids {
                let id = SkuId::new(*raw)
                    .map_err(|_| ApiError::invalid("skuIds", format!("{raw} is not a SKU id")))?;
                let entry = entries.iter().find(|e| e.sku_id == id).ok_or_else(|| {
                    ApiError::invalid("skuIds", format!("SKU {id} is not in your cart"))
                })?;
                if !lines.iter().any(|l: &RequestedLine| l.sku_id == id) {
                    lines.push(RequestedLine {
                        sku_id: id,
                        num: entry.num,
                    });
                }
            }
            lines.sort_by_key(|l| l.sku_id);
            lines
        }
    };
    if chosen.is_empty() {
        return Err(ApiError::invalid("cart", "the cart is empty"));
    }
    Ok(chosen)
}

/// Waits until the saga's state satisfies `done`, or `wait` passes; returns the latest.
async fn wait_for(
    app: &AppState,
    order: OrderId,
    wait: Duration,
    done: impl Fn(&SagaState) -> bool,
) -> Result<SagaState, ApiError> {
    let mut rx = app.sagas.watch(order).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(state) = rx.borrow_and_update().state.clone()
            && done(&state)
        {
            return Ok((*state).clone());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            // The actor left memory (finished or passivated) or time is up: read the disk.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let stored = app
        .db
        .load_saga(order)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {order}")))?;
    Ok(stored.state)
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    Ok(raw.parse::<OrderId>()?)
}

/// The saga if the caller owns it; 404 otherwise (others' orders do not exist for them).
async fn owned_saga(
    app: &AppState,
    user: &Principal,
    order: OrderId,
) -> Result<SagaState, ApiError> {
    let stored = app.db.load_saga(order).await?;
    match stored {
        Some(s) if s.state.request.username == user.username.as_str() => Ok(s.state),
        _ => Err(ApiError::NotFound(format!("no order {order}"))),
    }
}

async fn show(
    State(app): State<AppState>,
    user: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = order_id(&id)?;
    let saga = owned_saga(&app, &user, order).await?;
    let (row, items) = match app.db.order(order).await? {
        Some((row, items)) => (Some(row), items),
        None => (None, Vec::new()),
    };
    Ok(ok(
        "query succeeded",
        serde_json::json!({ "saga": summary(&saga), "order": row, "items": items }),
    ))
}

#[derive(Deserialize)]
struct ListParams {
    page: Option<String>,
    size: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    user: Principal,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<Response, ApiError> {
    let number = |raw: &Option<String>,
                  field: &'static str,
                  default: i64,
                  max: i64|
     -> Result<i64, ApiError> {
        match raw {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::invalid(field, format!("an integer from 1 to {max}"))),
        }
    };
    let page = number(&p.page, "page", 1, 1_000_000)?;
    let size = number(&p.size, "size", 10, 100)?;
    let (rows, total) = app
        .db
        .orders_of(user.username.as_str(), size, (page - 1) * size)
        .await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|(row, state)| serde_json::json!({ "order": row, "state": state }))
        .collect();
    Ok(ok(
        "query succeeded",
        serde_json::json!({ "page": page, "size": size, "total": total, "items": items }),
    ))
}

async fn cancel(
    State(app): State<AppState>,
    user: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = order_id(&id)?;
    owned_saga(&app, &user, order).await?;
    let by = Requester::Shopper(user.username.to_string());
    match app
        .sagas
        .deliver(order, Event::CancelRequested { by })
        .await?
    {
        Outcome::Applied => {
            let state = wait_for(&app, order, app.checkout.wait, |s| {
                s.phase.is_terminal() || matches!(s.phase, Phase::Stuck(_))
            })
            .await?;
            Ok(ok("order cancelled", summary(&state)))
        }
        Outcome::Ignored(why) => Err(ApiError::Conflict(format!(
            "order {order} cannot be cancelled: {why}"
        ))),
        Outcome::Alerted => Err(ApiError::Internal(anyhow::anyhow!(
            "cancel raised an alert"
        ))),
    }
}
