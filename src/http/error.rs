//! The one error type of the HTTP API and its one mapping to the seed's envelope
//! `{"flag","code","message","data"}` and a real HTTP status.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cart::CartError;
use crate::domain::InvalidInput;

/// The seed's status codes (changgou `entity.StatusCode`).
pub mod code {
    pub const OK: i32 = 20000;
    pub const ERROR: i32 = 20001;
    pub const LOGIN_ERROR: i32 = 20002;
    pub const ACCESS_ERROR: i32 = 20003;
    pub const REMOTE_ERROR: i32 = 20004;
    pub const REPEAT_ERROR: i32 = 20005;
}

/// The seed's response envelope.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub flag: bool,
    pub code: i32,
    pub message: String,
    pub data: Option<T>,
}

/// A successful answer: 200 and code 20000.
pub fn ok<T: Serialize>(message: &str, data: T) -> Response {
    Json(Envelope {
        flag: true,
        code: code::OK,
        message: message.to_owned(),
        data: Some(data),
    })
    .into_response()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: nothing was changed.
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    #[error("{0}")]
    NotFound(String),
    /// Missing, malformed, forged or expired credentials.
    #[error("login required: the token is missing, invalid or expired")]
    Login,
    /// Wrong username or password: the same message for both.
    #[error("wrong username or password")]
    BadCredentials,
    #[error("access denied: {0}")]
    Access(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// The checkout could not reserve these SKUs: nothing was taken.
    #[error("not enough stock for SKU {}", .0.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "))]
    OutOfStock(Vec<crate::domain::SkuId>),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request timed out")]
    Timeout,
    #[error("{0}")]
    Unavailable(String),
    /// The payment provider failed or refused: 502, code 20004.
    #[error("payment provider: {0}")]
    Remote(String),
    /// Logged with its cause chain; the client only learns that something failed.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ApiError::Invalid(InvalidInput::new(field, reason))
    }

    fn status_and_code(&self) -> (StatusCode, i32) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, code::ERROR),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, code::ERROR),
            ApiError::Login | ApiError::BadCredentials => {
                (StatusCode::UNAUTHORIZED, code::LOGIN_ERROR)
            }
            ApiError::Access(_) => (StatusCode::FORBIDDEN, code::ACCESS_ERROR),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, code::REPEAT_ERROR),
            ApiError::OutOfStock(_) => (StatusCode::CONFLICT, code::ERROR),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, code::ERROR),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, code::ERROR),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, code::ERROR),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, code::ERROR),
            ApiError::Remote(_) => (StatusCode::BAD_GATEWAY, code::REMOTE_ERROR),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, code::ERROR),
        }
    }

    /// The envelope for an error response whose body some layer wrote without one
    /// (413 from the body limit, 408 from the timeout, 405 from the router).
    pub fn from_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed("method not allowed on this path".into())
            }
            StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
            StatusCode::UNAUTHORIZED => ApiError::Login,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::invalid("body", "expected Content-Type: application/json")
            }
            s if s.is_client_error() => {
                ApiError::invalid("request", s.canonical_reason().unwrap_or("bad request"))
            }
            _ => ApiError::Internal(anyhow::anyhow!("a layer answered {status} without a body")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "request failed");
        }
        let mut response = (
            status,
            Json(Envelope::<serde_json::Value> {
                flag: false,
                code,
                message: self.to_string(),
                data: match &self {
                    ApiError::OutOfStock(skus) => Some(serde_json::json!({ "skuIds": skus })),
                    _ => None,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::invalid("body", "expected Content-Type: application/json")
            }
            _ => ApiError::invalid("body", rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid("query", rejection.body_text())
    }
}

impl From<CartError> for ApiError {
    fn from(err: CartError) -> Self {
        match err {
            CartError::LineTooLarge => ApiError::invalid("num", err.to_string()),
            CartError::Store(e) => ApiError::Internal(e),
        }
    }
}

/// `axum::Json` whose rejections answer in the envelope.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// `axum::extract::Query` whose rejections answer in the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);
