//! The HTTP surface: each module owns its routes (`router()`), this one merges them and
//! adds the layers every request goes through.

mod address;
mod admin;
pub mod auth;
mod cart;
mod dashboard;
pub mod error;
mod health;
mod order;
mod pages;
mod pay;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use self::error::{ApiError, Envelope};
pub use self::pages::Pages;
use crate::actors::Sagas;
use crate::actors::reconciler::Reconciler;
use crate::auth::TokenKeys;
use crate::cart::Cart;
use crate::clock::Clock;
use crate::domain::IdGenerator;
use crate::store::Db;
use crate::wxpay::WxPayConfig;
use crate::wxpay::sim::WxPaySim;

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cart: Arc<dyn Cart>,
    pub sagas: Sagas,
    /// The pay-log reconciler (its cron job ticks it).
    pub reconciler: Reconciler,
    pub ids: Arc<IdGenerator>,
    pub checkout: CheckoutSettings,
    pub tokens: Arc<TokenKeys>,
    /// Present when `--redis-url` is set; `/readyz` pings it.
    pub redis: Option<ConnectionManager>,
    pub pages: Arc<Pages>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Who we are at WeChat Pay: the notify endpoint checks appid, mch_id and signature.
    pub wxpay: Arc<WxPayConfig>,
    /// The embedded simulator in `--wxpay sim` mode, mounted at /wxpay-sim.
    pub wxpay_sim: Option<Arc<WxPaySim>>,
}

/// How checkouts are made.
#[derive(Clone, Copy, Debug)]
pub struct CheckoutSettings {
    pub pay_timeout: Duration,
    pub points_per_order: i64,
    /// How long `POST /api/order` waits for the saga before answering 202.
    pub wait: Duration,
    /// WeChat's minimum interval between unifiedorder and closeorder.
    pub wx_min_close_interval: Duration,
}

/// Bounds on what one request may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub body_bytes: usize,
    pub request_timeout: Duration,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let sim = state.wxpay_sim.clone();
    let app = Router::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(address::router())
        .merge(cart::router())
        .merge(order::router())
        .merge(admin::router())
        .merge(dashboard::router())
        .merge(pay::router())
        .merge(pages::router())
        .fallback(|req: Request| async move {
            ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::MethodNotAllowed(format!("{} is not allowed on {}", req.method(), req.uri().path()))
        })
        // Router::layer wraps what is already there: the last layer added sees a request
        // first. So a request gets its id, is traced, and only then meets the limits.
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .layer(axum::middleware::map_response(ensure_envelope))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);
    match sim {
        // The simulator speaks WeChat's XML, not our envelope: it sits beside the API.
        Some(sim) => app.nest_service(crate::app::SIM_MOUNT, sim.router()),
        None => app,
    }
}

/// Error answers written by a layer rather than a handler (413 from the body limit, 408
/// from the timeout) have a plain-text body; give them the envelope every client expects.
async fn ensure_envelope(response: Response) -> Response {
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    // Handlers write JSON (the envelope), HTML (pages) or XML (WeChat's notify replies);
    // layers write plain text or nothing.
    let has_own_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| !ct.starts_with("text/plain"));
    if !is_error || has_own_body {
        return response;
    }
    let mut fresh = ApiError::from_status(status).into_response();
    *fresh.status_mut() = status;
    if let Some(id) = response.headers().get(&REQUEST_ID) {
        fresh.headers_mut().insert(REQUEST_ID, id.clone());
    }
    fresh
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight
/// finish (bounded by the request timeout).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
