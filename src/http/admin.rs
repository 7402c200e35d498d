//! Operator actions on sagas (admin role only). More of the operator surface (lists,
//! timelines, alerts, stats) is the operators' issue; these are the actions.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, JsonBody, ok};
use crate::auth::Principal;
use crate::domain::{Money, OrderId};
use crate::workflows::checkout::{Event, Outcome, Payment, Requester};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/sagas/{id}/cancel", post(cancel))
        .route("/admin/api/sagas/{id}/retry", post(retry))
        .route("/admin/api/sagas/{id}/payment", post(record_payment))
}

/// A caller with the admin role; a shopper's valid token gets 403 (20003).
pub struct Operator(pub Principal);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_admin() {
            return Err(ApiError::Access("operators only"));
        }
        Ok(Operator(principal))
    }
}

async fn existing(app: &AppState, raw: &str) -> Result<OrderId, ApiError> {
    let order: OrderId = raw.parse()?;
    app.db
        .saga_owner(order)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no saga for order {order}")))?;
    Ok(order)
}

/// Delivers `event` and maps the workflow's verdict: applied → 200, ignored → 409.
async fn act(
    app: &AppState,
    order: OrderId,
    event: Event,
    done: &str,
) -> Result<Response, ApiError> {
    match app.sagas.deliver(order, event).await? {
        Outcome::Applied => Ok(ok(done, serde_json::json!({ "orderId": order }))),
        Outcome::Alerted => Ok(ok(
            "recorded as an operator alert",
            serde_json::json!({ "orderId": order, "alert": true }),
        )),
        Outcome::Ignored(why) => Err(ApiError::Conflict(format!("order {order}: {why}"))),
    }
}

async fn cancel(
    State(app): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = existing(&app, &id).await?;
    act(
        &app,
        order,
        Event::CancelRequested {
            by: Requester::Operator(op.username.to_string()),
        },
        "cancel accepted",
    )
    .await
}

async fn retry(
    State(app): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = existing(&app, &id).await?;
    act(
        &app,
        order,
        Event::RetryRequested {
            by: Requester::Operator(op.username.to_string()),
        },
        "retry accepted",
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PaymentBody {
    transaction_id: String,
    /// Fen, as WeChat's total_fee.
    total_fee: i64,
}

/// An operator records a payment verified out of band (e.g. in WeChat's merchant
/// console). It goes through the same checks as a notification: a wrong amount or a
/// closed order only raises an alert.
async fn record_payment(
    State(app): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PaymentBody>,
) -> Result<Response, ApiError> {
    let order = existing(&app, &id).await?;
    let tx = body.transaction_id.trim();
    if tx.is_empty() || tx.len() > 32 || !tx.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid(
            "transactionId",
            "1 to 32 letters or digits",
        ));
    }
    if body.total_fee <= 0 {
        return Err(ApiError::invalid("totalFee", "a positive amount in fen"));
    }
    tracing::info!(%order, operator = %op.username, transaction_id = tx, "operator records a payment");
    let payment = Payment {
        transaction_id: tx.to_owned(),
        amount: Money::from_fen(body.total_fee),
        paid_at_ms: app.clock.now().timestamp_millis(),
    };
    act(
        &app,
        order,
        Event::PaymentConfirmed { payment },
        "payment recorded",
    )
    .await
}
