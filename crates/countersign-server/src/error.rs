//! The one error type of the API: `{"error": {"code", "message"}}` with the right status.
//! Internal failures are logged and shown only as a generic message.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countersign_store::{Conflict, StoreError};

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 with a code: a rule refused the operation.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 500, logged with its cause; the client sees no detail.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(context, %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

fn conflict_code(c: Conflict) -> &'static str {
    match c {
        Conflict::NotPending => "not_pending",
        Conflict::Expired => "expired",
        Conflict::AlreadyDecided => "already_decided",
        Conflict::NonceReused => "nonce_reused",
        Conflict::GrantRedeemed => "grant_redeemed",
        Conflict::GrantNotValidNow => "grant_not_valid_now",
        Conflict::GrantDigestMismatch => "digest_mismatch",
        Conflict::NoOutcomeExpected => "no_outcome_expected",
        Conflict::EnrolmentCodeInvalid => "enrolment_code_invalid",
        Conflict::KeyExists => "key_exists",
        Conflict::ChallengeInvalid => "challenge_invalid",
        Conflict::Exists => "exists",
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(c) => {
                ApiError::new(StatusCode::CONFLICT, conflict_code(c), c.to_string())
            }
            StoreError::Corrupt(detail) => {
                tracing::error!(%detail, "stored data failed its integrity check");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_data",
                    "stored data failed its integrity check",
                )
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "storage failed; nothing was written");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; nothing was changed",
                )
            }
        }
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(e: crate::admin::AdminError) -> Self {
        match e {
            crate::admin::AdminError::Invalid(e) => e.into(),
            crate::admin::AdminError::Store(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                // serde names the field: "missing field `resource`", "unknown field `x`", ...
                let detail =
                    std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                ApiError::bad_request("invalid_field", detail)
            }
            JsonRejection::JsonSyntaxError(e) => {
                let detail =
                    std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                ApiError::bad_request("malformed_json", detail)
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body rejected: {}", e.body_text()),
            ),
            other => ApiError::bad_request("bad_request", other.body_text()),
        }
    }
}

impl From<countersign_core::ValidationError> for ApiError {
    fn from(e: countersign_core::ValidationError) -> Self {
        ApiError::bad_request("invalid_field", e.to_string())
    }
}

/// JSON body extractor whose rejections use the API error shape.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);
