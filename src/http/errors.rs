//! The one error shape of the API, `{"error": "<code>", "detail": "<sentence>"}`, for our own
//! errors and for every error poem or poem-openapi produces (unknown route, bad multipart…).

use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The JSON body of every error.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code (`invalid_api_key`, `quota_exceeded`, …).
    pub error: String,
    /// A sentence for humans saying what went wrong and what to do.
    pub detail: String,
}

/// Every error status the API answers with, documented in the OpenAPI spec.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum ApiError {
    /// The request is malformed: a bad header, field or slug.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The API key (or admin token) is missing, invalid, disabled or revoked.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller may not do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The resource does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The resource's state does not allow this (a revoked key; an account without a webhook
    /// secret asked to sign).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The image (or the request body) is larger than the limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The file is not JPEG, PNG, WebP, HEIC/HEIF or AVIF (decided by its magic bytes).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The file claims a supported format but cannot be decoded, or its dimensions exceed the limits.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// A quota window is full; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The server failed; the request was not counted.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Overloaded, or the quota store is down and the service fails closed; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl ErrorBody {
    /// The JSON body with `code` and `detail`.
    pub fn json(code: &str, detail: impl Into<String>) -> Json<ErrorBody> {
        Json(ErrorBody { error: code.to_string(), detail: detail.into() })
    }
}

impl ApiError {
    /// 400 with a code.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest(ErrorBody::json(code, detail))
    }
    /// 401 with a code.
    pub fn unauthorized(code: &str, detail: impl Into<String>) -> Self {
        ApiError::Unauthorized(ErrorBody::json(code, detail))
    }
    /// 403 with a code.
    pub fn forbidden(code: &str, detail: impl Into<String>) -> Self {
        ApiError::Forbidden(ErrorBody::json(code, detail))
    }
    /// 404 with a code.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        ApiError::NotFound(ErrorBody::json(code, detail))
    }
    /// 409 with a code.
    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        ApiError::Conflict(ErrorBody::json(code, detail))
    }
    /// 413 for a file over `limit` bytes.
    pub fn too_large(limit: u64) -> Self {
        ApiError::PayloadTooLarge(ErrorBody::json(
            "payload_too_large",
            format!(
                "the image is larger than the limit of {limit} bytes ({:.1} MiB)",
                limit as f64 / 1048576.0
            ),
        ))
    }
    /// 415 with a detail.
    pub fn unsupported(detail: impl Into<String>) -> Self {
        ApiError::UnsupportedMediaType(ErrorBody::json("unsupported_media", detail))
    }
    /// 422 with a code.
    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Self {
        ApiError::Unprocessable(ErrorBody::json(code, detail))
    }
    /// 429 with `Retry-After`.
    pub fn quota_exceeded(window: &str, limit: u64, retry_after: u64) -> Self {
        ApiError::TooManyRequests(
            ErrorBody::json(
                "quota_exceeded",
                format!("the {window} quota of {limit} requests is used up; retry in {retry_after} s"),
            ),
            retry_after,
        )
    }
    /// 500 with a detail.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal(ErrorBody::json("internal_error", detail))
    }
    /// 503 with a code and `Retry-After`.
    pub fn unavailable(code: &str, detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError::Unavailable(ErrorBody::json(code, detail), retry_after)
    }

    /// Whether this is a failure of the server (refunded).
    pub fn is_server_error(&self) -> bool {
        matches!(self, ApiError::Internal(_) | ApiError::Unavailable(..))
    }
}

/// poem-openapi's request-parsing errors (missing field, bad JSON…) in our shape.
fn bad_request(err: poem::Error) -> ApiError {
    ApiError::bad_request("bad_request", err.to_string())
}

/// The code used for a status when the error did not come with one.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media",
        422 => "undecodable_image",
        429 => "quota_exceeded",
        503 => "unavailable",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// Turn any error into a response in the API's shape (our own errors already are).
pub fn error_response(err: poem::Error) -> Response {
    let message = err.to_string();
    shape(err.into_response(), &message)
}

/// Give an error response that is not JSON the API's shape, keeping its status and headers
/// (such as `Retry-After` or `WWW-Authenticate`); `message` is the detail when there is one.
pub fn shape(response: Response, message: &str) -> Response {
    if is_json(&response) {
        return response;
    }
    let status = response.status();
    let detail = match (status, message.trim()) {
        (StatusCode::NOT_FOUND, _) => "no such route; see /docs for the API".to_string(),
        (StatusCode::METHOD_NOT_ALLOWED, _) => "this route does not accept that method".to_string(),
        // only the admin routes' bearer scheme fails here (keyed routes are guarded first)
        (StatusCode::UNAUTHORIZED, _) => {
            "send the admin token as 'Authorization: Bearer <token>'".to_string()
        }
        (_, "") => status.canonical_reason().unwrap_or("error").to_string(),
        (_, m) => m.to_string(),
    };
    let mut shaped = ErrorBody::json(code_for(status), detail).into_response();
    shaped.set_status(status);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

/// Whether a response carries a JSON body.
pub fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
