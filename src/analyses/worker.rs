//! The analysis workers: each takes a detection slot, claims the oldest queued analysis,
//! runs the detector on it, and records the outcome. The store's claim/finish semantics make
//! this safe across replicas: a job whose worker died is handed out again after the
//! visibility timeout, and only the first finisher's result is kept.

use std::sync::Arc;

use chrono::Utc;

use super::{AnalysisError, AnalysisRecord, AnalysisStatus, Outcomes, Wakers};
use crate::config::AnalysesSettings;
use crate::forensics::families::ModelSlug;
use crate::forensics::{DetectOptions, Detector};
use crate::pool::DetectionPool;
use crate::store::analyses::SharedAnalyses;
use crate::store::StoreError;

/// Claims after which an analysis is failed instead of tried again: a job that keeps
/// killing or stalling its worker must not circle forever.
pub const MAX_ATTEMPTS: u32 = 3;

/// What one step of a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No detection slot was free.
    Busy,
    /// The queue was empty.
    Idle,
    /// An analysis was processed; `kept` is false when another finisher came first.
    Processed {
        /// The analysis.
        id: super::AnalysisId,
        /// Its final status.
        status: AnalysisStatus,
        /// Whether this worker's outcome was the one stored.
        kept: bool,
    },
}

/// Everything a worker needs.
#[derive(Clone)]
pub struct Workers {
    /// Records and queue.
    pub analyses: SharedAnalyses,
    /// The detector.
    pub detector: Arc<Detector>,
    /// The detection threads (shared with synchronous detections).
    pub pool: Arc<DetectionPool>,
    /// Timeouts and retention.
    pub settings: AnalysesSettings,
    /// What the workers finished.
    pub outcomes: Outcomes,
    /// Wakes the workers when an analysis is queued, and wakes the webhook senders.
    pub wakers: Wakers,
}

impl Workers {
    /// Claim and process one analysis, if a slot and a job are available.
    pub async fn step(&self) -> Result<Step, StoreError> {
        let Some(reservation) = self.pool.try_reserve() else {
            return Ok(Step::Busy);
        };
        let visibility = chrono::Duration::seconds(self.settings.visibility_secs as i64);
        let Some(claimed) = self.analyses.claim(Utc::now(), visibility).await? else {
            return Ok(Step::Idle);
        };
        let mut record = claimed.record;
        if record.attempts > MAX_ATTEMPTS {
            drop(reservation);
            record.completed_at = Some(Utc::now());
            record.status = AnalysisStatus::Failed;
            record.error = Some(AnalysisError {
                error: "analysis_abandoned".into(),
                detail: format!("the analysis was tried {MAX_ATTEMPTS} times without finishing"),
            });
            let kept = self.analyses.finish(&record, true).await?;
            if kept {
                self.outcomes.count(record.status);
                if record.callback_url.is_some() {
                    self.wakers.webhooks.notify_one();
                }
            }
            return Ok(Step::Processed { id: record.id, status: record.status, kept });
        }
        let options = DetectOptions { from_extension: record.source.is_extension() };
        let detector = Arc::clone(&self.detector);
        let image = claimed.image;
        let started = std::time::Instant::now();
        let outcome = self.pool.run(reservation, move || detector.detect_with(&image, options)).await;
        if let Ok(Ok(report)) = &outcome {
            self.outcomes.detection_seconds.observe(started.elapsed().as_secs_f64());
            self.outcomes.pace.record(report.elapsed_ms);
        }
        finish_record(&mut record, outcome);
        let kept = self.analyses.finish(&record, self.settings.keep_images_secs == 0).await?;
        if kept {
            self.outcomes.count(record.status);
            if record.callback_url.is_some() {
                self.wakers.webhooks.notify_one();
            }
        } else {
            tracing::info!(id = %record.id, "analysis already finished by another worker; this result is dropped");
        }
        Ok(Step::Processed { id: record.id, status: record.status, kept })
    }

    /// Run `workers` loops until `shutdown` resolves; each finishes its current analysis.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let wake = Arc::clone(&self.wakers.jobs);
        let count = self.settings.workers;
        let step = move || {
            let workers = self.clone();
            async move { workers.step().await.map(|s| matches!(s, Step::Processed { .. })) }
        };
        super::run_loops("analysis worker", count, wake, shutdown, step).await;
    }
}

/// Fill the outcome of a detection into the record.
fn finish_record(
    record: &mut AnalysisRecord,
    outcome: Result<Result<crate::forensics::Report, crate::forensics::DecodeError>, crate::pool::JobFailed>,
) {
    record.completed_at = Some(Utc::now());
    match outcome {
        Ok(Ok(mut report)) => {
            report.model =
                record.model.as_deref().and_then(|m| ModelSlug::parse(m).ok()).map(|m| m.score(&report));
            record.status = AnalysisStatus::Completed;
            record.result = Some(report);
            record.error = None;
        }
        Ok(Err(e)) => {
            record.status = AnalysisStatus::Failed;
            record.error = Some(AnalysisError { error: e.code().to_string(), detail: e.to_string() });
        }
        Err(e) => {
            record.status = AnalysisStatus::Failed;
            record.error = Some(AnalysisError { error: "internal_error".into(), detail: e.to_string() });
        }
    }
}
