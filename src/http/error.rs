//! `ApiError`: every error the API answers with, rendered as `application/problem+json`
//! (RFC 9457): `{"type","title","status","detail"}`, plus `errors` for validation
//! problems. The client sees a message it can act on; the log keeps the cause.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::service::ServiceError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { detail: String, errors: Vec<FieldError> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Nothing in the request could be used; `extra` carries the per-item detail.
    #[error("{detail}")]
    Unprocessable { detail: String, extra: Option<(&'static str, Value)> },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_secs: u64 },
    /// No credentials, or not ours.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// A WebSocket route asked without the upgrade.
    #[error("{0}")]
    UpgradeRequired(String),
    /// The client took too long to send its request.
    #[error("{0}")]
    RequestTimeout(String),
    /// Over a rate limit.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_secs: u64 },
}

/// The problem+json body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest { detail: detail.into(), errors: Vec::new() }
    }

    /// A 400 naming the query or path parameter at fault.
    pub fn invalid_param(field: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::BadRequest {
            detail: format!("invalid {field}: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad-request",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Unprocessable { .. } => "unprocessable",
            Self::Unavailable { .. } => "unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::RequestTimeout(_) => "request-timeout",
            Self::UpgradeRequired(_) => "upgrade-required",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut body = serde_json::json!({
            "type": format!("urn:isobar:problem:{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        match self {
            Self::BadRequest { errors, .. } if !errors.is_empty() => {
                body["errors"] = serde_json::to_value(errors).unwrap_or_default();
            }
            Self::Unprocessable { extra: Some((key, value)), .. } => body[*key] = value.clone(),
            _ => {}
        }
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Self::Unavailable { retry_after_secs, .. } | Self::TooManyRequests { retry_after_secs, .. } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let Self::UpgradeRequired(_) = self {
            response.insert_header((header::UPGRADE, HeaderValue::from_static("websocket")));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"isobar\"")));
        }
        response.body(body.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid { field, message } => Self::invalid_param(field, message),
            ServiceError::NotFound(detail) => Self::NotFound(detail),
            ServiceError::Unavailable { detail, retry_after_secs } => Self::Unavailable { detail, retry_after_secs },
            ServiceError::Forbidden(detail) => Self::Forbidden(detail),
            ServiceError::Unprocessable(detail) => Self::Unprocessable { detail, extra: None },
        }
    }
}
