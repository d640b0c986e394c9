//! Asynchronous analyses: a submitted image gets an id at once, a worker analyses it later,
//! the client polls or receives a webhook, and deletes the data when done.
//!
//! This module holds the typed records; the stores (`crate::store`) keep them and the work
//! queue, so several replicas on one Redis share one queue.

pub mod worker;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::auth::key::{AccountId, KeyId};
use crate::forensics::Report;
use crate::hexid::{is_lower_hex, random_hex};
use crate::quota::Source;

/// Bytes of randomness in an analysis id (128 bits: ids are unguessable).
const ID_BYTES: usize = 16;

/// An analysis id: 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AnalysisId(String);

/// A string that is not an analysis id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an analysis id (32 lower-case hex digits)")]
pub struct InvalidAnalysisId(pub String);

impl AnalysisId {
    /// Parse an id from a path.
    pub fn parse(s: &str) -> Result<AnalysisId, InvalidAnalysisId> {
        if is_lower_hex(s, ID_BYTES) {
            Ok(AnalysisId(s.to_string()))
        } else {
            Err(InvalidAnalysisId(s.chars().take(40).collect()))
        }
    }

    /// A fresh random id.
    pub fn generate() -> AnalysisId {
        AnalysisId(random_hex(ID_BYTES))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AnalysisId {
    type Error = InvalidAnalysisId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AnalysisId::parse(&s)
    }
}

impl From<AnalysisId> for String {
    fn from(id: AnalysisId) -> String {
        id.0
    }
}

impl fmt::Display for AnalysisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Counts of analyses finished by this replica's workers (the first finisher only) and how
/// long their detections took, shared with whoever exports them.
#[derive(Debug, Clone)]
pub struct Outcomes {
    /// Analyses completed.
    pub completed: Counter,
    /// Analyses failed.
    pub failed: Counter,
    /// Seconds each analysis's detection took.
    pub detection_seconds: Histogram,
    /// The recent pace of detections, for completion estimates.
    pub pace: Pace,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes {
            completed: Counter::default(),
            failed: Counter::default(),
            // 0.5 ms … ~16 s, as the synchronous detections
            detection_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            pace: Pace::new(INITIAL_PACE_MS),
        }
    }
}

/// What an analysis is assumed to take before any was measured.
const INITIAL_PACE_MS: f64 = 250.0;

/// An exponentially weighted mean of recent detection times (weight 0.1 on the newest).
#[derive(Debug, Clone)]
pub struct Pace(Arc<AtomicU64>);

impl Pace {
    /// Start at `millis`.
    pub fn new(millis: f64) -> Pace {
        Pace(Arc::new(AtomicU64::new(millis.to_bits())))
    }

    /// Take one measured detection time into the mean.
    pub fn record(&self, millis: f64) {
        if !millis.is_finite() || millis < 0.0 {
            return;
        }
        // a lost race drops one sample at worst, so a plain update is enough
        let mean = f64::from_bits(self.0.load(Ordering::Relaxed));
        self.0.store((0.9 * mean + 0.1 * millis).to_bits(), Ordering::Relaxed);
    }

    /// The current mean, in milliseconds.
    pub fn millis(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Wake-ups between submission, workers and webhook senders, so work does not wait for the
/// next poll (the poll stays, for work submitted on other replicas).
#[derive(Debug, Clone, Default)]
pub struct Wakers {
    /// An analysis was queued.
    pub jobs: Arc<Notify>,
    /// A webhook became due.
    pub webhooks: Arc<Notify>,
}

impl Outcomes {
    /// Count one finished analysis.
    pub fn count(&self, status: AnalysisStatus) {
        match status {
            AnalysisStatus::Completed => self.completed.inc(),
            AnalysisStatus::Failed => self.failed.inc(),
            AnalysisStatus::Processing => return,
        };
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn pace_follows_recent_detections() {
        let pace = Pace::new(500.0);
        for _ in 0..100 {
            pace.record(40.0);
        }
        assert!((pace.millis() - 40.0).abs() < 0.1, "{}", pace.millis());
        pace.record(f64::NAN);
        assert!((pace.millis() - 40.0).abs() < 0.1);
    }
}

/// How long an idle loop waits before looking for work again (unless woken).
pub const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Run `count` copies of a work loop until `shutdown` is set. Each calls `step` again at once
/// after a step that did some work (`Ok(true)`); after an idle step it waits [`IDLE_WAIT`],
/// after an error five times as long, or less when `wake` is notified or shutdown begins. A
/// step under way is always finished.
pub async fn run_loops<F, Fut>(
    name: &'static str,
    count: usize,
    wake: Arc<Notify>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    step: F,
) where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, crate::store::StoreError>> + Send,
{
    let mut handles = Vec::new();
    for _ in 0..count.max(1) {
        let (step, wake, mut shutdown) = (step.clone(), Arc::clone(&wake), shutdown.clone());
        handles.push(tokio::spawn(async move {
            while !*shutdown.borrow() {
                let wait = match step().await {
                    Ok(true) => continue,
                    Ok(false) => IDLE_WAIT,
                    Err(e) => {
                        tracing::warn!("{name}: {e}");
                        IDLE_WAIT * 5
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Where an analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisStatus {
    /// Queued or being analysed.
    Processing,
    /// Analysed; the result is there.
    Completed,
    /// Could not be analysed; the error is there.
    Failed,
}

/// Why an analysis failed, in the API's error shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisError {
    /// Stable code (`undecodable_image`, `image_too_large`, …).
    pub error: String,
    /// A sentence for humans.
    pub detail: String,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, when it did (refused address, timeout, non-2xx…).
    pub error: Option<String>,
}

/// Everything kept about one analysis (the image is kept apart, and only until analysed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// Its id.
    pub id: AnalysisId,
    /// The account that submitted it; only that account may read or delete it.
    pub account: AccountId,
    /// The key that submitted it.
    pub key_id: KeyId,
    /// Where it stands.
    pub status: AnalysisStatus,
    /// The uploaded file's name, or the URL's last path segment.
    pub file_name: Option<String>,
    /// MIME type decided from the bytes.
    pub file_type: String,
    /// The client's own reference (≤ 128 printable characters).
    pub external_id: Option<String>,
    /// Requested generator slug.
    pub model: Option<String>,
    /// Detection source of the submission.
    pub source: Source,
    /// Where to deliver the result.
    pub callback_url: Option<String>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// When it completed or failed.
    pub completed_at: Option<DateTime<Utc>>,
    /// The detection report, when completed.
    pub result: Option<Report>,
    /// The failure, when failed.
    pub error: Option<AnalysisError>,
    /// Times a worker claimed it (more than 1 after a worker died or timed out).
    pub attempts: u32,
    /// Webhook delivery attempts, oldest first.
    pub deliveries: Vec<Delivery>,
    /// Whether the webhook was delivered (a 2xx answer).
    pub delivered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        let id = AnalysisId::generate();
        assert_eq!(AnalysisId::parse(id.as_str()), Ok(id.clone()));
        assert!(AnalysisId::parse(&id.as_str().to_uppercase()).is_err());
        assert!(AnalysisId::parse("../../etc/passwd").is_err());
        assert!(AnalysisId::parse(&id.as_str()[1..]).is_err());
    }
}
