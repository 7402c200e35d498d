//! Server-rendered pages (minijinja templates compiled into the binary, no front-end build):
//! `/login` and the shop's home page.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, context};
use serde::Deserialize;

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
            ("admin.html", include_str!("../../templates/admin.html")),
            ("admin_saga.html", include_str!("../../templates/admin_saga.html")),
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
            context! { username => user.username.as_str(), is_admin => user.is_admin(), addresses, cart, skus },
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
