//! The operators' API (admin role only; a shopper's token gets 403, code 20003): sagas
//! listed and filtered, a saga's timeline, the actions (cancel, retry, record a payment),
//! alerts, activity figures. `GET /metrics` (Prometheus text) is here too.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, JsonBody, ok};
use crate::auth::Principal;
use crate::domain::{Money, OrderId};
use crate::workflows::checkout::{Event, Outcome, Payment, Requester};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/sagas", get(list_sagas))
        .route("/admin/api/sagas/{id}", get(show_saga))
        .route("/admin/api/alerts", get(list_alerts))
        .route("/admin/api/alerts/{id}/resolve", post(resolve_alert))
        .route("/admin/api/stats", get(stats))
        .route("/metrics", get(metrics))
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

// ---- reading -------------------------------------------------------------------------

use crate::store::admin::{AlertFilter, AlertRow, JournalRow, Resolve, SagaFilter, SagaRow};
use crate::store::orders::ms_to_time;
use crate::workflows::checkout::{Phase, SagaState};

use super::error::QueryParams;

fn rfc3339(ms: i64) -> String {
    ms_to_time(ms).to_rfc3339()
}

/// The compensation or step a saga is on, for the list's "step" column.
fn step_of(state: &SagaState) -> Option<String> {
    match state.phase {
        Phase::Compensating(step) | Phase::Stuck(step) => {
            Some(serde_json::to_value(step).ok()?.as_str()?.to_owned())
        }
        Phase::Started
        | Phase::StockReserved
        | Phase::OrderWritten
        | Phase::PointsAwarded
        | Phase::CartCleared
        | Phase::AwaitingPayment
        | Phase::Paying
        | Phase::Completed
        | Phase::Compensated
        | Phase::Failed => None,
    }
}

pub(super) fn saga_item(row: &SagaRow) -> serde_json::Value {
    let state = row.saga().ok();
    serde_json::json!({
        "orderId": row.order_id,
        "state": row.state,
        "step": state.as_ref().and_then(step_of),
        "username": row.username,
        "payMoney": state.as_ref().and_then(|s| s.pay_money()),
        "createdAt": rfc3339(row.created_at_ms),
        "updatedAt": rfc3339(row.updated_at_ms),
        "deadline": rfc3339(row.deadline_at_ms),
        "lastError": row.last_error,
    })
}

pub(super) fn alert_item(a: &AlertRow) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "orderId": a.order_id,
        "kind": a.kind,
        "data": serde_json::from_str::<serde_json::Value>(&a.data).unwrap_or(serde_json::Value::Null),
        "createdAt": rfc3339(a.created_at_ms),
        "resolvedAt": a.resolved_at_ms.map(rfc3339),
        "resolvedBy": a.resolved_by,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SagaQuery {
    state: Option<String>,
    username: Option<String>,
    order_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) use crate::workflows::checkout::PHASE_NAMES as STATES;

fn time_param(raw: &Option<String>, field: &'static str) -> Result<Option<i64>, ApiError> {
    raw.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::invalid(field, "an RFC 3339 time, e.g. 2026-12-04T10:00:00Z")
                })
        })
        .transpose()
}

async fn list_sagas(
    State(app): State<AppState>,
    _op: Operator,
    QueryParams(q): QueryParams<SagaQuery>,
) -> Result<Response, ApiError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let state = nonempty(&q.state);
    if let Some(s) = &state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "state",
            format!("one of {}", STATES.join(", ")),
        ));
    }
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "an integer from 1 to 500"))?,
    };
    let after = match nonempty(&q.cursor) {
        None => None,
        Some(c) => {
            let (ms, id) = c
                .split_once('_')
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor from this API"))?;
            Some((
                ms.parse::<i64>()
                    .map_err(|_| ApiError::invalid("cursor", "not a cursor from this API"))?,
                id.to_owned(),
            ))
        }
    };
    let filter = SagaFilter {
        state,
        username: nonempty(&q.username),
        order_id: nonempty(&q.order_id),
        since_ms: time_param(&q.since, "since")?,
        until_ms: time_param(&q.until, "until")?,
        after,
        limit: limit + 1,
    };
    let mut rows = app.db.list_sagas(&filter).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| format!("{}_{}", r.created_at_ms, r.order_id))
    });
    let items: Vec<_> = rows.iter().map(saga_item).collect();
    Ok(ok(
        "query succeeded",
        serde_json::json!({ "items": items, "nextCursor": next.flatten() }),
    ))
}

async fn show_saga(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order: OrderId = id.parse()?;
    let row = app
        .db
        .saga_row(order)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no saga for order {order}")))?;
    let state = row.saga()?;
    let mut saga = saga_item(&row);
    saga["endReason"] = serde_json::to_value(&state.end_reason).unwrap_or_default();
    saga["paid"] =
        serde_json::Value::Bool(state.payment.is_some() && state.phase != Phase::Compensated);
    saga["transactionId"] =
        serde_json::to_value(state.payment.as_ref().map(|p| &p.transaction_id)).unwrap_or_default();
    saga["codeUrl"] = serde_json::to_value(state.wx.as_ref().and_then(|w| w.code_url.clone()))
        .unwrap_or_default();
    let journal = app.db.journal(order).await?;
    let timeline = timeline(&journal);
    let (order_row, items) = match app.db.order(order).await? {
        Some((o, items)) => (Some(o), items),
        None => (None, Vec::new()),
    };
    let alerts: Vec<_> = app
        .db
        .alerts(Some(order), AlertFilter::All, 100)
        .await?
        .iter()
        .map(alert_item)
        .collect();
    Ok(ok(
        "query succeeded",
        serde_json::json!({ "saga": saga, "order": order_row, "items": items, "timeline": timeline, "alerts": alerts }),
    ))
}

/// The journal as a timeline: each entry with the time since the previous one.
pub fn timeline(journal: &[JournalRow]) -> Vec<serde_json::Value> {
    let mut previous = None;
    journal
        .iter()
        .map(|e| {
            let since = previous.map_or(0, |p| e.at_ms - p);
            previous = Some(e.at_ms);
            serde_json::json!({
                "seq": e.seq,
                "kind": e.kind,
                "state": e.state,
                "at": rfc3339(e.at_ms),
                "sincePreviousMs": since,
                "data": serde_json::from_str::<serde_json::Value>(&e.data).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct AlertQuery {
    resolved: Option<String>,
}

async fn list_alerts(
    State(app): State<AppState>,
    _op: Operator,
    QueryParams(q): QueryParams<AlertQuery>,
) -> Result<Response, ApiError> {
    let filter = match q.resolved.as_deref() {
        None | Some("") | Some("false") => AlertFilter::Open,
        Some("true") => AlertFilter::Resolved,
        Some("all") => AlertFilter::All,
        Some(_) => return Err(ApiError::invalid("resolved", "false, true or all")),
    };
    let items: Vec<_> = app
        .db
        .alerts(None, filter, 500)
        .await?
        .iter()
        .map(alert_item)
        .collect();
    Ok(ok("query succeeded", serde_json::json!({ "items": items })))
}

async fn resolve_alert(
    State(app): State<AppState>,
    Operator(op): Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid("id", "an alert id"))?;
    match app
        .db
        .resolve_alert(id, op.username.as_str(), app.clock.now().timestamp_millis())
        .await?
    {
        Resolve::Done => Ok(ok("alert resolved", serde_json::json!({ "id": id }))),
        Resolve::NotFound => Err(ApiError::NotFound(format!("no alert {id}"))),
        Resolve::AlreadyResolved => Err(ApiError::Conflict(format!(
            "alert {id} is already resolved"
        ))),
    }
}

/// Counts by state, activity per minute over the last 10 minutes, step latency
/// percentiles over the last hour, and the reconciler.
async fn stats(State(app): State<AppState>, _op: Operator) -> Result<Response, ApiError> {
    let now = app.clock.now().timestamp_millis();
    let by_state: serde_json::Map<String, serde_json::Value> = app
        .db
        .saga_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s, n.into()))
        .collect();
    let events = app.db.recent_events(now - 3_600_000, 50_000).await?;
    let minute = |ms: i64| (ms / 60_000) * 60_000;
    let per_minute = |kind: &str| {
        let mut counts = std::collections::BTreeMap::new();
        for (_, _, k, at) in &events {
            if k == kind && *at >= now - 600_000 {
                *counts.entry(minute(*at)).or_insert(0i64) += 1;
            }
        }
        counts
            .into_iter()
            .map(|(m, n)| serde_json::json!({ "minute": rfc3339(m), "count": n }))
            .collect::<Vec<_>>()
    };
    let latencies = step_latencies(&events);
    let reconciler = app.reconciler.stats().await?;
    Ok(ok(
        "query succeeded",
        serde_json::json!({
            "byState": by_state,
            "checkoutsPerMinute": per_minute("checkout_submitted"),
            "completionsPerMinute": per_minute("payment_recorded"),
            "stepLatencyMs": latencies,
            "reconciler": reconciler,
        }),
    ))
}

/// p50/p90/p99 of the time each step took (from the previous journal entry of its saga).
fn step_latencies(events: &[(String, i64, String, i64)]) -> serde_json::Value {
    let mut sorted: Vec<&(String, i64, String, i64)> = events.iter().collect();
    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut by_kind: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
    for pair in sorted.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        if prev.0 == next.0 && next.1 == prev.1 + 1 {
            by_kind
                .entry(next.2.as_str())
                .or_default()
                .push(next.3 - prev.3);
        }
    }
    let pct = |v: &[i64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let out: serde_json::Map<String, serde_json::Value> = by_kind
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k.to_owned(), serde_json::json!({ "count": v.len(), "p50": pct(&v, 0.5), "p90": pct(&v, 0.9), "p99": pct(&v, 0.99) }))
        })
        .collect();
    serde_json::Value::Object(out)
}

/// Prometheus text format. Public like `/healthz`: bind the service to a private
/// interface, or filter `/metrics` at the proxy, to keep it internal.
async fn metrics(State(app): State<AppState>) -> Response {
    if let Ok(stats) = app.reconciler.stats().await {
        crate::metrics::reconciler(&stats);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}
