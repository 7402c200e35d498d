//! Who is calling: the JWT from `Authorization: Bearer` or the `Authorization` cookie, and
//! `POST /api/user/login`, which issues one.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, JsonBody, ok};
use crate::auth::{Principal, TokenError, check_password};
use crate::domain::Username;

/// The cookie the changgou course uses for the token, read by pages and the API alike.
pub const AUTH_COOKIE: &str = "Authorization";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/user/login", post(login))
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let token = authenticate(&state, &req.username, req.password).await?;
    let cookie = auth_cookie(&token, state.tokens.ttl.as_secs() as i64);
    let mut response = ok("login succeeded", serde_json::json!({ "token": token }));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Checks the credentials and issues a token: the same error for an unknown user, a wrong
/// password and a disabled account, in about the same time.
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: String,
) -> Result<String, ApiError> {
    if !state.tokens.can_issue() {
        return Err(ApiError::Unavailable(TokenError::VerifyOnly.to_string()));
    }
    let record = match Username::parse(username) {
        Ok(user) => state.db.find_login(&user).await?.map(|r| (user, r)),
        Err(_) => None,
    };
    let stored_hash = record.as_ref().map(|(_, r)| r.password_hash.clone());
    if !check_password(password, stored_hash).await {
        return Err(ApiError::BadCredentials);
    }
    let (user, record) = record.ok_or(ApiError::BadCredentials)?;
    if !record.is_active {
        return Err(ApiError::BadCredentials);
    }
    let now = state.clock.now();
    state.db.record_login(&user, now).await?;
    state
        .tokens
        .issue(&user, &record.roles, now)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))
}

/// `Authorization=<jwt>`: HttpOnly (scripts never see it), SameSite=Strict (other sites'
/// pages cannot make the browser send it, which is the first line against CSRF).
pub fn auth_cookie(token: &str, max_age_secs: i64) -> HeaderValue {
    let cookie = Cookie::build((AUTH_COOKIE, token.to_owned()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a JWT is a valid header value")
}

/// Where the token came from: a cookie is sent by the browser on its own, so state changes
/// authenticated by it get the cross-site checks below; a bearer header is not.
enum TokenSource {
    Bearer,
    Cookie,
}

fn token_from(headers: &HeaderMap) -> Option<(String, TokenSource)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        return Some((token.to_owned(), TokenSource::Bearer));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == AUTH_COOKIE)
        .map(|c| {
            let v = c.value();
            (
                v.strip_prefix("Bearer ").unwrap_or(v).to_owned(),
                TokenSource::Cookie,
            )
        })
}

/// A state-changing request carried by a cookie must come from our own pages: the
/// browser's `Sec-Fetch-Site` (when sent) says same-origin, and `Origin` (when sent)
/// names the host the request went to.
fn is_same_site(parts: &Parts) -> bool {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let h = &parts.headers;
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        return origin_host == host;
    }
    true
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (token, source) = token_from(&parts.headers).ok_or(ApiError::Login)?;
        let principal = state.tokens.verify(&token).map_err(|_| ApiError::Login)?;
        if matches!(source, TokenSource::Cookie) && !is_same_site(parts) {
            return Err(ApiError::Access("cross-site request refused"));
        }
        Ok(principal)
    }
}

/// A page that needs a login: without a valid token the browser is sent to
/// `/login?from=<this page>`.
pub struct PageUser(pub Principal);

pub struct LoginRedirect(String);

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        let target = format!(
            "/login?from={}",
            url::form_urlencoded::byte_serialize(self.0.as_bytes()).collect::<String>()
        );
        axum::response::Redirect::to(&target).into_response()
    }
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = LoginRedirect;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        Principal::from_request_parts(parts, state)
            .await
            .map(PageUser)
            .map_err(|_| LoginRedirect(here))
    }
}

/// `from` if it is a path on this site, else `/`: a login page must never send the
/// shopper to another site (open redirect). Refuses `//host`, `/\host`, schemes and
/// control characters.
pub fn safe_return_path(from: Option<&str>) -> String {
    let Some(from) = from else { return "/".into() };
    let ok = from.starts_with('/')
        && !from.starts_with("//")
        && !from.starts_with("/\\")
        && !from.chars().any(|c| c.is_control() || c == '\\')
        && from.len() <= 2000;
    if ok { from.to_owned() } else { "/".into() }
}

#[cfg(test)]
mod tests {
    use super::safe_return_path;

    #[test]
    fn only_relative_same_site_paths_are_followed_after_login() {
        assert_eq!(safe_return_path(Some("/order?x=1")), "/order?x=1");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_return_path(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_return_path(None), "/");
    }
}
