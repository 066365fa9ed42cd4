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
        Conflict::KeyRevoked => "key_revoked",
        Conflict::Exists => "exists",
        Conflict::IdempotencyKeyUsed => "idempotency_key_reused",
        Conflict::Stale => "stale",
        Conflict::Deprovisioned => "deprovisioned",
        Conflict::ReviewNotExpected => "review_not_expected",
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            // A rule about who decides, like the same check before the transaction: 403.
            StoreError::Conflict(c @ (Conflict::KeyRevoked | Conflict::Deprovisioned)) => {
                ApiError::new(StatusCode::FORBIDDEN, conflict_code(c), c.to_string())
            }
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
            StoreError::OutcomeUnknown(detail) => {
                tracing::error!(%detail, "storage connection lost while committing");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outcome_unknown",
                    "storage was lost while committing: the change may or may not have been made; \
                     retry with the same Idempotency-Key (a submission) or the same signed decision, \
                     which return what was recorded",
                )
            }
        }
    }
}

/// The one place a step's error becomes the API's: the status and code each refusal has.
impl From<crate::domain::DomainError> for ApiError {
    fn from(e: crate::domain::DomainError) -> Self {
        use crate::domain::DomainError;
        match e {
            DomainError::Invalid { code, message } => ApiError::bad_request(code, message),
            DomainError::Field(e) => e.into(),
            DomainError::Refused { code, message } => ApiError::forbidden(code, message),
            DomainError::Unauthenticated(message) => ApiError::unauthorized(message),
            DomainError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            DomainError::NotFound(what) => ApiError::not_found(what),
            DomainError::IdempotencyKeyReused => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ),
            DomainError::Store(e) => e.into(),
            DomainError::Internal { context, cause } => ApiError::internal(context, cause),
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

impl From<countersign_core::json_budget::BudgetError> for ApiError {
    fn from(e: countersign_core::json_budget::BudgetError) -> Self {
        use countersign_core::json_budget::BudgetError;
        let code = match e {
            BudgetError::TooDeep(_) => "json_too_deep",
            BudgetError::UnsafeInteger(_) => "unsafe_integer",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

/// JSON body extractor: `Content-Type: application/json`, the body limit, the intake budget
/// ([`countersign_core::json_budget`]: nesting depth, exact integers) checked on the raw bytes
/// before anything is parsed, then serde; every refusal in the API error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        countersign_core::json_budget::check(&bytes)?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `application/json` or any `application/*+json`, as axum's own extractor accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Middleware: every error response is `{"error": {"code", "message"}}`, including those made
/// outside the handlers (an unparsable path or query, an unknown route or method, the request
/// timeout, a body over the limit), which axum and tower-http answer in plain text. Axum's 422
/// for a query that does not deserialize becomes 400 `invalid_field`, like a body's.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/scim+json")
        });
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (status, code) = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            (StatusCode::BAD_REQUEST, "invalid_field")
        }
        StatusCode::NOT_FOUND => (status, "not_found"),
        StatusCode::METHOD_NOT_ALLOWED => (status, "method_not_allowed"),
        StatusCode::REQUEST_TIMEOUT => (status, "request_timeout"),
        StatusCode::PAYLOAD_TOO_LARGE => (status, "body_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (status, "unsupported_media_type"),
        s if s.is_server_error() => (s, "internal"),
        s => (s, "bad_request"),
    };
    // The plain-text bodies are axum's short messages ("Invalid URL: …"); bounded anyway.
    let detail = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if detail.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        detail
    };
    ApiError::new(status, code, message).into_response()
}
