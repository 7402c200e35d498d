//! The seed's cart endpoints: add (or take away) units, list with current prices, remove.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, QueryParams, ok};
use crate::auth::Principal;
use crate::domain::{CartDelta, CartLine, Money, SkuId, Username};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/cart/add", get(add).post(add))
        .route("/api/cart/list", get(list))
        .route("/api/cart/remove", post(remove))
}

#[derive(Deserialize)]
struct AddParams {
    id: Option<String>,
    num: Option<String>,
}

#[derive(Deserialize)]
struct RemoveParams {
    id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CartView {
    lines: Vec<CartLine>,
    total_num: i64,
    total_money: Money,
}

fn sku_id(raw: Option<&str>) -> Result<SkuId, ApiError> {
    Ok(raw
        .ok_or_else(|| ApiError::invalid("id", "missing"))?
        .parse::<SkuId>()?)
}

async fn add(
    State(state): State<AppState>,
    user: Principal,
    QueryParams(params): QueryParams<AddParams>,
) -> Result<Response, ApiError> {
    let id = sku_id(params.id.as_deref())?;
    let num = params.num.as_deref().unwrap_or("1");
    let delta = CartDelta::new(
        num.trim()
            .parse::<i64>()
            .map_err(|_| ApiError::invalid("num", format!("`{num}` is not an integer")))?,
    )?;
    let sku = state
        .db
        .sku(id)
        .await?
        .filter(|s| s.is_on_sale())
        .ok_or_else(|| ApiError::NotFound(format!("SKU {id} does not exist or is not on sale")))?;
    let new_num = state.cart.add(&user.username, &sku, delta).await?;
    Ok(ok(
        "cart updated",
        serde_json::json!({ "skuId": id, "num": new_num }),
    ))
}

async fn list(State(state): State<AppState>, user: Principal) -> Result<Response, ApiError> {
    Ok(ok(
        "query succeeded",
        cart_view(&state, &user.username).await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    user: Principal,
    QueryParams(params): QueryParams<RemoveParams>,
) -> Result<Response, ApiError> {
    let id = sku_id(params.id.as_deref())?;
    state.cart.remove(&user.username, &[id]).await?;
    Ok(ok(
        "removed from cart",
        cart_view(&state, &user.username).await?,
    ))
}

/// The cart joined with `tb_sku`: names, images and prices as they are now. Lines whose
/// SKU has disappeared from the catalogue are left out.
pub async fn cart_lines(state: &AppState, user: &Username) -> anyhow::Result<Vec<CartLine>> {
    let entries = state.cart.entries(user).await?;
    let ids: Vec<SkuId> = entries.iter().map(|e| e.sku_id).collect();
    let skus = state.db.skus(&ids).await?;
    Ok(entries
        .iter()
        .filter_map(|e| {
            let sku = skus.iter().find(|s| s.id == e.sku_id)?;
            Some(CartLine {
                sku_id: e.sku_id,
                name: sku.name.clone(),
                image: sku.image.clone(),
                price: sku.price_fen,
                num: e.num,
                money: sku.price_fen.times(i64::from(e.num))?,
                on_sale: sku.is_on_sale(),
                stock: sku.num,
            })
        })
        .collect())
}

async fn cart_view(state: &AppState, user: &Username) -> anyhow::Result<CartView> {
    let lines = cart_lines(state, user).await?;
    Ok(CartView {
        total_num: lines.iter().map(|l| i64::from(l.num)).sum(),
        total_money: Money::from_fen(lines.iter().map(|l| l.money.fen()).sum()),
        lines,
    })
}
