//! The checks every submission route shares (`/api/detect`, `/api/v1/analyses`, `…/url`):
//! the `model` slug, the image bytes, and quota admission with its metrics and errors.

use super::declared::{Declared, ModelText};
use super::errors::{ApiError, ErrorBody};
use super::guard::QuotaSlot;
use super::AppState;
use crate::auth::Principal;
use crate::forensics::families::ModelSlug;
use crate::forensics::ImageFormat;
use crate::quota::{Decision, GateError, QuotaState, Source, Ticket};

/// Parse the optional `model` field.
pub fn parse_model(model: Option<&Declared<ModelText>>) -> Result<Option<ModelSlug>, ApiError> {
    model
        .map(|m| ModelSlug::parse(m.as_str()))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_model", e.to_string()))
}

/// Check an uploaded or downloaded image: within `max` bytes (413), not empty and a supported
/// format by its magic bytes (415).
pub fn check_image(bytes: &[u8], max: u64) -> Result<ImageFormat, ApiError> {
    if bytes.len() as u64 > max {
        return Err(ApiError::too_large(max));
    }
    if bytes.is_empty() {
        // no bytes are no supported format either: 415, like any other file that is not an image
        return Err(ApiError::UnsupportedMediaType(ErrorBody::json(
            "empty_file",
            "the file is empty: send a JPEG, PNG, WebP, HEIC/HEIF or AVIF image",
        )));
    }
    ImageFormat::sniff(bytes).ok_or_else(|| {
        ApiError::unsupported(
            "the file is not JPEG, PNG, WebP, HEIC/HEIF or AVIF (the format is read from its bytes, not its name)",
        )
    })
}

/// The 429 for a denied state, recording the state for the headers.
pub fn denied(state: &AppState, slot: &QuotaSlot, quota: QuotaState) -> ApiError {
    state.metrics.decision("deny");
    let w = quota.constraining();
    let error = ApiError::quota_exceeded(w.kind.name(), w.limit, quota.retry_after());
    slot.set(quota);
    error
}

/// Count one request of `principal` from `source`; the ticket refunds it on a server failure.
pub async fn admit(
    state: &AppState,
    principal: &Principal,
    source: Source,
    slot: &QuotaSlot,
) -> Result<Ticket, ApiError> {
    let gate = state.quota.admit(principal, source).await;
    if gate.store_error {
        state.metrics.decision("store_error");
    }
    match gate.decision {
        Ok(Decision::Admitted(q, ticket)) => {
            slot.set(q);
            state.metrics.decision("allow");
            Ok(ticket)
        }
        Ok(Decision::Denied(q)) => Err(denied(state, slot, q)),
        Err(e) => Err(gate_error(
            e,
            "the quota store cannot be reached and this server fails closed; retry shortly",
        )),
    }
}

/// The answer when the gate cannot decide; `store_detail` says what the outage means here.
pub fn gate_error(e: GateError, store_detail: &str) -> ApiError {
    match e {
        GateError::UnknownTier(t) => {
            ApiError::forbidden("unknown_tier", format!("the key's tier '{t}' is not configured"))
        }
        GateError::StoreDown(_) => ApiError::unavailable("store_unavailable", store_detail, 5),
    }
}
