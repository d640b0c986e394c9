//! Webhook delivery: when an analysis with a `callback_url` finishes, its poll body is POSTed
//! there, signed with the account's webhook secret, and retried with exponential backoff
//! until a 2xx answer or the configured number of attempts.
//!
//! The schedule lives in the analysis store, so deliveries survive a restart and replicas
//! share them: a sender leases a due webhook ([`crate::store::analyses::AnalysisStore::claim_webhook`]),
//! makes one attempt, and records it with the time of the next one. A sender that dies
//! mid-attempt is replaced when its lease ends, so a receiver may see an attempt twice:
//! the `X-Tellscan-Delivery` header, the same on every attempt, lets it ignore repeats.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use poem_openapi::types::ToJSON;

use super::analyses_api::view_of;
use super::AppState;
use crate::analyses::{AnalysisRecord, AnalysisStatus, Delivery};
use crate::outbound::signature::{sign, SIGNATURE_HEADER};

/// Header naming the delivery; the same on every attempt of it.
pub const DELIVERY_HEADER: &str = "x-tellscan-delivery";
/// Header numbering the attempt (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-tellscan-attempt";
/// Header naming the event: `analysis.completed` or `analysis.failed`.
pub const EVENT_HEADER: &str = "x-tellscan-event";

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Time a sender is given beyond the receiver's timeout to record its attempt before the
/// delivery is handed to another sender.
const LEASE_MARGIN_SECS: u64 = 30;

/// The wait after failed attempt number `attempt` (1-based): `base`, then twice as long each
/// time, at most an hour.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The delivery id of an analysis's webhook.
pub fn delivery_id(record: &AnalysisRecord) -> String {
    format!("whd_{}", record.id)
}

/// The JSON body of the webhook: the poll body without the delivery bookkeeping, so every
/// attempt sends the same bytes.
pub fn body(record: &AnalysisRecord) -> Vec<u8> {
    let mut view = view_of(record, 0);
    view.webhook = None;
    // a JSON value always serialises
    serde_json::to_vec(&view.to_json().unwrap_or_default()).unwrap_or_default()
}

/// Run `webhook_senders` loops until `shutdown`; each finishes the attempt it is making.
pub async fn run(state: Arc<AppState>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let wake = Arc::clone(&state.wakers.webhooks);
    let count = state.settings.analyses.webhook_senders;
    let step = move || {
        let state = Arc::clone(&state);
        async move { step(&state).await }
    };
    crate::analyses::run_loops("webhook sender", count, wake, shutdown, step).await;
}

/// Make one due delivery attempt, if one is due; whether there was one.
pub async fn step(state: &AppState) -> Result<bool, crate::store::StoreError> {
    let settings = &state.settings.analyses;
    let lease = chrono::Duration::seconds((settings.webhook_timeout_secs + LEASE_MARGIN_SECS) as i64);
    let Some(mut record) = state.analyses.claim_webhook(Utc::now(), lease).await? else {
        return Ok(false);
    };
    let Some(url) = record.callback_url.clone() else {
        // nothing to send (scheduled by an older record shape): end the schedule
        state.analyses.update_deliveries(&record, None).await?;
        return Ok(true);
    };
    let attempt = u32::try_from(record.deliveries.len()).unwrap_or(u32::MAX).saturating_add(1);
    let delivery = attempt_delivery(state, &record, &url, attempt).await;
    state.metrics.webhook_attempts.inc();
    let delivered = delivery.status.is_some_and(|s| (200..300).contains(&s));
    if !delivered {
        state.metrics.webhook_failures.inc();
        tracing::info!(id = %record.id, attempt, status = ?delivery.status, error = ?delivery.error, "webhook attempt failed");
    }
    let retry_at =
        next_attempt(delivered, attempt, settings.webhook_attempts, settings.webhook_backoff_ms, delivery.at);
    record.deliveries.push(delivery);
    record.delivered = delivered;
    state.analyses.update_deliveries(&record, retry_at).await?;
    Ok(true)
}

/// When to try again after attempt number `attempt`: never once delivered or out of attempts.
fn next_attempt(
    delivered: bool,
    attempt: u32,
    max_attempts: u32,
    backoff_ms: u64,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if delivered || attempt >= max_attempts {
        return None;
    }
    let wait = backoff(Duration::from_millis(backoff_ms), attempt);
    Some(at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
}

/// POST the signed body once and say how it went.
async fn attempt_delivery(state: &AppState, record: &AnalysisRecord, url: &str, attempt: u32) -> Delivery {
    let at = Utc::now();
    let failed = |error: String| Delivery { attempt, at, status: None, error: Some(error) };
    let secret = match state.store.webhook_secret(&record.account).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return failed("the account has no webhook secret".into()),
        Err(e) => return failed(format!("the webhook secret cannot be read: {e}")),
    };
    let body = body(record);
    let event = match record.status {
        AnalysisStatus::Failed => "analysis.failed",
        _ => "analysis.completed",
    };
    let headers = [
        (SIGNATURE_HEADER, sign(secret.as_bytes(), at.timestamp(), &body)),
        (DELIVERY_HEADER, delivery_id(record)),
        (ATTEMPT_HEADER, attempt.to_string()),
        (EVENT_HEADER, event.to_string()),
    ];
    match state.webhook_client.post_json(url, &headers, body).await {
        Ok(status) if (200..300).contains(&status) => {
            Delivery { attempt, at, status: Some(status), error: None }
        }
        Ok(status) => Delivery {
            attempt,
            at,
            status: Some(status),
            error: Some(format!("the receiver answered {status}")),
        },
        Err(e) => failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(2);
        let waits: Vec<u64> = (1..=5).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32]);
        assert_eq!(backoff(base, 12), MAX_BACKOFF);
        assert_eq!(backoff(base, u32::MAX), MAX_BACKOFF, "no overflow");
    }

    #[test]
    fn retries_stop_when_delivered_or_out_of_attempts() {
        let at = DateTime::from_timestamp(1_900_000_000, 0).expect("valid time");
        assert_eq!(next_attempt(false, 1, 3, 500, at), Some(at + chrono::Duration::milliseconds(500)));
        assert_eq!(next_attempt(false, 2, 3, 500, at), Some(at + chrono::Duration::milliseconds(1000)));
        assert_eq!(next_attempt(false, 3, 3, 500, at), None, "out of attempts");
        assert_eq!(next_attempt(true, 1, 3, 500, at), None, "delivered");
    }
}
