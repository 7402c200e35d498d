//! The operators' dashboard: `/admin` (sagas by state, filters, search, alerts, the
//! reconciler) and `/admin/sagas/{id}` (a saga's timeline and its actions). Server-rendered;
//! a little plain JavaScript refreshes the live parts and calls the admin API.

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::context;
use serde::Deserialize;

use super::AppState;
use super::admin::{STATES, alert_item, saga_item, timeline};
use super::auth::{LoginRedirect, PageUser};
use super::error::ApiError;
use crate::auth::Principal;
use crate::domain::OrderId;
use crate::store::admin::{AlertFilter, SagaFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/sagas/{id}", get(saga_page))
}

/// An operator on a page: no login → the login page; a shopper → 403.
struct PageOperator(Principal);

enum PageRejection {
    Login(LoginRedirect),
    Forbidden,
}

impl IntoResponse for PageRejection {
    fn into_response(self) -> Response {
        match self {
            PageRejection::Login(r) => r.into_response(),
            PageRejection::Forbidden => (
                StatusCode::FORBIDDEN,
                axum::response::Html("<h1>403</h1><p>Operators only.</p>"),
            )
                .into_response(),
        }
    }
}

impl FromRequestParts<AppState> for PageOperator {
    type Rejection = PageRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(user) = PageUser::from_request_parts(parts, state)
            .await
            .map_err(PageRejection::Login)?;
        if !user.is_admin() {
            return Err(PageRejection::Forbidden);
        }
        Ok(PageOperator(user))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filters {
    state: Option<String>,
    username: Option<String>,
    order_id: Option<String>,
}

async fn overview(
    State(app): State<AppState>,
    PageOperator(op): PageOperator,
    Query(f): Query<Filters>,
) -> Result<Response, ApiError> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let state = nonempty(f.state).filter(|s| STATES.contains(&s.as_str()));
    let username = nonempty(f.username);
    let order_id = nonempty(f.order_id);
    let rows = app
        .db
        .list_sagas(&SagaFilter {
            state: state.clone(),
            username: username.clone(),
            order_id: order_id.clone(),
            limit: 100,
            ..SagaFilter::default()
        })
        .await?;
    let sagas: Vec<_> = rows.iter().map(saga_item).collect();
    let counts = app.db.saga_counts().await?;
    let alerts: Vec<_> = app
        .db
        .alerts(None, AlertFilter::Open, 50)
        .await?
        .iter()
        .map(alert_item)
        .collect();
    let reconciler = app.reconciler.stats().await?;
    Ok(app
        .pages
        .render(
            "admin.html",
            context! {
                username => op.username.as_str(),
                states => STATES,
                counts => counts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                filter_state => state,
                filter_username => username,
                filter_order_id => order_id,
                sagas,
                alerts,
                reconciler => serde_json::to_value(&reconciler).unwrap_or_default(),
            },
        )?
        .into_response())
}

/// Journal kinds that belong to undoing, and to failures, drawn in their own colours.
const COMPENSATION_KINDS: [&str; 6] = [
    "cancel_requested",
    "deadline_reached",
    "wx_order_closed",
    "points_revoked",
    "order_closed",
    "stock_released",
];

async fn saga_page(
    State(app): State<AppState>,
    PageOperator(op): PageOperator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order: OrderId = id.parse()?;
    let row = app
        .db
        .saga_row(order)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no saga for order {order}")))?;
    let state = row.saga()?;
    let journal = app.db.journal(order).await?;
    let total_ms = journal
        .last()
        .zip(journal.first())
        .map_or(0, |(l, f)| l.at_ms - f.at_ms)
        .max(1);
    let events: Vec<_> = timeline(&journal)
        .into_iter()
        .map(|mut e| {
            let kind = e["kind"].as_str().unwrap_or_default().to_owned();
            let class = if kind == "step_failed" {
                "error"
            } else if COMPENSATION_KINDS.contains(&kind.as_str()) {
                "compensation"
            } else if kind.starts_with("payment") || kind.starts_with("wx_order_paid") {
                "payment"
            } else {
                "step"
            };
            let since = e["sincePreviousMs"].as_i64().unwrap_or(0);
            e["class"] = class.into();
            // Bar width: share of the saga's whole duration, at least visible.
            e["width"] = ((since as f64 / total_ms as f64 * 100.0).clamp(1.0, 100.0))
                .round()
                .into();
            e
        })
        .collect();
    let alerts: Vec<_> = app
        .db
        .alerts(Some(order), AlertFilter::All, 50)
        .await?
        .iter()
        .map(alert_item)
        .collect();
    let mut saga = saga_item(&row);
    saga["endReason"] = serde_json::to_value(&state.end_reason).unwrap_or_default();
    Ok(app
        .pages
        .render(
            "admin_saga.html",
            context! {
                username => op.username.as_str(),
                saga,
                events,
                alerts,
                can_cancel => matches!(state.phase.name(), "awaiting_payment"),
                can_retry => state.phase.name() == "stuck",
                total_ms,
            },
        )?
        .into_response())
}
