//! Server-rendered pages (minijinja templates compiled into the binary, no front-end build):
//! `/login`, the shop's home page, the checkout page (`/order`), the shopper's orders
//! (`/orders`) and the pay pages.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{PageUser, auth_cookie, authenticate, safe_return_path};
use super::cart::cart_lines;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_form))
        .route("/static/sku.svg", get(sku_image))
        .route("/pay", get(pay_page))
        .route("/pay/success", get(pay_success_page))
        .route("/order", get(order_page))
        .route("/orders", get(orders_page))
}

/// The page templates, parsed once at start-up.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new() -> Arc<Pages> {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("home.html", include_str!("../../templates/home.html")),
            ("pay.html", include_str!("../../templates/pay.html")),
            ("order.html", include_str!("../../templates/order.html")),
            ("orders.html", include_str!("../../templates/orders.html")),
            ("admin.html", include_str!("../../templates/admin.html")),
            (
                "admin_saga.html",
                include_str!("../../templates/admin_saga.html"),
            ),
            (
                "pay_success.html",
                include_str!("../../templates/pay_success.html"),
            ),
        ] {
            env.add_template(name, source)
                .expect("templates compiled into the binary parse");
        }
        env.add_filter("yuan", |fen: i64| {
            crate::domain::Money::from_fen(fen).to_string()
        });
        Arc::new(Pages { env })
    }

    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<Html<String>, ApiError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Html(
            template
                .render(ctx)
                .map_err(|e| ApiError::Internal(e.into()))?,
        ))
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    from: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let from = safe_return_path(q.from.as_deref());
    Ok(state
        .pages
        .render(
            "login.html",
            context! { from, error => None::<String>, username => "" },
        )?
        .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    from: Option<String>,
}

/// The form's POST: on success the cookie is set and the browser goes back to `from`; on
/// failure the form comes back with the error and a 401.
async fn login_form(
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let from = safe_return_path(form.from.as_deref());
    match authenticate(&state, &form.username, form.password).await {
        Ok(token) => {
            let mut response = Redirect::to(&from).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                auth_cookie(&token, state.tokens.ttl.as_secs() as i64),
            );
            Ok(response)
        }
        Err(err @ (ApiError::BadCredentials | ApiError::Unavailable(_))) => {
            let page = state.pages.render(
                "login.html",
                context! { from, error => err.to_string(), username => form.username },
            )?;
            Ok((StatusCode::UNAUTHORIZED, page).into_response())
        }
        Err(other) => Err(other),
    }
}

async fn home(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, ApiError> {
    let addresses = state.db.addresses(&user.username).await?;
    let cart = cart_lines(&state, &user.username).await?;
    let skus = state.db.skus_on_sale(100).await?;
    Ok(state
        .pages
        .render(
            "home.html",
            context! { shop_nav => "home", username => user.username.as_str(), is_admin => user.is_admin(), addresses, cart, skus },
        )?
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayQuery {
    order_id: Option<String>,
}

/// `/pay?orderId=`: the QR code, the amount, a countdown and the status, polled.
async fn pay_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<PayQuery>,
) -> Result<Response, ApiError> {
    let saga = super::pay::owned(&state, &user, q.order_id.as_deref()).await?;
    if saga.payment.is_some() {
        return Ok(
            Redirect::to(&format!("/pay/success?orderId={}", saga.request.order_id))
                .into_response(),
        );
    }
    let payable = saga.phase == crate::workflows::checkout::Phase::AwaitingPayment;
    // Creating the WeChat order here, not in the browser, so a failure shows on the page.
    let native_error = if payable {
        super::pay::native_info(&state, saga.request.order_id)
            .await
            .err()
            .map(|e| e.to_string())
    } else {
        None
    };
    Ok(state
        .pages
        .render(
            "pay.html",
            context! {
                shop_nav => "pay",
                username => user.username.as_str(),
                order_id => saga.request.order_id.to_string(),
                pay_money => saga.pay_money().map(|m| m.fen()).unwrap_or_default(),
                deadline_ms => saga.deadline_at_ms(),
                state => saga.phase.name(),
                payable,
                native_error,
                simulator => state.wxpay_sim.is_some(),
                sim_mount => crate::app::SIM_MOUNT,
            },
        )?
        .into_response())
}

async fn pay_success_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<PayQuery>,
) -> Result<Response, ApiError> {
    let saga = super::pay::owned(&state, &user, q.order_id.as_deref()).await?;
    Ok(state
        .pages
        .render(
            "pay_success.html",
            context! {
                shop_nav => "pay",
                username => user.username.as_str(),
                order_id => saga.request.order_id.to_string(),
                pay_money => saga.pay_money().map(|m| m.fen()).unwrap_or_default(),
                state => saga.phase.name(),
                paid => saga.payment.is_some(),
                transaction_id => saga.payment.as_ref().map(|p| p.transaction_id.clone()),
            },
        )?
        .into_response())
}

/// `/order`, the seed's 结算页: where the parcel goes (the shopper's addresses, the default
/// chosen), what is in it (the cart at today's prices) and what it costs. The page's script
/// submits to `POST /api/order` and goes on to `/pay`.
async fn order_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
) -> Result<Response, ApiError> {
    let addresses = state.db.addresses(&user.username).await?;
    let cart = cart_lines(&state, &user.username).await?;
    // The default address if there is one, else the first: a submit always has a receiver.
    let selected_address = addresses
        .iter()
        .find(|a| a.is_default.as_deref() == Some("1"))
        .or(addresses.first())
        .map(|a| a.id);
    let total_num: i64 = cart.iter().map(|l| i64::from(l.num)).sum();
    let total_money: i64 = cart.iter().map(|l| l.money.fen()).sum();
    Ok(state
        .pages
        .render(
            "order.html",
            context! {
                shop_nav => "order",
                username => user.username.as_str(),
                is_admin => user.is_admin(),
                addresses,
                selected_address,
                cart,
                total_num,
                total_money,
            },
        )?
        .into_response())
}

const ORDERS_PER_PAGE: i64 = 20;

#[derive(Deserialize)]
struct OrdersQuery {
    page: Option<String>,
}

/// One row of `/orders`.
#[derive(Serialize)]
struct OrderView {
    id: String,
    /// UTC, for browsers without script; the page's script shows local time.
    created: String,
    created_iso: String,
    total_num: i64,
    pay_money: i64,
    /// The saga's state, as stored.
    state: String,
    label: &'static str,
    payable: bool,
    cancellable: bool,
}

/// What a shopper reads for a saga state, whether the order can be paid, and whether a
/// cancel would be accepted (the forward steps take it once they are done).
fn state_label(state: &str) -> (&'static str, bool, bool) {
    match state {
        "started" | "stock_reserved" | "order_written" | "points_awarded" | "cart_cleared" => {
            ("处理中 · Processing", false, true)
        }
        "awaiting_payment" => ("待支付 · Awaiting payment", true, true),
        "paying" => ("支付确认中 · Confirming payment", false, false),
        "completed" => ("已支付 · Paid", false, false),
        "compensating" => ("取消中 · Cancelling", false, false),
        "compensated" => ("已取消 · Cancelled", false, false),
        "stuck" => ("异常处理中 · On hold", false, false),
        "failed" => ("失败 · Failed", false, false),
        _ => ("未知 · Unknown", false, false),
    }
}

/// `/orders`: the shopper's orders, newest first, with pay and cancel where they apply.
async fn orders_page(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Query(q): Query<OrdersQuery>,
) -> Result<Response, ApiError> {
    let page = q
        .page
        .as_deref()
        .and_then(|p| p.trim().parse::<i64>().ok())
        .filter(|p| (1..=1_000_000).contains(p))
        .unwrap_or(1);
    let (rows, total) = state
        .db
        .orders_of(
            user.username.as_str(),
            ORDERS_PER_PAGE,
            (page - 1) * ORDERS_PER_PAGE,
        )
        .await?;
    let orders: Vec<OrderView> = rows
        .into_iter()
        .map(|(row, saga_state)| {
            let (label, payable, cancellable) = state_label(&saga_state);
            OrderView {
                created: row.create_time.format("%Y-%m-%d %H:%M UTC").to_string(),
                created_iso: row.create_time.to_rfc3339(),
                id: row.id,
                total_num: row.total_num,
                pay_money: row.pay_money,
                state: saga_state,
                label,
                payable,
                cancellable,
            }
        })
        .collect();
    let pages = (total.max(0) as u64).div_ceil(ORDERS_PER_PAGE as u64);
    Ok(state
        .pages
        .render(
            "orders.html",
            context! {
                shop_nav => "orders",
                username => user.username.as_str(),
                is_admin => user.is_admin(),
                orders,
                page,
                pages,
                total,
            },
        )?
        .into_response())
}

async fn sku_image() -> Response {
    const SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64"><rect width="64" height="64" rx="8" fill="#eef2f7"/><path d="M18 24h28l-3 24H21z" fill="#c8d3e0"/><path d="M25 24a7 7 0 0 1 14 0" stroke="#8fa1b7" stroke-width="3" fill="none"/></svg>"##;
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        SVG,
    )
        .into_response()
}
