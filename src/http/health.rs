//! `/healthz` (the process answers) and `/readyz` (the database and, if configured, Redis
//! answer too; 503 otherwise, so a load balancer stops sending shoppers here).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, ok};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { ok("up", serde_json::json!({ "status": "up" })) }),
        )
        .route("/readyz", get(ready))
}

async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let limit = Duration::from_secs(2);
    tokio::time::timeout(limit, state.db.ping())
        .await
        .map_err(|_| ApiError::Unavailable("database did not answer within 2 s".into()))?
        .map_err(|e| ApiError::Unavailable(format!("database unreachable: {e:#}")))?;
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let pong: Result<String, _> =
            tokio::time::timeout(limit, redis::cmd("PING").query_async(&mut conn))
                .await
                .map_err(|_| ApiError::Unavailable("redis did not answer within 2 s".into()))?;
        pong.map_err(|e| ApiError::Unavailable(format!("redis unreachable: {e}")))?;
    }
    Ok(ok(
        "ready",
        serde_json::json!({
            "database": state.db.backend_name(),
            "cart": state.cart.backend_name(),
        }),
    ))
}
