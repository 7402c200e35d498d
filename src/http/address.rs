//! `GET /api/address/user/list`: the caller's addresses, the default first.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, ok};
use crate::auth::Principal;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/address/user/list", get(list))
}

async fn list(State(state): State<AppState>, user: Principal) -> Result<Response, ApiError> {
    let addresses = state.db.addresses(&user.username).await?;
    Ok(ok("query succeeded", addresses))
}
