//! The guard in front of every keyed route: verifies `x-api-key`, parses
//! `x-detection-source`, reserves the request body's bytes in the [`UploadBudget`] (503
//! without holding the body when it is spent), bounds the body while it streams in, and sets
//! the quota headers on whatever the route answers (success, 4xx and 429 alike).
//!
//! An answer given before the route reads the body (401, 400, 429, 503) first reads and drops
//! the rest of a body within the size limit (`discard_body`): most clients write their whole
//! body before they read, and would otherwise see a reset connection instead of the answer.
//!
//! Handlers behind it read the verified [`Principal`], the [`Source`] and the
//! [`QuotaSlot`] from the request's data, so they never see an unchecked key or header.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use poem::http::header;
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use super::errors::{error_response, ApiError};
use super::{admission, ratelimit, AppState};
use crate::auth::{AuthError, Principal};
use crate::quota::{QuotaState, Source};

/// Bytes a multipart body may carry beyond the image: boundaries, part headers, `model`.
pub const MULTIPART_SLACK: u64 = 64 * 1024;

/// The longest an early answer waits for the body it drops: a slow client is then cut off.
const DISCARD_FOR: Duration = Duration::from_secs(10);

/// Where a handler leaves the quota state its admission produced, for the headers.
#[derive(Debug, Clone, Default)]
pub struct QuotaSlot(Arc<Mutex<Option<QuotaState>>>);

impl QuotaSlot {
    /// Record the state after admission.
    pub fn set(&self, state: QuotaState) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    fn take(&self) -> Option<QuotaState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Request bodies held in memory at once, in KiB permits: a request reserves its declared
/// length (or the largest allowed without one) before its body is read, and gives it back
/// when answered.
pub struct UploadBudget(Arc<tokio::sync::Semaphore>);

impl UploadBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> UploadBudget {
        let kib =
            usize::try_from(bytes / 1024).unwrap_or(usize::MAX).min(tokio::sync::Semaphore::MAX_PERMITS);
        UploadBudget(Arc::new(tokio::sync::Semaphore::new(kib)))
    }

    /// Reserve `bytes` (at least 1 KiB); `None` when the budget cannot hold them now.
    fn reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.0).try_acquire_many_owned(kib).ok()
    }
}

/// How long verifying the key took, for the auth + quota latency metric.
#[derive(Debug, Clone, Copy)]
pub struct AuthElapsed(pub Duration);

/// The verified source of a request, also left on the response for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct SourceTag(pub Source);

/// Wrap a route in the key guard (used as a poem-openapi `transform`).
pub fn keyed<E: Endpoint>(inner: E) -> KeyGuard<E> {
    KeyGuard { inner }
}

/// The guard endpoint.
pub struct KeyGuard<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for KeyGuard<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let Some(state) = req.data::<Arc<AppState>>().cloned() else {
            return Ok(ApiError::internal("application state missing").into_response());
        };
        let started = Instant::now();
        let presented = req.header("x-api-key").map(str::to_string);
        let principal = match state.keys.authenticate(presented.as_deref()).await {
            Ok(p) => p,
            Err(e) => {
                discard_body(&mut req, body_limit(&state)).await;
                return Ok(auth_error(e).into_response());
            }
        };
        let auth_elapsed = started.elapsed();
        let slot = QuotaSlot::default();
        let response = match Source::from_header(req.header("x-detection-source")) {
            Err(e) => {
                discard_body(&mut req, body_limit(&state)).await;
                ApiError::bad_request("invalid_detection_source", e.to_string()).into_response()
            }
            Ok(source) => {
                req.extensions_mut().insert(principal.clone());
                req.extensions_mut().insert(source);
                req.extensions_mut().insert(slot.clone());
                req.extensions_mut().insert(AuthElapsed(auth_elapsed));
                let mut response = self.call_limited(req, &state, &principal, &slot).await;
                response.extensions_mut().insert(SourceTag(source));
                response
            }
        };
        let mut response = response;
        let quota = match slot.take() {
            Some(q) => Some(q),
            // no admission happened (validation failed, or a read-only route): report usage
            None => state.quota.usage(&principal).await.ok().map(|(q, _)| q),
        };
        if let Some(q) = quota {
            ratelimit::apply(response.headers_mut(), &q);
        }
        Ok(response)
    }
}

impl<E: Endpoint> KeyGuard<E> {
    /// Call the route with its body bounded: a declared length over the limit is refused
    /// before anything is read, and a body that streams past it is cut off and answered 413.
    async fn call_limited(
        &self,
        mut req: Request,
        state: &AppState,
        principal: &Principal,
        slot: &QuotaSlot,
    ) -> Response {
        let max_image = state.settings.server.max_upload_bytes;
        let limit = body_limit(state);
        let declared = declared_length(&req);
        if declared.is_some_and(|n| n > limit) {
            return ApiError::too_large(max_image).into_response();
        }
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        let body_bytes = if chunked { limit } else { declared.unwrap_or(0) };
        let _held = if body_bytes == 0 {
            None
        } else if let Some(permit) = state.uploads.reserve(body_bytes) {
            Some(permit)
        } else {
            discard_body(&mut req, limit).await;
            // a client whose quota is used up hears 429 (with its real Retry-After), not 503
            if let Ok((q, _)) = state.quota.usage(principal).await {
                if !q.admitted {
                    return admission::denied(state, slot, q).into_response();
                }
            }
            state.metrics.overloaded.inc();
            return ApiError::unavailable(
                "overloaded",
                "the server holds as many uploads as it may; retry shortly",
                1,
            )
            .into_response();
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&exceeded);
        let mut seen = 0u64;
        let limited = req.take_body().into_bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > limit {
                flag.store(true, Ordering::Release);
                return Err(std::io::Error::other("request body exceeds the size limit"));
            }
            Ok(chunk)
        });
        req.set_body(Body::from_bytes_stream(limited));
        let response = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => error_response(e),
        };
        if exceeded.load(Ordering::Acquire) && !response.status().is_success() {
            return ApiError::too_large(max_image).into_response();
        }
        response
    }
}

/// The body length the request declares in `Content-Length`, when it is a number.
fn declared_length(req: &Request) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The most bytes a request body may have: the largest image and the multipart around it.
fn body_limit(state: &AppState) -> u64 {
    state.settings.server.max_upload_bytes + MULTIPART_SLACK
}

/// Read and drop the request body before an early answer, so that a client still writing it
/// reads the answer instead of a reset. Nothing is kept: the budget is not needed. Skipped
/// when the client waits for `100 Continue` (it sends nothing unless the body is asked for)
/// and when the declared length is over `limit` (that answer is 413, given at once); it stops
/// after `limit` bytes, at the first error, and after [`DISCARD_FOR`].
async fn discard_body(req: &mut Request, limit: u64) {
    let expects_continue =
        req.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = declared_length(req);
    if expects_continue || declared.is_some_and(|n| n > limit) {
        return;
    }
    let mut stream = req.take_body().into_bytes_stream();
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_FOR, drain).await;
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Missing => {
            ApiError::unauthorized("missing_api_key", "send your API key in the x-api-key header")
        }
        AuthError::Malformed(e) => {
            ApiError::unauthorized("invalid_api_key", format!("the API key is malformed: {e}"))
        }
        AuthError::Invalid => ApiError::unauthorized("invalid_api_key", "the API key is not valid"),
        AuthError::Disabled => ApiError::unauthorized("disabled_api_key", "the API key is disabled"),
        AuthError::Revoked => ApiError::unauthorized("revoked_api_key", "the API key has been revoked"),
        AuthError::Store(e) => {
            tracing::warn!("key store error during authentication: {e}");
            ApiError::unavailable("store_unavailable", "the key store cannot be reached; retry shortly", 5)
        }
    }
}
